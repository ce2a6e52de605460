"""Zips and products over run-time lists on kubeflow and vertex (issue 16): the publisher task and its loop.

A ``ParallelFor`` iterates one list and the engine computes no combination, so such a map iterates the LIST
output of a task that builds the map's items as ``pipecast run`` does (:mod:`pipecast.targets.kfpspec.
combinations`). The replay (:mod:`.support`) expands the loop as the KFP driver does; every ``step[k]``, the
fan-in lists and an exit handler's status must equal ``pipecast run``'s.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl

from pipecast import ParallelFor, Product, pipeline
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case
from tests.targets.kfp.engine_model import KFP_2_4, KFP_2_17, VERTEX
from tests.targets.kfp.flow_cases import pair_up, runtime_product, runtime_product_exit, words_of, zip_exit
from tests.targets.kfp.support import documents, replay_tasks

GOLDENS = Path(__file__).parent / "goldens"
RUN_ID = "5b0d6f7e-2c1a-4c52-9a51-0f3f2f9a7c11"
PUBLISHERS = ("pipecast-items-", "pipecast_items_")


def _replay_and_run(pipeline_fn: Any, parameters: dict[str, Any], engine: Any,
                    tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], Any, dict[str, str], str]:
    """Replay on ``engine`` and run locally; return both runs' outputs by instance, the local run, the replay's
    task states and run state."""
    target = "vertex" if engine is VERTEX else "kubeflow"  # KFP_2_4 too: the same file, an older backend
    root = f"file://{tmp_path}/replay"
    compiled = compile_case(target, pipeline_fn, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    _, states, state = replay_tasks(compiled.main, parameters, RUN_ID, engine=engine, allow_failures=True,
                                    with_states=True)
    local = run_pipeline(compiled.pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False,
                         raise_on_failure=False, fail_fast=False)
    done = sorted(name for name, s in local.steps.items() if s.status == "done" and s.items is None)
    expected = {name: load_outputs(f"file://{tmp_path}/local", compiled.pipeline.name, local.id, name)
                for name in done}
    replayed = {name: load_outputs(root, compiled.pipeline.name, RUN_ID, name) for name in done}
    ran = {path.rpartition("/")[2].partition("[")[0] for path, s in states.items() if s == "COMPLETE"}
    tasks = {name.replace("_", "-").partition("[")[0] for name in done}
    assert {t for t in ran if not t.startswith(("exit-handler", "for-loop", *PUBLISHERS))} == tasks
    return expected, replayed, local, states, state


@pipeline(name="small_product")
def small_product(xs: list = [1, 2], rows: list = [[5]], n: int = 2):  # noqa: B006 - never mutated
    words = words_of(n)
    with ParallelFor(Product(xs, words)) as (x, word):
        pair_up(x, word)
    with ParallelFor(rows) as row, ParallelFor(Product(row, words)) as (x, word):
        pair_up(x, word)


@pytest.mark.parametrize("engine", [KFP_2_17, KFP_2_4, VERTEX], ids=lambda e: e.name)
def test_a_product_over_run_time_lists_equals_pipecast_run(engine, tmp_path):
    """A product of a parameter and a step's list (chained and nested map inside it) and one of an outer map's item
    with a step's list: every instance ``step[k]`` and the collected lists equal ``pipecast run``'s."""
    parameters = {"xs": [3, 1, 2], "n": 2, "rows": [[5, 8], [], [6]]}
    expected, replayed, local, states, state = _replay_and_run(runtime_product, parameters, engine, tmp_path)
    assert state == "COMPLETE" and local.status == "succeeded"
    assert replayed == expected
    assert len(expected) == 1 + 6 + 6 + 6 * 3 + (4 + 0 + 2) + 1, sorted(expected)
    grid, chained, tagged, inner = json.loads(replayed["four_lists"]["output"])
    assert grid == ["w03", "w13", "w01", "w11", "w02", "w12"]  # the first list varying slowest, as k = i*2+j
    assert chained == [5] * 6
    assert tagged == [["w05", "w15", "w08", "w18"], [], ["w06", "w16"]]
    assert inner == [[9, 3, 6], [9, 3, 6], [3, 1, 2], [3, 1, 2], [6, 2, 4], [6, 2, 4]]
    assert {p for p, s in states.items() if p.startswith("for-loop-1[")} >= {f"for-loop-1[{k}]/pair-up"
                                                                             for k in range(6)}


@pytest.mark.parametrize("engine", [KFP_2_17, VERTEX], ids=lambda e: e.name)
def test_an_exit_handler_names_the_failed_combinations_as_pipecast_run_does(engine, tmp_path):
    expected, replayed, local, _, state = _replay_and_run(runtime_product_exit, {"xs": [1, 2], "n": 2}, engine,
                                                          tmp_path)
    assert state == "FAILED" and local.status == "failed"
    assert replayed == expected
    status = json.loads(replayed["run_report"]["output"])
    assert status["status"] == "failed" and status["failed_steps"] == ["check_pair[1]", "check_pair[3]"]
    assert "refusing w11" in status["error"]


@pytest.mark.parametrize("engine", [KFP_2_17, VERTEX], ids=lambda e: e.name)
@pytest.mark.parametrize("xs", [[], [4, 5, 6], [0, 2]], ids=["empty-first", "longer-first", "zipping"])
def test_an_exit_handler_reads_a_zip_that_does_not_zip_as_pipecast_run_reports_it(engine, xs, tmp_path):
    """The publisher fails; the handler's status names the map's first step and the lengths, as pipecast run's."""
    expected, replayed, local, _, state = _replay_and_run(zip_exit, {"xs": xs, "n": 2}, engine, tmp_path)
    assert replayed == expected
    status = json.loads(replayed["run_report"]["output"])
    if xs == [0, 2]:
        assert state == "FAILED" and status["failed_steps"] == ["check_pair[1]"]  # w12 refused
        return
    assert state == "FAILED" and local.status == "failed"
    assert status == {"status": "failed", "failed_steps": ["pair_up"], "error": (
        f"map 'map_1' (tests/targets/kfp/flow_cases.py:408) zips lists of different lengths [{min(len(xs), 2)}, "
        f"{max(len(xs), 2)}]; zip pairs item i of each list, so give them one length (or use Product)")}


