"""Airflow really runs the emitted DAGs (``airflow dags test``, SQLite, a temporary AIRFLOW_HOME), in local mode,
and the outputs in the artifact store equal those of ``pipecast run`` with the same parameters."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.helpers.cases import ROOT, case, compile_case
from tests.helpers.replay import assert_same_outputs
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.support import VENV_BIN, airflow, airflow_env, fresh_home
from tests.targets.airflow.typed_pipelines import assert_asset_events, typed_assets

EVIL = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \\ {% raw %} {{workflow.name}} #x"


@pytest.fixture
@slow_fixture
def home(migrated_db, tmp_path_factory):
    """This test's AIRFLOW_HOME: a copy of the session's migrated SQLite database and an empty DAGs folder."""
    return fresh_home(tmp_path_factory.mktemp("airflow-home"), migrated_db())


def dags_test(home: Path, name: str, conf: dict, root: Path, *logical_date: str) -> str:
    """Compile case ``name`` in local mode, run it with ``airflow dags test`` (at ``logical_date`` if given);
    return the run id it used."""
    pipeline = case(name).build()
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}"}).bundle
    bundle.write(str(home / "dags"))
    result = airflow(["dags", "test", pipeline.name, *logical_date, "-c", json.dumps(conf)], airflow_env(home),
                     timeout=300)
    runs = list((root / pipeline.name / "runs").iterdir())
    assert len(runs) == 1, (runs, result.stdout[-3000:])
    failed = [line for line in result.stdout.splitlines() if "state=failed" in line or "Task failed" in line]
    assert not failed, result.stdout[-3000:]
    return runs[0].name


def test_quickstart_runs_under_airflow_with_a_non_default_parameter_and_an_old_logical_date(home, tmp_path):
    # Airflow creates no task for a logical date before the DAG's start_date and calls the run a success:
    # every task must run, whatever the date.
    params = {"n": 23, "label": "airflow"}
    run_id = dags_test(home, "quickstart", params, tmp_path / "artifacts", "2021-01-01")
    assert run_id.startswith("manual__")
    pipeline = case("quickstart").build()
    assert_same_outputs(pipeline, {**{p.name: p.default for p in pipeline.parameters}, **params},
                        tmp_path / "artifacts", run_id, tmp_path)
    # The DAG passes the run's logical date to every task: pipecast.context().logical_time, kept in meta.json.
    metas = sorted((tmp_path / "artifacts" / pipeline.name / "runs" / run_id).glob("*/meta.json"))
    assert len(metas) == len(pipeline.steps)
    for meta in metas:
        assert json.loads(meta.read_text())["logical_time"] == "2021-01-01T00:00:00+00:00", meta
    # Each task's XCom (BashOperator's return_value: the last line it printed) is its step's folder URI, so the
    # Airflow UI shows where the step's outputs are (read from Airflow's own database).
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        rows = db.execute("SELECT run_id, task_id, value FROM xcom WHERE dag_id = ? AND key = 'return_value'",
                          (pipeline.name,)).fetchall()
    # The run's folder is Airflow's run id with the characters unsafe in paths (":") made "_".
    assert {task: json.loads(value) for run, task, value in rows if run.replace(":", "_") == run_id} == {
        step.name: f"file://{tmp_path}/artifacts/{pipeline.name}/runs/{run_id}/{step.name}" for step in pipeline.steps}


def test_typed_outputs_are_airflow_assets_with_an_event_per_run(home, tmp_path):
    """Issue 17: each typed output of a step is an outlet of its task; after ``dags test`` Airflow's database
    holds the asset at its static URI and the run's event, whose extra names the step folder of this run."""
    root = tmp_path / "artifacts"
    pipeline = typed_assets.build()
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}"}).bundle
    bundle.write(str(home / "dags"))
    result = airflow(["dags", "test", pipeline.name], airflow_env(home), timeout=300)
    assert "state=failed" not in result.stdout and "Task failed" not in result.stdout, result.stdout[-3000:]
    (run,) = (root / pipeline.name / "runs").iterdir()
    assert_asset_events(home / "airflow.db", root, run.name, version=3)


def test_hostile_values_reach_the_steps_verbatim_through_airflow(home, tmp_path):
    params = {"text": EVIL + " $HOME \"$(id)\" '", "data": {"q'\"": "{{ 1 }} $(id) ${{ x }}", "n": [1, None]}}
    run_id = dags_test(home, "hostile", params, tmp_path / "artifacts")
    assert_same_outputs(case("hostile").build(), params, tmp_path / "artifacts", run_id, tmp_path)


def test_a_dag_copied_alone_with_its_code_folder_runs_with_no_setting(home, tmp_path):
    """Issue 13: the compiled DAG and the ``<dag_id>.code`` folder beside it, copied into a fresh DAGs folder, run
    under ``airflow dags test`` with no ``pythonpath`` setting and nothing of the user's on the worker's path."""
    artifacts, out, dags = tmp_path / "artifacts", tmp_path / "out", tmp_path / "dags"
    compiled = subprocess.run(
        [str(VENV_BIN / "pipecast"), "compile", str(ROOT / "examples" / "quickstart.py"), "--target", "airflow",
         "--out", str(out), "--set", f"artifact_root=file://{artifacts}", "--set", "dag_id=shipped_quickstart",
         "--set", "executor=local"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    assert "warning" not in compiled.stderr  # one machine (executor=local): a local root is right
    dags.mkdir()
    shutil.copy(out / "shipped_quickstart.dag.py", dags)
    shutil.copytree(out / "shipped_quickstart.code", dags / "shipped_quickstart.code")
    # The worker's own PYTHONPATH holds the DAGs folder (as Airflow's sys.path does), not the user's code: the DAG
    # file there is no module `quickstart` (its name cannot be imported), and without the DAG nothing finds one.
    env = {**airflow_env(home, dags), "PYTHONPATH": str(dags)}
    alone = subprocess.run([sys.executable, "-c", "import quickstart"], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert "No module named 'quickstart'" in alone.stderr
    params = {"n": 17, "label": "shipped"}
    result = subprocess.run([str(VENV_BIN / "airflow"), "dags", "test", "shipped_quickstart", "-c",
                             json.dumps(params)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    failed = [line for line in result.stdout.splitlines() if "state=failed" in line or "Task failed" in line]
    assert not failed, result.stdout[-3000:]
    (run,) = (artifacts / "quickstart" / "runs").iterdir()
    pipeline = case("quickstart").build()
    assert_same_outputs(pipeline, {**{p.name: p.default for p in pipeline.parameters}, **params}, artifacts,
                        run.name, tmp_path)
    # Airflow parsed the DAG file and none of the shipped modules (the code folder's .airflowignore).
    listed = airflow(["dags", "list", "-o", "json"], env).stdout
    files = {d["dag_id"]: d["fileloc"] for d in json.loads(listed[listed.index("[{"):])}
    assert files["shipped_quickstart"] == str(dags / "shipped_quickstart.dag.py")
    assert not [name for name, file in files.items() if ".code" in file]
    errors = airflow(["dags", "list-import-errors", "-o", "json"], env).stdout
    assert "shipped_quickstart" not in errors
