"""Submitting and tracking Azure ML pipeline jobs with ``azure-ai-ml``.

The target's submit module: the framework imports it only to submit or track a run, after checking the extra.

Config (``pipecast submit -c KEY=VALUE`` or the ``config`` mapping; environment variables in brackets):

- ``subscription_id`` [``AZURE_SUBSCRIPTION_ID``], ``resource_group`` [``AZURE_RESOURCE_GROUP``],
  ``workspace`` [``AZUREML_WORKSPACE_NAME``]: the workspace.
- ``credential``: an ``azure.core.credentials.TokenCredential`` (Python API only); by default
  ``azure.identity.DefaultAzureCredential`` (environment, managed identity, ``az login``...).
- ``cloud``: an Azure cloud name (``AzureCloud``, ``AzureChinaCloud``, ``AzureUSGovernment``).
- ``resource_manager_url``: the Azure Resource Manager endpoint of a private or test cloud; pipecast
  registers it as a custom cloud with ``MLClient(cloud=..., cloud_metadata=...)``.
- ``schedule``: ``true`` to also create or update the pipeline's ``JobSchedule`` (its cron trigger).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.targets.azureml import emit
from pipecast.targets.base import Bundle, SubmitRequest

# Azure ML job states (azure.ai.ml.operations._run_history_constants.JobStatus) → pipecast's.
STATUS = {
    "NotStarted": RunStatus.PENDING, "Queued": RunStatus.PENDING, "Preparing": RunStatus.PENDING,
    "Provisioning": RunStatus.PENDING, "Starting": RunStatus.PENDING,
    "Running": RunStatus.RUNNING, "Finalizing": RunStatus.RUNNING, "CancelRequested": RunStatus.RUNNING,
    "Paused": RunStatus.RUNNING,
    "Completed": RunStatus.SUCCEEDED, "Failed": RunStatus.FAILED, "NotResponding": RunStatus.FAILED,
    "Canceled": RunStatus.CANCELLED,
}
_ENV = {"subscription_id": "AZURE_SUBSCRIPTION_ID", "resource_group": "AZURE_RESOURCE_GROUP",
        "workspace": "AZUREML_WORKSPACE_NAME"}


def submit(request: SubmitRequest) -> AzureMLRun:
    """Create the pipeline job (and, with ``schedule=true``, its schedule); return the run."""
    if request.pipeline.groups:
        _enable_control_flow_preview()
    from azure.ai.ml import load_job

    pipeline, config = request.pipeline, request.config
    client = make_client(config)
    job_name = azure_job_name(request.run_id)
    # The job file as compiled, with the run's name and values set the way `az ml job create --set` sets them.
    overrides: list[dict[str, Any]] = [{"name": job_name}]
    overrides += [{f"inputs.{name}": emit.input_value(pipeline.parameter(name), value)}
                  for name, value in request.parameters.items()]
    overrides.append({f"inputs.{emit.RUN_ID_INPUT}": request.run_id})
    request.note(engine_run_id=job_name)  # the create's answer may be lost: the job is found by this name
    # From a folder with the bundle's files: a map body's pipeline component is a file beside the job's.
    with tempfile.TemporaryDirectory(prefix="pipecast-azureml-") as folder:
        request.bundle.write(folder)
        job = load_job(source=os.path.join(folder, emit.pipeline_file(pipeline)), params_override=overrides)
        try:
            created = client.jobs.create_or_update(job)
        except Exception as err:  # the SDK raises many types; say what failed and where
            created = _created_despite(client, job_name, err)
    if _truthy(config.get("schedule")):
        create_schedule(client, pipeline, request.bundle)
    run = AzureMLRun(client, run_id=request.run_id, engine_run_id=created.name or job_name, url=created.studio_url)
    run.detail = f"Azure ML status {_status_text(created.status)}"
    return run


def _enable_control_flow_preview() -> None:
    """Turn on azure-ai-ml's preview switch, which its job schema reads once, when it is first imported."""
    import sys

    from pipecast.targets.azureml.flow import PREVIEW_ENV

    if os.environ.get(PREVIEW_ENV) in ("True", "true"):
        return
    if "azure.ai.ml._schema.pipeline.pipeline_job" in sys.modules:
        raise SubmitError(f"azure-ai-ml was imported before its preview switch {PREVIEW_ENV} was set, so it cannot "
                          "load the job's parallel_for and if_else nodes: set the variable to true before starting")
    os.environ[PREVIEW_ENV] = "true"


def _created_despite(client: Any, job_name: str, error: Exception) -> Any:
    """The job, if Azure ML created it although the create failed; else a SubmitError with the create's error.

    A create whose answer was lost (a dropped connection, a timeout) may still have created the job, and
    the SDK's own retry of the PUT then fails with "A job with this name already exists". pipecast names
    the job after its run id, so asking for that name tells whether the run exists.
    """
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return client.jobs.get(job_name)
    except ResourceNotFoundError:
        raise SubmitError(f"cannot create Azure ML pipeline job {job_name!r}: {error}") from error
    except Exception as lookup:
        raise SubmitOutcomeUnknownError(
            f"cannot tell whether Azure ML created pipeline job {job_name!r}: the create failed ({error}) and "
            f"reading the job failed too ({lookup}); `pipecast runs wait` looks for the job by that name again"
        ) from error


