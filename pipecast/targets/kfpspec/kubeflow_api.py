"""Submitting to and tracking runs on Kubeflow Pipelines through ``kfp.Client`` (the v2beta1 REST API).

Imported only by :meth:`KubeflowTarget.submit` / ``handle``, so ``kfp`` is never loaded at import time.
Auth comes from the environment (a bearer token in ``$KF_PIPELINES_TOKEN``, or whatever ``kfp.Client``
finds itself: IAP client ids, in-cluster service-account tokens, kube config); it is never stored.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from pipecast.compiler import ir
from pipecast.errors import SubmitError
from pipecast.runs.store import RunStore
from pipecast.targets.base import Bundle, RunHandle, RunStatus
from pipecast.targets.kfpspec.references import check_references
from pipecast.targets.kfpspec.settings import as_bool, submit_value

TARGET = "kubeflow"

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


def _documents(bundle: Bundle) -> tuple[dict[str, Any], dict[str, Any] | None]:
    docs = list(yaml.safe_load_all(bundle[bundle.main_file]))
    return docs[0], (docs[1] if len(docs) > 1 else None)


def preflight(bundle: Bundle) -> None:
    """Refuse to send an IR with dangling references (the engine would only fail later, at run time)."""
    spec, platform = _documents(bundle)
    problems = check_references(spec, platform)
    if problems:
        raise SubmitError(f"{bundle.main_file!r} has dangling references: " + "; ".join(problems))


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

        with _quiet():
            self.client = kfp.Client(
                host=self.host, namespace=self.namespace or "kubeflow", ui_host=self.ui_host,
                existing_token=os.environ.get(token_env) or None, ssl_ca_cert=value("ssl_ca_cert"),
                verify_ssl=None if verify is None else as_bool(verify, "verify_ssl"),
            )
        multi = value("multi_user")
        self.multi_user = as_bool(multi, "multi_user") if multi is not None else None

    def is_multi_user(self) -> bool:
        if self.multi_user is None:
            with _quiet():
                self.multi_user = bool(getattr(self.client.get_kfp_healthz(), "multi_user", False))
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


def _api_error(action: str, err: BaseException) -> SubmitError:
    import kfp_server_api

    if not isinstance(err, kfp_server_api.ApiException):
        return SubmitError(f"cannot reach Kubeflow Pipelines to {action}: {err}")
    status = getattr(err, "status", None)
    reason = getattr(err, "body", None) or str(err)
    return SubmitError(f"Kubeflow Pipelines refused to {action}" + (f" (HTTP {status})" if status else "") +
                       f": {str(reason).strip()[:500]}")


def submit(pipeline: ir.Pipeline, bundle: Bundle, parameters: Mapping[str, Any], config: Mapping[str, Any],
           run_id: str) -> KubeflowRunHandle:
    """Create (or reuse) the experiment, start the run, create the recurring run for a schedule."""
    preflight(bundle)
    try:
        connection = _Connection(pipeline, config)
    except _failures() as err:
        raise _api_error("connect", err) from err
    experiment_name = submit_value(pipeline, TARGET, config, "experiment") or "Default"
    service_account = submit_value(pipeline, TARGET, config, "service_account")
    pipeline_root = submit_value(pipeline, TARGET, config, "pipeline_root")
    params = engine_parameters(pipeline, parameters)
    metadata: dict[str, Any] = {"host": connection.host, "ui_host": connection.ui_host,
                                "namespace": connection.namespace}
    with tempfile.TemporaryDirectory(prefix="pipecast-kfp-") as folder:
        package = os.path.join(folder, bundle.main_file)
        with open(package, "w", encoding="utf-8") as stream:
            stream.write(bundle[bundle.main_file])
        client = connection.client
        try:
            with _quiet():
                experiment = client.create_experiment(name=experiment_name, namespace=connection.namespace)
                run = client.run_pipeline(
                    experiment_id=experiment.experiment_id, job_name=run_id, pipeline_package_path=package,
                    params=params, pipeline_root=pipeline_root, service_account=service_account,
                )
        except _failures() as err:
            raise _api_error("start the run", err) from err
        metadata["experiment_id"] = experiment.experiment_id
        if pipeline.schedule and as_bool(submit_value(pipeline, TARGET, config, "schedule", True), "schedule"):
            try:
                with _quiet():
                    recurring = client.create_recurring_run(
                        experiment_id=experiment.experiment_id, job_name=f"{pipeline.name} (pipecast schedule)",
                        description=f"pipecast schedule {pipeline.schedule!r} of pipeline {pipeline.name!r}",
                        cron_expression=kfp_cron(pipeline.schedule), max_concurrency=1, no_catchup=True,
                        params=params, pipeline_package_path=package, pipeline_root=pipeline_root,
                        service_account=service_account,
                    )
            except _failures() as err:
                raise _api_error("create the recurring run", err) from err
            metadata["recurring_run_id"] = recurring.recurring_run_id
    handle = KubeflowRunHandle(connection, run_id=run_id, engine_run_id=run.run_id, url=connection.url(run.run_id))
    RunStore.default().set_engine_run(run_id, engine_run_id=handle.engine_run_id, url=handle.url, metadata=metadata)
    return handle


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> KubeflowRunHandle:
    """The handle of a recorded run; the endpoint comes from config, else from what submit recorded."""
    try:
        connection = _Connection(None, config, record.get("metadata") or {})
    except _failures() as err:
        raise _api_error("connect", err) from err
    return KubeflowRunHandle(connection, run_id=record["id"], engine_run_id=record["engine_run_id"],
                             url=record.get("url"))


class KubeflowRunHandle(RunHandle):
    """A run on Kubeflow Pipelines: status from ``GET /runs/{id}``, cancel by terminating it."""

    def __init__(self, connection: _Connection, *, run_id: str, engine_run_id: str, url: str | None) -> None:
        super().__init__(run_id=run_id, target=TARGET, engine_run_id=engine_run_id, url=url)
        self.connection = connection

    def fetch_status(self) -> RunStatus:
        try:
            with _quiet():
                run = self.connection.client.get_run(self.engine_run_id)
        except _failures() as err:
            raise _api_error(f"report run {self.engine_run_id!r}", err) from err
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
        status = _STATES.get(state, RunStatus.UNKNOWN)
        if status is RunStatus.FAILED:
            failed = [t.display_name for t in ((run.run_details and run.run_details.task_details) or [])
                      if str(t.state) == "FAILED" and t.display_name]
            message = run.error.message if run.error is not None and run.error.message else ""
            parts = ([f"failed task(s): {', '.join(sorted(set(failed)))}"] if failed else []) + (
                [message] if message else [])
            self.detail = "; ".join(parts) or "the run failed"
        else:
            self.detail = ""
        return status

    def cancel(self) -> None:
        try:
            with _quiet():
                self.connection.client.terminate_run(self.engine_run_id)
        except _failures() as err:
            raise _api_error(f"terminate run {self.engine_run_id!r}", err) from err
