"""Submitting to and tracking runs on Kubeflow Pipelines through ``kfp.Client`` (the v2beta1 REST API).

The kubeflow target's submit module: the framework imports it only to submit or track a run, so ``kfp`` is
never loaded at import time, and records what it returns. Auth comes from the environment (a bearer token in
``$KF_PIPELINES_TOKEN``, or whatever ``kfp.Client`` finds itself: IAP client ids, in-cluster service-account
tokens, kube config); it is never stored.

Creating a run is not idempotent in KFP, so the run's display name is pipecast's run id (unique) and a
create whose answer was lost is resolved by listing the experiment's runs with that display name before it
is sent again (:mod:`.retrying`). Reads are retried on connection errors, 429 and 5xx.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import tempfile
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import SubmitError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.targets import versions
from pipecast.targets.base import SubmitRequest
from pipecast.targets.kfpspec import kubeflow_versions, workflow_size
from pipecast.targets.kfpspec.kubeflow_versions import VersionRef
from pipecast.targets.kfpspec.retrying import Creation, Outcome, Verdict, call, create_once, retry_after
from pipecast.targets.kfpspec.settings import config_bool, submit_value

TARGET = "kubeflow"
# Seconds one run-creating request may take before its outcome counts as unknown (then resolved by asking).
CREATE_TIMEOUT = 120.0

# V2beta1RuntimeState → pipecast's states.
_STATES = {
    "PENDING": RunStatus.PENDING,
    "RUNTIME_STATE_UNSPECIFIED": RunStatus.PENDING,
    "RUNNING": RunStatus.RUNNING,
    "CANCELING": RunStatus.RUNNING,
    "PAUSED": RunStatus.RUNNING,
    "SUCCEEDED": RunStatus.SUCCEEDED,
    "SKIPPED": RunStatus.SUCCEEDED,
    "FAILED": RunStatus.FAILED,
    "CANCELED": RunStatus.CANCELLED,
}

_CRON_ALIASES = {
    "@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *", "@hourly": "0 0 * * * *",
}


def kfp_cron(schedule: str) -> str:
    """A 5-field cron (or ``@daily``…) as the 6-field, seconds-first cron KFP's scheduler reads.

    KFP uses robfig/cron with a seconds field and days of week 0-6, so Sunday written as ``7`` becomes ``0``.
    """
    text = schedule.strip()
    if text in _CRON_ALIASES:
        return _CRON_ALIASES[text]
    fields = text.split()
    if len(fields) != 5:
        raise SubmitError(f"schedule {schedule!r} is not a 5-field cron expression")
    items = []
    for item in fields[4].split(","):
        base, slash, step = item.partition("/")
        if base == "7":
            base = "0"
        elif base.endswith("-7") and not slash:
            start = base[:-2]
            base = "0" if start == "0" else f"{start}-6,0"
        items.append(base + slash + step)
    return " ".join(["0", *fields[:4], ",".join(items)])


def run_url(ui_host: str, run_id: str, namespace: str | None = None, multi_user: bool = False) -> str:
    """The run's page in the KFP UI; in a multi-user deployment, the central dashboard's namespaced form."""
    base = ui_host.rstrip("/")
    if multi_user and namespace:
        if base.endswith("/pipeline"):
            base = base[: -len("/pipeline")]
        return f"{base}/_/pipeline/?ns={urllib.parse.quote(namespace, safe='')}#/runs/details/{run_id}"
    return f"{base}/#/runs/details/{run_id}"


def engine_parameters(pipeline: ir.Pipeline, values: Mapping[str, Any]) -> dict[str, Any]:
    """Run parameters as the IR declares them (untyped parameters travel as JSON text)."""
    types = {p.name: p.type for p in pipeline.parameters}
    return {name: json.dumps(value, sort_keys=True) if types.get(name) is ir.TypeName.ANY else value
            for name, value in values.items()}


class _Connection:
    """``kfp.Client`` built from config and env, with what the run URL needs."""

    def __init__(self, pipeline: ir.Pipeline | None, config: Mapping[str, Any],
                 recorded: Mapping[str, Any] | None = None) -> None:
        recorded = recorded or {}

        def value(key: str, default: Any = None) -> Any:
            if pipeline is not None:
                found = submit_value(pipeline, TARGET, config, key)
            else:
                found = config.get(key)
            return found if found is not None else recorded.get(key, default)

        self.host = value("host") or os.environ.get("KF_PIPELINES_ENDPOINT")
        if not self.host:
            raise SubmitError("no Kubeflow Pipelines endpoint: pass --config host=https://HOST/pipeline or set "
                              "$KF_PIPELINES_ENDPOINT")
        self.ui_host = value("ui_host") or os.environ.get("KF_PIPELINES_UI_ENDPOINT") or self.host
        self.namespace = value("namespace")
        token_env = value("token_env", "KF_PIPELINES_TOKEN")
        verify = value("verify_ssl")
        import kfp

        with _quiet():  # kfp.Client asks the API's healthz while it is built: retried like any read
            self.client = call(lambda: kfp.Client(
                host=self.host, namespace=self.namespace or "kubeflow", ui_host=self.ui_host,
                existing_token=os.environ.get(token_env) or None, ssl_ca_cert=value("ssl_ca_cert"),
                verify_ssl=None if verify is None else config_bool(verify, "verify_ssl"),
            ), verdict)
        multi = value("multi_user")
        self.multi_user = config_bool(multi, "multi_user") if multi is not None else None

    def is_multi_user(self) -> bool:
        if self.multi_user is None:
            with _quiet():
                self.multi_user = bool(getattr(call(self.client.get_kfp_healthz, verdict), "multi_user", False))
        return self.multi_user

    def url(self, run_id: str) -> str:
        return run_url(self.ui_host, run_id, self.namespace, self.is_multi_user())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """kfp.Client prints links and warns about its versions; pipecast reports the URL itself."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _failures() -> tuple[type[BaseException], ...]:
    """What the client raises when the API refuses a request or cannot be reached."""
    import kfp_server_api
    import urllib3

    return (kfp_server_api.ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError)


