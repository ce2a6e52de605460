"""Submitting to and tracking runs on Vertex AI Pipelines through ``google.cloud.aiplatform.PipelineJob``.

The vertex target's submit module: the framework imports it only to submit or track a run, and records what it
returns. Credentials are Application Default Credentials found by the SDK (``gcloud auth application-default
login``, a service-account key in ``$GOOGLE_APPLICATION_CREDENTIALS``, or the metadata server); they are never
stored.

The job id is made from pipecast's run id, so creating the job is idempotent: Vertex refuses a second job
with the same id (409). A create whose answer was lost, or that meets a 409, is resolved by getting the job
and checking that its display name is this run's id; a create meeting a connection error, 429 or 5xx is
sent again (:mod:`.retrying`). The SDK's gets retry transient errors themselves. The job's name and URL are
noted before it is created, so a job whose creation cannot be confirmed is recorded as ``unknown`` under its
name and looked up again by its status, never recorded as failed.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import SubmitError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.targets.base import SubmitRequest
from pipecast.targets.kfpspec.kubeflow_api import engine_parameters
from pipecast.targets.kfpspec.retrying import Creation, Outcome, Verdict, call, create_once, retry_after
from pipecast.targets.kfpspec.settings import config_bool, submit_value
from pipecast.targets.vertex import LABEL_COUNT_LIMIT, tag_labels

TARGET = "vertex"
DEFAULT_LOCATION = "us-central1"
# Seconds one create request may take before its outcome counts as unknown (then resolved by asking).
CREATE_TIMEOUT = 120.0

# aiplatform_v1 PipelineState names → pipecast's states.
_STATES = {
    "PIPELINE_STATE_UNSPECIFIED": RunStatus.PENDING,
    "PIPELINE_STATE_QUEUED": RunStatus.PENDING,
    "PIPELINE_STATE_PENDING": RunStatus.PENDING,
    "PIPELINE_STATE_RUNNING": RunStatus.RUNNING,
    "PIPELINE_STATE_CANCELLING": RunStatus.RUNNING,
    "PIPELINE_STATE_PAUSED": RunStatus.RUNNING,
    "PIPELINE_STATE_SUCCEEDED": RunStatus.SUCCEEDED,
    "PIPELINE_STATE_FAILED": RunStatus.FAILED,
    "PIPELINE_STATE_CANCELLED": RunStatus.CANCELLED,
}

_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_JOB_NAME = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/pipelineJobs/(?P<job>[^/]+)$")


def vertex_cron(schedule: str) -> str:
    """The pipeline's schedule as the unix cron Vertex schedules read (aliases spelled out)."""
    text = schedule.strip()
    return _CRON_ALIASES.get(text, text)


def job_id(run_id: str) -> str:
    """A Vertex pipeline job id (``[a-z][-a-z0-9]{0,127}``) made from pipecast's run id."""
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", run_id.lower())).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"p-{cleaned}".rstrip("-")
    return cleaned[:128].rstrip("-")


def console_url(resource_name: str) -> str:
    """What ``PipelineJob._dashboard_uri()`` computes, from the job's resource name."""
    match = _JOB_NAME.match(resource_name)
    if not match:
        raise SubmitError(f"{resource_name!r} is not a Vertex pipeline job resource name")
    return (f"https://console.cloud.google.com/vertex-ai/locations/{match['location']}/pipelines/runs/"
            f"{match['job']}?project={match['project']}")


def _labels(value: Any) -> dict[str, str] | None:
    if value is None or value == {}:
        return None
    if isinstance(value, str):
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SubmitError(f"config 'labels' must map strings to strings, got {value!r}")
    return dict(value)


def verdict(err: BaseException) -> Verdict:
    """What a failed Vertex AI request says about the server's state (see :mod:`.retrying`)."""
    import requests
    from google.api_core import exceptions as api_exceptions

    if isinstance(err, api_exceptions.Conflict):
        return Verdict(Outcome.EXISTS)
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if isinstance(err, api_exceptions.TooManyRequests):
        return Verdict(Outcome.NOT_DONE, retry_after(headers))
    if isinstance(err, (api_exceptions.ServerError, api_exceptions.RetryError)):
        return Verdict(Outcome.UNKNOWN, retry_after(headers))
    if isinstance(err, requests.exceptions.ConnectTimeout):
        return Verdict(Outcome.NOT_DONE)
    if isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return Verdict(Outcome.UNKNOWN)  # the REST transport: dropped, reset or timed out after sending
    return Verdict(Outcome.FINAL)


