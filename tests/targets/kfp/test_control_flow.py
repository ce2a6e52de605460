"""Maps on kubeflow and vertex (issue 16): goldens, the protobuf schema, kfp 2.17's own compiler, the replay.

The replay (:mod:`.support`) expands each ``ParallelFor`` as the KFP driver does (one iteration per element of
the list, the element as the loop-item input), and every step's outputs must equal ``pipecast run``'s, item by
item (``step[i]``).
"""


import json
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, components, dsl

from pipecast import ParallelFor, Zip, pipeline, step
from pipecast.errors import PipecastError, RunFailedError, ValidationError
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.runtime.publish_kfp import LIST_LIMIT, item_index, list_text
from tests.helpers.cases import compile_case, golden_settings, read_tree, write_tree
from tests.targets.kfp.engine_model import KFP_2_4, KFP_2_17, VERTEX
from tests.targets.kfp.flow_cases import (
    FLOW_CASES,
    map_fan_in,
    nested_made_inside,
    nested_maps,
    zip_in_map,
    zip_product,
)
from tests.targets.kfp.support import check_references, documents, parse_strictly, replay_tasks

GOLDENS = Path(__file__).parent / "goldens"
TARGETS = ["kubeflow", "vertex"]
RUN_ID = "5b0d6f7e-2c1a-4c52-9a51-0f3f2f9a7c11"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(FLOW_CASES))
def test_golden_and_schema(name, target, request):
    files = compile_case(target, FLOW_CASES[name], golden=True).files
    folder = GOLDENS / name / target
    if request.config.getoption("--update-goldens"):
        write_tree(folder, files)
    assert read_tree(folder) == files, f"{name} × {target} differs from its golden (pytest --update-goldens)"
    for text in files.values():
        parse_strictly(text)  # the PipelineSpec protobuf, unknown fields rejected, and every reference resolves
        assert components.load_component_from_text(text).name == name.replace("_", "-")  # the kfp SDK loads it