def verdict(err: BaseException) -> Verdict:
    """What a failed ``kfp.Client`` request says about the server's state (see :mod:`.retrying`)."""
    import kfp_server_api
    import urllib3

    if isinstance(err, kfp_server_api.ApiException):
        status = getattr(err, "status", None) or 0
        if status == 409:  # the name is taken (a pipeline or version made by a lost create, or by someone)
            return Verdict(Outcome.EXISTS)
        if status == 429:
            return Verdict(Outcome.NOT_DONE, retry_after(getattr(err, "headers", None)))
        if status >= 500 or status == 0:  # 0: the client's own wrapper of a transport error (TLS)
            return Verdict(Outcome.UNKNOWN, retry_after(getattr(err, "headers", None)))
        return Verdict(Outcome.FINAL)
    reason = getattr(err, "reason", None) if isinstance(err, urllib3.exceptions.MaxRetryError) else err
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):  # NewConnectionError too: nothing was sent
        return Verdict(Outcome.NOT_DONE)
    if isinstance(err, (urllib3.exceptions.HTTPError, OSError, TimeoutError)):
        return Verdict(Outcome.UNKNOWN)  # the request may have reached the server: dropped, reset, timed out
    return Verdict(Outcome.FINAL)


def _api_error(action: str, err: BaseException) -> SubmitError:
    import kfp_server_api

    if not isinstance(err, kfp_server_api.ApiException):
        return SubmitError(f"cannot reach Kubeflow Pipelines to {action}: {err}")
    status = getattr(err, "status", None)
    reason = getattr(err, "body", None) or str(err)
    return SubmitError(f"Kubeflow Pipelines refused to {action}" + (f" (HTTP {status})" if status else "") +
                       f": {str(reason).strip()[:500]}")


def run_description(pipeline: ir.Pipeline, run_id: str) -> str:
    """The run's description: pipecast's run id and the pipeline's tags (KFP runs have no labels)."""
    text = f"pipecast run {run_id} of pipeline {pipeline.name}"
    if pipeline.tags:
        text += "; tags: " + ", ".join(pipeline.tags)
    return text


