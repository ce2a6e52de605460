"""Exit handlers inside maps and branches on Tekton (issue 16): goldens, the v1 CRD schemas, and replays of
Tekton's controller (``flow_replay.py``) equal to ``pipecast run``, green, with a failing item, and with the
branch not taken.

A handler inside a map is a ``finally`` task matrixed over the map's item indices (docs/pipelines.md "Specifying
matrix in finally tasks"), whose TaskRun ``i`` builds item ``i``'s status from the records; one inside a branch
carries the branch's ``when`` (docs/pipelines.md "when expressions using Results in finally Tasks").
``pytest --update-goldens`` rewrites ``data/finally/<name>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case, read_tree, write_tree
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.tekton import finally_pipelines
from tests.targets.tekton.flow_replay import FlowReplay, replay_flow
from tests.targets.tekton.support import documents, schema_errors

GOLDENS = Path(__file__).parent / "data" / "finally"
NAMES = ["tk_finally_map", "tk_finally_branch", "tk_finally_both", "tk_finally_item_branch",
         "tk_finally_nested", "tk_finally_reads"]


def _compiled(name: str, settings: dict[str, Any] | None = None) -> dict[str, str]:
    return compile_case("tekton", getattr(finally_pipelines, name), golden=True, settings=settings).files


@pytest.mark.parametrize("name", NAMES)
def test_golden(name, request):
    files = _compiled(name)
    if request.config.getoption("--update-goldens"):
        write_tree(GOLDENS / name, files)
    assert read_tree(GOLDENS / name) == files, f"{name} differs from {GOLDENS / name} (pytest --update-goldens)"


@pytest.mark.parametrize("embed", [False, True], ids=["pipeline", "embedded"])
def test_objects_are_schema_valid(embed):
    for name in NAMES:
        docs = documents(_compiled(name, {"embed": embed}))
        assert docs and all(schema_errors(doc) == [] for doc in docs), name


def _finally(name: str) -> dict[str, Any]:
    (pipeline,) = [d for d in documents(_compiled(name)) if d["kind"] == "Pipeline"]
    (task,) = pipeline["spec"]["finally"]
    return task


def test_lowering_shape():
    mapped = _finally("tk_finally_map")
    assert mapped["matrix"] == {"params": [{"name": "index", "value": "$(tasks.map-1-items.results.index[*])"}]}
    # guards the matrix's result: Tekton neither runs nor skips a finally task whose matrix result is missing
    assert mapped["when"] == [{"input": "$(tasks.map-1-items.status)", "operator": "in", "values": ["Succeeded"]}]
    branch = {"input": "$(tasks.condition-1-branch.results.branch)", "operator": "in", "values": ["condition_1"]}
    guarded = _finally("tk_finally_branch")
    assert guarded["when"] == [branch] and "matrix" not in guarded and "runAfter" not in guarded
    both = _finally("tk_finally_both")
    assert both["when"][0] == branch and both["matrix"] == mapped["matrix"]


def _compare(name: str, run_id: str, values: dict[str, Any], tmp_path: Path) -> tuple[FlowReplay, Any]:
    """Replay and ``pipecast run`` the pipeline; every instance ``pipecast run`` finished has the replay's outputs,
    and no other succeeded in the replay."""
    store = tmp_path / "store"
    pipeline = getattr(finally_pipelines, name).build()
    replay = replay_flow(_compiled(name, {"artifact_root": REPLAY_STORE}), run_id,
                         {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()},
                         store=store, work=tmp_path / "w")
    local = run_pipeline(pipeline, values, artifact_root=f"file://{tmp_path}/local", cache=False,
                         raise_on_failure=False)
    done = sorted(n for n, s in local.steps.items() if s.status == "done" and s.items is None)
    folder = Path(ArtifactStore(f"file://{store}").run_dir(pipeline.name, run_id))
    replayed = sorted(p.name for p in folder.iterdir() if (p / "meta.json").exists()
                      and '"succeeded"' in (p / "meta.json").read_text()) if folder.exists() else []
    assert replayed == done
    for step in done:
        assert load_outputs(f"file://{store}", pipeline.name, run_id, step) == local.step_outputs(step), step
    return replay, local


def test_a_handler_in_a_map_reads_its_own_item(tmp_path):
    replay, local = _compare("tk_finally_map", "fm-1", {}, tmp_path)
    assert replay.status == "Succeeded" and local.status == "succeeded"
    assert local.step_outputs("report") == {"output": ["succeeded:", "succeeded:", "succeeded:"]}


def test_a_failing_item_fails_only_its_own_handler_status(tmp_path):
    """Hand-derived: items 1.0 and 2.0 under limit 1.5; item 1 fails (the last, so pipecast run starts it on any
    worker bound), the run fails and each handler instance reads its own item's status."""
    replay, local = _compare("tk_finally_map", "fm-2", {"n": 2, "limit": 1.5}, tmp_path)
    assert replay.status == "Failed" and replay.tasks["report"].status == "Succeeded"
    assert len(replay.tasks["report"].runs) == 2  # one TaskRun per item of the finally matrix
    assert local.status == "failed"
    assert local.step_outputs("report") == {"output": ["succeeded:", "failed:fail_on[1]"]}


