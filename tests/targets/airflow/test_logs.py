"""``pipecast runs logs`` against a real Airflow 3 started here (as in ``test_submit.py``, but logging at INFO,
the level Airflow writes a task's output at): one run, followed while it runs, then read again task by task
through the REST API's task-instance log endpoint."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.compiler.loader import load_pipeline
from pipecast.runs.logs import run_logs
from pipecast.runs.status import RunStatus
from tests.helpers.cases import ROOT
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.support import (
    VENV_BIN,
    airflow_env,
    free_port,
    fresh_home,
    running_components,
    server_components,
    server_settings,
    tail_logs,
)

PASSWORD = "pipecast-logs-test-password"


@pytest.fixture(scope="module")
@slow_fixture
def server(migrated_db, tmp_path_factory):
    """A running Airflow 3 (api-server, scheduler, dag-processor; LocalExecutor, SQLite, a password)."""
    home = fresh_home(tmp_path_factory.mktemp("airflow-home"), migrated_db())
    dags = home / "dags"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = airflow_env(home, dags, **server_settings(home, port, PASSWORD),
                      AIRFLOW__LOGGING__LOGGING_LEVEL="INFO")  # a task's output is logged at INFO: WARNING keeps none
    logs = home / "logs-components"
    health = f"{base_url}/api/v2/monitor/health"
    with running_components(VENV_BIN / "airflow", server_components(port), env, logs, health, 150):
        yield {"base_url": base_url, "dags": dags, "logs": logs}


def test_follow_a_run_then_read_one_task_by_its_step_name(server, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("AIRFLOW_PASSWORD", PASSWORD)
    chatter = load_pipeline(f"{ROOT / 'tests' / 'unit' / 'logs_steps.py'}:chatter")
    handle = chatter.submit(target="airflow", parameters={"name": "airflow"},
                            settings={"artifact_root": f"file://{tmp_path}",
                                      # the test venv's Python, not whichever `python` a task's PATH finds
                                      "python": str(VENV_BIN / "python")}, dags_folder=str(server["dags"]),
                            base_url=server["base_url"], unpause=True, parse_timeout=150)
    followed = list(run_logs(handle.run_id, {}, follow=True, timeout=300))  # from the start to the run's end
    assert handle.status() is RunStatus.FAILED, (handle.detail, tail_logs(server["logs"]))
    headers = [line for line in followed if line.startswith("==> ")]
    assert headers == ["==> greet (try 1) <==", "==> explode (try 1) <=="], "\n".join(followed)
    greet = "\n".join(followed[1:followed.index(headers[1])])
    explode = followed[followed.index(headers[1]) + 1:]
    files = {str(f): f.read_text()[:2000] for f in (server["dags"].parent / "logs").glob("dag_id=chatter/*/*/*")}
    assert "hello airflow" in greet and "a warning" in greet, (followed, files)
    assert "pipecast: step 'greet' succeeded" in greet, greet
    assert "about to fail" in "\n".join(explode) and "no airflow here" in "\n".join(explode), explode
    # read to the end after the task failed; where Airflow read it from (file, log server) is not a log line
    assert "Task failed with exception" in explode, explode
    assert not any("attempt=1.log" in line or line.startswith("::") for line in followed), followed

    result = CliRunner().invoke(main, ["runs", "logs", handle.run_id, "--step", "explode"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == explode  # read afterwards, from the file: the same lines as followed
    result = CliRunner().invoke(main, ["runs", "logs", handle.run_id, "--step", "train"])
    assert result.exit_code == 2 and "has no step 'train'; its steps: 'explode', 'greet'" in result.output
