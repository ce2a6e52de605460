"""Control flow on Argo (issue 16): goldens per construct, Argo's schema, the refusals, and replays that follow
only what Argo's controller does (flow_replay.py) with every instance's outputs equal to ``pipecast run``'s.

``pytest --update-goldens`` rewrites ``data/flow/<name>.yaml`` (or ``.error.txt`` for a refused pipeline).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipecast import Else, ExitHandler, If, OneOf, ParallelFor, pipeline, step
from pipecast.errors import PipecastError, ValidationError
from pipecast.runtime import publish_argo
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.runtime.params import render_parameter
from tests.helpers.cases import case, compile_case
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.argo.flow_replay import govaluate, replay_flow
from tests.targets.argo.support import documents, schema_errors
from tests.targets.github import flow_pipelines as gh
from tests.targets.kubernetes import pipelines as kube_pipelines
from tests.targets.local_docker import flow_pipelines as compose
from tests.unit import flow_pipelines as flows

GOLDENS = Path(__file__).parent / "data" / "flow"
PIPELINES = {"gh_branches": gh.gh_branches, "gh_exit": gh.gh_exit, "gh_map": gh.gh_map, "gh_flow": gh.gh_flow,
             "gh_text": gh.gh_text, "flow_failure": kube_pipelines.flow_failure_pipeline,
             "hyperparameter_search": None, "nested": flows.nested, "item_conditions": flows.item_conditions,
             "compose_flow": compose.compose_flow}
SETTINGS = {"artifact_root": REPLAY_STORE, "embed": True}


def _build(name: str) -> Any:
    found = PIPELINES[name]
    return case("hyperparameter_search").build() if found is None else found.build()


def _compiled(name: str) -> dict[str, str]:
    try:
        files = compile_case("argo", _build(name), golden=True, settings=SETTINGS).files
    except ValidationError as err:
        return {f"{name}.error.txt": str(err) + "\n"}
    (workflow,) = [text for path, text in files.items() if path.endswith("-workflow.yaml")]
    return {f"{name}.yaml": workflow}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_golden_and_schema(name, request):
    files = _compiled(name)
    if request.config.getoption("--update-goldens"):
        for old in [*GOLDENS.glob(f"{name}.yaml"), *GOLDENS.glob(f"{name}.error.txt")]:
            old.unlink()
        GOLDENS.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            (GOLDENS / path).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8")
                for p in [*GOLDENS.glob(f"{name}.yaml"), *GOLDENS.glob(f"{name}.error.txt")]}
    assert expected == files, f"{name} differs from its golden in {GOLDENS} (pytest --update-goldens)"
    for path, text in files.items():
        if path.endswith(".yaml"):
            for doc in yaml.safe_load_all(text):
                assert schema_errors(doc) == []


def test_the_example_as_a_workflow_template_is_schema_valid():
    files = compile_case("argo", case("hyperparameter_search").build(), golden=True).files
    docs = documents(files)
    assert {d["kind"] for d in docs} >= {"WorkflowTemplate", "Workflow"}
    for doc in docs:
        assert schema_errors(doc) == []


def _local(pipeline_ir: Any, params: dict[str, Any], root: Path) -> Any:
    return run_pipeline(pipeline_ir, params, artifact_root=f"file://{root}", cache=False, raise_on_failure=False)


def _assert_same_as_local(pipeline_ir: Any, params: dict[str, Any], store: Path, run_id: str, local: Any) -> None:
    """Every instance the local run finished has the same outputs in the replay's store; skipped ones have none."""
    for name, state in local.steps.items():
        if state.items is not None:
            continue  # a mapped step's summary row: its items are checked one by one
        meta = store / pipeline_ir.name / "runs" / run_id / name / "meta.json"
        if state.status in ("done", "cached"):
            assert load_outputs(f"file://{store}", pipeline_ir.name, run_id, name) == \
                load_outputs(local.artifact_root, pipeline_ir.name, local.id, name), name
        elif state.status == "skipped":
            assert not meta.exists(), f"{name} was skipped by pipecast run but ran on Argo"


