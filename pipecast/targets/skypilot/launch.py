"""Submitting SkyPilot YAML through SkyPilot's client SDK, and tracking the run (the vm_* submit module).

SkyPilot (0.8 and later) is client/server: each SDK call sends a request to the SkyPilot API server (a
local one it starts, or the one ``sky api login`` configured) and returns a request id, which
``sky.get``/``sky.stream_and_get`` turn into the result. Two ways to run:

* ``mode=cluster`` (the default for a one-task YAML): ``sky.launch(task, cluster_name=…, down=True,
  idle_minutes_to_autostop=…)``; status from ``sky.job_status``, cancel with ``sky.cancel``. The cluster
  stays up ``idle_minutes`` after the job, then is torn down, so read the final status before that.
* ``mode=jobs`` (the only way to run several tasks): ``sky.jobs.launch(dag)``, a managed job whose tasks
  SkyPilot's jobs controller runs one after the other; status from ``sky.jobs.queue_v2``, cancel with
  ``sky.jobs.cancel``. The controller keeps the status after the VMs are gone.

Only this module imports ``sky``, and only inside functions.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from pipecast.compiler import ir
from pipecast.errors import SubmitError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import SubmitRequest
from pipecast.targets.skypilot.code import pipecast_mount
from pipecast.targets.skypilot.settings import SkyPilotConnection

_CLUSTER_NAME_MAX = 35  # GCP's limit, the smallest of the three clouds (AWS 248, Azure 42)
_QUEUE_FIELDS = ("job_id", "task_id", "job_name", "task_name", "status", "failure_reason")

# SkyPilot's status names (sky.JobStatus for a cluster's job, sky.ManagedJobStatus for a managed job).
_STATES = {
    "INIT": RunStatus.PENDING, "PENDING": RunStatus.PENDING, "DEPRECATED_SUBMITTED": RunStatus.PENDING,
    "SUBMITTED": RunStatus.PENDING, "STARTING": RunStatus.RUNNING, "SETTING_UP": RunStatus.RUNNING,
    "RUNNING": RunStatus.RUNNING, "RECOVERING": RunStatus.RUNNING, "WINDING_DOWN": RunStatus.RUNNING,
    "CANCELLING": RunStatus.RUNNING, "SUCCEEDED": RunStatus.SUCCEEDED, "CANCELLED": RunStatus.CANCELLED,
    "FAILED": RunStatus.FAILED, "FAILED_SETUP": RunStatus.FAILED, "FAILED_DRIVER": RunStatus.FAILED,
    "FAILED_PRECHECKS": RunStatus.FAILED, "FAILED_NO_RESOURCE": RunStatus.FAILED,
    "FAILED_CONTROLLER": RunStatus.FAILED,
}


def _state_name(status: Any) -> str:
    return str(getattr(status, "name", status) or "")


def check_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The submit config with its defaults; a SubmitError for unknown keys or wrong types."""
    known = SkyPilotConnection.spec()
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise SubmitError(f"unknown config key(s) {unknown!r} for SkyPilot; known: {sorted(known)!r}")
    values = {"mode": None, "cluster": None, "down": True, "idle_minutes": 10, "retry_until_up": False,
              "job_name": None, **config}
    if values["mode"] not in (None, "cluster", "jobs"):
        raise SubmitError(f"config mode={values['mode']!r} is not 'cluster' or 'jobs'")
    for key in ("down", "retry_until_up"):
        if not isinstance(values[key], bool):
            raise SubmitError(f"config {key}={values[key]!r} must be true or false")
    idle = values["idle_minutes"]
    if isinstance(idle, bool) or not isinstance(idle, int) or idle < 0:
        raise SubmitError(f"config idle_minutes={idle!r} must be a whole number of minutes, 0 or more")
    return values


