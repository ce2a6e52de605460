"""Control flow on Tekton (issue 16): goldens per construct, the strict CRD schemas, the refusals, and replays
that follow Tekton's controller (``flow_replay.py``) with outputs equal to ``pipecast run``'s.

``pytest --update-goldens`` rewrites ``data/flow/<name>/`` (``ERROR.txt`` for a refused pipeline).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pipecast.compiler import ir
from pipecast.errors import PipecastError, ValidationError
from pipecast.runtime import publish_tekton
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import case, compile_case, read_tree, write_tree
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.tekton import flow_pipelines
from tests.targets.tekton.flow_replay import replay_flow
from tests.targets.tekton.support import documents, inlined, schema_errors

GOLDENS = Path(__file__).parent / "data" / "flow"
NAMES = ["tk_branches", "tk_map", "tk_exit", "tk_hostile", "tk_nested", "tk_bounded", "search", "tk_item_branches",
         "tk_item_skip_read", "tk_nested_maps", "tk_nested_item_branch", "tk_nested_branches", "tk_nested_branch_lists",
         "tk_nested_bounded", "tk_nested_after", "tk_nested_skip_read"]


def unbounded_search() -> ir.Pipeline:
    """tests/golden/cases/hyperparameter_search.py without its parallelism bounds, which Tekton cannot express."""
    built = case("hyperparameter_search").build()
    return dataclasses.replace(built, parallelism=None,
                               groups=tuple(dataclasses.replace(g, parallelism=None) for g in built.groups))


def _source(name: str) -> Any:
    return unbounded_search() if name == "search" else getattr(flow_pipelines, name)


def _compiled(name: str, settings: dict[str, Any] | None = None) -> dict[str, str]:
    try:
        return compile_case("tekton", _source(name), golden=True, settings=settings).files
    except ValidationError as err:
        return {"ERROR.txt": str(err) + "\n"}


@pytest.mark.parametrize("name", NAMES)
def test_golden(name, request):
    files = _compiled(name)
    if request.config.getoption("--update-goldens"):
        write_tree(GOLDENS / name, files)
    assert read_tree(GOLDENS / name) == files, f"{name} differs from {GOLDENS / name} (pytest --update-goldens)"


@pytest.mark.parametrize("embed", [False, True], ids=["pipeline", "embedded"])
def test_flow_objects_are_schema_valid(embed):
    checked: dict[str, int] = {}
    for name in NAMES:
        files = _compiled(name, {"embed": embed})
        for doc in [] if "ERROR.txt" in files else documents(files):
            assert schema_errors(doc) == [], name
            checked[doc["kind"]] = checked.get(doc["kind"], 0) + 1
    assert checked.pop("Task") >= 5  # at least one shared Task per pipeline
    assert checked == ({"PipelineRun": 13} if embed else {"Pipeline": 13, "PipelineRun": 13})


def test_the_schema_checks_the_control_flow_fields():
    """The strict schema is not blind to the new fields: a misspelt when, matrix or finally field is caught."""
    import copy

    (pipeline,) = [d for d in documents(_compiled("tk_exit")) if d["kind"] == "Pipeline"]
    for mutate in (lambda p: p["spec"]["tasks"][1]["matrix"]["params"][0].update(values=["0"]),
                   lambda p: p["spec"]["finally"][1]["when"][0].update(operater="in"),
                   lambda p: p["spec"]["finally"][0].update(runAfter=["total"]) or p["spec"]["finally"][0].update(
                       onErorr="continue")):
        broken = copy.deepcopy(pipeline)
        mutate(broken)
        assert schema_errors(broken), broken


def test_refusals_name_the_construct_and_the_alternative():
    assert "ERROR.txt" not in _compiled("tk_nested_after")  # lifted: tests/targets/tekton/test_rest.py
    inner = _compiled("tk_nested_bounded")["ERROR.txt"]  # the emulation could bound it; Tekton bounds nothing
    assert "flow_pipelines.py:302: step 'square': target 'tekton': tekton cannot run a parallelism bound: Tekton " \
           "bounds neither the TaskRuns of a matrix nor the running tasks of a PipelineRun" in inner
    assert "(1 problem)" in inner
    late = _compiled("tk_item_skip_read")["ERROR.txt"]
    assert "map 'map_2' reads step 'upto', which may be skipped by a condition inside a map" in late
    assert "condition 'condition_2' reads step 'total'" in late
    bounded = _compiled("tk_bounded")["ERROR.txt"]
    assert "tekton cannot run a parallelism bound: Tekton bounds neither" in bounded
    example = compile_case  # the example itself keeps its bounds: refused for them alone
    with pytest.raises(ValidationError, match=r"\(1 problem\)[\s\S]*parallelism bound"):
        example("tekton", "hyperparameter_search", golden=True)


def test_constant_maps_are_checked_against_tekton_matrix_limits():
    with pytest.raises(ValidationError, match="has 4 items; Tekton fans a task out into 1 to 3 TaskRuns"):
        compile_case("tekton", flow_pipelines.tk_map, golden=True, settings={"max_matrix_combinations": 3})
    with pytest.raises(ValidationError, match="Tekton keeps 4096 bytes of a task's results"):
        compile_case("tekton", flow_pipelines.tk_map, golden=True, settings={"max_matrix_combinations": 1000})


def test_lowering_shape():
    files = _compiled("tk_branches")
    (pipeline,) = [d for d in documents(files) if d["kind"] == "Pipeline"]
    tasks = {t["name"]: t for t in pipeline["spec"]["tasks"]}
    branch = "$(tasks.condition-1-branch.results.branch)"
    assert inlined(files)["condition-1-branch"]["taskSpec"]["results"][0]["name"] == "branch"
    assert tasks["promote"]["when"] == [{"input": branch, "operator": "in", "values": ["condition_1"]}]
    # Tekton runs the children of a task its when skipped, so the step after a branch carries the branch's when
    assert tasks["shout"]["when"] == tasks["promote"]["when"]
    assert tasks["announce"]["when"][0]["values"] == ["condition_1", "condition_2", "condition_3"]
    (maps,) = [d for d in documents(_compiled("tk_map")) if d["kind"] == "Pipeline"]
    mapped = {t["name"]: t for t in maps["spec"]["tasks"]}
    assert mapped["square"]["matrix"] == {"params": [{"name": "index",
                                                      "value": "$(tasks.map-1-items.results.index[*])"}]}
    assert mapped["plus-3"]["matrix"]["params"][0]["value"] == ["0", "1", "2", "3"]  # a product of constants
    (exits,) = [d for d in documents(_compiled("tk_exit")) if d["kind"] == "Pipeline"]
    final = {t["name"]: t for t in exits["spec"]["finally"]}
    assert set(final) == {"report", "alert", "celebrate"}
    assert final["alert"]["when"] == [{"input": "$(tasks.status)", "operator": "in", "values": ["Failed"]}]
    assert {"name": "status-fail-on", "value": "$(tasks.fail-on.status)"} in final["report"]["params"]


def _same_as_local(pipeline: ir.Pipeline, values: dict[str, Any], store: Path, run_id: str, tmp_path: Path,
                   *, succeeded: bool = True) -> dict[str, Any]:
    """Every instance the local run finished has the replay's outputs, and nothing else ran in the replay."""
    local = run_pipeline(pipeline, values, artifact_root=f"file://{tmp_path}/local", cache=False,
                         raise_on_failure=False)
    assert (local.status == "succeeded") is succeeded
    done = sorted(n for n, s in local.steps.items() if s.status in ("done", "cached") and s.items is None)
    folder = Path(ArtifactStore(f"file://{store}").run_dir(pipeline.name, run_id))
    replayed = sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / "meta.json").exists()
                      and '"succeeded"' in (p / "meta.json").read_text())
    assert replayed == done
    outputs = {n: load_outputs(f"file://{store}", pipeline.name, run_id, n) for n in done}
    assert outputs == {n: local.step_outputs(n) for n in done}
    return outputs