def _argo_params(pipeline_ir: Any, params: dict[str, Any]) -> dict[str, str]:
    return {p.name: render_parameter(p.type, params[p.name]) for p in pipeline_ir.parameters if p.name in params}


def test_the_example_runs_as_pipecast_run_does(tmp_path):
    """A map over a parameter (3 items, bound 2), chained, fan-in, if/else with OneOf, and the exit hook."""
    pipeline_ir = _build("hyperparameter_search")
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    run = replay_flow(files, "search-x1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Succeeded"
    phases = {k.removeprefix("search-x1/"): v for k, v in run.phases.items()}
    assert [k for k in phases if k.startswith("exit-1/map-1/item(") and k.endswith("/train-model")] == [
        f"exit-1/map-1/item({i}:{i})/train-model" for i in range(3)]
    assert phases["exit-1/keep-current"] == "Skipped" and phases["exit-1/promote"] == "Succeeded"
    assert phases["exit-1.onExit"] == "Succeeded"
    local = _local(pipeline_ir, {}, tmp_path / "local")
    _assert_same_as_local(pipeline_ir, {}, tmp_path / "store", "search-x1", local)
    assert load_outputs(f"file://{tmp_path}/store", pipeline_ir.name, "search-x1", "report") == \
        {"output": "search succeeded"}
    assert run.outputs["search-x1/exit-1/map-1-items"] == {"items": "[0,1,2]"}


@pytest.mark.parametrize(("params", "branch"), [
    ({"scale": 1.0}, "promote"),
    ({"scale": 0.5, "threshold": 0.5}, "stage"),  # not over the threshold, ready, and 0.5 is in the list
    ({"scale": 0.05, "threshold": 0.5}, "keep"),
    ({"scale": 0.05, "threshold": 0.5, "force": True}, "promote"),
])
def test_branches_run_as_pipecast_run_does(params, branch, tmp_path):
    pipeline_ir = _build("gh_branches")
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    run = replay_flow(files, "branches-x1", _argo_params(pipeline_ir, params), store=tmp_path / "store",
                      scratch=tmp_path / "pods")
    assert run.phase == "Succeeded"
    ran = {k.split("/")[-1]: v for k, v in run.phases.items()}
    assert [b for b in ("promote", "stage", "keep") if ran[b] == "Succeeded"] == [branch]
    _assert_same_as_local(pipeline_ir, params, tmp_path / "store", "branches-x1",
                          _local(pipeline_ir, params, tmp_path / "local"))


def test_maps_over_outputs_zips_and_constants_run_as_pipecast_run_does(tmp_path):
    pipeline_ir = _build("gh_map")
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    run = replay_flow(files, "map-x1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Succeeded"
    local = _local(pipeline_ir, {}, tmp_path / "local")
    _assert_same_as_local(pipeline_ir, {}, tmp_path / "store", "map-x1", local)
    assert sum(1 for k in run.phases if "/item(" in k and k.endswith("/scale-by")) == 2


def test_a_failed_item_reaches_the_exit_handler_and_the_hook(tmp_path):
    """Item 1 fails (map bound 1, fail-fast: item 2 never starts); the fan-in and the branch are omitted, the
    handler gets the failure, the on_failure hook runs, the run fails: as pipecast run."""
    pipeline_ir = _build("flow_failure")
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    run = replay_flow(files, "fail-x1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Failed"
    local = _local(pipeline_ir, {}, tmp_path / "local")
    _assert_same_as_local(pipeline_ir, {}, tmp_path / "store", "fail-x1", local)
    assert not any("/item(2:2)/ten-over" in k for k in run.phases)
    assert run.phases["fail-x1/exit-1/map-1/item(1:1)/ten-over"] == "Failed"
    store = f"file://{tmp_path}/store"
    outputs = {n: load_outputs(store, pipeline_ir.name, "fail-x1", n) for n in ("summary", "alert")}
    assert outputs["alert"] == local.step_outputs("alert") == {"output": "alert: failed ['ten_over[1]']"}
    status = outputs["summary"]["output"]
    assert {k: status[k] for k in ("status", "failed_steps")} == {"status": "failed", "failed_steps": ["ten_over[1]"]}
    assert "ZeroDivisionError" in status["error"]


def test_exit_handler_over_a_failing_group_and_both_hooks(tmp_path):
    pipeline_ir = _build("gh_exit")
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    run = replay_flow(files, "exit-x1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Failed"
    hooks = {k.split("/")[-1]: v for k, v in run.phases.items() if ".onExit/" in k}
    assert hooks == {"alert": "Succeeded", "celebrate": "Skipped"}
    local = _local(pipeline_ir, {}, tmp_path / "local")
    _assert_same_as_local(pipeline_ir, {}, tmp_path / "store", "exit-x1", local)
    assert load_outputs(f"file://{tmp_path}/store", pipeline_ir.name, "exit-x1", "report") == \
        {"output": "failed:fail_on"}


@pipeline
def nested(rows: list = [[1, 2]]):  # noqa: B006
    with ParallelFor(rows) as row, ParallelFor(row) as x:
        gh.square(x)


@pipeline
def condition_in_map(xs: list = [1.0]):  # noqa: B006
    with ParallelFor(xs) as x:
        with If(gh.square(x) > 1.0):
            gh.square(x)


@pytest.mark.parametrize(("name", "params", "expected"), [
    ("nested", {}, {"nested_total": {"output": [5, 9, 0]}}),  # an empty inner list: "Skipped, empty params"
    ("item_conditions", {}, {"total": {"output": 13}}),  # items 2 and 3 pass the condition; the others are left out
    ("compose_flow", {}, {"rows_total": {"output": 14.0}, "labels": {"output": "big:4.5,big:8.0"},
                          "announce": {"output": "PROMOTED 15.0"}}),
    ("compose_flow", {"limit": 100.0, "xs": [3, 1]}, {"labels": {"output": "big:4.5"}, "keep": {"output": "kept 5.0"}}),
])
def test_nested_maps_and_conditions_in_maps_run_as_pipecast_run_does(name, params, expected, tmp_path):
    """Each map body is a DAG template run per item: its branches' `when` read a publisher of the same item, an
    inner map is a loop task inside it; every instance and fan-in equals pipecast run's."""
    pipeline_ir = _build(name)
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    run = replay_flow(files, "in-map-x1", _argo_params(pipeline_ir, params), store=tmp_path / "store",
                      scratch=tmp_path / "pods")
    assert run.phase == "Succeeded"
    local = _local(pipeline_ir, params, tmp_path / "local")
    _assert_same_as_local(pipeline_ir, params, tmp_path / "store", "in-map-x1", local)
    store = f"file://{tmp_path}/store"
    for step_name, outputs in expected.items():
        assert load_outputs(store, pipeline_ir.name, "in-map-x1", step_name) == outputs == \
            local.step_outputs(step_name)
    ran = {n for n, s in local.steps.items() if s.status in ("done", "cached") and s.items is None}
    stored = {p.parent.name for p in (tmp_path / "store" / pipeline_ir.name / "runs" / "in-map-x1").glob("*/meta.json")}
    assert stored == ran  # the same instances ran, no more (skipped items have no record on Argo)


def test_the_nested_workflow_is_a_loop_inside_a_per_item_body():
    workflow = yaml.safe_load(_compiled("nested")["nested.yaml"])
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    outer, inner = templates["pipecast-map-1-item"], templates["pipecast-map-2-item"]
    assert [p["name"] for p in outer["inputs"]["parameters"]] == ["i0"]
    assert [p["name"] for p in inner["inputs"]["parameters"]] == ["i0", "i1"]
    (square,) = inner["dag"]["tasks"]
    assert {"name": "step", "value": "square[{{inputs.parameters.i0}}][{{inputs.parameters.i1}}]"} in \
        square["arguments"]["parameters"]
    items, loop = outer["dag"]["tasks"]
    assert items["arguments"] == {"parameters": [{"name": "at", "value": "{{inputs.parameters.i0}}"}]}
    assert loop["template"] == "pipecast-map-2" and loop["depends"] == "map-2-items.Succeeded"


@pipeline
def exit_in_map(xs: list = [1, 2]):  # noqa: B006
    with ParallelFor(xs) as x:
        with ExitHandler() as work:
            gh.square(x)
        flows.report(work.status)


def test_an_exit_handler_inside_a_map_is_lowered_not_refused():  # proven by replay at the end of this module
    files = compile_case("argo", exit_in_map.build(), golden=True, settings=SETTINGS).files
    body = next(t for p, t in files.items() if p.endswith("-workflow.yaml")).split("name: pipecast-map-1-item")[1]
    assert "hooks:" in body and "{{tasks.exit-1.status}}" in body  # the item body's exit hook, this item's status


@pytest.mark.parametrize(("value", "literal"), [
    (True, "true"), (False, "false"), (3, "3"), (-2, "-2"), (0.1, "0.1"), (1e-05, "0.00001"),
    (2.5e20, "250000000000000000000"),
])
def test_decision_values_are_govaluate_literals_that_read_back_as_python(value, literal):
    assert publish_argo.govaluate_literal("v", value) == literal
    assert govaluate(f"{literal} == {literal}") is True


@pytest.mark.parametrize("hostile", ["1 || true", "Succeeded", "2024-01-01", "x) || (1 == 1", float("nan"),
                                     2**60, None, [1]])
def test_anything_but_a_number_or_a_boolean_fails_the_publisher(hostile):
    with pytest.raises(PipecastError, match=r"numbers .*and booleans only"):
        publish_argo.govaluate_literal("v", hostile)


def test_a_value_over_the_size_bound_fails_before_argo_stores_it(tmp_path):
    with pytest.raises(PipecastError, match="Workflow's status"):
        publish_argo._write(str(tmp_path), "items", json.dumps(list(range(60_000))))
    assert not (tmp_path / "items").exists()


def test_the_replay_refuses_what_argos_validation_refuses():
    """The replay can fail: a reference to a task that is not an ancestor, and depends mixed with dependencies."""
    from tests.targets.argo.flow_replay import validate_dag

    workflow = yaml.safe_load(_compiled("hyperparameter_search")["hyperparameter_search.yaml"])
    exit_dag = next(t for t in workflow["spec"]["templates"] if t["name"] == "pipecast-exit-1")
    validate_dag(exit_dag)
    promote = next(t for t in exit_dag["dag"]["tasks"] if t["name"] == "promote")
    promote["depends"] = "pick-best.Succeeded"  # the when still reads condition-1-values
    with pytest.raises(AssertionError, match="not an ancestor"):
        validate_dag(exit_dag)
    promote["dependencies"] = ["pick-best"]
    with pytest.raises(AssertionError, match="both 'depends' and 'dependencies'"):
        validate_dag(exit_dag)
    with pytest.raises(AssertionError, match="govaluate"):
        govaluate("2024-01-01 == 2024-01-01")


@step
def shout(word: str) -> str:
    return word.upper()


@step
def key_of(row: dict) -> str:
    return row["k"]


@step
def join(words: list) -> str:
    return "|".join(words)


@pipeline(name="argo_texts")
def texts(words: list = ["a b", "{{ x }}", "$(HOME)", "it's \"quoted\"", "ünï"]):  # noqa: B006 - never mutated
    """Text items (a parameter) and JSON items (a constant) reach the steps as written: Argo sees only indices."""
    with ParallelFor(words) as word:
        upper = shout(word)
    with ParallelFor([{"k": "{{workflow.name}}"}, {"k": "${{ y }}"}]) as row:
        keys = key_of(row)
    return join(upper), join(keys)


def test_text_and_json_items_arrive_verbatim_and_bounds_are_emitted(tmp_path):
    pipeline_ir = texts.build()
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    workflow = yaml.safe_load(next(t for p, t in files.items() if p.endswith("-workflow.yaml")))
    assert schema_errors(workflow) == []
    assert "{{ x }}" not in json.dumps(workflow["spec"]["templates"])  # the items are never in the templates
    run = replay_flow(files, "texts-x1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Succeeded"
    _assert_same_as_local(pipeline_ir, {}, tmp_path / "store", "texts-x1", _local(pipeline_ir, {}, tmp_path / "l"))
    store = f"file://{tmp_path}/store"
    shouted = 'A B|{{ X }}|$(HOME)|IT\'S "QUOTED"|ÜNÏ'
    assert load_outputs(store, pipeline_ir.name, "texts-x1", "join") == {"output": shouted}
    assert load_outputs(store, pipeline_ir.name, "texts-x1", "join_2") == {"output": "{{workflow.name}}|${{ y }}"}
    example = yaml.safe_load(_compiled("hyperparameter_search")["hyperparameter_search.yaml"])
    templates = {t["name"]: t for t in example["spec"]["templates"]}
    assert example["spec"]["parallelism"] == 4 and templates["pipecast-map-1"]["parallelism"] == 2
    assert templates["pipecast-map-1"]["failFast"] is True


@step
def glue(word: str, mark: str) -> str:
    return f"{word}+{mark}"


@step
def rows_of(rows: list) -> str:
    return "|".join(",".join(row) for row in rows)


HOSTILE_ITEMS = ["it's \"q\"", "{{workflow.name}}", "x) || (1 == 1", "ok"]


@pipeline(name="argo_hostile_in_map")
def hostile_in_map():
    """Hostile item values in a condition inside a map and in a nested map: they reach the steps as written."""
    with ParallelFor(HOSTILE_ITEMS) as word:
        with If(word != "x) || (1 == 1"):
            said = shout(word)
        with ParallelFor(["{{item}}", ")"]) as mark:
            glued = glue(word, mark)
    return join(said), rows_of(glued)


def test_hostile_items_keep_the_structure_and_arrive_as_written(tmp_path):
    pipeline_ir = hostile_in_map.build()
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    text = next(t for p, t in files.items() if p.endswith("-workflow.yaml"))
    workflow = yaml.safe_load(text)
    assert schema_errors(workflow) == []
    for hostile in ["x) || (1 == 1", "it's", "{{item}},"]:
        assert hostile not in text  # every value is percent-encoded in the plan; Argo only sees indices
    assert text.count("{{workflow.name}}") == text.count("- --run-id")  # Argo's own run id, nothing else
    tags = set(re.findall(r"\{\{([^}]*)\}\}", text)) - {"workflow.parameters.pipecast-flow"}  # the plan, once
    assert {t for t in tags if not re.fullmatch(r"workflow\.name|item|inputs\.parameters\.(i\d|items|at|\w+)|"
                                                r"tasks\.[\w-]+\.outputs\.parameters\.\w+", t)} == set()
    loops = [t for tmpl in workflow["spec"]["templates"] for t in tmpl.get("dag", {}).get("tasks", [])
             if "withItems" in t or "withParam" in t]
    assert len(loops) == 2 and text.count("'{{item}}'") == 2  # the two loop tasks' own {{item}}, nothing else
    whens = [t["when"] for tmpl in workflow["spec"]["templates"] for t in tmpl.get("dag", {}).get("tasks", [])
             if "when" in t]
    assert len(whens) == 1  # only the publisher's verdict: its tags, operators and a branch number, no value
    verdict = r"\{\{tasks\.condition-1-values\.outputs\.parameters\.\w+\}\}"
    assert set(re.sub(verdict, "", whens[0])) <= set("()!&|= 0123456789")
    run = replay_flow(files, "hostile-x1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Succeeded"
    local = _local(pipeline_ir, {}, tmp_path / "local")
    _assert_same_as_local(pipeline_ir, {}, tmp_path / "store", "hostile-x1", local)
    store = f"file://{tmp_path}/store"
    assert load_outputs(store, pipeline_ir.name, "hostile-x1", "join") == local.step_outputs("join") == \
        {"output": "IT'S \"Q\"|{{WORKFLOW.NAME}}|OK"}
    glued = load_outputs(store, pipeline_ir.name, "hostile-x1", "rows_of")["output"]
    assert glued == local.step_outputs("rows_of")["output"]
    assert glued.startswith("it's \"q\"+{{item}},it's \"q\"+)|{{workflow.name}}+{{item}},{{workflow.name}}+)|x) ||")


def test_the_runtime_reads_item_paths_and_refuses_a_map_without_its_plan(tmp_path):
    assert publish_argo.instance_path("train[2][0]") == ("train", (2, 0))
    assert publish_argo.instance_path("train") == ("train", ())
    with pytest.raises(PipecastError, match="--argo-flow"):
        publish_argo.publish(["--pipeline", "p", "--run-id", "r", "--artifact-root", f"file://{tmp_path}",
                              "--map", "map_1"])
    assert not list(tmp_path.iterdir())


@step
def refuse_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"item {x} is refused")
    return x * 10


@pipeline
def item_exit(xs: list = [1, 2, 3]):  # noqa: B006
    with ParallelFor(xs) as x:
        with ExitHandler() as work:
            refuse_three(x)
        flows.report(work.status)


@pipeline
def item_one_of(xs: list = [1, 2, 3]):  # noqa: B006
    with ParallelFor(xs) as x:
        y = flows.square(x)
        with If(y > 3):
            big = flows.add(y, 100)
        with Else():
            small = flows.square(y)
        picked = flows.add(OneOf(big, small), 1)
    flows.total(picked)


ITEM_CASES = {"item_exit": item_exit, "item_one_of": item_one_of}


@pytest.mark.parametrize("name", list(ITEM_CASES))
def test_item_exit_and_one_of_goldens_are_schema_valid(name, request):
    files = compile_case("argo", ITEM_CASES[name].build(), golden=True, settings=SETTINGS).files
    (text,) = [t for p, t in files.items() if p.endswith("-workflow.yaml")]
    golden = GOLDENS / f"{name}.yaml"
    if request.config.getoption("--update-goldens"):
        golden.write_text(text, encoding="utf-8")
    assert golden.read_text(encoding="utf-8") == text, f"{golden} differs (pytest --update-goldens)"
    assert schema_errors(yaml.safe_load(text)) == []


def test_an_exit_handler_inside_a_map_gets_its_items_status_as_pipecast_run_does(tmp_path):
    """Each item body runs its exit group as a task with an exit hook: the handler of item 2 (which fails) gets
    that item's failure, items 0 and 1 their success; the run fails, as pipecast run's."""
    pipeline_ir = item_exit.build()
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    run = replay_flow(files, "item-exit-x1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Failed"
    hooks = {k.removeprefix("item-exit-x1/"): v for k, v in run.phases.items() if k.endswith(".onExit")}
    assert hooks == {f"map-1/item({i}:{i})/exit-1.onExit": "Succeeded" for i in range(3)}
    local = _local(pipeline_ir, {}, tmp_path / "local")
    _assert_same_as_local(pipeline_ir, {}, tmp_path / "store", "item-exit-x1", local)
    store = f"file://{tmp_path}/store"
    reports = [load_outputs(store, pipeline_ir.name, "item-exit-x1", f"report[{i}]")["output"] for i in range(3)]
    assert reports == [local.step_outputs(f"report[{i}]")["output"] for i in range(3)]
    assert [(r["status"], r["failed_steps"]) for r in reports] == [
        ("succeeded", []), ("succeeded", []), ("failed", ["refuse_three[2]"])]
    assert "item 3 is refused" in reports[2]["error"]


def test_a_one_of_inside_a_map_reads_the_branch_its_item_ran_as_pipecast_run_does(tmp_path):
    pipeline_ir = item_one_of.build()
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    workflow = yaml.safe_load(next(t for p, t in files.items() if p.endswith("-workflow.yaml")))
    (body,) = [t for t in workflow["spec"]["templates"] if t["name"] == "pipecast-map-1-item"]
    (reader,) = [t for t in body["dag"]["tasks"] if t["name"] == "add-2"]
    assert reader["depends"] == "(add.Succeeded || square-2.Succeeded)"  # this item's branch tasks
    run = replay_flow(files, "one-of-x1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Succeeded"
    local = _local(pipeline_ir, {}, tmp_path / "local")
    _assert_same_as_local(pipeline_ir, {}, tmp_path / "store", "one-of-x1", local)
    store = f"file://{tmp_path}/store"
    picked = [load_outputs(store, pipeline_ir.name, "one-of-x1", f"add_2[{i}]")["output"] for i in range(3)]
    assert picked == [local.step_outputs(f"add_2[{i}]")["output"] for i in range(3)] == [2, 105, 110]
    assert load_outputs(store, pipeline_ir.name, "one-of-x1", "total") == local.step_outputs("total") == \
        {"output": 217}


def test_the_plan_is_one_workflow_parameter_and_tasks_share_their_templates():
    """Every task reads the plan from the Workflow's parameter ``pipecast-flow`` (written once, percent-encoded),
    so its args stay short and the items of one function share one container template; submit keeps it."""
    from pipecast.targets import argo
    pipeline_ir = hostile_in_map.build()
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    text = next(t for p, t in files.items() if p.endswith("-workflow.yaml"))
    workflow = yaml.safe_load(text)
    (plan,) = [p for p in workflow["spec"]["arguments"]["parameters"] if p["name"] == "pipecast-flow"]
    assert re.fullmatch(r"[-A-Za-z0-9_.~%,:\[\]@+=/]+", plan["value"])  # no quote, brace, space or newline
    assert text.count(plan["value"]) == 1 and "%7B%7Bworkflow.name%7D%7D" in plan["value"]
    containers = [t for t in workflow["spec"]["templates"] if "container" in t]
    for template in containers:
        args = template["container"]["args"]
        assert args[0] != "run" or all(len(a) < 120 for a in args), template["name"]  # a step's: short
        if "--argo-flow" in args:
            assert args[args.index("--argo-flow") + 1] == "{{workflow.parameters.pipecast-flow}}"
    shared = yaml.safe_load(_compiled("compose_flow")["compose_flow.yaml"])["spec"]["templates"]
    functions = [t["container"]["args"][2] for t in shared if t.get("container", {}).get("args", [""])[0] == "run"]
    assert len(functions) == len(set(functions)) == 11  # square (3 calls), total, labels (2 each): one template
    kept = {"metadata": {"name": "run-1"}, "spec": json.loads(json.dumps(workflow["spec"]))}
    argo._prepare_run(kept, pipeline_ir, {})  # no values given: the arguments stay as compiled
    assert kept["spec"]["arguments"] == workflow["spec"]["arguments"]
    texts_ir = texts.build()
    run = {"metadata": {"name": "run-2"}, "spec": yaml.safe_load(next(
        t for p, t in compile_case("argo", texts_ir, golden=True, settings=SETTINGS).files.items()
        if p.endswith("-workflow.yaml")))["spec"]}
    argo._prepare_run(run, texts_ir, {"words": ["z"]})
    assert [p["name"] for p in run["spec"]["arguments"]["parameters"]] == ["words", "pipecast-flow"]


@pipeline
def long_items():
    with ParallelFor(["a" * 55_000, "b" * 55_000]) as word:
        upper = shout(word)
    return join(upper)


def test_a_plan_too_long_for_one_pod_argument_goes_with_each_task(tmp_path):
    """Linux takes one argument of at most 128 KiB: past 100 KiB the plan is not a Workflow parameter every pod
    would get whole; each task carries its own step's part, and the run still equals pipecast run's."""
    pipeline_ir = long_items.build()
    files = compile_case("argo", pipeline_ir, golden=True, settings=SETTINGS).files
    workflow = yaml.safe_load(next(t for p, t in files.items() if p.endswith("-workflow.yaml")))
    assert "arguments" not in workflow["spec"] and schema_errors(workflow) == []
    plans = [a[a.index("--argo-flow") + 1] for t in workflow["spec"]["templates"] if "container" in t
             for a in [t["container"]["args"]] if "--argo-flow" in a]
    assert len(plans) == 2 and all(p.startswith("%7B") and 100 * 1024 < len(p) < 128 * 1024 for p in plans)
    run = replay_flow(files, "long-x1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Succeeded"
    local = _local(pipeline_ir, {}, tmp_path / "local")
    _assert_same_as_local(pipeline_ir, {}, tmp_path / "store", "long-x1", local)
    assert load_outputs(f"file://{tmp_path}/store", pipeline_ir.name, "long-x1", "join")["output"] == \
        "A" * 55_000 + "|" + "B" * 55_000
