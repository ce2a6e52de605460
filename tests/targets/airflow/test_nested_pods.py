"""Pods with a nested map on Airflow (``pipecast/targets/airflow/nested.py``, ``pod_flow.py``): goldens for Airflow 3
and 2.10, both DagBags load them (KubernetesPodOperators expanded over the flat pairs, in a mapped task group, over
the rows, after the maps, as teardowns), and the pods' commands, rendered by Airflow per instance and run here as
the kubelet would (``in_airflow_flow_replay.py``), store what ``pipecast run`` stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case
from tests.targets.airflow.airflow2_venv import airflow2_python
from tests.targets.airflow.nested_pod_pipelines import nested_pod_handlers, nested_pods
from tests.targets.airflow.support import probe
from tests.targets.airflow.test_control_flow_dags_test import instances
from tests.targets.airflow.test_control_flow_emit import _replay

GOLDEN = Path(__file__).parent / "data" / "golden_nested_pods"
SETTINGS = {"artifact_root": "s3://pipecast-golden/artifacts", "ship_code": False}
BUILDS = {"nested_pods": nested_pods.build, "nested_pod_handlers": nested_pod_handlers.build}
# A word the kubelet would expand ($(PIPECAST_AIRFLOW_SPEC) is defined before the flat lists in a pod's env: an
# unescaped one would break their JSON), a template, a shell or Jinja would misread.
HOSTILE = ["a", "it's $(PIPECAST_AIRFLOW_SPEC) $(HOME) $$ {{ ds }} {% raw %} \"q\" `id` ${HOME}"]


def dag_text(name: str, version: int) -> str:
    bundle = compile_case("airflow", BUILDS[name](), settings={**SETTINGS, "airflow_version": version}).bundle
    return bundle.files[0][1]


@pytest.mark.parametrize("version", [3, 2])
@pytest.mark.parametrize("name", sorted(BUILDS))
def test_nested_pod_goldens(name, version, request):
    text = dag_text(name, version)
    golden = GOLDEN / f"{name}.airflow{version}.py.golden"
    if request.config.getoption("--update-goldens"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("version", [3, pytest.param(2, marks=pytest.mark.slow)])
def test_both_airflows_load_pods_in_and_collecting_a_nested_map(version, tmp_path):
    """Airflow's DagBag: the inner map's chained pods are one mapped task group over the flat pairs (each pod's
    map index from its label), a single pod of an inner map a KubernetesPodOperator expanded over them, a pod
    collecting the inner map one expanded over the rows, the handlers teardowns, mapped where they are in a map."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in BUILDS:
        (dags / f"{name}.dag.py").write_text(dag_text(name, version), encoding="utf-8")
    result = probe(dags, tmp_path / "home") if version == 3 else \
        probe(dags, tmp_path / "home", python=airflow2_python())
    assert result["import_errors"] == {}
    for dag_id, dag in result["dags"].items():
        assert dag["serialization_error"] is None, (dag_id, dag["serialization_error"])
    pods = result["dags"]["nested_pods"]["tasks"]
    for name in ("invert", "halve"):
        assert pods[name]["type"] == "KubernetesPodOperator"
        assert pods[name]["mapped_task_group"]["group_id"] == "map_2_group", pods[name]
        assert "map_2_items" in pods[name]["mapped_task_group"]["expand_input"]
    for name, publisher in (("pair", "map_3_items"), ("row_sum", "map_1_items"), ("spread", "map_1_items")):
        assert "MappedOperator" in pods[name]["type"] and "mapped_task_group" not in pods[name], pods[name]
        assert publisher in pods[name]["expand_input"]["arguments"], pods[name]
    assert pods["row_sum"]["upstream"] == ["halve", "map_1_items", "map_2_items"]
    assert pods["row_sum"]["trigger_rule"] == "none_failed"
    assert pods["gather"]["type"] == "KubernetesPodOperator"
    assert set(pods["gather"]["upstream"]) == {"halve", "row_sum", "pair", "map_2_items", "map_3_items"}
    handlers = result["dags"]["nested_pod_handlers"]["tasks"]
    for name in ("row_report", "summary", "summary_2", "alert", "celebrate"):
        assert handlers[name]["is_teardown"], handlers[name]
    for name, publisher in (("summary", "map_3_items"), ("row_report", "map_1_items")):
        assert "MappedOperator" in handlers[name]["type"] and publisher in handlers[name]["expand_input"]["arguments"]