def test_the_example_replayed_as_tekton_runs_it_equals_pipecast_run(tmp_path):
    """Maps from an items task's array result, a branch chosen by its result, OneOf and the finally handler."""
    store = tmp_path / "store"
    pipeline = unbounded_search()
    files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    run = replay_flow(files, "search-1", {"threshold": "0.8"}, store=store, work=tmp_path / "pods")
    assert run.status == "Completed"  # a branch was skipped
    assert len(run.tasks["train-model"].runs) == 3 and run.tasks["map-1-items"].results["index"] == ["0", "1", "2"]
    assert run.tasks["condition-1-branch"].results["branch"] == "condition_1"
    assert run.tasks["keep-current"].skipped == "WhenExpressionsSkip"
    outputs = _same_as_local(pipeline, {"threshold": 0.8}, store, "search-1", tmp_path)
    assert outputs["report"] == {"output": "search succeeded"}
    assert outputs["record_decision"]["output"].startswith("promoted lr=")


def test_branches_maps_and_a_failing_item_replayed_equal_pipecast_run(tmp_path):
    """Elif with a membership test and OneOf; maps over a parameter, an output zipped with a constant and a
    product; a failing item that fails the run while the handler and on_failure run and on_success does not."""
    store = tmp_path / "store"
    for name, params, values, status in [
        ("tk_branches", {"scale": "0.5", "env": "dev"}, {"scale": 0.5, "env": "dev"}, "Completed"),
        ("tk_map", {"n": "2"}, {"n": 2}, "Succeeded"),
        ("tk_exit", {}, {}, "Failed"),
    ]:
        pipeline = getattr(flow_pipelines, name).build()
        files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
        run_id = f"{name.replace('_', '-')}-1"
        run = replay_flow(files, run_id, params, store=store, work=tmp_path / name)
        assert run.status == status, (name, {k: (s.status, s.skipped) for k, s in run.tasks.items()})
        outputs = _same_as_local(pipeline, values, store, run_id, tmp_path / name, succeeded=status != "Failed")
        if name == "tk_branches":
            assert run.tasks["shout"].skipped == "WhenExpressionsSkip"  # after the if branch, which did not run
            assert outputs["shout_2"] == {"output": "STAGED AT 0.45!"}
        if name == "tk_exit":
            assert outputs["report"] == {"output": "failed:fail_on[1]"}
            assert outputs["alert"] == {"output": "alert failed ['fail_on[1]']"}
            assert run.tasks["celebrate"].skipped == "WhenExpressionsSkip"
            assert run.tasks["total"].skipped == "StoppingSkip"