@pytest.mark.parametrize(("values", "expected"), [({}, "succeeded:"), ({"limit": 0.5}, "failed:fail_on")],
                         ids=["green", "failing"])
def test_a_handler_in_a_branch_that_ran(values, expected, tmp_path):
    replay, local = _compare("tk_finally_branch", "fb-1", values, tmp_path)
    assert replay.tasks["report"].status == "Succeeded" and replay.tasks["keep"].skipped  # when, or stopping
    assert local.step_outputs("report") == {"output": expected}


def test_a_handler_in_a_branch_that_did_not_run_is_skipped(tmp_path):
    replay, local = _compare("tk_finally_branch", "fb-2", {"scale": 0.1}, tmp_path)
    assert replay.status == "Completed" and replay.tasks["report"].skipped == "WhenExpressionsSkip"
    assert local.steps["report"].status == "skipped"


@pytest.mark.parametrize(("values", "expected"), [({}, ["succeeded:"] * 3),
                                                  ({"n": 2, "limit": 1.5}, ["succeeded:", "failed:fail_on[1]"])],
                         ids=["green", "failing"])
def test_a_handler_in_a_map_in_a_branch(values, expected, tmp_path):
    replay, local = _compare("tk_finally_both", "fx-1", values, tmp_path)
    assert replay.tasks["report"].status == "Succeeded"
    assert local.step_outputs("report") == {"output": expected}


def test_a_handler_in_a_map_in_a_branch_not_taken(tmp_path):
    """The items task is skipped by the branch's when: the finally task is skipped by its when, not stuck."""
    replay, local = _compare("tk_finally_both", "fx-2", {"go": False}, tmp_path)
    assert replay.status == "Completed" and replay.tasks["report"].skipped == "WhenExpressionsSkip"
    assert replay.tasks["map-1-items"].skipped == "WhenExpressionsSkip"
    # pipecast run decides the branch before the map's list: the handler is skipped whole, no instance (as Tekton)
    assert local.steps["report"].status == "skipped" and "report[0]" not in local.steps


@pytest.mark.parametrize(("values", "expected"), [({}, ["succeeded:", "succeeded:"]),
                                                  ({"limit": 2.5}, ["succeeded:", "failed:fail_on[2]"])],
                         ids=["green", "failing"])