def _local(pipeline_ir, conf: dict, tmp_path: Path) -> dict:
    local = run_pipeline(pipeline_ir, conf, artifact_root=f"file://{tmp_path / 'local'}", cache=False,
                         raise_on_failure=False, fail_fast=False)
    return instances(tmp_path / "local", pipeline_ir.name, local.id)


def _stored(pipeline_ir, tmp_path: Path) -> dict:
    (run_folder,) = (tmp_path / "store" / pipeline_ir.name / pipeline_ir.name / "runs").iterdir()
    return instances(tmp_path / "store" / pipeline_ir.name, pipeline_ir.name, run_folder.name)


@pytest.mark.slow
def test_pods_in_and_collecting_a_nested_map_replayed_as_airflow_runs_them_equal_pipecast_run(tmp_path):
    """``nested_pods`` replayed: Airflow 3.3 renders each pod (its pair as its argument, its map index, the map
    sizes and the inner publishers' flat lists in its environment, every ``$`` doubled) and the containers run
    here after the kubelet's ``$(VAR)`` expansion. Every instance's status and outputs equal ``pipecast run``'s,
    hostile words included, an empty row's fan-in ``[]``."""
    pipeline_ir = nested_pods.build()
    conf = {"rows": [[1, 2], [4], []], "words": HOSTILE}
    replayed = _replay(pipeline_ir, conf, tmp_path)
    assert replayed["states"] == {
        "map_1_items": ["success"], "map_2_items": ["success"], "invert": ["success"] * 3,
        "halve": ["success"] * 3, "row_sum": ["success"] * 3, "spread": ["success"] * 3,
        "map_3_items": ["success"], "pair": ["success"] * 6, "gather": ["success"]}
    assert [pair[:2] for pair in replayed["xcoms"]["map_3_items"]] == [[0, j] for j in range(4)] + [[1, 0], [1, 1]]
    here = _local(pipeline_ir, conf, tmp_path)
    assert _stored(pipeline_ir, tmp_path) == here
    rows, sums, shifted = json.loads(json.loads(here["gather"][1]["output"]))
    assert rows == [[0.5, 0.25], [0.125], []] and sums == [0.75, 0.125, 0.0]
    assert shifted == [["a11", HOSTILE[1] + "11", "a12", HOSTILE[1] + "12"], ["a14", HOSTILE[1] + "14"], []]


@pytest.mark.slow
def test_handlers_and_hooks_in_pods_with_a_nested_map_replayed_as_airflow_runs_them_equal_pipecast_run(tmp_path):
    """``nested_pod_handlers`` replayed: pair 0.1 fails; each teardown pod reads the pairs it covers from the flat
    lists Airflow rendered into its environment: row 0's report its row's failure and the value that ran, the
    handler around the maps and the on_failure hook every pair; on_success skips itself (exit 99)."""
    pipeline_ir = nested_pod_handlers.build()
    replayed = _replay(pipeline_ir, {}, tmp_path)
    assert replayed["states"] == {
        "map_1_items": ["success"], "map_2_items": ["success"], "invert": ["success", "failed", "success"],
        "row_report": ["success"] * 3, "map_3_items": ["success"], "halve": ["success"] * 3,
        "summary": ["success"] * 3, "summary_2": ["success"], "alert": ["success"], "celebrate": ["skipped"]}
    here = _local(pipeline_ir, {}, tmp_path)
    assert _stored(pipeline_ir, tmp_path) == {name: value for name, value in here.items() if value[0] != "skipped"}
    outputs = {name: json.loads(value[1]["output"]) for name, value in here.items() if value[0] == "succeeded"}
    assert [outputs[f"row_report[{i}]"] for i in range(3)] == [
        "failed: ['invert[0][1]'] [1.0]", "succeeded: [] [0.5]", "succeeded: [] []"]
    assert outputs["summary_2"] == outputs["alert"] == "failed: ['invert[0][1]']"