def test_tekton_variables_in_conditions_and_map_items_arrive_verbatim(tmp_path):
    """A condition's constant and a constant map list holding `$(…)` text: percent-encoded in the command, so
    Tekton's substitution passes leave them alone; the replay equals pipecast run (the if branch ran)."""
    store = tmp_path / "store"
    pipeline = flow_pipelines.tk_hostile.build()
    files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    assert "$(params.env)" not in "".join(files.values())
    run = replay_flow(files, "hostile-1", store=store, work=tmp_path / "pods")
    assert run.tasks["condition-1-branch"].results["branch"] == "condition_1"
    outputs = _same_as_local(pipeline, {}, store, "hostile-1", tmp_path)
    (item,) = [name for name in outputs if name.endswith("[0]")]
    assert outputs[item] == {"output": flow_pipelines.HOSTILE}
    assert outputs["shout"] == {"output": flow_pipelines.HOSTILE + "!"}


def test_results_over_tekton_limits_fail_the_task_before_the_engine_sees_them(tmp_path):
    path = str(tmp_path / "r")
    with pytest.raises(PipecastError, match="Tekton keeps at most 4096 bytes"):
        publish_tekton.write_result(path, "index", "x" * 4097)
    lists = tmp_path / "list.json"
    lists.write_text("[]")
    code = publish_tekton.main(["items", "--pipeline", "p", "--run-id", "r", "--artifact-root", f"file://{tmp_path}",
                                "--result", path, "--map", "map_1", "--max", "2", "--const", "list#0=[1,2,3]"])
    assert code == 2 and not Path(path).exists()
    assert publish_tekton.main(["items", "--pipeline", "p", "--run-id", "r", "--artifact-root",
                                f"file://{tmp_path}", "--result", path, "--map", "m", "--const", "list#0=[]"]) == 2
    assert publish_tekton.main(["items", "--pipeline", "p", "--run-id", "r", "--artifact-root", f"file://{tmp_path}",
                                "--result", path, "--map", "m", "--combine", "product", "--const", "list#0=[1,2]",
                                "--const", "list#1=[3,4,5]"]) == 0
    assert Path(path).read_text() == '["0","1","2","3","4","5"]'