def _init_sdk(pipeline: ir.Pipeline | None, config: Mapping[str, Any]) -> None:
    """Point the SDK at a non-default endpoint or transport when asked (the SDK keeps these globally)."""
    from google.cloud import aiplatform

    def value(key: str) -> Any:
        return submit_value(pipeline, TARGET, config, key) if pipeline is not None else config.get(key)

    endpoint, transport = value("api_endpoint"), value("api_transport")
    if endpoint or transport:
        aiplatform.init(api_endpoint=endpoint, api_transport=transport)


def submit(request: SubmitRequest) -> VertexRun:
    """Create the PipelineJob (and a schedule for the pipeline's cron); return the engine's view of it."""
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    pipeline, config = request.pipeline, request.config
    project = (submit_value(pipeline, TARGET, config, "project") or os.environ.get("GOOGLE_CLOUD_PROJECT")
               or os.environ.get("CLOUD_ML_PROJECT_ID"))
    if not project:
        raise SubmitError("no Google Cloud project: pass --config project=PROJECT or set $GOOGLE_CLOUD_PROJECT")
    location = submit_value(pipeline, TARGET, config, "location") or os.environ.get("GOOGLE_CLOUD_REGION") or \
        DEFAULT_LOCATION
    _init_sdk(pipeline, config)
    name = f"projects/{project}/locations/{location}/pipelineJobs/{job_id(request.run_id)}"
    failures = (api_exceptions.GoogleAPIError, requests.exceptions.RequestException)
    with tempfile.TemporaryDirectory(prefix="pipecast-vertex-") as folder:
        template = os.path.join(folder, request.bundle.main_file)
        with open(template, "w", encoding="utf-8") as stream:
            stream.write(request.bundle[request.bundle.main_file])
        try:
            job = _create_job(request, template, name, project, location)
        except auth_exceptions.GoogleAuthError as err:
            raise SubmitError(f"no Google Cloud credentials for Vertex AI ({err}); run `gcloud auth "
                              "application-default login` or set $GOOGLE_APPLICATION_CREDENTIALS") from err
        except api_exceptions.Conflict as err:
            raise SubmitError(f"Vertex AI refused the pipeline job: {name!r} already exists and is not run "
                              f"{request.run_id!r}: {err}") from err
        except (*failures, ValueError) as err:
            raise SubmitError(f"Vertex AI refused the pipeline job: {err}") from err
        # What the SDK's PipelineJob._dashboard_uri() logs.
        handle = VertexRun(job, run_id=request.run_id, engine_run_id=name, url=console_url(name),
                           metadata={"project": project, "location": location})
        if pipeline.schedule and config_bool(submit_value(pipeline, TARGET, config, "schedule", True), "schedule"):
            _schedule(request, handle, failures)
    return handle


