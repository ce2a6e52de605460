"""Control flow on Airflow: goldens of each construct (Airflow 3 and 2.10), loaded by both Airflows' DagBag with
the tasks, mapping, trigger rules, teardowns and bounds that Airflow itself reports; what is not lowered is one
clear error; the runtime's publisher keeps Airflow's ``max_map_length``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipecast import ParallelFor, pipeline
from pipecast.runtime import publish_airflow
from pipecast.runtime.local_runner import run_pipeline
from pipecast.runtime.params import decode_constant
from tests.helpers.cases import case, compile_case, env_with_cases
from tests.helpers.replay.store import pod_env as store_env
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.airflow2_venv import airflow2_python
from tests.targets.airflow.flow_pipelines import (
    flow_constructs,
    item_conditions,
    item_exit_branches,
    letters,
    nested_conditions,
    nested_handlers,
    nested_map,
    nested_one_of,
    nested_pair_exit,
    nested_row_exit,
    pair,
)
from tests.targets.airflow.flow_pod_pipelines import flow_pods, flow_secrets, item_exit_pods
from tests.targets.airflow.support import HERE, airflow_env, probe
from tests.targets.airflow.test_control_flow_dags_test import instances
from tests.targets.airflow.typed_pipelines import typed_in_map

GOLDEN = Path(__file__).parent / "data" / "golden_flow"
SETTINGS = {"artifact_root": "s3://pipecast-golden/artifacts", "ship_code": False}
BUILDS = {"hyperparameter_search": lambda: case("hyperparameter_search").build(),
          "flow_constructs": flow_constructs.build, "typed_in_map": typed_in_map.build,
          "flow_secrets": flow_secrets.build, "flow_pods": flow_pods.build, "item_conditions": item_conditions.build,
          "item_exit_branches": item_exit_branches.build, "item_exit_pods": item_exit_pods.build,
          "nested_map": nested_map.build, "nested_conditions": nested_conditions.build,
          "nested_handlers": nested_handlers.build, "nested_one_of": nested_one_of.build,
          "nested_pair_exit": nested_pair_exit.build, "nested_row_exit": nested_row_exit.build}


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
    # Issue 16: the bounded chained map is one mapped task group (item by item); its bound of 2 shared out over
    # its two tasks (Airflow bounds each task id, every item's instance included), so never more than 2 at once.
    for name in ("train_model", "evaluate"):
        assert search[name]["mapped_task_group"]["group_id"] == "map_1_group", search[name]
        assert search[name]["max_active_tis_per_dagrun"] == 1
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
    # Issue 16: steps of the control flow in pods. The mapped step is KubernetesPodOperator.partial().expand() over
    # its publisher's XCom; the handler and the hook are teardown pods; a pod in a branch waits for its branch task.
    pods = result["dags"]["flow_pods"]["tasks"]
    assert "MappedOperator" in pods["pair"]["type"] and pods["pair"]["upstream"] == ["letters", "map_1_items"]
    assert pods["pair"]["partial_kwargs"]["skip_on_exit_code"] == 99
    assert pods["pair"]["expand_input"] == {"arguments": "XComArg(<Task(_PythonDecoratedOperator): map_1_items>)"
                                                         ".map(pod_item)"}
    assert pods["joined"]["type"] == "KubernetesPodOperator" and pods["shout"]["upstream"] == [
        "condition_1_branch", "joined"]
    assert pods["summary"]["is_teardown"] and pods["alert"]["is_teardown"]
    assert pods["summary"]["trigger_rule"] == pods["alert"]["trigger_rule"] == "all_done_setup_success"
    container = pods["summary"]["pod"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "pipecast.runtime.publish_airflow"] and container["args"] == [
        "--pod"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["PIPECAST_AIRFLOW_COUNTS"] == '{"map_1": 2}'  # the length of the publisher's XCom (two here)
    assert json.loads(env["PIPECAST_AIRFLOW_SPEC"])["status"]["status"][1] == ["pair", "map_1"]
    # Issue 16: a condition inside a map has no branch task: each branch step is mapped and decides its own item;
    # what follows a step that may skip items runs when none failed (its runtime skips item by item).
    conds = result["dags"]["item_conditions"]["tasks"]
    assert not any("branch" in task for task in conds)
    assert {conds[t]["trigger_rule"] for t in ("pair", "shout", "pair_2", "pair_3", "joined")} == {"none_failed"}
    assert conds["score"]["trigger_rule"] == "all_success"
    # Issue 16: a map of chained steps is one mapped task group over its publisher's XCom (Airflow decides trigger
    # rules per map index inside one): each step a task of the group whose item is the group's argument.
    for name in ("score", "pair", "shout", "pair_2", "pair_3"):
        assert conds[name]["mapped_task_group"] == {
            "group_id": "map_1_group", "item": "MappedArgument",
            "expand_input": {"item": "XComArg(<Task(_PythonDecoratedOperator): map_1_items>)"}}, name
    assert "mapped_task_group" not in conds["joined"] and "MappedOperator" not in conds["joined"]["type"]
    assert conds["shout"]["upstream"] == ["map_1_items", "pair", "score"]
    # Issue 16: an exit handler inside a map is a mapped teardown over the map's publisher, after its group's tasks.
    handler = result["dags"]["item_exit_branches"]["tasks"]["summary"]
    assert "MappedOperator" in handler["type"] and handler["is_teardown"]
    assert handler["trigger_rule"] == "all_done_setup_success"
    assert handler["upstream"] == ["invert", "map_1_items", "score", "shout"]
    in_pods = result["dags"]["item_exit_pods"]["tasks"]["summary"]  # the same in pods: one teardown pod per item
    assert "MappedOperator" in in_pods["type"] and in_pods["is_teardown"]
    assert in_pods["trigger_rule"] == "all_done_setup_success" and in_pods["upstream"] == ["invert", "map_1_items"]
    assert in_pods["expand_input"] == {"arguments": "XComArg(<Task(_PythonDecoratedOperator): map_1_items>)"
                                                    ".map(pod_item)"}


def test_airflow_3_loads_every_construct(airflow3):
    _check_loaded(airflow3, "Asset")


def test_airflow_2_loads_every_construct(airflow2):
    _check_loaded(airflow2, "Dataset")


@pipeline(name="in_pods")
def in_pods(n: int = 2):
    with ParallelFor(letters(n)) as letter:
        pair(letter, 1)


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


def test_a_mapped_pod_step_is_a_partial_pod_expanded_over_its_publisher():
    """Issue 16: ``in_pods`` (once refused) maps a pod; its entry runs the pod entry of the runtime."""
    entry = json.loads(_entry_with(in_pods.build(), "pair", {"mode": "kubernetes", "image": "ghcr.io/acme/x:1",
                                                             "artifact_root": "s3://b/a"}))
    assert entry["flow"] == "pod" and entry["map"] == "map_1_items" and entry["arguments"] == ["--pod"]
    assert entry["templated_env"]["PIPECAST_AIRFLOW_MAP_INDEX"] == "{{ ti.map_index }}"


def _entry_with(pipeline_ir, task_id: str, settings: dict) -> str:
    text = compile_case("airflow", pipeline_ir, settings={**settings, "ship_code": False}).bundle.files[0][1]
    table = json.loads(text[text.index('r"""') + 4:text.index('""")')])
    return json.dumps(table[task_id])


@pytest.mark.slow
def test_pod_steps_of_the_control_flow_replayed_as_airflow_runs_them_equal_pipecast_run(tmp_path):
    """``flow_pods`` (every step a pod) replayed by ``in_airflow_flow_replay.py``: Airflow 3.3 loads the file,
    expands the mapped pod over the publisher's XCom and renders each instance's pod (item argument, map index,
    map sizes); the containers run here. Every instance's status and outputs equal ``pipecast run``'s; the branch
    ran, the handler reported success and the failure hook skipped itself (exit 99, ``skip_on_exit_code``)."""
    pipeline_ir = flow_pods.build()
    words = ["$(PIPECAST_RUN_ID) $$ $(HOME)", "{{ run_id }} {% raw %}", "it's \"q\" `id` ${HOME}"]
    conf = {"n": 3, "env": "dev", "suffix": 7, "words": words}
    replayed = _replay(pipeline_ir, conf, tmp_path)
    store = tmp_path / "store"
    assert replayed["states"] == {
        "letters": ["success"], "map_1_items": ["success"], "pair": ["success"] * 3, "joined": ["success"],
        "condition_1_branch": ["success"], "shout": ["success"], "summary": ["success"], "alert": ["skipped"],
        "map_2_items": ["success"], "shout_2": ["success"] * 3, "joined_2": ["success"]}
    assert replayed["xcoms"]["map_1_items"] == ["a", "b", "c"] and replayed["xcoms"]["map_2_items"] == words
    (run_folder,) = (store / "flow_pods" / "flow_pods" / "runs").iterdir()
    local = run_pipeline(pipeline_ir, conf, artifact_root=f"file://{tmp_path / 'local'}", cache=False)
    here = instances(tmp_path / "local", "flow_pods", local.id)
    assert instances(store / "flow_pods", "flow_pods", run_folder.name) == {
        name: value for name, value in here.items() if value[0] != "skipped"}
    assert json.loads(here["shout"][1]["output"]) == "A7,B7,C7"
    assert json.loads(here["summary"][1]["output"]) == "succeeded: []"
    assert json.loads(here["joined_2"][1]["output"]) == ",".join(word.upper() for word in words)  # as written


def _replay(pipeline_ir, conf: dict, tmp_path: Path) -> dict:
    """Compile ``pipeline_ir`` onto the replay store (``tmp_path/store``) and replay its run with ``conf`` in
    ``in_airflow_flow_replay.py``; its states and XComs."""
    dags, store, name = tmp_path / "dags", tmp_path / "store", pipeline_ir.name
    dags.mkdir()
    bundle = compile_case("airflow", pipeline_ir, settings={"artifact_root": f"replay://{name}",
                                                         "ship_code": False}).bundle
    (dags / bundle.main_file).write_text(bundle.files[0][1], encoding="utf-8")
    request, out = tmp_path / "run.json", tmp_path / "out.json"
    request.write_text(json.dumps({"run_id": "manual__2026-01-02T03:04:05+00:00", "conf": conf,
                                   "volumes": str(tmp_path / "volumes")}))
    env = airflow_env(tmp_path / "home", dags, **store_env(store, env_with_cases()["PYTHONPATH"]))
    result = subprocess.run([sys.executable, str(HERE / "in_airflow_flow_replay.py"), str(dags), name,
                             str(request), str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())


NESTED_IN_AIRFLOW = """
import sys
from airflow.sdk import DAG, task, task_group