def _instances(pipeline_ir: Any, root: str, run_id: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """The outputs of step instances (``step``, or ``step[i]`` inside a map) in the store."""
    return {name: load_outputs(root, pipeline_ir.name, run_id, name) for name in names}


@pytest.mark.parametrize("engine", [KFP_2_17, KFP_2_4, VERTEX], ids=lambda e: e.name)
def test_replay_expands_maps_as_pipecast_run_does(engine, tmp_path):
    target = "vertex" if engine is VERTEX else "kubeflow"
    parameters = {"n": 4, "names": ["x", "2", "{{$.inputs.parameters['n']}}", "$(HOME)"]}
    root = f"file://{tmp_path}/replay"
    compiled = compile_case(target, map_fan_in, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    ran = replay_tasks(compiled.main, parameters, RUN_ID, engine=engine)
    assert {name for name in ran if name.startswith("for-loop-1[")} == {
        f"for-loop-1[{i}]/{task}" for i in range(4) for task in ("train", "evaluate")}
    local = run_pipeline(compiled.pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False)
    names = sorted(name for name, state in local.steps.items() if state.status == "done" and state.items is None)
    assert len(names) == 4 * 2 + 4 + 4 + 3, names  # every item of the three maps, and the three steps outside
    expected = _instances(compiled.pipeline, f"file://{tmp_path}/local", local.id, names)
    replayed = _instances(compiled.pipeline, root, RUN_ID, names)
    assert replayed == expected
    assert replayed["join"]["output"] == "x!,2!,{{$.inputs.parameters['n']}}!,$(HOME)! [1, 3, 6, 11]"
    assert ran["make-rates"][1].parameters == {"output": [0.1, 0.2, 0.3, 0.4]}  # the LIST output parameter


def test_loops_are_what_kfps_compiler_writes():
    """The loop task and its DAG's inputs, as kfp 2.17 compiles the same ParallelFors (over a task's LIST
    output with a parallelism limit, and over a LIST pipeline parameter)."""

    @dsl.container_component
    def make_rates(n: int, output: dsl.OutputPath(list)):
        return dsl.ContainerSpec(image="x", command=["run"], args=[n, output])

    @dsl.container_component
    def train(pipecast_item: str, pipecast_items: list, base: int):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_items, base])

    @dsl.container_component
    def greet(pipecast_item: str, pipecast_items: list, suffix: str):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_items, suffix])

    @dsl.container_component
    def size(pipecast_item: str, pipecast_items: list):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_items])

    @dsl.pipeline(name="map-fan-in")
    def reference(n: int = 3, base: int = 10, names: list = ["a"], suffix: str = "!"):  # noqa: B006
        made = make_rates(n=n)
        with dsl.ParallelFor(made.outputs["output"], parallelism=2) as lr:
            train(pipecast_item=lr, pipecast_items=made.outputs["output"], base=base)
        with dsl.ParallelFor(names) as name:
            greet(pipecast_item=name, pipecast_items=names, suffix=suffix)
        with dsl.ParallelFor(["a", "b"]) as thing:  # kfp's type check wants str items for a str input
            size(pipecast_item=thing, pipecast_items=["a", "b"])

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        compiler.Compiler().compile(reference, f"{folder}/ref.yaml")
        expected, _ = documents(Path(f"{folder}/ref.yaml").read_text())
    ours, _ = documents(compile_case("kubeflow", map_fan_in, golden=True).main)
    for loop, inner in (("for-loop-1", "train"), ("for-loop-2", "greet")):
        assert ours["root"]["dag"]["tasks"][loop] == expected["root"]["dag"]["tasks"][loop]
        component = f"comp-{loop}"
        assert ours["components"][component]["inputDefinitions"] == expected["components"][component][
            "inputDefinitions"]
        mine = ours["components"][component]["dag"]["tasks"][inner]["inputs"]["parameters"]
        theirs = expected["components"][component]["dag"]["tasks"][inner]["inputs"]["parameters"]
        assert {k: v for k, v in mine.items() if k in theirs} == theirs
    # A constant list: kfp's raw items, written as kfp writes them; its loop argument takes a group id (3) first.
    raw = ours["root"]["dag"]["tasks"]["for-loop-4"]
    assert raw["parameterIterator"]["items"] == {"raw": '[3, "x", [1, 2], {"k": true}]'}
    expected_raw = expected["root"]["dag"]["tasks"]["for-loop-4"]
    assert expected_raw["parameterIterator"]["items"] == {"raw": '["a", "b"]'}
    assert {**raw, "parameterIterator": {}} == {**expected_raw, "parameterIterator": {}}
    assert raw["parameterIterator"]["itemInput"] == expected_raw["parameterIterator"]["itemInput"]
    assert raw["parameterIterator"]["itemInput"] == "pipelinechannel--loop-item-param-3"
    assert (ours["components"]["comp-for-loop-4"]["inputDefinitions"]
            == expected["components"]["comp-for-loop-4"]["inputDefinitions"])


def test_the_item_is_found_by_value_and_repeated_items_fail_clearly():
    assert item_index("s", "0.25", [0.5, 0.25]) == (1, 0.25)
    assert item_index("s", "1", ["a", "1"]) == (1, "1")
    assert item_index("s", '{"a":[1,true]}', [{"a": [1, True]}]) == (0, {"a": [1, True]})
    with pytest.raises(PipecastError, match=r"items \[0, 1\] of the map's list all read as '1'"):
        item_index("s", "1", [1, "1"])
    with pytest.raises(PipecastError, match="make the list's items distinct"):
        item_index("s", "a", ["a", "a"])
    with pytest.raises(PipecastError, match="is not in the map's list"):
        item_index("s", "b", ["a"])


def test_a_list_over_the_bound_fails_the_step_that_returns_it():
    assert json.loads(list_text("s", "out", [1, 2])) == [1, 2]
    with pytest.raises(PipecastError, match=f"bounded here at {LIST_LIMIT} bytes"):
        list_text("s", "out", ["x" * 1000] * 100)