def _create_job(request: SubmitRequest, template: str, name: str, project: str, location: str) -> Any:
    """Create the job under the id pipecast chose; a lost answer is resolved by getting the job by that id."""
    from google.api_core import exceptions as api_exceptions
    from google.cloud import aiplatform

    pipeline, config = request.pipeline, request.config
    labels = {**tag_labels(pipeline), **(_labels(submit_value(pipeline, TARGET, config, "labels")) or {})}
    if len(labels) > LABEL_COUNT_LIMIT:
        raise SubmitError(f"the pipeline job would have {len(labels)} labels (its tags and config 'labels'); "
                          f"Vertex AI allows {LABEL_COUNT_LIMIT}")
    job = aiplatform.PipelineJob(
        display_name=request.run_id, template_path=template, job_id=job_id(request.run_id),
        pipeline_root=config.get("pipeline_root"),  # else the IR's defaultPipelineRoot (the setting)
        parameter_values=engine_parameters(pipeline, request.parameters),
        encryption_spec_key_name=submit_value(pipeline, TARGET, config, "encryption_spec_key_name"),
        labels=labels or None, project=project, location=location,
        # Vertex's default (fail slow) keeps scheduling tasks after one failed, a ParallelFor's later iterations
        # too; `pipecast run` starts nothing new and lets running steps finish, which is Vertex's fail fast
        # ("stop scheduling new tasks after a task fails; tasks already scheduled continue": configure-failure-policy).
        failure_policy="fast",
    )
    # The job's name is pipecast's choice: noted before the create, so `pipecast runs wait` can ask for it even
    # if the create's answer is lost.
    request.note(engine_run_id=name, url=console_url(name), project=project, location=location)

    def create() -> Any:
        job.submit(service_account=submit_value(pipeline, TARGET, config, "service_account"),
                   network=submit_value(pipeline, TARGET, config, "network"), create_request_timeout=CREATE_TIMEOUT)
        return job

    def find() -> Any:
        try:
            found = aiplatform.PipelineJob.get(resource_name=name, project=project, location=location)
        except api_exceptions.NotFound:
            return None
        return found if found.display_name == request.run_id else None  # a job id held by another run

    # Reads are not wrapped in retries here: the SDK retries its gets itself (transient errors, for up to 120s:
    # google.cloud.aiplatform.base._DEFAULT_RETRY in _get_gca_resource).
    return create_once(create, find, verdict, Creation("Vertex AI", "pipeline job", name), retry_find=False)


def _schedule(request: SubmitRequest, handle: VertexRun, failures: tuple[type[BaseException], ...]) -> None:
    """Create the Vertex pipeline schedule of the pipeline's cron, or update the pipeline's existing one.

    A failure is kept in the run's metadata and printed, never a failed submit (the job has started).
    """
    pipeline, config = request.pipeline, request.config
    refusals: tuple[type[BaseException], ...] = (*failures, ValueError)
    try:
        name, updated = _upsert_schedule(handle.job, schedule_name(pipeline), vertex_cron(pipeline.schedule or ""),
                                         submit_value(pipeline, TARGET, config, "service_account"),
                                         submit_value(pipeline, TARGET, config, "network"))
        handle.metadata["schedule"] = name
        if updated:
            handle.metadata["schedule_updated"] = True
    except refusals as err:
        handle.metadata["schedule_error"] = f"Vertex AI did not create the pipeline schedule: {err}"
        warnings.warn(f"run {request.run_id!r} started, but its schedule was not: {handle.metadata['schedule_error']}",
                      stacklevel=3)


def schedule_name(pipeline: ir.Pipeline) -> str:
    """The display name of the pipeline's one schedule, which finds it again on the next submit."""
    return f"{pipeline.name} (pipecast schedule)"


def _unsent_only(err: BaseException) -> Verdict:
    """Retry only what never reached the server (schedules have server-made names: no blind resend)."""
    found = verdict(err)
    return found if found.outcome is Outcome.NOT_DONE else Verdict(Outcome.FINAL)


# What an upsert rewrites: when, how many at once, and the job each run creates (spec, parameters, labels).
_UPDATE_MASK = ("cron", "max_concurrent_run_count", "create_pipeline_job_request")