def _display_name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def submit(request: SubmitRequest) -> KubeflowRun:
    """Create (or reuse) the experiment, start the run, create the recurring run for a schedule."""
    pipeline, config = request.pipeline, request.config
    _refuse_oversized_workflow(request)
    try:
        connection = _Connection(pipeline, config)
    except _failures() as err:
        raise _api_error("connect", err) from err
    # Too old: refused before anything is made (an exit handler's final status needs a newer backend).
    exit_handler = "taskFinalStatus:" in request.bundle[request.bundle.main_file]
    versions.check_kubeflow(connection.client, connection.host,
                            ("kubeflow", "kubeflow_exit") if exit_handler else ("kubeflow",))
    experiment_name = submit_value(pipeline, TARGET, config, "experiment") or "Default"
    metadata: dict[str, Any] = {"host": connection.host, "ui_host": connection.ui_host,
                                "namespace": connection.namespace}
    with tempfile.TemporaryDirectory(prefix="pipecast-kfp-") as folder:
        package = os.path.join(folder, request.bundle.main_file)
        with open(package, "w", encoding="utf-8") as stream:
            stream.write(request.bundle[request.bundle.main_file])
        try:
            with _quiet():
                # kfp.Client looks the experiment up by name before creating it: repeating it is harmless.
                experiment = call(lambda: connection.client.create_experiment(
                    name=experiment_name, namespace=connection.namespace), verdict)
        except _failures() as err:
            raise _api_error("create the experiment", err) from err
        metadata["experiment_id"] = experiment.experiment_id
        version = _version(request, connection, package)
        if version is not None:
            metadata.update(pipeline_id=version.pipeline_id, pipeline_version_id=version.version_id,
                            pipeline_version=version.version_name)
        request.note(**metadata)  # where `pipecast runs wait` looks for the run if the create's answer is lost
        run = _create_run(request, connection, experiment.experiment_id, experiment_name, package, version)
        handle = KubeflowRun(connection, run_id=request.run_id, engine_run_id=run.run_id,
                             url=connection.url(run.run_id), metadata=metadata,
                             experiment_id=experiment.experiment_id)
        if pipeline.schedule and config_bool(submit_value(pipeline, TARGET, config, "schedule", True), "schedule"):
            _schedule(request, connection, handle, experiment_name, package, version)
    return handle


def _refuse_oversized_workflow(request: SubmitRequest) -> None:
    """Refuse, before any request, a pipeline whose Argo Workflow cannot fit (only a warning in a warn-mode compile).

    The compile measured it (:mod:`.workflow_size`); a run of it would fail in Argo's controller at once.
    """
    for problem in request.bundle.warnings:
        if problem.message.startswith(workflow_size.PROBLEM):
            raise SubmitError(f"{problem.message}; nothing was submitted (fix: {problem.fix})")


def _version(request: SubmitRequest, connection: _Connection, package: str) -> VersionRef | None:
    """The uploaded pipeline version runs start from.

    None when config ``upload_pipeline=false`` asks for an inline spec (an account that may start runs but
    not create pipelines).
    """
    if not config_bool(submit_value(request.pipeline, TARGET, request.config, "upload_pipeline", True),
                       "upload_pipeline"):
        return None
    try:
        return kubeflow_versions.upload(connection.client, request.pipeline, request.bundle[request.bundle.main_file],
                                        package, connection.namespace, verdict, _quiet, _api_error)
    except _failures() as err:
        raise _api_error("upload the pipeline version", err) from err


def _source(package: str, version: VersionRef | None) -> dict[str, Any]:
    """What a run or recurring run starts from: the pipeline version, else the inline spec."""
    if version is None:
        return {"pipeline_package_path": package, "pipeline_id": None, "version_id": None}
    return {"pipeline_package_path": None, "pipeline_id": version.pipeline_id, "version_id": version.version_id}


def _run_options(request: SubmitRequest) -> tuple[str | None, str | None]:
    """The run's service account and pipeline root.

    ``-c`` for this run, else the compile's settings (the pipeline root then stands in the IR as its
    defaultPipelineRoot).
    """
    settings = request.bundle.settings
    account = request.config.get("service_account") or getattr(settings, "service_account", None)
    return account, request.config.get("pipeline_root")