def test_an_empty_list_in_a_product_runs_no_item_and_collects_an_empty_list(tmp_path):
    expected, replayed, local, _, state = _replay_and_run(runtime_product, {"xs": [], "n": 2}, KFP_2_17, tmp_path)
    assert state == "COMPLETE" and local.status == "succeeded"
    assert replayed == expected
    grid, chained, _, inner = json.loads(replayed["four_lists"]["output"])
    assert grid == chained == inner == []


def test_the_publisher_and_its_loop_are_what_kfps_compiler_writes(tmp_path):
    """kfp 2.17 compiles a task returning the combinations and ``dsl.ParallelFor`` over its output (outside and
    inside another loop) as the same loop tasks, loop DAG inputs and publisher inputs."""

    @dsl.container_component
    def words_of(n: int, output: dsl.OutputPath(list)):
        return dsl.ContainerSpec(image="x", command=["run"], args=[n, output])

    @dsl.container_component
    def pipecast_items_map_1(list_0: list, output: dsl.OutputPath(list)):
        return dsl.ContainerSpec(image="x", command=["run"], args=[list_0, output])

    @dsl.container_component
    def pipecast_items_map_3(list_0: str, output: dsl.OutputPath(list)):  # the outer item, given as text
        return dsl.ContainerSpec(image="x", command=["run"], args=[list_0, output])

    @dsl.container_component
    def pair_up(pipecast_item: str, pipecast_items: list):
        return dsl.ContainerSpec(image="x", command=["run"], args=[pipecast_item, pipecast_items])

    @dsl.pipeline(name="small-product")
    def reference(xs: list = [1, 2], rows: list = [[5]], n: int = 2):  # noqa: B006
        words = words_of(n=n)
        first = pipecast_items_map_1(list_0=xs).after(words)
        with dsl.ParallelFor(first.output) as item:
            pair_up(pipecast_item=item, pipecast_items=first.output)
        with dsl.ParallelFor(rows) as row:
            second = pipecast_items_map_3(list_0=row).after(words)
            with dsl.ParallelFor(second.output) as item:
                pair_up(pipecast_item=item, pipecast_items=second.output)

    compiler.Compiler().compile(reference, str(tmp_path / "ref.yaml"))
    expected, _ = documents((tmp_path / "ref.yaml").read_text())
    ours, _ = documents(compile_case("kubeflow", small_product, golden=True).main)
    mine, theirs = ours["root"]["dag"]["tasks"], expected["root"]["dag"]["tasks"]
    assert mine["pipecast-items-map-1"]["inputs"]["parameters"]["list_0"] == \
        theirs["pipecast-items-map-1"]["inputs"]["parameters"]["list_0"]
    assert mine["pipecast-items-map-1"]["dependentTasks"] == ["words-of"]
    for loop in ("for-loop-1", "for-loop-2"):
        loop_mine, loop_theirs = dict(mine[loop]), dict(theirs[loop])
        # the map's steps also keep the tracer's edge to the list's producer (words-of): a redundant one
        assert set(loop_theirs.pop("dependentTasks")) <= set(loop_mine.pop("dependentTasks")), loop
        assert loop_mine == loop_theirs, loop
    inner_mine = ours["components"]["comp-for-loop-2"]["dag"]["tasks"]
    inner_theirs = expected["components"]["comp-for-loop-2"]["dag"]["tasks"]
    # the outer item reaches the publisher as the loop item every task in the loop reads (pipecast_item)
    assert inner_mine["pipecast-items-map-3"]["inputs"]["parameters"]["pipecast_item"] == \
        inner_theirs["pipecast-items-map-3"]["inputs"]["parameters"]["list_0"]
    loop_mine, loop_theirs = inner_mine["for-loop-3"], inner_theirs["for-loop-3"]
    for key in ("dependentTasks", "parameterIterator", "taskInfo", "componentRef"):
        assert loop_mine[key] == loop_theirs[key], key
    theirs_inputs = loop_theirs["inputs"]["parameters"]
    assert {k: loop_mine["inputs"]["parameters"][k] for k in theirs_inputs} == theirs_inputs
    declared = ours["components"]["comp-for-loop-3"]["inputDefinitions"]["parameters"]
    reference_declared = expected["components"]["comp-for-loop-3"]["inputDefinitions"]["parameters"]
    assert {k: declared[k] for k in reference_declared} == reference_declared


@pytest.mark.parametrize("name", ["runtime_product", "runtime_product_exit"])
def test_vertex_pipeline_job_loads_the_product_goldens(name, monkeypatch):
    """aiplatform's own loader builds a PipelineJob from each golden (no request, no bucket created)."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import gcs_utils

    monkeypatch.setattr(gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist", lambda **_: None)
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))
    slug = name.replace("_", "-")
    try:
        job = aiplatform.PipelineJob(display_name=slug, template_path=str(GOLDENS / name / "vertex" / f"{slug}.yaml"),
                                     job_id=f"{slug}-1", pipeline_root="gs://acme/root", project="acme-ml",
                                     location="europe-west4")
    finally:
        initializer.global_config.__init__()  # the SDK keeps endpoint and credentials process-wide
    tasks = job.pipeline_spec["root"]["dag"]["tasks"]
    loop = tasks["for-loop-1"] if "for-loop-1" in tasks else \
        job.pipeline_spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]["for-loop-2"]
    assert loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--pipecast-items-map-1-output"}