def _upsert_schedule(job: Any, display_name: str, cron: str, service_account: str | None,
                     network: str | None) -> tuple[str, bool]:
    """Make the pipeline's one schedule run ``job``'s spec on ``cron``; return its name and whether it existed.

    The active or paused schedule with this display name is updated in place (``schedules.patch``); without
    one, a new schedule is created.
    """
    from google.cloud import aiplatform
    from google.protobuf import field_mask_pb2

    # The body a create would send, built by the SDK (spec, runtime config, labels, encryption, account, network).
    fresh = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=display_name)
    body = fresh._gca_resource
    body.cron, body.max_concurrent_run_count = cron, 1
    if service_account:
        body.create_pipeline_job_request.pipeline_job.service_account = service_account
    if network:
        body.create_pipeline_job_request.pipeline_job.network = network
    found = call(lambda: aiplatform.PipelineJobSchedule.list(
        filter=f"display_name={json.dumps(display_name)}", project=job.project, location=job.location),
        _unsent_only)
    live = sorted((s for s in found if s.display_name == display_name
                   and getattr(s.state, "name", "") in ("ACTIVE", "PAUSED")),
                  key=lambda s: s.resource_name)
    if not live:
        schedule = call(lambda: job.create_schedule(cron=cron, display_name=display_name,
                                                    service_account=service_account, network=network),
                        _unsent_only)
        return str(schedule.resource_name), False
    target = live[0]
    body.name = target.resource_name
    updated = call(lambda: target.api_client.update_schedule(
        schedule=body, update_mask=field_mask_pb2.FieldMask(paths=list(_UPDATE_MASK))),
        _unsent_only)
    return str(updated.name), True


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> VertexRun:
    """The engine's view of a recorded run, from its job resource name (the job is fetched on the first status)."""
    name = record["engine_run_id"]
    if not _JOB_NAME.match(name or ""):
        raise SubmitError(f"run {record['id']!r} has no Vertex pipeline job name (got {name!r})")
    _init_sdk(None, config)
    return VertexRun(None, run_id=record["id"], engine_run_id=name, url=record.get("url") or console_url(name),
                     metadata=record.get("metadata") or {})


class VertexRun(EngineRun):
    """A Vertex pipeline job: status from ``GET …/pipelineJobs/{id}``, cancel by ``…:cancel``.

    Without a job object (a reconnect, or a submit whose answer never came), the first status gets the job by
    its resource name; a job Vertex does not have is a failed run that was never created.
    """

    def __init__(self, job: Any, *, run_id: str, engine_run_id: str, url: str | None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(run_id=run_id, target=TARGET, engine_run_id=engine_run_id, url=url,
                         metadata=dict(metadata or {}))
        self.job: Any = job  # the SDK's PipelineJob, or None until it is fetched

    def _find_job(self) -> Any | None:
        from google.api_core import exceptions as api_exceptions
        from google.cloud import aiplatform

        match = _JOB_NAME.match(self.engine_run_id)
        if match is None:
            raise SubmitError(f"run {self.run_id!r} has no Vertex pipeline job name (got {self.engine_run_id!r})")
        try:  # the SDK's get retries transient errors itself
            return aiplatform.PipelineJob.get(resource_name=self.engine_run_id, project=match["project"],
                                              location=match["location"])
        except api_exceptions.NotFound:
            return None

    def fetch_status(self) -> RunStatus:
        """The pipeline job's state from Vertex AI; failed when the job does not exist."""
        import requests
        from google.api_core import exceptions as api_exceptions

        try:
            if self.job is None:
                self.job = self._find_job()
                if self.job is None:
                    self.detail = (f"Vertex AI has no pipeline job {self.engine_run_id!r}: its submit never created "
                                   "it, or it was deleted")
                    return RunStatus.FAILED
            state = self.job.state  # the SDK fetches the job again, retrying transient errors itself
        except (api_exceptions.GoogleAPIError, requests.exceptions.RequestException) as err:
            raise SubmitError(f"Vertex AI did not report job {self.engine_run_id!r}: {err}") from err
        status = _STATES.get(getattr(state, "name", str(state)), RunStatus.UNKNOWN)
        self.detail = _failure_detail(self.job.gca_resource) if status is RunStatus.FAILED else ""
        return status

    def cancel(self) -> None:
        """Cancel the pipeline job (nothing to do when Vertex never created it)."""
        from google.api_core import exceptions as api_exceptions

        try:
            if self.job is None:
                self.job = self._find_job()
                if self.job is None:
                    return  # nothing to cancel: Vertex never created the job
            self.job.cancel()
        except api_exceptions.GoogleAPIError as err:
            raise SubmitError(f"Vertex AI did not cancel job {self.engine_run_id!r}: {err}") from err


def _failure_detail(resource: Any) -> str:
    """The failed tasks and the job's error message."""
    failed = sorted({t.task_name for t in resource.job_detail.task_details
                     if getattr(t.state, "name", "") == "FAILED" and t.task_name})
    parts = ([f"failed task(s): {', '.join(failed)}"] if failed else []) + (
        [resource.error.message] if resource.error.message else [])
    return "; ".join(parts) or "the pipeline job failed"
