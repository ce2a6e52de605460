"""Airflow 3 really runs a DAG whose map publishers fail (``airflow dags test``, SQLite): a single map whose zipped
lists differ in length (with an exit handler inside it) and a nested map whose inner zip differs at one row. The
publisher task records the map's steps failed as ``pipecast run`` fails them (the step as a whole, with the map's
error), so the exit handlers and the hooks read the same status: the handlers name the failed steps,
``on_failure`` runs and ``on_success`` does not, where before the handlers read the maps as not run and
``on_success`` ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecast.runtime import publish_airflow
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.publisher_fail_pipelines import publisher_fails
from tests.targets.airflow.support import airflow, airflow_env
from tests.targets.airflow.test_control_flow_dags_test import instances
from tests.targets.airflow.test_nested_dags_test import _dags_test


@pytest.fixture(scope="module")
@slow_fixture
def home(tmp_path_factory):
    """An AIRFLOW_HOME with a migrated SQLite database and an empty DAGs folder."""
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    airflow(["db", "migrate"], airflow_env(home))
    return home


def _record(root: Path, pipeline: str, run_id: str, step: str) -> dict:
    return json.loads((root / pipeline / "runs" / run_id / step / "meta.json").read_text())


def test_a_failed_publisher_records_the_maps_steps_failed_as_pipecast_run_does(home, tmp_path):
    pipeline = publisher_fails.build()
    root = tmp_path / "airflow-artifacts"
    compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}", "executor": "local",
                                                 "ship_code": False}).bundle.write(str(home / "dags"))
    done = _dags_test(pipeline.name, {}, airflow_env(home))
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "DagRun failed" in output, output[-3000:]
    (run,) = (root / pipeline.name / "runs").iterdir()
    under_airflow = instances(root, pipeline.name, run.name)
    defaults = {p.name: p.default for p in pipeline.parameters}
    local = run_pipeline(pipeline, defaults, artifact_root=f"file://{tmp_path / 'local'}", cache=False,
                         raise_on_failure=False, fail_fast=False)  # Airflow starts every task, as here
    here = instances(tmp_path / "local", pipeline.name, local.id)
    # pipecast run keeps a step that failed as a whole in its run store; the publisher writes it as a record.
    failed = {name: state.error for name, state in local.steps.items() if state.status == "failed"}
    assert set(failed) == {"pair", "double", "summary", "add"}  # summary: the handler inside the single map
    assert under_airflow == {**here, **{name: ("failed", {}) for name in failed}}
    assert {name: _record(root, pipeline.name, run.name, name)["error"] for name in failed} == failed
    # So the handlers and hooks read what pipecast run gives them: on_failure ran, on_success did not.
    assert "celebrate" not in under_airflow and local.steps["celebrate"].status == "skipped"
    assert json.loads(under_airflow["alert"][1]["output"]) == "failed: ['pair', 'double', 'summary', 'add']"
    assert json.loads(under_airflow["summary_3"][1]["output"]).startswith(
        "failed: ['pair', 'double', 'summary', 'add'] map 'map_1' (")
    assert json.loads(under_airflow["summary_2[1]"][1]["output"]).startswith("failed: ['add'] map 'map_3' (")


def test_the_publisher_records_only_the_steps_pipecast_run_fails_and_fails_its_task(tmp_path, capsys, monkeypatch):
    """The runtime alone (no Airflow): each publisher's spec lists its map's steps; a step whose upstream in the
    map failed is skipped (no record), as pipecast run skips it; the task exits 1 with the map's error."""
    text = compile_case("airflow", publisher_fails.build(), settings={"ship_code": False}).bundle.files[0][1]
    table = json.loads(text[text.index('r"""') + 4:text.index('""")')])
    params = {"letters": ["a"], "numbers": [1, 2], "rows": [[1]], "biases": [[0, 1]]}
    for task, failed in (("map_1_items", {"pair", "double", "summary"}), ("map_3_items", {"pair", "double", "summary",
                                                                                        "add"})):
        spec = {**table[task]["spec"], "root": f"file://{tmp_path}"}
        payload = {"action": "items", "spec": spec, "run_id": "r1", "params": params, "max_map_length": 1024}
        assert publish_airflow.main(json.dumps(payload)) == 1
        assert "zips lists of different lengths" in capsys.readouterr().err
        records = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "publisher_fails" / "runs" / "r1")
                   .glob("*/meta.json")}
        assert set(records) == failed and {r["status"] for r in records.values()} == {"failed"}
    # Run again (a task cleared in Airflow's UI: Airflow exports try 2) with lists that zip: its records are gone.
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", "2")
    spec = {**table["map_1_items"]["spec"], "root": f"file://{tmp_path}"}
    payload = {"action": "items", "spec": spec, "run_id": "r1", "params": {**params, "numbers": [1]}}
    assert publish_airflow.main(json.dumps(payload)) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == [["a", 1]]
    assert sorted(p.parent.name for p in (tmp_path / "publisher_fails" / "runs" / "r1").glob("*/meta.json")) == ["add"]
