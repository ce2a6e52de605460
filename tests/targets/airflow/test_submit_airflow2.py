"""Submit and track against a real Airflow 2.10 started here (REST API v1): webserver and scheduler on 127.0.0.1
from the Airflow 2 virtualenv (SQLite, SequentialExecutor, the basic_auth API backend with a password),
stopped by process group. The client finds out by itself that it talks to Airflow 2."""

from __future__ import annotations

import json
import subprocess
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
from pipecast.targets.airflow.rest import AirflowApi
from pipecast.targets.airflow.submit import deploy_and_wait
from tests.helpers.cases import ROOT, compile_case, env_with_cases
from tests.helpers.replay import assert_same_outputs
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.airflow2_venv import airflow2_python
from tests.targets.airflow.support import (
    VENV_BIN,
    airflow,
    airflow_env,
    free_port,
    fresh_home,
    running_components,
    tail_logs,
)

PASSWORD = "pipecast-test-password"
PIPELINES = Path(__file__).parent / "pipelines.py"


@pytest.fixture(scope="module")
@slow_fixture
def server(migrated_db, tmp_path_factory):
    """A running Airflow 2.10; yields its URL, DAGs folder, the settings its tasks need, and its logs."""
    python = airflow2_python()
    home = fresh_home(tmp_path_factory.mktemp("airflow2-server"), migrated_db(python.parent))
    dags = home / "dags"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = airflow_env(
        home, dags, python.parent,
        AIRFLOW__API__AUTH_BACKENDS="airflow.api.auth.backend.basic_auth",
        AIRFLOW__WEBSERVER__BASE_URL=base_url,
        AIRFLOW__WEBSERVER__WEB_SERVER_HOST="127.0.0.1",
        AIRFLOW__WEBSERVER__WEB_SERVER_PORT=str(port),
        AIRFLOW__WEBSERVER__WORKERS="1",
        AIRFLOW__WEBSERVER__SECRET_KEY="pipecast-tests-secret-key",
        AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL="3",
        AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
    )
    airflow(["users", "create", "--username", "admin", "--password", PASSWORD, "--role", "Admin",
             "--firstname", "Pipe", "--lastname", "Cast", "--email", "admin@example.com"], env, bin_dir=python.parent)
    logs = home / "logs-components"
    components = [["webserver"], ["scheduler"]]
    with running_components(python.parent / "airflow", components, env, logs, f"{base_url}/health", 180):
        # The tasks run pipecast from this source tree with the Airflow 2 venv's Python.
        settings = {"airflow_version": 2, "python": str(python), "pythonpath": env_with_cases()["PYTHONPATH"],
                    "working_directory": str(ROOT)}
        yield {"base_url": base_url, "dags": dags, "settings": settings, "logs": logs}


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("AIRFLOW_PASSWORD", PASSWORD)


def test_submit_to_airflow_2_runs_the_quickstart_and_records_its_url(server, credentials, tmp_path):
    artifacts = tmp_path / "artifacts"
    quickstart = load_pipeline(str(ROOT / "examples" / "quickstart.py"))
    handle = quickstart.submit(target="airflow", parameters={"n": 12, "label": "airflow 2"},
                               settings={**server["settings"], "artifact_root": f"file://{artifacts}"},
                               dags_folder=str(server["dags"]), base_url=server["base_url"], unpause=True,
                               parse_timeout=150)
    assert handle.api.version == 1  # found out, not told
    assert handle.url == (f"{server['base_url']}/dags/quickstart/grid?dag_run_id="
                          f"{urllib.parse.quote(handle.engine_run_id, safe='')}")
    handle.poll_interval = 1.0
    assert handle.wait(timeout=300) is RunStatus.SUCCEEDED, (handle.detail, tail_logs(server["logs"]))
    run = Client().get_pipeline_run(handle.run_id)
    assert run.status == "succeeded" and run.run_metadata["orchestrator_url"] == handle.url
    assert run.run_metadata["airflow_api_version"] == 1
    pipeline = quickstart.build()
    values = {**{p.name: p.default for p in pipeline.parameters}, "n": 12, "label": "airflow 2"}
    assert_same_outputs(pipeline, values, artifacts, handle.engine_run_id, tmp_path)
    again = track(handle.run_id, {})  # as `pipecast runs wait` does
    assert again.status() is RunStatus.SUCCEEDED and again.url == handle.url


