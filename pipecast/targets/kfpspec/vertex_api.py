"""Submitting to and tracking runs on Vertex AI Pipelines through ``google.cloud.aiplatform.PipelineJob``.

Imported only by :meth:`VertexTarget.submit` / ``handle``. Credentials are Application Default
Credentials found by the SDK (``gcloud auth application-default login``, a service-account key in
``$GOOGLE_APPLICATION_CREDENTIALS``, or the metadata server); they are never stored.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import SubmitError
from pipecast.runs.store import RunStore
from pipecast.targets.base import Bundle, RunHandle, RunStatus
from pipecast.targets.kfpspec.kubeflow_api import engine_parameters, preflight
from pipecast.targets.kfpspec.settings import as_bool, dns_label, submit_value

TARGET = "vertex"
DEFAULT_LOCATION = "us-central1"

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
    return dns_label(run_id, 128)


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


def _init_sdk(pipeline: ir.Pipeline | None, config: Mapping[str, Any]) -> None:
    """Point the SDK at a non-default endpoint or transport when asked (the SDK keeps these globally)."""
    from google.cloud import aiplatform

    def value(key: str) -> Any:
        return submit_value(pipeline, TARGET, config, key) if pipeline is not None else config.get(key)

    endpoint, transport = value("api_endpoint"), value("api_transport")
    if endpoint or transport:
        aiplatform.init(api_endpoint=endpoint, api_transport=transport)


def submit(pipeline: ir.Pipeline, bundle: Bundle, parameters: Mapping[str, Any], config: Mapping[str, Any],
           run_id: str) -> VertexRunHandle:
    """Create the PipelineJob (and a schedule for the pipeline's cron); return its handle."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform

    preflight(bundle)

    def value(key: str, default: Any = None) -> Any:
        return submit_value(pipeline, TARGET, config, key, default)

    project = value("project") or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUD_ML_PROJECT_ID")
    if not project:
        raise SubmitError("no Google Cloud project: pass --config project=PROJECT or set $GOOGLE_CLOUD_PROJECT")
    location = value("location") or os.environ.get("GOOGLE_CLOUD_REGION") or DEFAULT_LOCATION
    service_account, network = value("service_account"), value("network")
    _init_sdk(pipeline, config)
    metadata: dict[str, Any] = {"project": project, "location": location}
    with tempfile.TemporaryDirectory(prefix="pipecast-vertex-") as folder:
        template = os.path.join(folder, bundle.main_file)
        with open(template, "w", encoding="utf-8") as stream:
            stream.write(bundle[bundle.main_file])
        try:
            job = aiplatform.PipelineJob(
                display_name=run_id, template_path=template, job_id=job_id(run_id),
                pipeline_root=value("pipeline_root"), parameter_values=engine_parameters(pipeline, parameters),
                encryption_spec_key_name=value("encryption_spec_key_name"), labels=_labels(value("labels")),
                project=project, location=location,
            )
            job.submit(service_account=service_account, network=network)
        except auth_exceptions.GoogleAuthError as err:
            raise SubmitError(f"no Google Cloud credentials for Vertex AI ({err}); run `gcloud auth "
                              "application-default login` or set $GOOGLE_APPLICATION_CREDENTIALS") from err
        except (api_exceptions.GoogleAPIError, ValueError) as err:
            raise SubmitError(f"Vertex AI refused the pipeline job: {err}") from err
        if pipeline.schedule and as_bool(value("schedule", True), "schedule"):
            try:
                schedule = job.create_schedule(
                    cron=vertex_cron(pipeline.schedule), display_name=f"{pipeline.name} (pipecast schedule)",
                    service_account=service_account, network=network,
                )
            except (api_exceptions.GoogleAPIError, ValueError) as err:
                raise SubmitError(f"Vertex AI refused the pipeline schedule: {err}") from err
            metadata["schedule"] = schedule.resource_name
    url = job._dashboard_uri()  # the SDK's own console link, as it logs it
    handle = VertexRunHandle(job, run_id=run_id, engine_run_id=job.resource_name, url=url)
    RunStore.default().set_engine_run(run_id, engine_run_id=handle.engine_run_id, url=url, metadata=metadata)
    return handle


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> VertexRunHandle:
    """The handle of a recorded run, from its job resource name."""
    from google.cloud import aiplatform

    name = record["engine_run_id"]
    match = _JOB_NAME.match(name or "")
    if not match:
        raise SubmitError(f"run {record['id']!r} has no Vertex pipeline job name (got {name!r})")
    _init_sdk(None, config)
    job = aiplatform.PipelineJob.get(resource_name=name, project=match["project"], location=match["location"])
    return VertexRunHandle(job, run_id=record["id"], engine_run_id=name, url=record.get("url") or console_url(name))


class VertexRunHandle(RunHandle):
    """A Vertex pipeline job: status from ``GET …/pipelineJobs/{id}``, cancel by ``…:cancel``."""

    def __init__(self, job: Any, *, run_id: str, engine_run_id: str, url: str | None) -> None:
        super().__init__(run_id=run_id, target=TARGET, engine_run_id=engine_run_id, url=url)
        self.job = job

    def fetch_status(self) -> RunStatus:
        from google.api_core import exceptions as api_exceptions

        try:
            state = self.job.state  # the SDK fetches the job again
        except api_exceptions.GoogleAPIError as err:
            raise SubmitError(f"Vertex AI did not report job {self.engine_run_id!r}: {err}") from err
        status = _STATES.get(getattr(state, "name", str(state)), RunStatus.UNKNOWN)
        if status is RunStatus.FAILED:
            resource = self.job.gca_resource
            failed = sorted({t.task_name for t in resource.job_detail.task_details
                             if getattr(t.state, "name", "") == "FAILED" and t.task_name})
            parts = ([f"failed task(s): {', '.join(failed)}"] if failed else []) + (
                [resource.error.message] if resource.error.message else [])
            self.detail = "; ".join(parts) or "the pipeline job failed"
        else:
            self.detail = ""
        return status

    def cancel(self) -> None:
        from google.api_core import exceptions as api_exceptions

        try:
            self.job.cancel()
        except api_exceptions.GoogleAPIError as err:
            raise SubmitError(f"Vertex AI did not cancel job {self.engine_run_id!r}: {err}") from err