@task
def rows():
    return [[1, 2], [3]]

@task
def show(x):
    return x

@task_group
def inner(x):
    show(x)

@task_group
def outer(row):
    inner.expand(x=row) if sys.argv[1] == "group" else show.expand(x=row)

with DAG("nested", schedule=None):
    try:
        outer.expand(row=rows())
    except (ValueError, NotImplementedError) as error:
        print(error)
"""


@pytest.mark.parametrize(("form", "message"), [
    ("group", "Nested Mapped TaskGroups are not yet supported"),
    ("task", "operator expansion in an expanded task group is not yet supported"),
])
def test_airflow_itself_refuses_nested_mapping_so_pipecast_flattens_it(form, message, tmp_path):
    """Why a nested map is flattened (pipecast/targets/airflow/nested.py): a mapped task group, or a mapped task,
    inside a mapped task group is refused by Airflow 3.3's own task SDK when the DAG is defined."""
    result = subprocess.run([sys.executable, "-c", NESTED_IN_AIRFLOW, form], env=airflow_env(tmp_path / "home"),
                            capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == message, result.stderr[-3000:]


@pytest.mark.slow
def test_an_exit_handler_inside_a_map_in_pods_replayed_as_airflow_runs_it_reads_its_own_item(tmp_path):
    """``item_exit_pods`` replayed by ``in_airflow_flow_replay.py``: Airflow renders each teardown pod of the mapped
    handler with its own ``{{ ti.map_index }}``, so item 1's pod reports ``invert[1]`` failed and the others
    success, as ``pipecast run`` does."""
    pipeline_ir = item_exit_pods.build()
    store = tmp_path / "store"
    assert _replay(pipeline_ir, {}, tmp_path)["states"] == {
        "map_1_items": ["success"], "invert": ["success", "failed", "success"], "summary": ["success"] * 3}
    (run_folder,) = (store / "item_exit_pods" / "item_exit_pods" / "runs").iterdir()
    local = run_pipeline(pipeline_ir, {}, artifact_root=f"file://{tmp_path / 'local'}", cache=False,
                         raise_on_failure=False, fail_fast=False)
    here = instances(tmp_path / "local", "item_exit_pods", local.id)
    assert instances(store / "item_exit_pods", "item_exit_pods", run_folder.name) == here
    assert [json.loads(here[f"summary[{i}]"][1]["output"]) for i in range(3)] == [
        "succeeded: []", "failed: ['invert[1]']", "succeeded: []"]


def test_a_handler_inside_a_map_reads_only_its_own_items_instances_and_runs_whatever_they_did(tmp_path):
    """The runtime side of ``item_exit_branches``' mapped handler: instance ``i`` reads the ``meta.json`` of
    instance ``i`` of each step of its group only, and is not skipped for a failed or skipped one of them."""
    root = tmp_path / "store"
    for name, status in (("score[0]", "succeeded"), ("score[1]", "succeeded"), ("invert[0]", "succeeded"),
                         ("invert[1]", "failed"), ("shout[0]", "skipped"), ("shout[1]", "skipped")):
        folder = root / "item_exit_branches" / "runs" / "r" / name
        folder.mkdir(parents=True)
        error = {"error": "ZeroDivisionError: division by zero"} if status == "failed" else {}
        (folder / "meta.json").write_text(json.dumps({"status": status, **error}))
    spec = json.loads(_entry(item_exit_branches.build(), "summary"))["spec"]
    spec["root"] = f"file://{root}"
    found = []
    for index in (0, 1):
        payload = {"run_id": "r", "params": {"xs": [1, 0, 5]}, "counts": {}, "map_index": index, "item": [1, 0][index]}
        argv = publish_airflow.instance_argv(spec, payload)
        assert argv[argv.index("--step") + 1] == f"summary[{index}]"
        found.append(decode_constant(argv[argv.index("--const") + 1].partition("=")[2]))
    assert found == [{"status": "succeeded", "failed_steps": [], "error": None},
                     {"status": "failed", "failed_steps": ["invert[1]"],
                      "error": "ZeroDivisionError: division by zero"}]