def test_a_failing_step_on_airflow_2_names_the_task_through_the_cli(server, credentials, tmp_path):
    args = [str(VENV_BIN / "pipecast"), "submit", f"{PIPELINES}:failing", "--target", "airflow", "-p", "n=3",
            "--set", f"artifact_root=file://{tmp_path}", "-c", f"dags_folder={server['dags']}",
            "-c", f"base_url={server['base_url']}", "-c", "unpause=true", "-c", "parse_timeout=150",
            "-c", "api_version=1", "--wait", "--timeout", "300"]
    for key, value in server["settings"].items():
        args += ["--set", f"{key}={value}"]
    result = subprocess.run(args, env=env_with_cases(), capture_output=True, text=True, timeout=480)
    assert result.returncode == 1, (result.stdout, result.stderr, tail_logs(server["logs"]))
    assert "failed: task 'fail_always' failed" in result.stdout
    assert Client().get_pipeline_run("failing").status == "failed"


def test_cancel_on_airflow_2_ends_the_run_cancelled(server, credentials, tmp_path):
    handle = load_pipeline(f"{PIPELINES}:slow").submit(
        target="airflow", settings={**server["settings"], "artifact_root": f"file://{tmp_path}"},
        dags_folder=str(server["dags"]), base_url=server["base_url"], unpause=True, parse_timeout=150)
    deadline = time.monotonic() + 180
    while handle.status() is not RunStatus.RUNNING:
        assert time.monotonic() < deadline, (handle.detail, tail_logs(server["logs"]))
        time.sleep(1)
    handle.cancel()
    assert handle.status() is RunStatus.CANCELLED
    run = handle.api.get(f"/dags/slow/dagRuns/{urllib.parse.quote(handle.engine_run_id, safe='')}").body
    assert (run["state"], run["note"]) == ("failed", "cancelled by pipecast")
    assert Client().get_pipeline_run(handle.run_id).status == "cancelled"


def test_a_wrong_password_on_airflow_2_names_the_fix(server, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("AIRFLOW_PASSWORD", "wrong")
    dags = tmp_path / "dags"
    dags.mkdir()
    with pytest.raises(SubmitError, match=r"HTTP 401 .*basic_auth"):
        load_pipeline(f"{PIPELINES}:failing").submit(target="airflow", settings=server["settings"],
                                                    dags_folder=str(dags), base_url=server["base_url"])
    assert list(dags.iterdir()) == []  # nothing deployed


def test_schedules_lists_a_scheduled_dag_on_airflow_2_and_delete_pauses_it(server, credentials):
    """`pipecast schedules` through the v1 API: ``schedule_interval`` and ``next_dagrun_create_after``."""
    compiled = compile_case("airflow", "ml_training", settings={"airflow_version": 2}, golden=True)  # never run
    api = AirflowApi.from_config({"base_url": server["base_url"]})
    deploy_and_wait(api, str(server["dags"]), compiled.bundle.files, 150)
    api.request("PATCH", "/dags/ml_training", {"is_paused": False})
    flags = ["-c", f"base_url={server['base_url']}"]
    listed = CliRunner().invoke(main, ["schedules", "list", "-t", "airflow", *flags, "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = [r for r in json.loads(listed.output) if r["pipeline"] == "ml_training"]
    assert (row["schedule"], row["state"]) == ("0 4 * * 1", "active")
    assert row["next_run"] and row["url"] == f"{server['base_url']}/dags/ml_training/grid"
    deleted = CliRunner().invoke(main, ["schedules", "delete", "ml_training", "-t", "airflow", *flags])
    assert deleted.exit_code == 0, deleted.output
    assert api.get("/dags/ml_training").body["is_paused"] is True