def _create_run(request: SubmitRequest, connection: _Connection, experiment_id: str, experiment_name: str,
                package: str, version: VersionRef | None) -> Any:
    """Start the run, found again by its display name (pipecast's run id) if the create's answer is lost."""
    client = connection.client
    service_account, pipeline_root = _run_options(request)
    # The body kfp.Client.run_pipeline sends (the same job config), plus a description, which run_pipeline cannot
    # set, and a bounded wait for the answer.
    job = client._create_job_config(params=engine_parameters(request.pipeline, request.parameters),
                                    **_source(package, version), enable_caching=None, cache_key=None,
                                    pipeline_root=pipeline_root)
    import kfp_server_api

    body = kfp_server_api.V2beta1Run(
        experiment_id=experiment_id, display_name=request.run_id,
        description=run_description(request.pipeline, request.run_id), pipeline_spec=job.pipeline_spec,
        pipeline_version_reference=job.pipeline_version_reference, runtime_config=job.runtime_config,
        service_account=service_account)

    def create() -> Any:
        with _quiet():
            return client._run_api.run_service_create_run(run=body, _request_timeout=CREATE_TIMEOUT)

    creation = Creation("Kubeflow Pipelines", "run", request.run_id, f" in experiment {experiment_name!r}",
                        lambda err: str(_api_error("create the run", err)))
    try:
        return create_once(create, lambda: find_run(client, experiment_id, request.run_id), verdict, creation)
    except _failures() as err:
        raise _api_error("start the run", err) from err


def _schedule(request: SubmitRequest, connection: _Connection, handle: KubeflowRun, experiment_name: str,
              package: str, version: VersionRef | None) -> None:
    """Create the recurring run of the pipeline's schedule.

    A failure is kept in the run's metadata and printed, never a failed submit (the run has started).
    """
    failures: tuple[type[BaseException], ...] = (*_failures(), SubmitError)
    try:
        created, earlier = _create_recurring_run(
            connection.client, request, handle.experiment_id or "", experiment_name, package, version)
        handle.metadata["recurring_run_id"] = created
    except failures as err:
        message = str(err) if isinstance(err, SubmitError) else str(_api_error("create the recurring run", err))
        handle.metadata["schedule_error"] = message
        warnings.warn(f"run {request.run_id!r} started, but its schedule was not: {message}", stacklevel=3)
        return
    if not earlier:
        return
    handle.metadata["replaced_recurring_runs"] = earlier
    try:
        _replace(connection.client, earlier)
    except _failures() as err:
        message = str(_api_error(f"delete the replaced recurring run(s) {', '.join(earlier)}", err))
        handle.metadata["schedule_error"] = message
        warnings.warn(f"run {request.run_id!r} started and its schedule was updated, but {message}; delete them "
                      "in the KFP UI so the pipeline has one schedule", stacklevel=3)


def find_run(client: Any, experiment_id: str, run_id: str) -> Any:
    """The run of ``experiment_id`` whose display name is pipecast's ``run_id``, or None."""
    with _quiet():
        found = client.list_runs(experiment_id=experiment_id, filter=_display_name_filter(run_id), page_size=2).runs
    return found[0] if found else None


def _create_recurring_run(client: Any, request: SubmitRequest, experiment_id: str, experiment_name: str,
                          package: str, version: VersionRef | None) -> tuple[str, list[str]]:
    """Create the recurring run for the pipeline's schedule; return its id and the ids of those it replaces.

    One recurring run per pipeline and experiment, found by its display name. The new one is found again by its
    description (which names this run) if the create's answer is lost.
    """
    pipeline = request.pipeline
    name = f"{pipeline.name} (pipecast schedule)"
    description = (f"pipecast schedule {pipeline.schedule!r} of pipeline {pipeline.name!r}, submitted with run "
                   f"{request.run_id}")
    if pipeline.tags:
        description += "; tags: " + ", ".join(pipeline.tags)
    service_account, pipeline_root = _run_options(request)

    def create() -> Any:
        with _quiet():
            return client.create_recurring_run(
                experiment_id=experiment_id, job_name=name, description=description,
                cron_expression=kfp_cron(pipeline.schedule or ""), max_concurrency=1, no_catchup=True,
                params=engine_parameters(pipeline, request.parameters), **_source(package, version),
                pipeline_root=pipeline_root, service_account=service_account,
            )

    def find() -> Any:
        with _quiet():
            found = client.list_recurring_runs(experiment_id=experiment_id, filter=_display_name_filter(name),
                                               page_size=100).recurring_runs or []
        return next((r for r in found if r.description == description), None)

    creation = Creation("Kubeflow Pipelines", "recurring run", name, f" in experiment {experiment_name!r}",
                        lambda err: str(_api_error("create the recurring run", err)))
    # Listed before the create: the schedules this one replaces (earlier submits of the same pipeline).
    with _quiet():
        earlier = call(lambda: client.list_recurring_runs(
            experiment_id=experiment_id, filter=_display_name_filter(name), page_size=100).recurring_runs or [],
            verdict)
    created = str(create_once(create, find, verdict, creation).recurring_run_id)
    return created, [str(r.recurring_run_id) for r in earlier if r.display_name == name and
                     str(r.recurring_run_id) != created]


