"""Submit and track against a real Airflow 3 started here: api-server, scheduler and dag-processor on 127.0.0.1
(SQLite, LocalExecutor, low parallelism, simple auth manager with a password), stopped by process group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.compiler.loader import load_pipeline
from pipecast.errors import SubmitError
from pipecast.flow import track
from pipecast.runs.client import Client
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.targets.airflow.rest import AirflowApi
from pipecast.targets.airflow.submit import deploy_and_wait, submit
from pipecast.targets.base import Bundle, SubmitRequest
from pipecast.targets.registry import get_target
from tests.helpers.cases import ROOT, compile_case
from tests.helpers.replay import assert_same_outputs
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.support import (
    VENV_BIN,
    DroppingProxy,
    airflow_env,
    free_port,
    fresh_home,
    running_components,
    server_components,
    server_settings,
    tail_logs,
)

PASSWORD = "pipecast-test-password"
PIPELINES = Path(__file__).parent / "pipelines.py"


@pytest.fixture(scope="module")
@slow_fixture
def server(migrated_db, tmp_path_factory):
    """A running Airflow 3; yields its URL, DAGs folder and the environment its components run with."""
    home = fresh_home(tmp_path_factory.mktemp("airflow-home"), migrated_db())
    dags = home / "dags"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = airflow_env(home, dags, **server_settings(home, port, PASSWORD))
    logs = home / "logs-components"
    with running_components(VENV_BIN / "airflow", server_components(port), env, logs,
                            f"{base_url}/api/v2/monitor/health", 150):
        yield {"base_url": base_url, "dags": dags, "env": env, "home": home, "logs": logs}


def _processes_with(text: str) -> list[str]:
    """Command lines of this machine's processes that mention ``text`` (a run id)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "pipecast.runtime" in words and any(text in w for w in words):
            found.append(" ".join(words))
    return found


@pytest.fixture
def credentials(monkeypatch):
    """Credentials come from the environment, as a user's would."""
    monkeypatch.setenv("AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("AIRFLOW_PASSWORD", PASSWORD)


def test_submit_runs_the_quickstart_and_records_its_url(server, credentials, tmp_path):
    artifacts = tmp_path / "artifacts"
    quickstart = load_pipeline(str(ROOT / "examples" / "quickstart.py"))
    handle = quickstart.submit(target="airflow", parameters={"n": 12, "label": "submitted"},
                               settings={"artifact_root": f"file://{artifacts}"},
                               dags_folder=str(server["dags"]), base_url=server["base_url"], unpause=True,
                               parse_timeout=150)
    assert handle.engine_run_id == handle.run_id  # pipecast's run id is the dag_run_id
    assert handle.url == f"{server['base_url']}/dags/quickstart/runs/{urllib.parse.quote(handle.engine_run_id)}"
    status = handle.wait(timeout=240)
    assert status is RunStatus.SUCCEEDED, (handle.detail, tail_logs(server["logs"]))
    run = Client().get_pipeline_run(handle.run_id)
    assert run.status == "succeeded" and run.target == "airflow"
    assert run.run_metadata["orchestrator_url"] == handle.url
    assert run.run_metadata["dag_id"] == "quickstart" and run.engine_run_id == handle.engine_run_id
    with urllib.request.urlopen(handle.url, timeout=30) as page:  # the UI serves the run's page
        assert page.status == 200
    store = Path(RunStore.default().path)
    assert PASSWORD.encode() not in b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))
    pipeline = quickstart.build()
    values = {**{p.name: p.default for p in pipeline.parameters}, "n": 12, "label": "submitted"}
    assert_same_outputs(pipeline, values, artifacts, handle.engine_run_id, tmp_path)
    # Another process reconnects from the run store alone (pipecast runs wait).
    again = track(handle.run_id, {})
    assert again.status() is RunStatus.SUCCEEDED and again.url == handle.url


def test_a_lost_answer_to_the_trigger_does_not_lose_the_run(server, credentials, tmp_path):
    """The real api-server behind a proxy that drops its answer to the first trigger (after Airflow created the
    run): submit tries again, Airflow answers 409 for the run id it already has, and the one run succeeds."""
    artifacts = tmp_path / "artifacts"
    upstream = urllib.parse.urlsplit(server["base_url"])
    quickstart = load_pipeline(str(ROOT / "examples" / "quickstart.py"))
    api = AirflowApi.from_config({"base_url": server["base_url"]})
    before = _run_count(api)
    trigger = r"POST /api/v2/dags/[^/ ]+/dagRuns HTTP/"
    with DroppingProxy((upstream.hostname or "", upstream.port or 0), trigger) as proxy:
        handle = quickstart.submit(target="airflow", parameters={"n": 6},
                                   settings={"artifact_root": f"file://{artifacts}"}, dags_folder=str(server["dags"]),
                                   base_url=server["base_url"], api_url=proxy.url, unpause=True, parse_timeout=150)
        assert proxy.dropped.is_set()  # Airflow answered the first trigger, and pipecast never saw the answer
    assert handle.wait(timeout=240) is RunStatus.SUCCEEDED, (handle.detail, tail_logs(server["logs"]))
    assert Client().get_pipeline_run(handle.run_id).status == "succeeded"
    assert _run_count(api) == before + 1  # two triggers, one run
    values = {**{p.name: p.default for p in quickstart.build().parameters}, "n": 6}
    assert_same_outputs(quickstart.build(), values, artifacts, handle.engine_run_id, tmp_path)


def _run_count(api: AirflowApi) -> int:
    answer = api.request("GET", "/dags/quickstart/dagRuns", query={"limit": 1}, accept=(404,))
    return int(answer.body["total_entries"]) if answer.status == 200 else 0