@step
def add(a: int, b: int) -> int:
    return a + b


@step
def numbers() -> list:
    return [1, 2]


def _refusal(target: str, fn: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        compile_case(target, fn, settings=golden_settings(target))
    return str(caught.value)


@pytest.mark.parametrize("target", TARGETS)
def test_what_the_kfp_targets_do_not_lower_is_refused_clearly(target):
    @pipeline(name="zipped")
    def zipped(xs: list = [[1], [2]], ys: list = [3, 4]):  # noqa: B006
        with ParallelFor(Zip(xs, ys)) as (x, y), ParallelFor(x) as inner:
            add(inner, y)

    assert "iterates one list of a zipped item" in _refusal(target, zipped)

    @pipeline(name="bounded", parallelism=2)
    def bounded():
        with ParallelFor(numbers()) as x:
            add(x, 1)

    assert "no bound on the tasks of a whole run" in _refusal(target, bounded)



@pytest.mark.parametrize("engine", [KFP_2_17, VERTEX], ids=lambda e: e.name)
def test_replay_expands_nested_maps_as_pipecast_run_does(engine, tmp_path):
    """A loop inside a loop's DAG: the replay expands each as the driver does (an inner loop over the outer item
    iterates that item's text, ``getItems``), and every ``step[i][j]`` stores what ``pipecast run`` stores."""
    target = "vertex" if engine is VERTEX else "kubeflow"
    parameters = {"rows": [[1, 2], [], [4, 5, 6]], "cols": ["$(HOME)", "{{$.inputs.parameters['n']}}"]}
    root = f"file://{tmp_path}/replay"
    compiled = compile_case(target, nested_maps, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    ran = replay_tasks(compiled.main, parameters, RUN_ID, engine=engine)
    assert {name for name in ran if name.startswith("for-loop-1[")} == {
        *(f"for-loop-1[{i}]/for-loop-2[{j}]/double" for i, row in enumerate(parameters["rows"])
          for j in range(len(row))),
        *(f"for-loop-1[{i}]/row-sum" for i in range(3)),
        *(f"for-loop-1[{i}]/for-loop-3[{j}]/tag" for i in range(3) for j in range(2))}
    local = run_pipeline(compiled.pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False)
    names = sorted(name for name, state in local.steps.items() if state.status == "done" and state.items is None)
    assert len(names) == 5 + 3 + 6 + 4 + 1, names
    assert "double[2][2]" in names and "times[1][1]" in names
    expected = _instances(compiled.pipeline, f"file://{tmp_path}/local", local.id, names)
    replayed = _instances(compiled.pipeline, root, RUN_ID, names)
    assert replayed == expected
    doubled, sums, tags, products = json.loads(replayed["gather"]["output"])
    assert doubled == [[2, 4], [], [8, 10, 12]] and sums == [6, 0, 30]
    assert tags[1] == ["0$(HOME)0", "0{{$.inputs.parameters['n']}}0"]  # the empty row: its sum is 0
    assert products == [[10, 20], [20, 40]]


def test_nested_loops_are_what_kfps_compiler_writes(tmp_path):
    """``nested_maps``'s loops as kfp 2.17 compiles the same nested ``dsl.ParallelFor``s: a loop over the outer
    item (``<item>-loop-item``), one over a parameter inside a loop, constants in constants (their ids)."""
    # kfp's type check wants each input typed as the item it gets (the task inputs' sources are compared below).
    @dsl.container_component
    def double(pipecast_item: list, pipecast_item_1: int, pipecast_items: list, pipecast_items_1: list):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_item_1])

    @dsl.container_component
    def row_sum(pipecast_item: list, pipecast_items: list, pipecast_items_xs: list):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item])

    @dsl.container_component
    def tag(pipecast_item: list, pipecast_item_1: str, pipecast_items: list, pipecast_items_1: list):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_item_1])

    @dsl.container_component
    def times(pipecast_item: int, pipecast_item_1: int, pipecast_items: list, pipecast_items_1: list):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_item_1])

    @dsl.pipeline(name="nested-maps")
    def reference(rows: list[list[int]] = [[1, 2]], cols: list = ["a"]):  # noqa: B006
        with dsl.ParallelFor(rows, parallelism=2) as row:
            with dsl.ParallelFor(row) as x:
                doubled = double(pipecast_item=row, pipecast_item_1=x, pipecast_items=rows, pipecast_items_1=row)
            total = row_sum(pipecast_item=row, pipecast_items=rows, pipecast_items_xs=row).after(doubled)
            with dsl.ParallelFor(cols, parallelism=1) as col:
                tag(pipecast_item=row, pipecast_item_1=col, pipecast_items=rows, pipecast_items_1=cols).after(total)
        with dsl.ParallelFor([1, 2]) as a, dsl.ParallelFor([10, 20]) as b:
            times(pipecast_item=a, pipecast_item_1=b, pipecast_items=[1, 2], pipecast_items_1=[10, 20])

    compiler.Compiler().compile(reference, str(tmp_path / "ref.yaml"))
    expected, _ = documents((tmp_path / "ref.yaml").read_text())
    ours, _ = documents(compile_case("kubeflow", nested_maps, golden=True).main)
    # kfp 2.17 does not pass the outer loop's own list into a loop nested in it: its task reads an input its DAG
    # does not declare, which the driver cannot resolve. pipecast passes it in, like every other outside value.
    unresolved = check_references(expected, None)
    assert unresolved == [f"comp-for-loop-{n} task {t!r}: input 'pipecast_items' reads comp-for-loop-{n} input "
                          "'pipelinechannel--rows', which is not declared" for n, t in ((2, "double"), (3, "tag"))]
    for n in (2, 3):
        passed = ours["components"]["comp-for-loop-1"]["dag"]["tasks"][f"for-loop-{n}"]["inputs"]["parameters"]
        assert passed.pop("pipelinechannel--rows") == {"componentInputParameter": "pipelinechannel--rows"}
        declared = ours["components"][f"comp-for-loop-{n}"]["inputDefinitions"]["parameters"]
        assert declared.pop("pipelinechannel--rows") == {"parameterType": "LIST"}
    loops = {"root": ["for-loop-1", "for-loop-5"], "comp-for-loop-1": ["for-loop-2", "for-loop-3"],
             "comp-for-loop-5": ["for-loop-7"]}
    for component, names in loops.items():
        mine = ours[component] if component == "root" else ours["components"][component]
        theirs = expected[component] if component == "root" else expected["components"][component]
        for name in names:
            assert mine["dag"]["tasks"][name] == theirs["dag"]["tasks"][name], (component, name)
    for component in ("comp-for-loop-1", "comp-for-loop-2", "comp-for-loop-3", "comp-for-loop-5", "comp-for-loop-7"):
        mine = ours["components"][component]["inputDefinitions"]["parameters"]
        theirs = expected["components"][component]["inputDefinitions"]["parameters"]
        assert mine.keys() == theirs.keys(), component
        # kfp types an item by the list's annotation (list[list[int]]: LIST items; [1, 2]: NUMBER_INTEGER);
        # pipecast knows no item type and declares every item STRING, which the driver iterates too (getItems:
        # a string holding a JSON list) and turns into text for a STRING input.
        assert {k: v for k, v in mine.items() if "loop-item" not in k} == {
            k: v for k, v in theirs.items() if "loop-item" not in k}
        assert all(v == {"parameterType": "STRING"} for k, v in mine.items() if "loop-item" in k)
    for component, task in (("comp-for-loop-2", "double"), ("comp-for-loop-3", "tag"), ("comp-for-loop-7", "times")):
        mine = ours["components"][component]["dag"]["tasks"][task]["inputs"]["parameters"]
        theirs = expected["components"][component]["dag"]["tasks"][task]["inputs"]["parameters"]
        assert {k: v for k, v in mine.items() if k in theirs and k not in ("pipecast_items", "pipecast_items_1")} == {
            k: v for k, v in theirs.items() if k not in ("pipecast_items", "pipecast_items_1")}, task


