"""Control flow on Airflow: goldens of each construct (Airflow 3 and 2.10), loaded by both Airflows' DagBag with
the tasks, mapping, trigger rules, teardowns and bounds that Airflow itself reports; what is not lowered is one
clear error; the runtime's publisher keeps Airflow's ``max_map_length``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecast import ParallelFor, pipeline, step
from pipecast.errors import PipecastError
from pipecast.runtime import publish_airflow
from pipecast.runtime.params import decode_constant
from tests.helpers.cases import case, compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.airflow2_venv import airflow2_python
from tests.targets.airflow.flow_pipelines import flow_constructs, letters, pair
from tests.targets.airflow.flow_pod_pipelines import flow_secrets
from tests.targets.airflow.support import probe
from tests.targets.airflow.typed_pipelines import typed_in_map

GOLDEN = Path(__file__).parent / "data" / "golden_flow"
SETTINGS = {"artifact_root": "s3://pipecast-golden/artifacts", "ship_code": False}
BUILDS = {"hyperparameter_search": lambda: case("hyperparameter_search").build(),
          "flow_constructs": flow_constructs.build, "typed_in_map": typed_in_map.build,
          "flow_secrets": flow_secrets.build}


def dag_text(name: str, version: int) -> str:
    bundle = compile_case("airflow", BUILDS[name](), settings={**SETTINGS, "airflow_version": version}).bundle
    return bundle.files[0][1]


@pytest.mark.parametrize("version", [3, 2])
@pytest.mark.parametrize("name", sorted(BUILDS))
def test_control_flow_goldens(name, version, request):
    text = dag_text(name, version)
    golden = GOLDEN / f"{name}.airflow{version}.py.golden"
    if request.config.getoption("--update-goldens"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert text == golden.read_text(encoding="utf-8")


def _load(tmp_path_factory, python: Path | None) -> dict:
    dags = tmp_path_factory.mktemp("dags")
    for name in BUILDS:
        (dags / f"{name}.dag.py").write_text(dag_text(name, 3 if python is None else 2), encoding="utf-8")
    home = tmp_path_factory.mktemp("home")
    return probe(dags, home) if python is None else probe(dags, home, python=python)


@pytest.fixture(scope="module")
def airflow3(tmp_path_factory):
    return _load(tmp_path_factory, None)


@pytest.fixture(scope="module")
@slow_fixture
def airflow2(tmp_path_factory):
    return _load(tmp_path_factory, airflow2_python())


def _check_loaded(result: dict, asset: str) -> None:
    assert result["import_errors"] == {}
    assert sorted(result["dags"]) == sorted(BUILDS)
    for dag_id, dag in result["dags"].items():
        assert dag["serialization_error"] is None, (dag_id, dag["serialization_error"])
    search = result["dags"]["hyperparameter_search"]["tasks"]
    assert "MappedOperator" in search["train_model"]["type"] and "MappedOperator" in search["evaluate"]["type"]
    assert search["train_model"]["max_active_tis_per_dagrun"] == 2
    assert search["train_model"]["upstream"] == ["make_dataset", "map_1_items"]
    assert search["promote"]["upstream"] == ["accuracy_of", "condition_1_branch", "pick_best"]
    assert search["record_decision"]["trigger_rule"] == "none_failed_min_one_success"
    assert search["report"]["is_teardown"] and search["report"]["trigger_rule"] == "all_done_setup_success"
    assert result["dags"]["hyperparameter_search"]["max_active_tasks"] == 4
    flow = result["dags"]["flow_constructs"]["tasks"]
    assert flow["condition_1_branch"]["type"] in ("BranchPythonDecoratedOperator", "_BranchPythonDecoratedOperator")
    assert {flow[hook]["is_teardown"] for hook in ("alert", "celebrate")} == {True}
    assert set(flow["alert"]["upstream"]) >= {"pair", "pair_2", "shout", "map_1_items", "condition_1_branch"}
    # Issue 17: a mapped TaskFlow step keeps its typed output's outlet (a partial argument of every instance).
    score = result["dags"]["typed_in_map"]["tasks"]["score"]
    assert "MappedOperator" in score["type"] and score["outlets"] == [
        {"type": asset, "uri": "s3://pipecast-golden/artifacts/typed_in_map/assets/score/output",
         "extra": {"pipecast_output": "output", "pipecast_type": "Metrics"}}]
    # Issue 16: secrets on TaskFlow tasks are op_kwargs templates Airflow renders (a hook's here; a mapped task's
    # are partial arguments of every instance, rendered per instance: the real run in test_control_flow_dags_test).
    secrets = result["dags"]["flow_secrets"]["tasks"]
    assert secrets["audit"]["op_kwargs"] == {"secrets": {"DB_PASSWORD": "<conn:db-credentials.password>"}}
    assert "MappedOperator" in secrets["with_token"]["type"]
    assert secrets["with_token"]["partial_op_kwargs"]["secrets"] == {"API_TOKEN": "{{ var.value['api-token'] }}"}


def test_airflow_3_loads_every_construct(airflow3):
    _check_loaded(airflow3, "Asset")


def test_airflow_2_loads_every_construct(airflow2):
    _check_loaded(airflow2, "Dataset")


@step
def nested_sum(x: int) -> int:
    return x


@pipeline(name="nested_maps")
def nested_maps(rows: list = [[1, 2], [3]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row, ParallelFor(row) as x:
        nested_sum(x)


@pipeline(name="in_pods")
def in_pods(n: int = 2):
    with ParallelFor(letters(n)) as letter:
        pair(letter, 1)


@pytest.mark.parametrize(("build", "settings", "message"), [
    (nested_maps.build, {}, "a nested map (a map inside a map) is not lowered yet"),
    (in_pods.build, {"mode": "kubernetes", "image": "ghcr.io/acme/x:1", "artifact_root": "s3://b/a"},
     "a pod task (KubernetesPodOperator) inside a map, branch or exit handler is not lowered yet"),
])
def test_what_airflow_does_not_lower_is_one_clear_error(build, settings, message):
    with pytest.raises(PipecastError) as raised:
        compile_case("airflow", build(), settings={**settings, "ship_code": False})
    assert message in str(raised.value)


def test_the_publisher_combines_lists_as_pipecast_does_and_refuses_more_than_max_map_length():
    pipeline_ir = flow_constructs.build()
    spec = json.loads(_entry(pipeline_ir, "map_2_items"))["spec"]
    assert publish_airflow.map_items(spec, {"params": {"sizes": [1, 2, 3]}, "run_id": "r"}) == [
        ["x", 1], ["x", 2], ["x", 3], ["y", 1], ["y", 2], ["y", 3]]  # product: the first list varies slowest
    many = publish_airflow.MAX_MAP_LENGTH // 2 + 1
    with pytest.raises(SystemExit, match=r"has 1026 items; Airflow expands at most 1024"):
        publish_airflow.map_items(spec, {"params": {"sizes": list(range(many))}, "run_id": "r"})


def _entry(pipeline_ir, task_id: str) -> str:
    text = compile_case("airflow", pipeline_ir, settings=SETTINGS).bundle.files[0][1]
    table = json.loads(text[text.index('r"""') + 4:text.index('""")')])
    return json.dumps(table[task_id])


def _spec_of(task_id: str) -> dict:
    return json.loads(_entry(flow_constructs.build(), task_id))["spec"]


def test_a_hook_reads_the_final_status_from_each_instance_and_skips_when_its_event_did_not_happen(tmp_path):
    """What the Airflow tasks of the hooks do after a failed item (the runtime side; Airflow itself only orders)."""
    root = tmp_path / "store"
    failed = root / "flow_constructs" / "runs" / "r" / "pair[1]"
    failed.mkdir(parents=True)
    (failed / "meta.json").write_text(json.dumps({"status": "failed", "error": "ValueError: boom"}))
    payload = {"run_id": "r", "params": {"n": 3, "env": "dev", "sizes": [1, 2]}, "counts": {"map_1": 3, "map_2": 4},
               "map_index": -1, "item": None}
    alert, celebrate = _spec_of("alert"), _spec_of("celebrate")
    for spec in (alert, celebrate):
        spec["root"] = f"file://{root}"
    argv = publish_airflow.instance_argv(alert, payload)
    status = decode_constant(argv[argv.index("--const") + 1].partition("=")[2])
    assert status == {"status": "failed", "failed_steps": ["pair[1]"], "error": "ValueError: boom"}
    assert "--run-id" in argv and argv[argv.index("--run-id") + 1] == "r"
    with pytest.raises(publish_airflow._Skip, match="on_success hook: the run failed"):
        publish_airflow.instance_argv(celebrate, payload)