def test_a_failing_step_fails_the_run_and_names_the_task(server, credentials, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(VENV_BIN / "pipecast"), "submit", f"{PIPELINES}:failing", "--target", "airflow", "-p", "n=3",
         "--set", f"artifact_root=file://{tmp_path}", "-c", f"dags_folder=file://{server['dags']}",
         "-c", f"base_url={server['base_url']}", "-c", "unpause=true", "-c", "parse_timeout=150",
         "--wait", "--timeout", "240"],
        env=env, capture_output=True, text=True, timeout=420)
    assert result.returncode == 1, (result.stdout, result.stderr, tail_logs(server["logs"]))
    assert "failed: task 'fail_always' failed" in result.stdout
    run = Client().get_pipeline_run("failing")
    assert run.status == "failed" and "fail_always" in (run.detail or "")
    assert run.run_metadata["orchestrator_url"].startswith(f"{server['base_url']}/dags/failing/runs/")


def test_wrong_password_is_refused_with_the_fix(server, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("AIRFLOW_PASSWORD", "wrong")
    dags = tmp_path / "dags"
    dags.mkdir()
    with pytest.raises(SubmitError, match="refused the login of user 'admin'"):
        load_pipeline(f"{PIPELINES}:failing").submit(target="airflow", dags_folder=str(dags),
                                                    base_url=server["base_url"])
    assert list(dags.iterdir()) == []  # nothing deployed


def test_an_import_error_is_reported_with_airflows_traceback(server, credentials):
    pipeline = load_pipeline(f"{PIPELINES}:failing").build()
    source = "from airflow.sdk import DAG\nraise RuntimeError('boom at import')\n"
    broken = Bundle("airflow", (("broken_dag.py", source),))
    config = {"dags_folder": str(server["dags"]), "base_url": server["base_url"], "parse_timeout": 120}
    request = SubmitRequest(get_target("airflow"), pipeline, broken, {}, config, "broken-run")
    with pytest.raises(SubmitError, match=r"(?s)Airflow could not import 'broken_dag\.py'.*boom at import"):
        submit(request)


def test_cancel_stops_a_running_run(server, credentials, tmp_path):
    handle = load_pipeline(f"{PIPELINES}:slow").submit(
        target="airflow", settings={"artifact_root": f"file://{tmp_path}"}, dags_folder=str(server["dags"]),
        base_url=server["base_url"], unpause=True, parse_timeout=150)
    deadline = time.monotonic() + 180
    while handle.status() is not RunStatus.RUNNING or not _processes_with(handle.engine_run_id):
        assert time.monotonic() < deadline, (handle.detail, tail_logs(server["logs"]))  # the step really runs
        time.sleep(2)
    handle.cancel()
    assert handle.status() is RunStatus.CANCELLED
    assert Client().get_pipeline_run(handle.run_id).status == "cancelled"
    answer = handle.api.get(f"/dags/slow/dagRuns/{handle.engine_run_id}/taskInstances").body
    assert [ti["state"] for ti in answer["task_instances"]] != ["running"]
    deadline = time.monotonic() + 90
    while _processes_with(handle.engine_run_id):  # Airflow stops the step's process, not just the record
        assert time.monotonic() < deadline, _processes_with(handle.engine_run_id)
        time.sleep(2)
    # Submitting a changed DAG file again: Airflow re-parses it and the new run uses the new file.
    again = load_pipeline(f"{PIPELINES}:slow").submit(
        target="airflow", settings={"artifact_root": f"file://{tmp_path}/second"}, dags_folder=str(server["dags"]),
        base_url=server["base_url"], parse_timeout=150)
    source = again.api.get("/dagSources/slow").body["content"]
    assert f"file://{tmp_path}/second" in source and source == (server["dags"] / "slow.dag.py").read_text()
    again.cancel()
    assert again.status() is RunStatus.CANCELLED


# `pipecast schedules` on this Airflow (pipecast/schedules/airflow.py): here to reuse the module's one server.
def _schedules_cli(*args):
    return CliRunner().invoke(main, ["schedules", *args])


def test_schedules_lists_a_scheduled_dag_and_delete_pauses_it(server, credentials):
    compiled = compile_case("airflow", "ml_training", golden=True)  # deployed, never run: no store needed
    api = AirflowApi.from_config({"base_url": server["base_url"]})
    deploy_and_wait(api, str(server["dags"]), compiled.bundle.files, 150)
    api.request("PATCH", "/dags/ml_training", {"is_paused": False})
    flags = ["-c", f"base_url={server['base_url']}"]
    listed = _schedules_cli("list", "-t", "airflow", *flags, "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = [r for r in json.loads(listed.output) if r["pipeline"] == "ml_training"]
    assert (row["schedule"], row["state"], row["id"]) == ("0 4 * * 1", "active", "ml_training")
    assert row["next_run"] and row["url"] == f"{server['base_url']}/dags/ml_training"
    deleted = _schedules_cli("delete", "ml_training", "-t", "airflow", *flags)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.output.startswith("paused DAG 'ml_training': Airflow keeps a DAG's schedule in its file")
    assert api.get("/dags/ml_training").body["is_paused"] is True
    (row,) = [r for r in json.loads(_schedules_cli("list", "-t", "airflow", *flags, "--json").output)
              if r["pipeline"] == "ml_training"]
    assert row["state"] == "paused"
    assert _schedules_cli("delete", "no_such_pipeline", "-t", "airflow", *flags).exit_code == 2


if __name__ == "__main__":  # pragma: no cover - run one server by hand: python test_submit.py
    sys.exit(pytest.main([__file__, "-x", "-q"]))
