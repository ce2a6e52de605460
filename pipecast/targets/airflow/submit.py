"""Submitting a DAG file to Airflow and tracking its runs (REST API v2 on Airflow 3, v1 on Airflow 2).

:func:`submit` checks that Airflow answers, writes ``<dag_id>.dag.py`` (and the code folder beside it) into
the deployment's DAGs folder (a local path, or an fsspec URI such as ``gs://...`` for Cloud Composer or
``s3://...`` for MWAA), waits until Airflow has parsed that file (bounded by ``parse_timeout``), unpauses the DAG
if asked, triggers a run with the given parameters and returns an :class:`AirflowRun`. The framework records the
run; what identifies it (the DAG id, the run id, the URLs) is noted before the trigger, whose answer may be lost.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.targets import versions
from pipecast.targets.airflow.lowering import DAG_FILE_SUFFIX
from pipecast.targets.airflow.rest import AirflowApi, config_value, quote_segment
from pipecast.targets.airflow.settings import DEFAULT_PARSE_TIMEOUT, AirflowConnection
from pipecast.targets.base import SubmitRequest
from pipecast.targets.settings import Duration

CANCEL_NOTE = "cancelled by pipecast"
_STATES = {
    "queued": RunStatus.PENDING,
    "running": RunStatus.RUNNING,
    "success": RunStatus.SUCCEEDED,
    "failed": RunStatus.FAILED,
}


class AirflowRun(EngineRun):
    """A DAG run: ``engine_run_id`` is Airflow's ``dag_run_id``, ``url`` its page in the Airflow UI."""

    def __init__(self, api: AirflowApi, *, run_id: str, dag_id: str, dag_run_id: str) -> None:
        super().__init__(run_id=run_id, target="airflow", engine_run_id=dag_run_id,
                         url=api.run_url(dag_id, dag_run_id),
                         metadata={"dag_id": dag_id, "airflow_base_url": api.base_url, "airflow_api_url": api.root,
                                   "airflow_api_version": api.version, **_access(api)})
        self.api = api
        self.dag_id = dag_id

    @property
    def _path(self) -> str:
        return f"/dags/{quote_segment(self.dag_id)}/dagRuns/{quote_segment(self.engine_run_id)}"

    def fetch_status(self) -> RunStatus:
        """Ask Airflow for the run's state; ``detail`` names failed tasks, a paused DAG or pipecast's cancel."""
        run = self.api.get(self._path).body
        state = run.get("state") if isinstance(run, dict) else None
        status = _STATES.get(str(state), RunStatus.UNKNOWN)
        self.detail = ""
        if status is RunStatus.FAILED and run.get("note") == CANCEL_NOTE:
            self.detail = CANCEL_NOTE
            return RunStatus.CANCELLED
        if status is RunStatus.FAILED:
            self.detail = self._failed_tasks()
        elif status is RunStatus.PENDING:
            dag = self.api.get(f"/dags/{quote_segment(self.dag_id)}").body
            if isinstance(dag, dict) and dag.get("is_paused"):
                self.detail = (f"DAG {self.dag_id!r} is paused: the run starts when it is unpaused "
                               "(in the UI, or submit with -c unpause=true)")
        return status

    def _failed_tasks(self) -> str:
        answer = self.api.get(f"{self._path}/taskInstances", state=["failed", "upstream_failed"], limit=100).body
        instances = answer.get("task_instances", []) if isinstance(answer, dict) else []
        failed = sorted(i["task_id"] for i in instances if i.get("state") == "failed")
        blocked = sorted(i["task_id"] for i in instances if i.get("state") == "upstream_failed")
        if not failed:
            return "the DAG run failed"
        text = f"task{'s' if len(failed) > 1 else ''} {', '.join(map(repr, failed))} failed"
        return text + (f"; not run: {', '.join(map(repr, blocked))}" if blocked else "")

    def cancel(self) -> None:
        """Mark the run failed (Airflow stops its running tasks) with a note that says it was cancelled."""
        if self.api.version == 1:  # v1 sets the note on its own endpoint, first so no poll misses it
            self.api.request("PATCH", f"{self._path}/setNote", {"note": CANCEL_NOTE})
            self.api.request("PATCH", self._path, {"state": "failed"})
        else:
            self.api.request("PATCH", self._path, {"state": "failed", "note": CANCEL_NOTE})
        self.detail = CANCEL_NOTE

    def logs(self, step: str | None = None, follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """The run's task logs, try by try (:mod:`pipecast.targets.airflow.logs`)."""
        from pipecast.targets.airflow.logs import task_logs

        return task_logs(self, step, follow, timeout)


def _access(api: AirflowApi) -> dict[str, Any]:
    """How the run's API is reached, for ``pipecast runs wait``: the auth mode and MWAA's environment (no secret)."""
    if api.mwaa is not None:
        client = api.mwaa.client
        found = {"airflow_auth": "mwaa", "mwaa_environment": api.mwaa.environment,
                 "mwaa_region": client.meta.region_name, "mwaa_endpoint_url": api.mwaa.endpoint_url}
        return {key: value for key, value in found.items() if value is not None}
    return {"airflow_auth": "composer"} if api.google is not None else {}


def submit(request: SubmitRequest) -> AirflowRun:
    """Deploy the bundle's DAG file, wait until Airflow has parsed it, trigger a run."""
    config = request.config
    known = AirflowConnection.spec()
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise SubmitError(f"unknown Airflow config key(s) {unknown!r}; known: {sorted(known)!r}")
    api = AirflowApi.from_config(config)
    folder = config.get("dags_folder") or os.environ.get("PIPECAST_AIRFLOW_DAGS_FOLDER")
    if not folder:
        raise SubmitError("no DAGs folder: pass -c dags_folder=PATH_OR_URI (the folder Airflow reads DAG files from, "
                          "e.g. gs://BUCKET/dags for Cloud Composer or s3://BUCKET/dags for MWAA)")
    parse_timeout = config_value(config, "parse_timeout", Duration, DEFAULT_PARSE_TIMEOUT)
    unpause = config_value(config, "unpause", bool, False)
    file_name = request.bundle.main_file
    dag_id = file_name.removesuffix(DAG_FILE_SUFFIX)
    dag = deploy_and_wait(api, str(folder), request.bundle.files, parse_timeout)
    if unpause and dag.get("is_paused"):
        api.request("PATCH", f"/dags/{quote_segment(dag_id)}", {"is_paused": False})
    run = AirflowRun(api, run_id=request.run_id, dag_id=dag_id, dag_run_id=request.run_id)
    # Noted before the trigger: if its answer is lost, `pipecast runs wait` still finds the run by these ids.
    request.note(engine_run_id=run.engine_run_id, url=run.url, **run.metadata)
    trigger(api, dag_id, request.run_id, request.parameters)
    return run


def trigger(api: AirflowApi, dag_id: str, run_id: str, parameters: Mapping[str, Any]) -> None:
    """Create DAG run ``run_id`` with ``parameters`` as its conf; an earlier try that created it counts."""
    runs = f"/dags/{quote_segment(dag_id)}/dagRuns"
    body: dict[str, Any] = {"dag_run_id": run_id, "conf": dict(parameters)}
    if api.version == 2:
        body["logical_date"] = None  # Airflow 3: a run with no logical date, as a manual trigger in the UI
    try:
        # Idempotent: the run id is fixed, so a try whose answer was lost makes the next one answer 409.
        answer = api.request("POST", runs, body, accept=(409,))
    except SubmitOutcomeUnknownError as err:
        raise SubmitOutcomeUnknownError(f"{err}. The run may have been created all the same: `pipecast runs wait "
                                        f"{run_id}` asks Airflow for run {run_id!r} of DAG {dag_id!r}") from None
    if answer.status == 409:  # the run exists: created by an earlier try whose answer was lost
        api.get(f"{runs}/{quote_segment(run_id)}")


def deploy_and_wait(api: AirflowApi, folder: str, files: Sequence[tuple[str, str]],
                    timeout: float) -> dict[str, Any]:
    """Write the bundle once Airflow answers, ask for a re-parse if Airflow knows the DAG, wait until it is loaded."""
    file_name, text = files[0]
    dag_id = file_name.removesuffix(DAG_FILE_SUFFIX)
    versions.check_airflow(api)  # reachable and recent enough (GET .../version), before anything is written
    _check_written_for(api, file_name, text)
    before = api.request("GET", f"/dags/{quote_segment(dag_id)}", accept=(404,))
    # Parses that finish after this instant (the server's clock, rounded up to the next second) saw our file.
    since = (before.server_time or time.time()) + 1.0
    deploy(folder, files)
    if before.status == 200 and before.body.get("file_token"):
        # Known file: ask for a parse now instead of waiting for the next periodic one.
        api.request("PUT", f"/parseDagFile/{before.body['file_token']}", accept=(400, 403, 404, 409))
    return wait_until_parsed(api, dag_id, file_name, text, since, timeout, folder)


def _check_written_for(api: AirflowApi, file_name: str, text: str) -> None:
    """Refuse a DAG file written for the other Airflow major version: it would only fail to import there."""
    # The templates' own imports: Airflow 3's DAG comes from the SDK, Airflow 2.10's from airflow.models.dag.
    marks = {3: re.search(r"^from airflow\.sdk import ", text, re.M),
             2: re.search(r"^from airflow\.models\.dag import DAG$", text, re.M)}
    written_for = next((version for version, found in marks.items() if found), None)
    runs = 3 if api.version == 2 else 2
    if written_for is not None and written_for != runs:
        raise SubmitError(f"{file_name!r} was written for Airflow {written_for}, but Airflow at {api.root!r} is "
                          f"Airflow {runs} (REST API v{api.version}): it would not import there; compile with "
                          f"--set airflow_version={runs}. Nothing was written")


def deploy(folder: str, files: Sequence[tuple[str, str]]) -> str:
    """Write the bundle into ``folder``; return where the DAG file went.

    The code beside the DAG goes first (replacing what an earlier compile left there), the DAG file last and
    atomically on a local disk, so no task of it runs without its code.
    """
    (file_name, text), code = files[0], files[1:]
    folders = sorted({path.split("/", 1)[0] for path, _ in code})
    if "://" not in folder or folder.startswith("file://"):
        directory = os.path.expanduser(folder.removeprefix("file://"))
        if not os.path.isdir(directory):
            raise SubmitError(f"DAGs folder {folder!r} does not exist; pass the folder Airflow reads DAG files from")
        for name in folders:
            _replace_folder(directory, name, [(path.split("/", 1)[1], data) for path, data in code
                                              if path.startswith(f"{name}/")])
        destination = os.path.join(directory, file_name)
        # Not ending in .py, so Airflow never parses the half-written file.
        staging = os.path.join(directory, f".{file_name}.pipecast-tmp")
        with open(staging, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(staging, destination)
        return destination
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(folder)
        root = root.rstrip("/")
        for name in folders:
            if fs.exists(posixpath.join(root, name)):
                fs.rm(posixpath.join(root, name), recursive=True)
        fs.pipe({posixpath.join(root, path): data.encode("utf-8") for path, data in code})
        fs.pipe_file(posixpath.join(root, file_name), text.encode("utf-8"))
    except (ImportError, ValueError, OSError) as err:
        raise SubmitError(f"cannot write {file_name!r} to DAGs folder {folder!r}: {err}; check the URI, that its "
                          "fsspec filesystem is installed (gcsfs, s3fs...) and your cloud credentials") from err
    return f"{folder.rstrip('/')}/{file_name}"


def _replace_folder(directory: str, name: str, files: list[tuple[str, str]]) -> None:
    """Make ``directory/name`` hold exactly ``files``: written beside it, then swapped in."""
    staging = os.path.join(directory, f".{name}.pipecast-tmp")
    old = os.path.join(directory, f".{name}.pipecast-old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    for relative, data in files:
        path = os.path.join(staging, *relative.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(data)
    target = os.path.join(directory, name)
    if os.path.exists(target):
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def wait_until_parsed(api: AirflowApi, dag_id: str, file_name: str, text: str, since: float, timeout: float,
                      folder: str) -> dict[str, Any]:
    """Poll until Airflow has loaded the file as written (or reported an import error for it)."""
    deadline = time.monotonic() + timeout
    while True:
        # v1 (Airflow 2) has no filename filter and refuses unknown query parameters: newest first instead.
        query = {"filename_pattern": file_name} if api.version == 2 else {"order_by": "-timestamp"}
        errors = api.get("/importErrors", limit=100, **query).body
        for error in (errors or {}).get("import_errors", []):
            ours = posixpath.basename(str(error.get("filename", ""))) == file_name
            if ours and _time(error.get("timestamp")) >= since:
                raise SubmitError(f"Airflow could not import {file_name!r}:\n{error.get('stack_trace', '')}")
        answer = api.request("GET", f"/dags/{quote_segment(dag_id)}", accept=(404,))
        if answer.status == 200 and _loaded(api, answer.body, dag_id, text, since):
            return dict(answer.body)
        if time.monotonic() >= deadline:
            raise SubmitError(
                f"Airflow did not load DAG {dag_id!r} from {folder!r} within {timeout:g}s; check that its "
                "dag-processor is running and reads that folder ([core] dags_folder), how often it looks for new "
                "files ([dag_processor] refresh_interval, 300 s by default), or raise -c parse_timeout=SECONDS"
            )
        time.sleep(1.0)


def _loaded(api: AirflowApi, dag: Mapping[str, Any], dag_id: str, text: str, since: float) -> bool:
    if _time(dag.get("last_parsed_time")) >= since:
        return True
    # Airflow 3 serves a DAG's source by DAG id, Airflow 2 by the DAG's file token.
    key = dag_id if api.version == 2 else str(dag.get("file_token", ""))
    source = api.request("GET", f"/dagSources/{quote_segment(key)}", accept=(404,)).body
    return isinstance(source, dict) and source.get("content") == text


def _time(value: Any) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("-inf")


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> AirflowRun:
    """The recorded run as Airflow knows it, from its stored DAG id and URLs (credentials from config or env)."""
    meta = record.get("metadata") or {}
    if "dag_id" not in meta:
        raise SubmitError(f"run {record['id']!r} has no Airflow DAG id recorded; it was not submitted by pipecast")
    settings = {"base_url": meta.get("airflow_base_url"), "api_url": meta.get("airflow_api_url"),
                "api_version": meta.get("airflow_api_version"), "auth": meta.get("airflow_auth"),
                "environment": meta.get("mwaa_environment"), "region": meta.get("mwaa_region"),
                "endpoint_url": meta.get("mwaa_endpoint_url"), **config}
    if settings.get("auth") == "mwaa":  # the API root and version come from MWAA's GetEnvironment
        settings.pop("api_url", None)
    api = AirflowApi.from_config(settings)
    return AirflowRun(api, run_id=str(record["id"]), dag_id=str(meta["dag_id"]),
                      dag_run_id=str(record["engine_run_id"]))