def test_submit_checks_the_clusters_api_fields_before_creating_anything(kube):
    """A map needs Tekton's beta fields (matrix, array results): a cluster set to `stable` is refused up front;
    on Tekton's default (`beta`) the Pipeline with its matrix is applied and the run created."""
    from pipecast.errors import SubmitError
    from pipecast.flow import submit_pipeline
    from tests.helpers.cases import golden_settings

    def flags(level: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "feature-flags",
                                                                     "namespace": "tekton-pipelines"},
                "data": {"enable-api-fields": level}}

    config = {"kubeconfig": kube.kubeconfig, "namespace": "ml"}
    kube.install("/api/v1/namespaces/tekton-pipelines/configmaps", flags("stable"))
    with pytest.raises(SubmitError, match="enable-api-fields: 'stable'"):
        submit_pipeline(flow_pipelines.tk_map.build(), "tekton", {}, golden_settings("tekton"), config)
    assert kube.requests_to("POST", "/apis/tekton.dev") == []
    submit_pipeline(flow_pipelines.tk_branches.build(), "tekton", {}, golden_settings("tekton"), config)  # no map
    kube.objects["/api/v1/namespaces/tekton-pipelines/configmaps/feature-flags"]["data"] = flags("beta")["data"]
    submit_pipeline(flow_pipelines.tk_map.build(), "tekton", {}, golden_settings("tekton"), config)
    posted = [r["body"] for r in kube.requests_to("POST", "/apis/tekton.dev") if r["body"]["kind"] == "Pipeline"]
    assert [p["metadata"]["name"] for p in posted] == ["tk-branches", "tk-map"]
    assert any("matrix" in task for task in posted[1]["spec"]["tasks"])


def test_a_branch_without_steps_still_gets_its_branch_task():
    """The branch task borrows the image of a step of its chain; an empty if branch must not leave it without one."""
    tasks = inlined(compile_case("tekton", flow_pipelines.tk_empty_if, golden=True).files)
    assert tasks["keep"]["when"][0]["values"] == ["condition_2"]
    assert "--branch" in tasks["condition-1-branch"]["taskSpec"]["steps"][0]["args"]


