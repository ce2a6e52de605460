"""Submitting a bundle to SageMaker with boto3, and the run that tracks the execution (the submit module).

boto3 is imported inside the functions, never at module import. Connection settings (``--config``):

- ``region``: the AWS region (default: boto3's own resolution, e.g. ``AWS_REGION`` or the profile);
- ``profile``: a named AWS profile; credentials always come from boto3's usual chain, never from pipecast;
- ``endpoint_url``: another endpoint for every AWS client (a local emulator such as moto);
- ``studio_domain_id``: the SageMaker Studio domain, for the execution's Studio URL;
- ``url_template``: the run URL, with ``{region}``, ``{domain_id}``, ``{pipeline}``, ``{execution_id}``,
  ``{execution_arn}`` filled in;
- ``create_schedule``: ``false`` to leave a pipeline's schedule alone at submit (default ``true``);
- ``sleep``: a callable taking seconds, to wait between tries of a start whose answer was lost (Python only).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names
from pipecast.errors import ParameterError, SubmitError, SubmitOutcomeUnknownError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import SubmitRequest
from pipecast.targets.sagemaker import expressions
from pipecast.targets.sagemaker.flow import all_steps
from pipecast.targets.sagemaker.instances import PROCESSING, TRAINING
from pipecast.targets.sagemaker.steps import MAX_ARGUMENT_LENGTH, MAX_ENV_VALUE, NOMINAL_EXECUTION_ID

MAX_PARAMETER_VALUE = 1024  # StartPipelineExecution Parameter.Value (botocore: String1024)
_UPDATE_KEYS = ("PipelineName", "PipelineDescription", "RoleArn", "ParallelismConfiguration",
                "PipelineDefinition", "PipelineDefinitionS3Location")

STATUSES = {
    "Executing": RunStatus.RUNNING,
    "Stopping": RunStatus.RUNNING,
    "Stopped": RunStatus.CANCELLED,
    "Failed": RunStatus.FAILED,
    "CompletedWithFailures": RunStatus.FAILED,
    "Succeeded": RunStatus.SUCCEEDED,
}


def execution_parameters(pipeline: ir.Pipeline, values: Mapping[str, Any]) -> list[dict[str, str]]:
    """``PipelineParameters`` for StartPipelineExecution: every value as the text SageMaker takes."""
    names = engine_names("sagemaker", [p.name for p in pipeline.parameters], target="sagemaker")
    result = []
    for param in pipeline.parameters:
        if param.name not in values or values[param.name] is None:
            continue
        text = render_parameter(param.type, values[param.name])
        if len(text) > MAX_PARAMETER_VALUE:
            raise ParameterError(f"parameter {param.name!r} is {len(text)} characters; SageMaker takes "
                                 f"{MAX_PARAMETER_VALUE} per parameter value")
        result.append({"Name": names[param.name], "Value": text})
    return result


def check_arguments(definition: Mapping[str, Any], parameters: list[dict[str, str]]) -> None:
    """Every container argument and environment value, once SageMaker substitutes the values, fits its limit."""
    values = {p["Name"]: _default_text(p.get("DefaultValue")) for p in definition.get("Parameters", [])
              if "DefaultValue" in p}
    values.update({p["Name"]: p["Value"] for p in parameters})
    for step in all_steps(definition.get("Steps", [])):  # with the steps inside condition steps' branches
        arguments = step["Arguments"]
        spec = arguments.get("AppSpecification") or arguments.get("AlgorithmSpecification") or {}
        env_limit = MAX_ENV_VALUE[PROCESSING if "AppSpecification" in arguments else TRAINING]
        checked = [(argument, MAX_ARGUMENT_LENGTH, "argument", "container argument") for argument in
                   spec.get("ContainerArguments", [])]
        checked += [(value, env_limit, f"environment value {name!r}", "environment value")
                    for name, value in (arguments.get("Environment") or {}).items()]
        for argument, limit, what, unit in checked:
            try:
                text = expressions.resolve(argument, values, NOMINAL_EXECUTION_ID)
            except KeyError as missing:
                raise ParameterError(f"step {step['Name']!r} needs parameter {missing.args[0]!r}, which has no "
                                     "value and no default") from None
            if len(text) > limit:
                raise ParameterError(
                    f"step {step['Name']!r}: {what} {text[:60]!r}… is {len(text)} characters with these "
                    f"parameter values; SageMaker allows {limit} per {unit}")


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def submit(request: SubmitRequest) -> SageMakerRun:
    """Create or update the pipeline (and its schedule), start an execution, return the run."""
    pipeline, config, run_id = request.pipeline, request.config, request.run_id
    files = request.bundle.as_dict()
    definition_text = files[f"{pipeline.name}.pipeline.json"]
    # The request bodies boto3 takes as keyword arguments, exactly as compiled.
    create_request = json.loads(files[f"{pipeline.name}.create-pipeline.json"])
    schedule_text = files.get(f"{pipeline.name}.schedule.json")
    values = execution_parameters(pipeline, request.parameters)
    check_arguments(json.loads(definition_text), values)
    sleep = config.get("sleep", time.sleep)
    if not callable(sleep):
        raise SubmitError("config 'sleep' must be a callable taking seconds (for embedding and tests)")

    from botocore.exceptions import BotoCoreError, ClientError

    session = _session(config)
    client = _client(session, "sagemaker", config)
    name = create_request["PipelineName"]
    try:
        pipeline_arn = _upsert_pipeline(session, client, config, create_request, definition_text, run_id)
        if schedule_text and _flag(config.get("create_schedule", True)):
            _upsert_schedule(_client(session, "scheduler", config), json.loads(schedule_text), pipeline_arn)
        # Where to look for the execution should the start's answer be lost (its description holds the run id).
        request.note(sagemaker_pipeline=name, region=session.region_name)
        arn = start_execution(_client(session, "sagemaker", config, retries=False), name, run_id, values, sleep)
    except (ClientError, BotoCoreError) as err:
        raise SubmitError(f"AWS refused pipeline {name!r}: {err}") from err
    return SageMakerRun(run_id=run_id, engine_run_id=arn, url=execution_url(arn, name, config), client=client)


START_ATTEMPTS = 5


def start_execution(client: Any, name: str, run_id: str, values: list[dict[str, str]],
                    sleep: Callable[[float], None] = time.sleep) -> str:
    """StartPipelineExecution; a start whose outcome is unknown is resolved by asking SageMaker.

    ``client`` must not retry on its own. When the answer is lost (a dropped connection, a timeout, a 5xx,
    throttling), the execution is looked for by its description, which holds the run id; only if none
    exists is the start sent again, with the same ``ClientRequestToken`` (SageMaker documents the call as
    idempotent for one token; the lookup does not depend on that). When no try is answered and no execution
    is found, the outcome is unknown (SubmitOutcomeUnknownError): ``pipecast runs wait`` looks again.
    """
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

    description = f"pipecast run {run_id}"
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return str(client.start_pipeline_execution(
                PipelineName=name, PipelineExecutionDisplayName=_display_name(run_id),
                PipelineExecutionDescription=description, PipelineParameters=values,
                ClientRequestToken=_token("start", run_id))["PipelineExecutionArn"])
        except ClientError as err:
            if not _transient(err):
                raise
            failure: Exception = err
        except (HTTPClientError, ConnectionError) as err:
            failure = err
        try:
            found = _execution_described(client, name, description)
        except (ClientError, BotoCoreError):
            found = None  # cannot tell: try the start again (same token)
        if found:
            return found
        if attempt < START_ATTEMPTS:
            sleep(min(2.0 ** (attempt - 1), 20.0))
    raise SubmitOutcomeUnknownError(
        f"SageMaker did not answer StartPipelineExecution of {name!r} after {START_ATTEMPTS} tries ({failure}), "
        f"and it lists no execution described {description!r} (yet): `pipecast runs wait` looks for it again")


def _execution_described(client: Any, name: str, description: str) -> str | None:
    """The newest execution of pipeline ``name`` with this description (botocore's errors propagate)."""
    pages = client.get_paginator("list_pipeline_executions").paginate(
        PipelineName=name, SortBy="CreationTime", SortOrder="Descending", PaginationConfig={"MaxItems": 100})
    for page in pages:
        for summary in page.get("PipelineExecutionSummaries", []):
            if summary.get("PipelineExecutionDescription") == description:
                return str(summary["PipelineExecutionArn"])
    return None


def _transient(err: Any) -> bool:
    """A throttled or failed (5xx) call: SageMaker may or may not have acted on it."""
    code = str(err.response.get("Error", {}).get("Code", ""))
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return status >= 500 or code in ("ThrottlingException", "Throttling", "ServiceUnavailable", "InternalFailure")


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> SageMakerRun:
    """The run of a record, from its execution ARN (which names the region).

    A run whose start went unanswered has no ARN recorded: its execution is looked for by the run id in its
    description, in the pipeline and region noted at submit.
    """
    arn = str(record.get("engine_run_id") or "")
    metadata = record.get("metadata") or {}
    name = metadata.get("sagemaker_pipeline")
    if not arn.startswith("arn:") and not name:
        raise SubmitError(f"run {record.get('id')!r} has no SageMaker execution ARN; it never started")
    session = _session(config, region=arn.split(":")[3] if arn.startswith("arn:") else metadata.get("region"))
    client = _client(session, "sagemaker", config)
    if not arn.startswith("arn:"):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = _execution_described(client, str(name), f"pipecast run {record['id']}")
        except (ClientError, BotoCoreError) as err:
            raise SubmitError(f"cannot list the executions of SageMaker pipeline {name!r} to find run "
                              f"{record.get('id')!r}: {err}") from err
        if found is None:
            raise SubmitError(f"run {record.get('id')!r} has no SageMaker execution ARN, and pipeline {name!r} "
                              "lists no execution started for it: the start never took effect")
        return SageMakerRun(run_id=str(record["id"]), engine_run_id=found,
                            url=execution_url(found, str(name), config), client=client)
    return SageMakerRun(run_id=str(record["id"]), engine_run_id=arn, url=record.get("url"), client=client)


def execution_url(arn: str, pipeline_name: str, config: Mapping[str, Any]) -> str:
    """The execution's page: SageMaker Studio when a domain is configured, else the SageMaker console."""
    region = arn.split(":")[3]
    execution_id = arn.rsplit("/", 1)[-1]
    fields = {"region": region, "pipeline": urllib.parse.quote(pipeline_name, safe=""),
              "execution_id": urllib.parse.quote(execution_id, safe=""), "execution_arn": arn,
              "domain_id": str(config.get("studio_domain_id") or "")}
    template = config.get("url_template")
    if template:
        return str(template).format(**fields)
    if fields["domain_id"]:
        return "https://studio-{domain_id}.studio.{region}.sagemaker.aws/pipelines/{pipeline}/executions/" \
               "{execution_id}".format(**fields)
    return "https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/pipelines/{pipeline}/" \
           "executions/{execution_id}".format(**fields)


class SageMakerRun(EngineRun):
    """One pipeline execution: status from DescribePipelineExecution, cancel with StopPipelineExecution."""

    poll_interval = 10.0

    def __init__(self, *, run_id: str, engine_run_id: str, url: str | None, client: Any) -> None:
        super().__init__(run_id=run_id, target="sagemaker", engine_run_id=engine_run_id, url=url)
        self._client = client

    def fetch_status(self) -> RunStatus:
        """The execution's status from SageMaker, with the failure reason when it failed."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.describe_pipeline_execution(PipelineExecutionArn=self.engine_run_id)
        except (ClientError, BotoCoreError) as err:
            raise SubmitError(f"cannot read SageMaker execution {self.engine_run_id!r}: {err}") from err
        state = str(response.get("PipelineExecutionStatus", ""))
        status = STATUSES.get(state, RunStatus.UNKNOWN)
        self.detail = "" if status is not RunStatus.UNKNOWN else f"SageMaker status {state!r}"
        if status is RunStatus.FAILED:
            self.detail = self._failure(state, str(response.get("FailureReason") or ""))
        return status

    def _failure(self, state: str, reason: str) -> str:
        """Which steps failed and why, from ListPipelineExecutionSteps (the execution's reason if that fails)."""
        from botocore.exceptions import BotoCoreError, ClientError

        failed = []
        try:
            pages = self._client.get_paginator("list_pipeline_execution_steps").paginate(
                PipelineExecutionArn=self.engine_run_id, SortOrder="Ascending")
            for page in pages:
                for step in page.get("PipelineExecutionSteps", []):
                    if step.get("StepStatus") == "Failed":
                        failed.append(f"step {step.get('StepName')!r} failed: {step.get('FailureReason') or '?'}")
        except (ClientError, BotoCoreError):
            pass  # the execution's own reason below still says what happened
        parts = failed or ([reason] if reason else [f"execution {state.lower()}"])
        return "; ".join(parts)

    def cancel(self) -> None:
        """Stop the execution (with an idempotency token, so a retried stop is one request)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.stop_pipeline_execution(PipelineExecutionArn=self.engine_run_id,
                                                 ClientRequestToken=_token("stop", self.engine_run_id))
        except (ClientError, BotoCoreError) as err:
            raise SubmitError(f"cannot stop SageMaker execution {self.engine_run_id!r}: {err}") from err


def _upsert_pipeline(session: Any, client: Any, config: Mapping[str, Any], request: Mapping[str, Any],
                     definition_text: str, run_id: str) -> str:
    """CreatePipeline, or UpdatePipeline when it exists (told apart as the sagemaker SDK's ``upsert`` does).

    The request token is per submit: botocore's retries of one request reuse it, while a later submit of an
    earlier definition is not mistaken for a replay of its first CreatePipeline.
    """
    from botocore.exceptions import ClientError

    arguments = dict(request)
    location = arguments.get("PipelineDefinitionS3Location")
    if location:
        _client(session, "s3", config).put_object(Bucket=location["Bucket"], Key=location["ObjectKey"],
                                                  Body=definition_text.encode())
    else:
        arguments["PipelineDefinition"] = definition_text
    try:
        return str(client.create_pipeline(**arguments, ClientRequestToken=_token("create", run_id))["PipelineArn"])
    except ClientError as err:
        error = err.response.get("Error", {})
        if not (error.get("Code") == "ValidationException" and "already exists" in str(error.get("Message"))):
            raise
    update = {key: arguments[key] for key in _UPDATE_KEYS if key in arguments}
    arn = str(client.update_pipeline(**update)["PipelineArn"])
    # UpdatePipeline takes no Tags: AddTags adds the missing ones and overwrites changed values (none is removed).
    present = {(t["Key"], t["Value"]) for t in client.list_tags(ResourceArn=arn).get("Tags", [])} \
        if arguments.get("Tags") else set()
    missing = [tag for tag in arguments.get("Tags", []) if (tag["Key"], tag["Value"]) not in present]
    if missing:
        client.add_tags(ResourceArn=arn, Tags=missing)
    return arn


def _upsert_schedule(scheduler: Any, request: Mapping[str, Any], pipeline_arn: str) -> None:
    """CreateSchedule, or UpdateSchedule when a schedule of that name exists; it starts ``pipeline_arn``."""
    from botocore.exceptions import ClientError

    start = json.loads(request["Target"]["Input"])  # the StartPipelineExecution request (schedule.start_input)
    arguments = {**request, "Target": {**request["Target"],
                                       "Input": json.dumps({**start, "PipelineName": pipeline_arn},
                                                           separators=(",", ":"))}}
    try:
        scheduler.create_schedule(**arguments)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "ConflictException":
            raise
        scheduler.update_schedule(**arguments)


def _session(config: Mapping[str, Any], region: str | None = None) -> Any:
    import boto3

    try:
        return boto3.session.Session(profile_name=config.get("profile"), region_name=config.get("region") or region)
    except Exception as err:  # botocore's ProfileNotFound and friends
        raise SubmitError(f"cannot open an AWS session: {err}") from err


def _client(session: Any, service: str, config: Mapping[str, Any], retries: bool = True) -> Any:
    """A boto3 client; ``retries=False`` for calls whose lost answers pipecast resolves itself."""
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    try:
        return session.client(service, endpoint_url=config.get("endpoint_url") or None,
                              config=None if retries else Config(retries={"total_max_attempts": 1}))
    except NoRegionError:
        raise SubmitError("no AWS region is set for SageMaker; pass --config region=<region> or set AWS_REGION") \
            from None


def _token(purpose: str, text: str) -> str:
    """A deterministic idempotency token (64 hex characters): a retried request is not done twice."""
    return hashlib.sha256(f"pipecast-{purpose}:{text}".encode()).hexdigest()


def _display_name(run_id: str) -> str:
    """The run id under PipelineExecutionName's rule ([a-zA-Z0-9-], 82 characters: the unique end is kept)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", run_id).strip("-")[-82:].strip("-") or "pipecast"


def _flag(value: Any) -> bool:
    return value not in (False, "false", "False", "0", 0, "no")
