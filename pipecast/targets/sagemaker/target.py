"""The ``sagemaker`` target: a SageMaker Pipelines definition (JSON, Version 2020-12-01).

Files emitted, for a pipeline ``NAME``:

- ``NAME.pipeline.json``: the pipeline definition, the ``PipelineDefinition`` of CreatePipeline.
- ``NAME.create-pipeline.json``: the rest of the CreatePipeline request (name, role, description, tags),
  usable as ``aws sagemaker create-pipeline --cli-input-json file://NAME.create-pipeline.json
  --pipeline-definition file://NAME.pipeline.json --client-request-token <token>``.
- ``NAME.schedule.json`` (pipelines with a schedule): the EventBridge Scheduler CreateSchedule request
  that starts the pipeline on the schedule, with the time it fired for (:mod:`.schedule`).

The submit module (:mod:`pipecast.targets.sagemaker.submit`) creates or updates the pipeline with boto3,
creates or updates the schedule, and starts an execution.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names, rule_for
from pipecast.runtime.flow_plan import decision_outputs
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native, unsupported
from pipecast.targets.lowering import artifact_root
from pipecast.targets.sagemaker import flow, job_args
from pipecast.targets.sagemaker.schedule import (
    LOGICAL_TIME_PARAMETER,
    START_PIPELINE_EXECUTION,
    eventbridge_cron,
    start_input,
)
from pipecast.targets.sagemaker.settings import INLINE_DEFINITION_LIMIT, ROLE_ARN, SageMakerSettings
from pipecast.targets.sagemaker.steps import StepLowering
from pipecast.targets.serialize import dump_json

VERSION = "2020-12-01"
MAX_DEFINITION = 1024 * 1024  # an inline PipelineDefinition's maximum length in botocore's model
MAX_PARAMETER_DEFAULT = 4096  # a String parameter's DefaultValue (definition schema)
MAX_PIPELINE_DESCRIPTION = 3072  # PipelineDescription (botocore)

_PARAMETER_TYPES = {
    ir.TypeName.STR: "String", ir.TypeName.INT: "Integer", ir.TypeName.FLOAT: "Float",
    ir.TypeName.BOOL: "Boolean", ir.TypeName.DICT: "String", ir.TypeName.LIST: "String",
}
_TAG = re.compile(r"^[\w\s.:/=+\-@]{1,128}$")
_FLOW_FIX = ("run it with the local target (`pipecast run FILE`), which runs control flow natively, or move the loop "
             "or handler inside one step")


class SageMakerTarget(Target):
    """Amazon SageMaker Pipelines: one Processing (or Training) job per step, submitted with boto3."""

    name = "sagemaker"
    description = "Amazon SageMaker Pipelines: pipeline definition JSON, submitted and tracked with boto3"
    extra = "sagemaker"
    sdk_modules = ("boto3",)
    capabilities = {
        Feature.PARAMETERS: native("typed pipeline parameters read with {'Get': 'Parameters.x'}; dict/list "
                                   "parameters are String parameters holding JSON"),
        Feature.DATA_PASSING: native("values go through the artifact store; every data edge is a DependsOn"),
        Feature.AFTER: native("DependsOn"),
        Feature.RESOURCES: native("mapped to an ml.* instance type (table in the docs), or the instance_type "
                                  "setting"),
        Feature.GPU: native("mapped to a GPU instance type by gpu_type (t4, a10g, l4, v100, a100, h100)"),
        Feature.RETRY: emulated("the runtime retries the step inside its job (--attempts): SageMaker's "
                                "RetryPolicies cover only service and job-infrastructure errors, never a failure "
                                "of the step's code; those policies are emitted too, with the same count"),
        Feature.RETRY_BACKOFF: emulated("the runtime's --retry-backoff; also the BackoffRate of the "
                                        "infrastructure RetryPolicies"),
        Feature.TIMEOUT: native("StoppingCondition.MaxRuntimeInSeconds; with retries the runtime stops each "
                                "try and MaxRuntimeInSeconds bounds all tries with their delays"),
        Feature.CACHE: emulated("the runtime's cache in the artifact store; SageMaker's CacheConfig is not "
                                "used because a step it skips writes no outputs for the new execution id"),
        Feature.SCHEDULE: native("an EventBridge Scheduler schedule that starts the pipeline, created at submit "
                                 "(NAME.schedule.json)"),
        Feature.ENV: native("Environment (values up to 256 characters in processing jobs, 512 in training)"),
        Feature.SECRETS: unsupported("SageMaker jobs cannot take an environment variable from a secret store; "
                                     "Environment values are plain text in the job's description. Read the "
                                     "secret from AWS Secrets Manager in the step instead"),
        Feature.STEP_IMAGE: native("ImageUri / TrainingImage per step"),
        Feature.SUBMIT: native("boto3: CreatePipeline or UpdatePipeline, then StartPipelineExecution"),
        Feature.STATUS: native("DescribePipelineExecution; cancel is StopPipelineExecution"),
        Feature.UI_URL: native("the execution's page in SageMaker Studio (config studio_domain_id), or the "
                               "url_template config"),
        Feature.CONDITION: native("ConditionStep on parameters and on the decision values the runtime writes to a "
                                  "property file (Std:JsonGet); Elif as nested ConditionSteps; a step after a branch "
                                  "that did not run never starts. OneOf is refused: a step after both branches "
                                  "never starts"),
        Feature.MAP: unsupported("AWS's definition schema and developer guide have no fan-out over a run-time "
                                 "list (the ForEachStep of sagemaker-mlops 1.27 has neither, and is not lowered)",
                                 fix=_FLOW_FIX),
        Feature.EXIT_HANDLER: unsupported("SageMaker has no step that runs whatever happened to the steps before "
                                          "it: a step starts only when every step it depends on succeeded",
                                          fix=_FLOW_FIX),
        Feature.HOOKS: unsupported("SageMaker has no step that runs after a failure: a step starts only when every "
                                   "step it depends on succeeded", fix=_FLOW_FIX + "; or react to the execution's "
                                   "status-change event with an EventBridge rule"),
        Feature.PARALLELISM: native("the pipeline's bound as ParallelismConfiguration.MaxParallelExecutionSteps "
                                    "(the smaller of it and max_parallel); a map's bound goes with maps (refused)"),
    }
    settings_class = SageMakerSettings
    submit_module = "pipecast.targets.sagemaker.submit"
    schedules_module = "pipecast.schedules.sagemaker"

    def check(self, pipeline: ir.Pipeline, context: EmitContext) -> None:
        """The capability table's refusals, and OneOf (a condition construct SageMaker cannot express)."""
        super().check(pipeline, context)
        flow.refuse_one_of(pipeline, context)

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The SageMaker pipeline definition; a missing ``role_arn`` is an error."""
        settings: SageMakerSettings = context.settings
        if not settings.role_arn:
            context.error("SageMaker needs an IAM role for the pipeline and its jobs; no role_arn is set",
                          fix="--set role_arn=arn:aws:iam::<account>:role/<role>")
        # Every step is a job on instances of its own: the artifact root must be a store they all reach.
        root = artifact_root(pipeline, context, remote=True,
                             default=f"s3://{settings.bucket}/pipecast" if settings.bucket else None)
        locations = {s.name: str(s.location) for s in pipeline.steps}
        # A ConditionStep per if/elif branch, named after its group, among the steps' names.
        branches = [g for g in pipeline.groups if g.kind is ir.GroupKind.CONDITION and g.condition is not None]
        locations.update({g.name: str(g.location) for g in branches})
        steps_by_name = {s.name: s for s in pipeline.steps}
        for group in branches:
            if group.name in steps_by_name:
                context.error(f"the step is named {group.name!r}, the name of the ConditionStep of the "
                              f"{group.label or 'if'} at {group.location}", step=steps_by_name[group.name],
                              fix="rename the step with @step(name=...) or .with_options(name=...)")
                return Bundle(self.name, ())
        step_names = engine_names("sagemaker", [s.name for s in pipeline.steps] + [g.name for g in branches],
                                  locations=locations, target=self.name)
        parameter_names = engine_names("sagemaker", [p.name for p in pipeline.parameters], target=self.name)
        scheduled = bool(pipeline.schedule) and self._logical_time_free(pipeline, context, parameter_names)
        lowering = StepLowering(pipeline, context, root, step_names, parameter_names, logical_time=scheduled)
        if not flow.check_depth(pipeline, context):
            return Bundle(self.name, ())  # deeper would be too deep to write
        decisions = decision_outputs(pipeline)
        flow.check_sources(pipeline, context, decisions)
        lowered = {step.name: lowering.step(step, decisions.get(step.name)) for step in pipeline.steps}
        steps = list(lowered.values())
        if branches:
            steps = flow.ConditionLowering(pipeline, context, step_names, parameter_names).arrange(lowered)
        definition = {
            "Version": VERSION,
            "Parameters": [self._parameter(p, parameter_names[p.name], context) for p in pipeline.parameters]
            + ([{"Name": LOGICAL_TIME_PARAMETER, "Type": "String", "DefaultValue": ""}] if scheduled else []),
            "Steps": steps,
        }
        self._check_unused_job_args(pipeline, context)
        if flow.depth(pipeline) > flow.INDENTED_DEPTH:
            text = json.dumps(definition, ensure_ascii=False, separators=(",", ":")) + "\n"
        else:
            text = dump_json(definition)
        sagemaker_name = rule_for("sagemaker_pipeline").apply(settings.pipeline_name or pipeline.name)
        request = self._create_request(pipeline, context, root, sagemaker_name, len(text.encode()))
        files = [(f"{pipeline.name}.pipeline.json", text), (f"{pipeline.name}.create-pipeline.json",
                                                              dump_json(request))]
        if pipeline.schedule:
            schedule = self._schedule_request(pipeline, context, sagemaker_name)
            files.append((f"{pipeline.name}.schedule.json", dump_json(schedule)))
        return Bundle(self.name, tuple(files), tuple(lowering.notices))

    def _check_unused_job_args(self, pipeline: ir.Pipeline, context: EmitContext) -> None:
        """The pipeline's processor_args/estimator_args must reach a step of their job type (nothing is dropped)."""
        kinds = {context.settings_for(step).step_type for step in pipeline.steps}
        for job, name in job_args.SETTING.items():
            if getattr(context.settings, name) and job not in kinds:
                context.error(f"setting {name!r} applies to {job} steps, and no step of the pipeline is one",
                              location=str(pipeline.location) if pipeline.location else None,
                              fix=f"remove it, or set step_type={job!r}")

    def _logical_time_free(self, pipeline: ir.Pipeline, context: EmitContext, names: Mapping[str, str]) -> bool:
        """A scheduled pipeline's parameter for the run's time must not be one of the user's (an error)."""
        for param in pipeline.parameters:
            if names[param.name] == LOGICAL_TIME_PARAMETER:
                context.error(f"parameter {param.name!r} is named {LOGICAL_TIME_PARAMETER!r} in SageMaker, the "
                              "pipeline parameter that carries a scheduled run's time to its steps",
                              location=str(param.location or ""), fix="rename the parameter")
                return False
        return True

    def _parameter(self, param: ir.Parameter, name: str, context: EmitContext) -> dict[str, Any]:
        entry: dict[str, Any] = {"Name": name, "Type": _PARAMETER_TYPES.get(param.type, "String")}
        if param.type not in _PARAMETER_TYPES:
            context.unsupported(f"parameter {param.name!r} has type {param.type.value!r}, which SageMaker "
                                "parameters cannot carry", location=str(param.location or ""))
        if param.default_json is None:
            return entry
        value = param.default
        if param.type in (ir.TypeName.DICT, ir.TypeName.LIST):
            value = ir.canonical_json(value)
        elif param.type is ir.TypeName.FLOAT:
            value = float(value)
        if isinstance(value, str) and len(value) > MAX_PARAMETER_DEFAULT:
            context.error(f"parameter {param.name!r} has a default of {len(value)} characters; SageMaker allows "
                          f"{MAX_PARAMETER_DEFAULT}", fix="shorten the default")
        entry["DefaultValue"] = value
        return entry

    def _create_request(self, pipeline: ir.Pipeline, context: EmitContext, root: str, sagemaker_name: str,
                        size: int) -> dict[str, Any]:
        settings: SageMakerSettings = context.settings
        request: dict[str, Any] = {"PipelineName": sagemaker_name, "RoleArn": settings.role_arn or ""}
        if pipeline.description:
            request["PipelineDescription"] = pipeline.description[:MAX_PIPELINE_DESCRIPTION]
        tags = []
        for tag in pipeline.tags:
            if not _TAG.match(tag) or tag.lower().startswith("aws:"):
                context.error(f"tag {tag!r} is not a valid AWS tag key", fix="use letters, digits, spaces and _.:/=+-@")
            tags.append({"Key": tag, "Value": ""})
        own = dict(settings.pipeline_tags)  # checked by the setting; a key of both takes the setting's value
        tags = [tag for tag in tags if tag["Key"] not in own] + (job_args.as_tags(own) or [])
        if tags:
            request["Tags"] = tags
        bounds = [b for b in (settings.max_parallel, pipeline.parallelism) if b is not None]
        if bounds:
            request["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": min(bounds)}
        if size > settings.inline_definition_limit:
            request["PipelineDefinitionS3Location"] = self._definition_location(pipeline, context, root,
                                                                                sagemaker_name)
        elif size > MAX_DEFINITION:
            context.error(f"the pipeline definition is {size} bytes; SageMaker takes {MAX_DEFINITION} inline",
                          fix=f"lower inline_definition_limit (default {INLINE_DEFINITION_LIMIT}) so it goes "
                              "through S3")
        return request

    def _definition_location(self, pipeline: ir.Pipeline, context: EmitContext, root: str,
                             name: str) -> dict[str, str]:
        bucket = context.settings.bucket
        if root.startswith("s3://"):
            bucket, _, prefix = root[len("s3://"):].partition("/")
            key = f"{prefix.strip('/')}/{pipeline.name}/sagemaker/{name}.pipeline.json".lstrip("/")
        elif bucket:
            key = f"pipecast/{pipeline.name}/sagemaker/{name}.pipeline.json"
        else:
            context.error("the definition is too large to send inline and there is no S3 bucket to upload it to",
                          fix="--set bucket=<bucket> or an s3:// artifact_root")
            bucket, key = "", ""
        return {"Bucket": str(bucket), "ObjectKey": key}

    def _schedule_request(self, pipeline: ir.Pipeline, context: EmitContext, sagemaker_name: str) -> dict[str, Any]:
        settings: SageMakerSettings = context.settings
        expression, reason = eventbridge_cron(pipeline.schedule or "")
        if expression is None:
            context.unsupported(f"schedule {pipeline.schedule!r} cannot be an EventBridge schedule: {reason}",
                                location=str(pipeline.location or ""),
                                fix="use either a day of the month or days of the week, not both")
        for param in pipeline.parameters:
            if param.required:
                context.unsupported(f"parameter {param.name!r} has no default, so a scheduled run cannot start",
                                    location=str(param.location or ""), fix="give it a default")
        region = settings.region
        if not region:
            context.error("the schedule starts the pipeline by its ARN, which names its region; no region is set",
                          fix="--set region=<aws region>, e.g. us-east-1")
        match = ROLE_ARN.match(settings.role_arn or "")
        partition, account = match.groups() if match else ("aws", "")
        # SageMaker ARNs hold lower-cased names; submit replaces this with the ARN CreatePipeline returns.
        pipeline_arn = f"arn:{partition}:sagemaker:{region}:{account}:pipeline/{sagemaker_name.lower()}"
        return {
            "Name": rule_for("eventbridge_schedule").apply(sagemaker_name),
            "Description": f"Starts SageMaker pipeline {sagemaker_name} (pipecast pipeline {pipeline.name})"[:512],
            "ScheduleExpression": expression or "",
            "ScheduleExpressionTimezone": settings.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            # The universal target: StartPipelineExecution with the run's scheduled time (see .schedule).
            "Target": {"Arn": START_PIPELINE_EXECUTION.format(partition=partition),
                       "RoleArn": settings.schedule_role_arn or settings.role_arn or "",
                       "Input": start_input(pipeline_arn, sagemaker_name)},
        }

    def logs(self, record: Mapping[str, Any], config: Mapping[str, Any], step: str | None = None,
             follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """Refused: SageMaker keeps step logs in CloudWatch Logs."""
        from pipecast.runs.logs import no_logs

        raise no_logs(self.name, "SageMaker writes each step's log to CloudWatch Logs (log groups "
                                 "/aws/sagemaker/ProcessingJobs and /aws/sagemaker/TrainingJobs), which pipecast does "
                                 f"not read; open the run in SageMaker Studio ({record.get('url') or 'its execution'})"
                                 " or run `aws logs tail` on those groups")