def test_conditions_inside_a_map_are_decided_per_item_and_replay_equal_to_pipecast_run(tmp_path):
    """A ``when`` belongs to the whole matrixed task, so a branch inside a map has none: every TaskRun starts and
    its runtime skips its item (recorded, exit 0). An item's output with a parameter, the item itself, OneOf per
    item, a step after a branch, fan-ins of the items that ran, and a fan-in none of whose items ran (skipped,
    with what reads it): the replay's records equal ``pipecast run``'s."""
    store = tmp_path / "store"
    pipeline = flow_pipelines.tk_item_branches.build()
    files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    tasks = inlined(files)
    assert not any("when" in task or task["name"].endswith("-branch") for task in tasks.values())
    assert "--tekton-if" in tasks["plus"]["taskSpec"]["steps"][0]["args"]
    for params, values, picked in [({}, {}, 225.75), ({"limit": "0.5"}, {"limit": 0.5}, 315.75)]:
        run_id = f"ib-{len(params)}"
        run = replay_flow(files, run_id, params, store=store, work=tmp_path / run_id)
        assert run.status == "Succeeded"  # Tekton sees every TaskRun succeed; the records say which skipped
        assert len(run.tasks["plus"].runs) == 4
        outputs = _same_as_local(pipeline, values, store, run_id, tmp_path / run_id)
        assert outputs["total_2"] == {"output": picked}
        assert "total" not in outputs and "shout" not in outputs
        assert [name for name in outputs if outputs[name] == {"output": 1003.0}] == ["plus_6[3]"]
        skipped = ArtifactStore(f"file://{store}").read_json(
            f"{ArtifactStore(f'file://{store}').step_dir(pipeline.name, run_id, 'plus[0]')}/meta.json")
        assert skipped["status"] == "skipped" and "is false" in skipped["reason"]


def test_nested_maps_are_run_by_the_outer_items_taskruns_and_replay_equal_to_pipecast_run(tmp_path):
    """A matrix cannot hold a matrix (docs/matrix.md): a step in (or collecting) an inner map is a task whose
    matrix is the outer map's, and its runtime runs that outer item's instances ``step[i][j]``. Over the outer
    item and over a list the outer body makes, chained, a fan-in per outer item and lists of lists after the
    maps, and inside a condition (run, then skipped by its ``when``): the replay's records equal ``pipecast run``'s."""
    store = tmp_path / "store"
    pipeline = flow_pipelines.tk_nested_maps.build()
    files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    tasks = inlined(files)
    assert tasks["plus"]["taskSpec"]["steps"][0]["command"][2] == "pipecast.runtime.tekton_nested"
    assert tasks["plus"]["matrix"] == tasks["square"]["matrix"]  # the outer map's indices, never the inner ones
    assert "matrix" not in tasks["sums-2"] and "map-2-items" not in tasks
    for params, values, status in [({}, {}, "Succeeded"), ({"n": "1"}, {"n": 1}, "Completed")]:
        run_id = f"nested-{len(params)}"
        run = replay_flow(files, run_id, params, store=store, work=tmp_path / run_id)
        assert run.status == status, {k: (s.status, s.skipped) for k, s in run.tasks.items()}
        assert len(run.tasks["plus"].runs) == 2 and len(run.tasks["plus-2"].runs) == 2  # one TaskRun per outer item
        outputs = _same_as_local(pipeline, values, store, run_id, tmp_path / run_id)
        assert outputs["plus[0][1]"] == {"output": 5.0} and outputs["plus[1][0]"] == {"output": 10.0}
        assert outputs["total_2"] == {"output": 17.0}  # (2 + 5) + 10, the per-outer-item fan-ins
        assert outputs["sums_2"] == {"output": [4.0, 8.0] if params else [7.0, 14.0]}  # lists of lists
        if params:
            assert run.tasks["square-2"].skipped == "WhenExpressionsSkip" and "announce" not in outputs
        else:
            assert outputs["sums"] == {"output": [5.0, 9.0]} and outputs["announce"]["output"]


def _records(store: Path, pipeline: ir.Pipeline, run_id: str) -> dict[str, str]:
    folder = Path(ArtifactStore(f"file://{store}").run_dir(pipeline.name, run_id))
    return {p.parent.name: json.loads(p.read_text())["status"] for p in folder.glob("*/meta.json")}