def cluster_name(pipeline: str, run_id: str) -> str:
    """A cluster name SkyPilot and every cloud accept: ``pipecast-<pipeline>-<run suffix>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", pipeline.lower()).strip("-") or "run"
    suffix = re.sub(r"[^a-z0-9]+", "", run_id.lower().rsplit("-", 1)[-1])[-6:] or "0"
    head = f"pipecast-{slug}"[: _CLUSTER_NAME_MAX - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}"


def build_dag(pipeline: ir.Pipeline, text: str, parameters: Mapping[str, Any],
              environ: Mapping[str, str] | None = None, file_mounts: Mapping[str, str] | None = None) -> Any:
    """A ``sky.Dag`` from the emitted YAML, with the run's parameters and the secrets' values.

    ``file_mounts`` (``{remote: local}``, e.g. the shipped wheel of pipecast) are added to every task. This
    is what ``sky jobs launch FILE --env NAME=VALUE --secret NAME`` does, except that each task
    gets only the secrets its own document declares (the CLI would give every task all of them).
    """
    import sky

    environ = os.environ if environ is None else environ
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    header = documents[0] if len(documents) > 1 and set(documents[0]) == {"name"} else None
    task_documents = documents[1:] if header else documents
    envs = [(p.name, render_parameter(p.type, parameters[p.name]))
            for p in pipeline.parameters if p.name in parameters]
    with sky.Dag() as dag:
        previous = None
        for document in task_documents:
            declared = [k for k, v in (document.get("secrets") or {}).items() if v is None]
            secrets = [(k, environ[k]) for k in declared if k in environ]
            if file_mounts:
                document = {**document, "file_mounts": {**(document.get("file_mounts") or {}), **file_mounts}}
            task = sky.Task.from_yaml_config(document, env_overrides=envs, secrets_overrides=secrets or None)
            if previous is not None:
                previous >> task  # SkyPilot's chain edge: ``task`` starts after ``previous`` succeeds
            previous = task
    dag.name = (header or task_documents[0]).get("name")
    if hasattr(sky, "DagExecution"):
        dag.execution = sky.DagExecution.SERIAL
    return dag


def dashboard_url(page: str) -> str | None:
    """The SkyPilot dashboard page on the configured API server, without any credentials in the URL."""
    from sky.server import common

    server: str = common.get_server_url()
    parts = urllib.parse.urlsplit(server)
    if not parts.scheme or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")) + f"/dashboard/{page}"


def submit(request: SubmitRequest) -> SkyPilotRun:
    """Launch the bundle's YAML and return the run."""
    import sky

    bundle, pipeline, target = request.bundle, request.pipeline, request.target.name
    options = check_config(request.config)
    text = bundle[bundle.main_file]
    setups = [str(d.get("setup") or "") for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    mounts = pipecast_mount(pipeline, setups)  # the wheel of this pipecast, when the index has no such version
    try:
        dag = build_dag(pipeline, text, request.parameters, file_mounts=mounts)
    except (ValueError, sky.exceptions.InvalidSkyPilotConfigError) as err:
        raise SubmitError(f"SkyPilot rejected {bundle.main_file!r}: {err}") from err
    mode = options["mode"] or ("cluster" if len(dag.tasks) == 1 else "jobs")
    tasks = [t.name for t in dag.tasks]
    try:
        if mode == "cluster":
            run = _launch_cluster(target, dag, options, pipeline, request.run_id, tasks)
        else:
            run = _launch_jobs(target, dag, options, request.run_id, tasks)
    except SubmitError:
        raise
    except Exception as err:  # the SDK raises many types (connection, cloud, quota); all mean "not launched"
        raise SubmitError(f"SkyPilot could not launch {bundle.main_file!r} ({mode} mode): "
                          f"{type(err).__name__}: {err}") from err
    return run


def _launch_cluster(target: str, dag: Any, options: Mapping[str, Any], pipeline: ir.Pipeline, run_id: str,
                    tasks: list[str]) -> SkyPilotRun:
    import sky

    if len(dag.tasks) != 1:
        raise SubmitError(
            f"mode=cluster runs one task with sky.launch, but this pipeline has {len(dag.tasks)} tasks "
            f"({', '.join(repr(t.name) for t in dag.tasks)}: steps that differ in resources, image, env or "
            f"secrets); use -c mode=jobs (SkyPilot runs a pipeline of tasks only as a managed job)")
    cluster = str(options["cluster"] or cluster_name(pipeline.name, run_id))
    request = sky.launch(dag.tasks[0], cluster_name=cluster, down=options["down"],
                         idle_minutes_to_autostop=options["idle_minutes"],
                         retry_until_up=options["retry_until_up"])
    job_id = _launched_job_id(request)
    return SkyPilotRun(run_id=run_id, target=target, mode="cluster", cluster=cluster, job_id=job_id,
                       url=dashboard_url(f"clusters/{cluster}"), tasks=tasks,
                       request_id=None if job_id is not None else str(request))


def _launch_jobs(target: str, dag: Any, options: Mapping[str, Any], run_id: str, tasks: list[str]) -> SkyPilotRun:
    import sky

    request = sky.jobs.launch(dag, name=options["job_name"] or dag.name)
    job_id = _launched_job_id(request)
    return SkyPilotRun(run_id=run_id, target=target, mode="jobs", cluster=None, job_id=job_id,
                       url=dashboard_url(f"jobs/{job_id}" if job_id is not None else "jobs"), tasks=tasks,
                       request_id=None if job_id is not None else str(request))


def _lost_connection_errors() -> tuple[type[BaseException], ...]:
    import requests
    import sky

    return (requests.exceptions.ConnectionError, requests.exceptions.Timeout, sky.exceptions.ApiServerConnectionError,
            sky.exceptions.ServerTemporarilyUnavailableError, sky.exceptions.RequestInterruptedError)


def _launched_job_id(request: Any) -> int | None:
    """The job id a launch request's result names; asked again with ``sky.get`` if the stream broke.

    The API server runs a request to its end whatever happens to the client's connection, so a stream that
    breaks (SkyPilot already retried it) leaves a launch whose result the server still holds. It is asked
    once more at once; if the server still cannot be reached, None lets the caller return a run that resolves
    the request later (its status), so the run is never recorded as failed.
    """
    import sky

    lost = _lost_connection_errors()
    try:
        result = sky.stream_and_get(request)
    except lost:
        try:
            result = sky.get(request)
        except lost:
            return None
    return _job_id_of(result)


def _job_id_of(result: Any) -> int:
    """``(job_id, handle)`` of ``sky.launch`` or ``([job_id, …], handle)`` of ``sky.jobs.launch``: the job id."""
    job_ids = result[0] if isinstance(result, tuple) else result
    ids = list(job_ids) if isinstance(job_ids, Sequence) else [job_ids]
    if not ids or ids[0] is None:
        raise SubmitError("SkyPilot accepted the launch but returned no job id")
    return int(ids[0])


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> SkyPilotRun:
    """The run of a record, from its engine run id (``cluster/<name>/<id>``, ``jobs/<id>``, or a request's)."""
    engine = str(record.get("engine_run_id") or "")
    parts = engine.split("/")
    tasks = (record.get("metadata") or {}).get("skypilot_tasks")
    common: dict[str, Any] = {"run_id": record["id"], "target": record["target"], "url": record.get("url"),
                              "tasks": tasks}
    if parts[0] == "cluster" and len(parts) == 3 and parts[2].isdigit():
        return SkyPilotRun(**common, mode="cluster", cluster=parts[1], job_id=int(parts[2]))
    if parts[0] == "cluster" and len(parts) == 4 and parts[2] == "request":
        return SkyPilotRun(**common, mode="cluster", cluster=parts[1], job_id=None, request_id=parts[3])
    if parts[0] == "jobs" and len(parts) == 2 and parts[1].isdigit():
        return SkyPilotRun(**common, mode="jobs", cluster=None, job_id=int(parts[1]))
    if parts[0] == "jobs" and len(parts) == 3 and parts[1] == "request":
        return SkyPilotRun(**common, mode="jobs", cluster=None, job_id=None, request_id=parts[2])
    raise SubmitError(f"run {record.get('id')!r} has no SkyPilot job recorded (engine run id {engine!r})")


class SkyPilotRun(EngineRun):
    """A run on SkyPilot: a job on a cluster (``cluster/<name>/<id>``) or a managed job (``jobs/<id>``).

    A run whose launch result could not be read yet is ``cluster/<name>/request/<request id>`` or
    ``jobs/request/<request id>``: its status asks the API server for that request's result first (and the
    framework records the job id once it is known).
    """

    poll_interval = 5.0  # each poll is a request to the API server

    def __init__(self, *, run_id: str, target: str, mode: str, cluster: str | None, job_id: int | None,
                 url: str | None, request_id: str | None = None, tasks: list[str] | None = None) -> None:
        super().__init__(run_id=run_id, target=target, engine_run_id="", url=url,
                         metadata={"skypilot_mode": mode, "skypilot_cluster": cluster, "skypilot_job_id": job_id,
                                   **({"skypilot_tasks": tasks} if tasks is not None else {})})
        self.mode = mode
        self.cluster = cluster
        self.job_id = job_id
        self.request_id = request_id
        self.engine_run_id = self._engine_id()

    def _engine_id(self) -> str:
        where = f"cluster/{self.cluster}" if self.mode == "cluster" else "jobs"
        return f"{where}/{self.job_id}" if self.job_id is not None else f"{where}/request/{self.request_id}"

    def _resolve_request(self) -> bool:
        """Read the launch request's result; True once the job id is known."""
        import sky

        try:
            self.job_id = _job_id_of(sky.get(self.request_id))
        except _lost_connection_errors() as err:
            self.detail = f"the SkyPilot API server cannot be reached to read launch request {self.request_id}: {err}"
            return False
        self.engine_run_id = self._engine_id()
        self.metadata["skypilot_job_id"] = self.job_id
        if self.mode == "jobs":
            self.url = dashboard_url(f"jobs/{self.job_id}")
        return True

    def fetch_status(self) -> RunStatus:
        """The run's status from SkyPilot: the managed job's tasks, or the job on its cluster."""
        import sky

        if self.job_id is None:
            try:
                if not self._resolve_request():
                    return RunStatus.UNKNOWN
            except Exception as err:  # the launch itself failed on the server: its error is the request's result
                self.detail = f"launch request {self.request_id} failed: {type(err).__name__}: {err}"
                return RunStatus.FAILED
        if self.mode == "jobs":
            result = sky.get(sky.jobs.queue_v2(refresh=False, job_ids=[self.job_id], fields=list(_QUEUE_FIELDS)))
            records = result[0] if isinstance(result, tuple) else result
            return self._managed_status([r for r in records if r.get("job_id") in (None, self.job_id)])
        try:
            statuses = sky.get(sky.job_status(self.cluster, job_ids=[self.job_id]))
        except sky.exceptions.ClusterDoesNotExist as err:
            raise SubmitError(
                f"cluster {self.cluster!r} no longer exists: it was torn down after its idle time, so job "
                f"{self.job_id} can no longer be read; submit with -c idle_minutes=N to keep it longer, or "
                f"-c mode=jobs (managed jobs keep their status)") from err
        state = _state_name(statuses.get(self.job_id))
        self.detail = "" if state else f"job {self.job_id} not found on cluster {self.cluster!r}"
        return _STATES.get(state, RunStatus.UNKNOWN)

    def _managed_status(self, records: list[Any]) -> RunStatus:
        if not records:
            self.detail = f"managed job {self.job_id} is not in SkyPilot's jobs queue"
            return RunStatus.UNKNOWN
        records = sorted(records, key=lambda r: r.get("task_id") or 0)
        states = [(_STATES.get(_state_name(r.get("status")), RunStatus.UNKNOWN), r) for r in records]
        found = {state for state, _ in states}
        if found == {RunStatus.SUCCEEDED}:
            self.detail = ""
            return RunStatus.SUCCEEDED
        # A later task still pending after an earlier one succeeded is a pipeline in progress.
        order = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.RUNNING, RunStatus.UNKNOWN, RunStatus.PENDING)
        overall = next(s for s in order if s in found)
        if overall is RunStatus.PENDING and RunStatus.SUCCEEDED in found:
            overall = RunStatus.RUNNING
        shown = next((r for s, r in states if s is overall), None) or next(r for s, r in states if s is not
                                                                             RunStatus.SUCCEEDED)
        reason = shown.get("failure_reason")
        self.detail = (f"task {shown.get('task_name')!r}: {_state_name(shown.get('status'))}"
                       + (f" ({reason})" if reason else ""))
        return overall

    def cancel(self) -> None:
        """Cancel the managed job, or the job on its cluster."""
        import sky

        if self.job_id is None and not self._resolve_request():
            raise SubmitError(f"cannot cancel yet: {self.detail}")
        if self.mode == "jobs":
            sky.get(sky.jobs.cancel(job_ids=[self.job_id]))
            return
        try:
            sky.get(sky.cancel(self.cluster, job_ids=[self.job_id]))
        except sky.exceptions.ClusterDoesNotExist as err:
            raise SubmitError(f"cluster {self.cluster!r} no longer exists; job {self.job_id} is over") from err