@pytest.mark.parametrize("engine", [KFP_2_17, VERTEX], ids=lambda e: e.name)
def test_replay_of_a_map_over_a_list_made_inside_the_outer_map(engine, tmp_path):
    """The inner loop iterates a task output of the outer loop's DAG (each outer item its own list, one empty);
    a step after both reads each outer item's list length from what ``spread[i]`` stored, as ``pipecast run``."""
    target = "vertex" if engine is VERTEX else "kubeflow"
    parameters = {"ns": [2, 0, 3]}
    root = f"file://{tmp_path}/replay"
    compiled = compile_case(target, nested_made_inside, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    ran = replay_tasks(compiled.main, parameters, RUN_ID, engine=engine)
    assert sorted(name for name in ran if "/for-loop-2[" in name) == [
        f"for-loop-1[{i}]/for-loop-2[{j}]/tag" for i, n in enumerate(parameters["ns"]) for j in range(n)]
    local = run_pipeline(compiled.pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False)
    names = sorted(name for name, state in local.steps.items() if state.status == "done" and state.items is None)
    assert len(names) == 3 + 5 + 3 + 1, names
    assert _instances(compiled.pipeline, root, RUN_ID, names) == _instances(
        compiled.pipeline, f"file://{tmp_path}/local", local.id, names)
    made, squares, _ = json.loads(_instances(compiled.pipeline, root, RUN_ID, ["pair"])["pair"]["output"])
    assert made == [["p0", "p1"], [], ["p0", "p1", "p2"]]
    assert squares == [["2p02", "2p12"], [], ["3p03", "3p13", "3p23"]]


def test_an_exit_handler_reads_every_item_of_a_nested_map(tmp_path):
    """``--kfp-covered step[*][*]``: the records of every two-level instance, in item order (not ``s[2]``)."""
    from types import SimpleNamespace

    from pipecast.runtime.artifacts import ArtifactStore
    from pipecast.runtime.publish_kfp import final_status_of

    root = f"file://{tmp_path}"
    store = ArtifactStore(root)
    for name, status in (("s[0][0]", "done"), ("s[10][0]", "failed"), ("s[1][0]", "failed"), ("s[0][1]", "failed"),
                         ("s[2]", "failed")):
        store.write_json(f"{store.step_dir('p', 'r', name)}/meta.json",
                         {"step": name, "status": status, "error": "boom", "attempt": 1})
    invocation: Any = SimpleNamespace(artifact_root=root, pipeline="p", run_id="r", step="h")
    status = final_status_of(invocation, '{"state": "FAILED"}', ["s[*][*]"])
    assert status["status"] == "failed"
    assert status["failed_steps"] == ["s[0][1]", "s[1][0]", "s[10][0]"]


def test_a_loop_over_a_task_output_inside_a_loop_is_what_kfps_compiler_writes(tmp_path):
    @dsl.container_component
    def spread(pipecast_item: int, pipecast_items: list, output: dsl.OutputPath(list)):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, output])

    @dsl.container_component
    def tag(pipecast_item: int, pipecast_item_1: str, pipecast_items: list, pipecast_items_1: list):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_item_1])

    @dsl.pipeline(name="nested-made-inside")
    def reference(ns: list[int] = [2]):  # noqa: B006
        with dsl.ParallelFor(ns) as n:
            parts = spread(pipecast_item=n, pipecast_items=ns)
            with dsl.ParallelFor(parts.outputs["output"]) as part:
                tag(pipecast_item=n, pipecast_item_1=part, pipecast_items=ns, pipecast_items_1=parts.outputs["output"])

    compiler.Compiler().compile(reference, str(tmp_path / "ref.yaml"))
    expected, _ = documents((tmp_path / "ref.yaml").read_text())
    ours, _ = documents(compile_case("kubeflow", nested_made_inside, golden=True).main)
    mine = ours["components"]["comp-for-loop-1"]["dag"]["tasks"]["for-loop-2"]
    assert mine["inputs"]["parameters"].pop("pipelinechannel--ns")  # passed in (kfp leaves it undeclared: above)
    assert mine == expected["components"]["comp-for-loop-1"]["dag"]["tasks"]["for-loop-2"]
    declared = ours["components"]["comp-for-loop-2"]["inputDefinitions"]["parameters"]
    theirs = expected["components"]["comp-for-loop-2"]["inputDefinitions"]["parameters"]
    assert declared.pop("pipelinechannel--ns") == {"parameterType": "LIST"}
    assert declared.keys() == theirs.keys()
    assert declared["pipelinechannel--spread-output"] == theirs["pipelinechannel--spread-output"]
    inputs = ours["components"]["comp-for-loop-2"]["dag"]["tasks"]["tag"]["inputs"]["parameters"]
    wanted = expected["components"]["comp-for-loop-2"]["dag"]["tasks"]["tag"]["inputs"]["parameters"]
    assert {k: inputs[k] for k in wanted} == wanted