def test_conditions_and_nested_maps_combined_replay_equal_to_pipecast_run(tmp_path):
    """A ``when`` belongs to the whole matrixed task, so the outer item's TaskRun decides (``--decide``) its branch
    and each inner item's, as on GitHub. Hand-derived: rows ``[[1, 2], [3], [], [4, 5, 6]]`` have widths 2, 1, 0,
    3; the outer branch ``n >= 2`` runs at rows 0 and 3 only (``plus[1][0]`` recorded skipped, row 2 has no inner
    item), the inner branch ``y != 2`` skips ``square[0][1]``; the per-row fan-ins get the items that ran (``0``
    where none did), the fan-ins after both levels lists of lists. Then rows where every outer branch is false:
    ``plus`` is skipped, and so is what reads it. ``pipecast run`` runs the same instances, with the same outputs.
    """
    store = tmp_path / "store"
    pipeline = flow_pipelines.tk_nested_branches.build()
    files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    tasks = inlined(files)
    assert not any("when" in task or task["name"].endswith("-branch") for task in tasks.values())
    for name in ("plus", "square", "total", "total-2"):  # one TaskRun per outer item, which decides
        assert tasks[name]["taskSpec"]["steps"][0]["args"][:3] == ["--decide", "--outer-index", "$(params.index)"]
    assert tasks["plus"]["runAfter"] == ["width", "map-1-items"]  # the outer branch reads width[i]
    assert tasks["gather"]["taskSpec"]["steps"][0]["args"][0] == "--decide" and "matrix" not in tasks["gather"]
    short = [[3.0], [2.0]]
    for params, values in [({}, {}), ({"rows": json.dumps(short)}, {"rows": short})]:
        run_id = f"nb-{len(params)}"
        run = replay_flow(files, run_id, params, store=store, work=tmp_path / run_id)
        assert run.status == "Succeeded"  # Tekton sees every TaskRun succeed; the records say which skipped
        outputs = _same_as_local(pipeline, values, store, run_id, tmp_path / run_id)
        records = _records(store, pipeline, run_id)
        if not params:
            assert len(run.tasks["plus"].runs) == 4
            assert {n for n, status in records.items() if status == "skipped"} == {"plus[1][0]", "square[0][1]"}
            assert [outputs[f"plus[{i}][{j}]"]["output"] for i, j in [(0, 0), (0, 1), (3, 0), (3, 1), (3, 2)]] == \
                [3.0, 4.0, 7.0, 8.0, 9.0]
            assert [outputs[f"total[{i}]"]["output"] for i in range(4)] == [1.0, 9.0, 0, 77.0]
            assert [outputs[f"total_2[{i}]"]["output"] for i in range(4)] == [7.0, 0, 0, 24.0]
            assert outputs["total_3"] == {"output": 31.0}
            assert outputs["gather"] == {"output": [[[3.0, 4.0], [], [], [7.0, 8.0, 9.0]], [1.0, 9.0, 0, 77.0],
                                                    [[1.0], [9.0], [], [16.0, 25.0, 36.0]]]}
        else:  # no outer branch runs: plus is skipped, so are total_2 (no record: skipped whole), total_3, gather
            assert records == {"width[0]": "succeeded", "width[1]": "succeeded", "plus[0][0]": "skipped",
                               "plus[1][0]": "skipped", "square[0][0]": "succeeded", "square[1][0]": "skipped",
                               "total[0]": "succeeded", "total[1]": "succeeded", "total_3": "skipped",
                               "gather": "skipped"}
            assert outputs["total[0]"] == {"output": 9.0} and outputs["total[1]"] == {"output": 0}


