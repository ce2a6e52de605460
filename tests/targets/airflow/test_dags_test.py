"""Airflow really runs the emitted DAGs (``airflow dags test``, SQLite, a temporary AIRFLOW_HOME), in local mode,
and the outputs in the artifact store equal those of ``pipecast run`` with the same parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cases import case, compile_case
from tests.helpers.replay import assert_same_outputs
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.support import airflow, airflow_env

EVIL = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \\ {% raw %} {{workflow.name}} #x"


@pytest.fixture(scope="module")
@slow_fixture
def home(tmp_path_factory):
    """An AIRFLOW_HOME with a migrated SQLite database and an empty DAGs folder."""
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    airflow(["db", "migrate"], airflow_env(home))
    return home


def dags_test(home: Path, name: str, conf: dict, root: Path, *logical_date: str) -> str:
    """Compile case ``name`` in local mode, run it with ``airflow dags test`` (at ``logical_date`` if given);
    return the run id it used."""
    pipeline = case(name).build()
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}"}).bundle
    (home / "dags" / bundle.main_file).write_text(bundle.files[0][1], encoding="utf-8")
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


def test_hostile_values_reach_the_steps_verbatim_through_airflow(home, tmp_path):
    params = {"text": EVIL + " $HOME \"$(id)\" '", "data": {"q'\"": "{{ 1 }} $(id) ${{ x }}", "n": [1, None]}}
    run_id = dags_test(home, "hostile", params, tmp_path / "artifacts")
    assert_same_outputs(case("hostile").build(), params, tmp_path / "artifacts", run_id, tmp_path)