@pytest.mark.parametrize("name", ["nested_maps", "nested_made_inside"])
def test_vertex_pipeline_job_loads_the_nested_goldens(name, monkeypatch):
    """aiplatform's own loader builds a PipelineJob from each nested golden (no request, no bucket created)."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import gcs_utils

    monkeypatch.setattr(gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist", lambda **_: None)
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))
    path = GOLDENS / name / "vertex" / f"{name.replace('_', '-')}.yaml"
    try:
        job = aiplatform.PipelineJob(display_name=name.replace("_", "-"), template_path=str(path),
                                     job_id=f"{name.replace('_', '-')}-1",
                                     pipeline_root="gs://acme/root", project="acme-ml", location="europe-west4")
    finally:
        initializer.global_config.__init__()  # the SDK keeps endpoint and credentials process-wide
    outer = job.pipeline_spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert "parameterIterator" in outer["for-loop-2"]


@pytest.mark.parametrize("engine", [KFP_2_17, KFP_2_4, VERTEX], ids=lambda e: e.name)
def test_replay_of_zip_and_product_equals_pipecast_run(engine, tmp_path):
    """A zip (loop over its first list, the others read by index) and a product of constants (one loop over the
    combinations): the driver expands each loop, and every ``step[k]`` stores what ``pipecast run`` stores."""
    target = "vertex" if engine is VERTEX else "kubeflow"
    parameters = {"xs": [4, 5, 6, 7], "n": 4}
    root = f"file://{tmp_path}/replay"
    compiled = compile_case(target, zip_product, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    ran = replay_tasks(compiled.main, parameters, RUN_ID, engine=engine)
    assert {name for name in ran if name.startswith("for-loop-")} == {
        *(f"for-loop-1[{i}]/pair-up" for i in range(4)), *(f"for-loop-3[{i}]/pair-up-2" for i in range(2)),
        *(f"for-loop-5[{k}]/pair-up-3" for k in range(6))}
    local = run_pipeline(compiled.pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False)
    names = sorted(name for name, state in local.steps.items() if state.status == "done" and state.items is None)
    assert len(names) == 1 + 4 + 2 + 6 + 1, names
    expected = _instances(compiled.pipeline, f"file://{tmp_path}/local", local.id, names)
    replayed = _instances(compiled.pipeline, root, RUN_ID, names)
    assert replayed == expected
    assert json.loads(replayed["three_lists"]["output"]) == [
        ["w04", "w15", "w26", "w37"], ["a10", "{{x}}20"], ["p1", "q1", "r1", "p2", "q2", "r2"]]


@pytest.mark.parametrize("xs", [[4, 5], []], ids=["shorter", "empty-first"])
def test_zipped_lists_of_different_lengths_fail_as_pipecast_run_fails_them(xs, tmp_path):
    """The publisher task builds the zip as ``pipecast run`` does and fails naming the map and the lengths, so no
    item runs, even when the first list is empty (a loop over it alone would run no item and succeed)."""
    parameters = {"xs": xs, "n": 3}
    root = f"file://{tmp_path}/replay"
    compiled = compile_case("kubeflow", zip_product, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    ran = replay_tasks(compiled.main, parameters, RUN_ID, engine=KFP_2_17, allow_failures=True)
    failed = {name: result for name, (result, _) in ran.items() if result.returncode != 0}
    assert set(failed) == {"pipecast-items-map-1"}
    lengths = f"[{len(xs)}, 3]"
    stderr = failed["pipecast-items-map-1"].stderr
    assert f"map 'map_1' (tests/targets/kfp/flow_cases.py:323) zips lists of different lengths {lengths}" in stderr
    assert "Traceback" not in stderr
    assert not any(name.startswith("for-loop-1[") for name in ran) and "three-lists" not in ran
    with pytest.raises(RunFailedError) as caught:
        run_pipeline(compiled.pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False)
    assert f"pair_up: map 'map_1' (tests/targets/kfp/flow_cases.py:323) zips lists of different lengths {lengths}" in \
        str(caught.value)


def test_zip_and_product_loops_are_what_kfps_compiler_writes(tmp_path):
    """kfp 2.17 compiles ``dsl.ParallelFor`` over a task's LIST output (the publisher of a zip over run-time lists,
    reading the parameter list) and over the product's constant combinations as the same loop tasks and loop DAG
    inputs."""

    @dsl.container_component
    def words_of(n: int, output: dsl.OutputPath(list)):
        return dsl.ContainerSpec(image="x", command=["run"], args=[n, output])

    @dsl.container_component
    def pipecast_items_map_1(list_0: list, output: dsl.OutputPath(list)):
        return dsl.ContainerSpec(image="x", command=["run"], args=[list_0, output])

    @dsl.container_component
    def pair_up(pipecast_item: str, pipecast_items: list):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_items])

    @dsl.container_component
    def show(pipecast_item: int, pipecast_items: list):  # kfp's type check: an int item for [10, 20]
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_items])

    @dsl.container_component
    def show_list(pipecast_item: list, pipecast_items: list):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_items])

    combinations = [[1, "p"], [1, "q"], [1, "r"], [2, "p"], [2, "q"], [2, "r"]]

    @dsl.pipeline(name="zip-product")
    def reference(xs: list = [1, 2, 3], n: int = 3):  # noqa: B006
        words = words_of(n=n)
        combined = pipecast_items_map_1(list_0=xs).after(words)
        with dsl.ParallelFor(combined.output, parallelism=2) as x:
            pair_up(pipecast_item=x, pipecast_items=combined.output)
        with dsl.ParallelFor([10, 20]) as x:
            show(pipecast_item=x, pipecast_items=[10, 20])
        with dsl.ParallelFor(combinations) as combination:
            show_list(pipecast_item=combination, pipecast_items=combinations)

    compiler.Compiler().compile(reference, str(tmp_path / "ref.yaml"))
    expected, _ = documents((tmp_path / "ref.yaml").read_text())
    ours, _ = documents(compile_case("kubeflow", zip_product, golden=True).main)
    publisher = ours["root"]["dag"]["tasks"]["pipecast-items-map-1"]
    reference_publisher = expected["root"]["dag"]["tasks"]["pipecast-items-map-1"]
    assert publisher["dependentTasks"] == reference_publisher["dependentTasks"] == ["words-of"]
    assert publisher["inputs"]["parameters"]["list_0"] == reference_publisher["inputs"]["parameters"]["list_0"]
    for loop in ("for-loop-1", "for-loop-3", "for-loop-5"):
        mine, theirs = ours["root"]["dag"]["tasks"][loop], expected["root"]["dag"]["tasks"][loop]
        # the map's steps also keep the tracer's edge to the list's producer (words-of): a redundant one
        assert set(theirs.pop("dependentTasks", [])) <= set(mine.pop("dependentTasks", [])), loop
        assert mine == theirs, loop
        mine = ours["components"][f"comp-{loop}"]["inputDefinitions"]["parameters"]
        theirs = expected["components"][f"comp-{loop}"]["inputDefinitions"]["parameters"]
        assert mine.keys() == theirs.keys(), loop
        # kfp types a constant list's item by its first element (NUMBER_INTEGER, LIST); pipecast declares every
        # item STRING, which the driver gives as text (see the nested-map parity test)
        assert mine == (theirs if loop == "for-loop-1" else {key: {"parameterType": "STRING"} for key in theirs})
    mine = ours["components"]["comp-for-loop-1"]["dag"]["tasks"]["pair-up"]["inputs"]["parameters"]
    theirs = expected["components"]["comp-for-loop-1"]["dag"]["tasks"]["pair-up"]["inputs"]["parameters"]
    assert {k: mine[k] for k in theirs} == theirs


def test_vertex_pipeline_job_loads_the_zip_and_product_golden(monkeypatch):
    """aiplatform's own loader builds a PipelineJob from the zip/product golden (no request, no bucket created)."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import gcs_utils

    monkeypatch.setattr(gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist", lambda **_: None)
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))
    try:
        job = aiplatform.PipelineJob(display_name="zip-product", template_path=str(
            GOLDENS / "zip_product" / "vertex" / "zip-product.yaml"), job_id="zip-product-1",
            pipeline_root="gs://acme/root", project="acme-ml", location="europe-west4")
    finally:
        initializer.global_config.__init__()  # the SDK keeps endpoint and credentials process-wide
    tasks = job.pipeline_spec["root"]["dag"]["tasks"]
    assert json.loads(tasks["for-loop-5"]["parameterIterator"]["items"]["raw"])[3] == [2, "p"]
    assert tasks["for-loop-1"]["parameterIterator"]["items"] == {
        "inputParameter": "pipelinechannel--pipecast-items-map-1-output"}