def test_a_handler_in_a_condition_in_a_map_is_decided_per_item(values, expected, tmp_path):
    """Hand-derived: item 0 (1.0) is not over 1.5, so its handler instance is recorded skipped by its TaskRun
    (``--decide``), as ``pipecast run`` skips it; the failing item is the last one."""
    replay, local = _compare("tk_finally_item_branch", "fi-1", values, tmp_path)
    assert replay.tasks["report"].status == "Succeeded" and len(replay.tasks["report"].runs) == 3
    assert local.steps["report[0]"].status == "skipped"
    assert local.step_outputs("report") == {"output": expected}


@pytest.mark.parametrize(("values", "expected"), [
    ({}, [["succeeded:", "succeeded:"], ["succeeded:"]]),
    ({"limit": 2.5}, [["succeeded:", "succeeded:"], ["failed:fail_on[1][0]"]])], ids=["green", "failing"])
def test_a_handler_in_a_nested_map_reads_its_inner_item(values, expected, tmp_path):
    """TaskRun ``i`` of the finally matrix runs ``report[i][j]`` for outer item ``i``; the failing item is the last."""
    replay, local = _compare("tk_finally_nested", "fn-1", values, tmp_path)
    assert replay.tasks["report"].status == "Succeeded" and len(replay.tasks["report"].runs) == 2
    assert local.step_outputs("report") == {"output": expected}


@pytest.mark.parametrize(("values", "statuses"), [
    ({}, {"note[0]": "done", "note[1]": "done"}),
    ({"cut": 1.5}, {"note[0]": "skipped", "note[1]": "done"}),
    ({"limit": 1.5, "cut": 1.5}, {"note": "skipped"}),
    ({"cut": 5.0}, {"note[0]": "skipped", "note[1]": "skipped"})], ids=["green", "item-skipped", "failing", "none"])
def test_a_handler_in_a_map_reading_its_items_output(values, statuses, tmp_path):
    """Hand-derived from pipecast run's rules: a handler instance whose item's branch is false is skipped by its
    TaskRun (``--decide``); a failed mapped input skips the whole handler (Tekton: its ``when`` on the input's
    task status)."""
    replay, local = _compare("tk_finally_reads", "fr-1", values, tmp_path)
    assert {name: local.steps[name].status for name in statuses} == statuses
    failing = "limit" in values
    assert replay.tasks["note"].skipped == ("WhenExpressionsSkip" if failing else None)


def test_an_instance_without_a_record_counts_by_its_tasks_status(tmp_path):
    """Tekton creates every TaskRun of a matrix: an instance of a ``Failed`` task with no record died before its
    runtime wrote one, so the handler counts it failed; one of a task that did not run (``None``) did not run."""
    from pipecast.runtime.executor import StepInvocation
    from pipecast.runtime.process import Cancellation
    from pipecast.runtime.tekton_nested import TektonItemStep, split_task_statuses

    statuses, rest = split_task_statuses(["--task-status", "fail_on=Failed", "--outer-index", "1"])
    assert statuses == {"fail_on": "Failed"} and rest == ["--outer-index", "1"]
    pipeline = finally_pipelines.tk_finally_map.build()
    store = ArtifactStore(f"file://{tmp_path}")
    store.write_json(f"{store.step_dir(pipeline.name, 'r-1', 'sizes')}/meta.json", {"status": "succeeded"})
    base = StepInvocation(function="tests.targets.tekton.finally_pipelines:report", pipeline=pipeline.name,
                          step="report", run_id="r-1", artifact_root=f"file://{tmp_path}")

    def status(task_status: str) -> dict[str, Any]:
        step = TektonItemStep(pipeline, {}, base, Cancellation(), 1, False, {"fail_on": task_status})
        step.items[("map_1", ())] = [1.0, 2.0]  # the list sizes made (read from its outputs otherwise)
        return step.group_status("exit_1", (1,))

    assert status("Failed") == {"status": "failed", "failed_steps": ["fail_on[1]"],
                                "error": "step 'fail_on[1]' ended without a record (its container exited before "
                                         "its runtime wrote one; see its log)"}
    assert status("None")["status"] == "succeeded"