def test_an_inner_map_over_a_list_a_skipped_branch_makes_has_no_items_replay_equal_to_pipecast_run(tmp_path):
    """Hand-derived: rows 1 and 2 skip the branch, so ``spread`` makes no list there and ``plus`` has no items
    (every engine skips the loop); the fan-in after the inner level gets ``[]`` there. Where every row skips it,
    ``plus`` is skipped and so are the fan-ins that read it. Also the nested map inside a condition inside a map
    that was refused before. The replay runs what ``pipecast run`` runs, with the same outputs.
    """
    store = tmp_path / "store"
    pipeline = flow_pipelines.tk_nested_branch_lists.build()
    files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    tasks = inlined(files)
    assert tasks["plus"]["taskSpec"]["steps"][0]["args"][:3] == ["--decide", "--outer-index", "$(params.index)"]
    assert "--tekton-if" in tasks["spread"]["taskSpec"]["steps"][0]["args"]  # a plain mapped step in a branch
    short = [[1.0], [2.0]]
    for params, values in [({}, {}), ({"rows": json.dumps(short)}, {"rows": short})]:
        run_id = f"bl-{len(params)}"
        run = replay_flow(files, run_id, params, store=store, work=tmp_path / run_id)
        assert run.status == "Succeeded"
        outputs = _same_as_local(pipeline, values, store, run_id, tmp_path / run_id)
        records = _records(store, pipeline, run_id)
        if not params:
            assert {n for n, status in records.items() if status == "skipped"} == {"spread[1]", "spread[2]"}
            assert not any(n.startswith(("plus[1]", "plus[2]")) for n in records)  # no items: nothing recorded
            assert [outputs[f"plus[0][{j}]"]["output"] for j in range(2)] == [2.5, 3.0]  # [0.5, 1.0] + 2
            assert [outputs[f"plus[3][{j}]"]["output"] for j in range(3)] == [5.0, 5.5, 6.0]
            assert [outputs[f"width_2[{i}]"]["output"] for i in range(4)] == [2.0, 0.0, 0.0, 3.0]
            assert outputs["gather"] == {"output": [[[2.5, 3.0], [], [], [5.0, 5.5, 6.0]], [2.0, 0.0, 0.0, 3.0],
                                                    [[0.5, 1.0], [2.0, 2.5, 3.0]]]}
        else:
            assert records == {"width[0]": "succeeded", "width[1]": "succeeded", "spread[0]": "skipped",
                               "spread[1]": "skipped", "gather": "skipped"}
    pipeline = flow_pipelines.tk_nested_item_branch.build()
    files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    replay_flow(files, "ib-1", {}, store=store, work=tmp_path / "ib")
    outputs = _same_as_local(pipeline, {}, store, "ib-1", tmp_path / "ib")
    assert outputs == {"plus[1][0]": {"output": 3.0}, "plus[1][1]": {"output": 4.0}}  # x = 2.0 only
    assert _records(store, pipeline, "ib-1") == {"plus[0][0]": "skipped", "plus[0][1]": "skipped",
                                                 "plus[1][0]": "succeeded", "plus[1][1]": "succeeded"}


def test_inner_items_reading_a_step_an_outer_branch_skips_replay_equal_to_pipecast_run(tmp_path):
    """Hand-derived: rows ``[[1, 2], [3]]`` have widths 2 and 1, so ``big[0] = 4`` runs and ``big[1]`` is skipped;
    inner item ``plus[1][0]`` reads ``big[1]`` and is skipped with it, ``plus[0][*]`` are 5 and 6; the inner
    condition ``lifted > 5.5`` (on the inner item's own output) runs ``square_2[0][1] = 36`` only. The fan-in
    after both levels gets the items that ran. The replay runs what ``pipecast run`` runs, with the same outputs.
    """
    store = tmp_path / "store"
    pipeline = flow_pipelines.tk_nested_skip_read.build()
    files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    tasks = inlined(files)
    assert tasks["square-2"]["runAfter"] == ["plus", "map-1-items"]  # the inner condition reads plus[i][j]
    replay_flow(files, "sr-1", {}, store=store, work=tmp_path / "sr")
    outputs = _same_as_local(pipeline, {}, store, "sr-1", tmp_path / "sr")
    assert outputs["gather"] == {"output": [[[5.0, 6.0], []], [4.0], [[36.0], []]]}
    assert _records(store, pipeline, "sr-1") == {
        "width[0]": "succeeded", "width[1]": "succeeded", "square[0]": "succeeded", "square[1]": "skipped",
        "plus[0][0]": "succeeded", "plus[0][1]": "succeeded", "plus[1][0]": "skipped",
        "square_2[0][0]": "skipped", "square_2[0][1]": "succeeded", "square_2[1][0]": "skipped",
        "gather": "succeeded"}