def _replace(client: Any, earlier: list[str]) -> None:
    """Delete the recurring runs the new one replaces, so a pipeline has one schedule.

    The v2beta1 API cannot edit a recurring run in place (only create, enable, disable, delete), so an upsert is
    a create, then a delete of the old ones: a failure between the two leaves two schedules, never none.
    """
    import kfp_server_api

    for recurring_run_id in earlier:
        try:
            with _quiet():
                call(functools.partial(client.delete_recurring_run, recurring_run_id), verdict)
        except kfp_server_api.ApiException as err:
            if getattr(err, "status", None) != 404:  # 404: someone deleted it already, as wanted
                raise


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> KubeflowRun:
    """The engine's view of a recorded run; the endpoint comes from config, else from what submit recorded."""
    metadata = record.get("metadata") or {}
    try:
        connection = _Connection(None, config, metadata)
    except _failures() as err:
        raise _api_error("connect", err) from err
    return KubeflowRun(connection, run_id=record["id"], engine_run_id=record["engine_run_id"] or "",
                       url=record.get("url"), metadata=metadata, experiment_id=metadata.get("experiment_id"))


class KubeflowRun(EngineRun):
    """A run on Kubeflow Pipelines: status from ``GET /runs/{id}``, cancel by terminating it.

    A run whose create was never confirmed has no engine id yet: its status first looks it up by display name
    in its experiment (the framework then records the id), or reports that the engine never created it.
    """

    def __init__(self, connection: _Connection, *, run_id: str, engine_run_id: str, url: str | None,
                 metadata: Mapping[str, Any] | None = None, experiment_id: str | None = None) -> None:
        super().__init__(run_id=run_id, target=TARGET, engine_run_id=engine_run_id, url=url,
                         metadata=dict(metadata or {}))
        self.connection = connection
        self.experiment_id = experiment_id

    def _confirm(self) -> bool:
        """Find the run that submit could not confirm; False if the engine has none."""
        if not self.experiment_id:
            raise SubmitError(f"run {self.run_id!r} has neither a Kubeflow run id nor an experiment to look in")
        try:
            found = call(lambda: find_run(self.connection.client, self.experiment_id or "", self.run_id), verdict)
        except _failures() as err:
            raise _api_error(f"look for run {self.run_id!r}", err) from err
        if found is None:
            return False
        self.engine_run_id, self.url = found.run_id, self.connection.url(found.run_id)
        return True

    def fetch_status(self) -> RunStatus:
        """The run's state from Kubeflow Pipelines; failed when its submit never created it."""
        if not self.engine_run_id and not self._confirm():
            self.detail = f"Kubeflow Pipelines has no run named {self.run_id!r}: its submit never created it"
            return RunStatus.FAILED
        try:
            with _quiet():
                run = call(lambda: self.connection.client.get_run(self.engine_run_id), verdict)
        except _failures() as err:
            raise _api_error(f"report run {self.engine_run_id!r}", err) from err
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
        status = _STATES.get(state, RunStatus.UNKNOWN)
        self.detail = _failure_detail(run) if status is RunStatus.FAILED else ""
        return status

    def cancel(self) -> None:
        """Terminate the run (nothing to do when the engine never created it)."""
        if not self.engine_run_id and not self._confirm():
            return  # nothing to cancel: the engine never created the run
        try:
            with _quiet():
                self.connection.client.terminate_run(self.engine_run_id)
        except _failures() as err:
            raise _api_error(f"terminate run {self.engine_run_id!r}", err) from err


def _failure_detail(run: Any) -> str:
    """The failed tasks and the run's error message."""
    failed = [t.display_name for t in ((run.run_details and run.run_details.task_details) or [])
              if str(t.state) == "FAILED" and t.display_name]
    message = run.error.message if run.error is not None and run.error.message else ""
    parts = ([f"failed task(s): {', '.join(sorted(set(failed)))}"] if failed else []) + ([message] if message else [])
    return "; ".join(parts) or "the run failed"