def create_schedule(client: Any, pipeline: ir.Pipeline, bundle: Bundle) -> Any:
    """Create or update the pipeline's ``JobSchedule`` from ``<pipeline>.schedule.yml``."""
    from azure.ai.ml.entities._load_functions import load_schedule

    if not pipeline.schedule:
        raise SubmitError(f"pipeline {pipeline.name!r} has no schedule; drop -c schedule=true or add schedule=")
    with tempfile.TemporaryDirectory(prefix="pipecast-azureml-") as folder:
        bundle.write(folder)  # the schedule names the job file beside it
        schedule = load_schedule(source=os.path.join(folder, emit.schedule_file(pipeline)))
        try:
            return client.schedules.begin_create_or_update(schedule).result()
        except Exception as err:
            raise SubmitError(f"cannot create Azure ML schedule {schedule.name!r}: {err}") from err


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> AzureMLRun:
    """The run of a record, for ``pipecast runs wait|cancel``.

    The job is named after the run id, so a run whose submit could not record the job is found by that name.
    """
    job_name = record.get("engine_run_id") or azure_job_name(str(record["id"]))
    return AzureMLRun(make_client(config), run_id=record["id"], engine_run_id=job_name, url=record.get("url"))


def azure_job_name(run_id: str) -> str:
    """The Azure ML job name for a pipecast run id: letters, digits, ``-`` and ``_``, at most 255."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in run_id)
    if len(cleaned) > 255:
        cleaned = f"{cleaned[:248]}_{hashlib.sha256(run_id.encode()).hexdigest()[:6]}"
    return cleaned


def make_client(config: Mapping[str, Any]) -> Any:
    """An ``MLClient`` for the configured workspace."""
    from azure.ai.ml import MLClient

    scope = {}
    for key, variable in _ENV.items():
        value = config.get(key) or os.environ.get(variable)
        if not value:
            raise SubmitError(f"Azure ML needs {key!r}: pass -c {key}=... or set {variable}")
        scope[key] = str(value)
    credential = config.get("credential")
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    kwargs: dict[str, Any] = {}
    url = config.get("resource_manager_url")
    if url:
        url = str(url).rstrip("/") + "/"
        # MLClient keeps custom clouds by name for the process: one name per endpoint.
        kwargs["cloud"] = config.get("cloud") or f"pipecast-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
        kwargs["cloud_metadata"] = {
            "azure_portal": url, "resource_manager": url, "active_directory": url, "aml_resource_id": url,
            "storage_endpoint": "core.windows.net", "registry_discovery_endpoint": url,
        }
    elif config.get("cloud"):
        kwargs["cloud"] = str(config["cloud"])
    return MLClient(credential, scope["subscription_id"], scope["resource_group"], scope["workspace"],
                    enable_telemetry=False, **kwargs)


class AzureMLRun(EngineRun):
    """A pipeline job in an Azure ML workspace."""

    poll_interval = 10.0

    def __init__(self, client: Any, *, run_id: str, engine_run_id: str, url: str | None) -> None:
        super().__init__(run_id=run_id, target="azureml", engine_run_id=engine_run_id, url=url)
        self._client = client

    def fetch_status(self) -> RunStatus:
        """The job's status from Azure ML, naming the failed steps when it failed."""
        try:
            job = self._client.jobs.get(self.engine_run_id)
        except Exception as err:
            raise SubmitError(f"cannot read Azure ML job {self.engine_run_id!r}: {err}") from err
        text = _status_text(job.status)
        status = STATUS.get(text, RunStatus.UNKNOWN)
        self.detail = f"Azure ML status {text}"
        if status is RunStatus.FAILED:
            failed = self.failed_steps()
            if failed:
                self.detail += f"; failed step(s): {', '.join(failed)}"
        return status

    def failed_steps(self) -> list[str]:
        """Display names (pipecast step names) of the child jobs that failed."""
        try:
            children = list(self._client.jobs.list(parent_job_name=self.engine_run_id))
        except Exception:  # detail only: the status itself is already known
            return []
        return sorted(str(c.display_name or c.name) for c in children if _status_text(c.status) == "Failed")

    def cancel(self) -> None:
        """Cancel the job, waiting up to five minutes for Azure ML to complete the request."""
        try:
            self._client.jobs.begin_cancel(self.engine_run_id).result(timeout=300)
        except Exception as err:
            raise SubmitError(f"cannot cancel Azure ML job {self.engine_run_id!r}: {err}") from err

    def stream(self) -> None:
        """Print the job's logs until it ends (``MLClient.jobs.stream``)."""
        self._client.jobs.stream(self.engine_run_id)

    @property
    def client(self) -> Any:
        """The ``MLClient`` the run is read with."""
        return self._client

    def logs(self, step: str | None = None, follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """The job's stream, as lines (:mod:`pipecast.targets.azureml.logs`)."""
        from pipecast.targets.azureml.logs import job_stream

        return job_stream(self, step, follow, timeout)


def _status_text(status: Any) -> str:
    return str(getattr(status, "value", status) or "Unknown")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on") if value is not None else False