@pytest.mark.parametrize("engine", [KFP_2_17, VERTEX], ids=lambda e: e.name)
def test_replay_of_a_zip_and_a_product_inside_a_map_equals_pipecast_run(engine, tmp_path):
    """A zip of the outer item with a parameter (the inner loop iterates the outer loop-item input) and a product of
    constants, both in a map's DAG: every ``pair_up[i][k]`` and the lists of lists equal ``pipecast run``'s."""
    target = "vertex" if engine is VERTEX else "kubeflow"
    parameters = {"rows": [[1, 2, 3], [7, 8, 9], [4, 5, 6]], "labels": ["$(HOME)", "b", "{{x}}"]}
    root = f"file://{tmp_path}/replay"
    compiled = compile_case(target, zip_in_map, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    replay_tasks(compiled.main, parameters, RUN_ID, engine=engine)
    local = run_pipeline(compiled.pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False)
    names = sorted(name for name, state in local.steps.items() if state.status == "done" and state.items is None)
    assert len(names) == 9 + 3 * 2 + 1, names
    expected = _instances(compiled.pipeline, f"file://{tmp_path}/local", local.id, names)
    replayed = _instances(compiled.pipeline, root, RUN_ID, names)
    assert replayed == expected
    tagged, grid = json.loads(replayed["both_lists"]["output"])
    assert tagged == [["$(HOME)1", "b2", "{{x}}3"], ["$(HOME)7", "b8", "{{x}}9"], ["$(HOME)4", "b5", "{{x}}6"]]
    assert grid == [["p1", "p2"]] * 3
