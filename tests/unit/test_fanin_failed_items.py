"""A fan-in gets the items that ran only when a *condition* skipped the others (issue 16).

An item that failed, or was skipped because an item it reads failed, makes every step that collects it skip, as
Airflow marks such a fan-in ``upstream_failed`` and KFP, Argo, Tekton and GitHub run no task after a failed one.
So with ``--continue-on-failure`` (``fail_fast=False``) a fan-in never runs on partial data. Every expected value
is worked out by hand from tests/unit/fanin_pipelines.py, where ``invert(0)`` fails.
"""

from __future__ import annotations

import pytest

from pipecast.compiler.graph import topological_order
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.command import invocation_for
from pipecast.runtime.github_nested import OuterItemStep
from pipecast.runtime.inline_flow import InlineStep
from pipecast.runtime.process import Cancellation
from tests.unit import fanin_pipelines as flows

_INVERT_1 = "upstream step 'invert' failed (item 'invert[1]')"


def states(run) -> dict[str, tuple[str, str | None]]:
    return {name: (s.status, s.error) for name, s in run.steps.items()}


def test_a_fan_in_after_a_chained_map_whose_item_failed_is_skipped():
    run = flows.chained.run(fail_fast=False, raise_on_failure=False)
    # invert: 1.0, fails, 0.5; halve: 0.5, skipped, 0.25. Before, total ran on [0.5, 0.25] and doubled gave 1.5.
    got = states(run)
    assert got["invert[1]"][0] == "failed" and got["halve[1]"] == ("skipped", "upstream 'invert[1]' failed")
    assert {got[f"halve[{i}]"][0] for i in (0, 2)} == {"done"}
    assert got["total"] == ("skipped", _INVERT_1)
    assert got["doubled"] == ("skipped", "upstream step 'total' was skipped")
    assert run.step_outputs("halve") == {"output": [0.5, 0.25]}  # the items that ran, as they are
    assert run.status == "failed"


def test_every_item_failed_the_fan_in_names_the_failure_not_the_skipped_step():
    run = flows.chained.run({"xs": [0]}, fail_fast=False, raise_on_failure=False)
    assert run.steps["halve"].status == "skipped"  # its only item was skipped
    assert states(run)["total"] == ("skipped", "upstream step 'invert' failed (item 'invert[0]')")


def test_fail_fast_still_stops_the_fan_in_first():
    run = flows.chained.run(raise_on_failure=False)
    assert states(run)["total"] == ("skipped", "not started: a step failed and the run stops (fail-fast)")


def test_nested_map_a_failed_inner_item_skips_its_rows_fan_in_and_every_fan_in_over_the_rows():
    run = flows.nested.run(fail_fast=False, raise_on_failure=False)
    # rows [[1, 2], [0, 4], []]: halve gives [[0.5, 0.25], [-, 0.125], []]. Row 0 sums to 0.75, the empty row to 0;
    # row 1 lost an item to a failure: its sum, the grand total and the list of lists skip (before: 0.125, 0.875,
    # [0.75, 0.125, 0]).
    got = states(run)
    assert got["halve[1][0]"] == ("skipped", "upstream 'invert[1][0]' failed")
    assert got["row_sum[1]"] == ("skipped", "upstream step 'invert' failed (item 'invert[1][0]')")
    assert got["grand_total"] == got["nested_total"] == got["row_sum[1]"]
    assert run.step_outputs("row_sum") == {"output": [0.75, 0]}
    assert run.step_outputs("halve") == {"output": [[0.5, 0.25], [0.125], []]}
    assert run.status == "failed"


def test_an_inner_map_never_expanded_because_of_a_failure_skips_the_fan_in():
    run = flows.inner_list_failed.run(fail_fast=False, raise_on_failure=False)
    # xs [1, 0]: spread(1.0) = [1.0, 2.0], halved [0.5, 1.0]; outer item 1's list is never made (invert[1]
    # failed), so halve[1] is one skipped instance. Before, nested_total gave [1.5, 0] as if row 1 were empty.
    got = states(run)
    assert got["halve[1]"] == ("skipped", "upstream 'spread[1]' skipped")
    assert got["nested_total"] == ("skipped", _INVERT_1)
    assert run.step_outputs("halve") == {"output": [[0.5, 1.0], []]}


def test_an_item_a_condition_skipped_is_still_left_out_of_the_fan_in():
    run = flows.condition_skips.run()
    # xs [1, 0, 2]: item 1's branch is false; halve 0.5 and 0.25 ran.
    assert run.status == "succeeded"
    assert states(run)["halve[1]"] == ("skipped", "upstream 'invert[1]' skipped")
    assert run.step_outputs("total") == {"output": 0.75}


def test_a_failure_decides_over_a_condition_in_the_same_map():
    run = flows.condition_and_failure.run(fail_fast=False, raise_on_failure=False)
    # xs [5, 0, 2]: item 0's branch is false (left out), item 1 fails (the fan-in skips), item 2 ran.
    got = states(run)
    assert got["invert[0]"][0] == "skipped" and got["invert[1]"][0] == "failed"
    assert got["total"] == ("skipped", _INVERT_1)


def test_a_oneof_whose_branch_failed_is_a_failure_not_a_branch_left_out():
    run = flows.one_of_failed.run(fail_fast=False, raise_on_failure=False)
    # xs [1, 0, -2]: item 1 takes the If and fails. A OneOf waits for every item, so doubled is decided as a whole
    # once invert failed; the fan-in names that failure, though halve (the Else) ran for item 2.
    got = states(run)
    assert got["doubled"] == ("skipped", "upstream step 'invert' failed")
    assert got["total"] == ("skipped", "upstream step 'invert' failed")  # before: upstream step 'doubled' was skipped
    # Without the failure: doubled 2.0 (invert(1) = 1.0) and -2.0 (halve(-2) = -1.0).
    assert flows.one_of_failed.run({"xs": [1, -2]}).step_outputs("total") == {"output": 0.0}


def test_an_exit_handler_still_gets_the_items_that_ran():
    run = flows.handler_collects.run(fail_fast=False, raise_on_failure=False)
    assert run.step_outputs("report") == {"output": "failed: [0.5, 0.25]"}


# -- the runtimes that decide from records (Compose, SkyPilot; GitHub's and Tekton's emulations) ---------------

def _write(store: ArtifactStore, pipeline: str, name: str, record: dict) -> None:
    store.write_json(f"{store.step_dir(pipeline, 'run-1', name)}/meta.json", {"step": name, **record})


@pytest.mark.parametrize("runtime", ["inline_flow", "github_nested"])
@pytest.mark.parametrize("cause", ["failed", "condition"])
def test_the_record_runtimes_skip_a_fan_in_as_pipecast_run_does(runtime, cause, tmp_path):
    """The records ``pipecast run --continue-on-failure`` leaves for chained (invert[1] failed) or condition_skips
    (invert[1] skipped by its branch); GitHub's emulation has no record of a whole mapped step."""
    pipeline = (flows.chained if cause == "failed" else flows.condition_skips).build()
    root = f"file://{tmp_path}"
    store = ArtifactStore(root)
    first = {"status": "failed", "error": "ZeroDivisionError"} if cause == "failed" else \
        {"status": "skipped", "reason": "if branch 'condition_1': `item of map_1 != 0` is false"}
    for i in (0, 2):
        _write(store, pipeline.name, f"invert[{i}]", {"status": "succeeded"})
        _write(store, pipeline.name, f"halve[{i}]", {"status": "succeeded"})
    _write(store, pipeline.name, "invert[1]", first)
    _write(store, pipeline.name, "halve[1]", {"status": "skipped", "reason": f"upstream 'invert[1]' {first['status']}"})
    if runtime == "inline_flow":
        names = [f"{s}[{i}]" for s in ("invert", "halve") for i in range(3)]
        _write(store, pipeline.name, "invert", {"status": first["status"] if cause == "failed" else "succeeded",
                                               "instances": names[:3]})
        _write(store, pipeline.name, "halve", {"status": "succeeded", "instances": names[3:]})
    values = {"xs": [1, 0, 2]}
    base = invocation_for(pipeline, pipeline.step("total"), "run-1", root, values)
    fan_in = InlineStep(pipeline, values, base, Cancellation()) if runtime == "inline_flow" else \
        OuterItemStep(pipeline, values, base, Cancellation(), None, decide=True)
    assert fan_in.skip_reason() is None  # halve as a whole succeeded
    assert fan_in.instance_skip(()) == (_INVERT_1 if cause == "failed" else None)


def test_compose_with_handlers_runs_on_and_the_fan_in_skips_naming_the_failure(tmp_path):
    """Compose with an exit handler starts every service once its upstream ones exited (``required: false``), so
    each step decides from the records: invert fails, halve skips as a whole, and total names the failure."""
    pipeline = flows.chained.build()
    root = f"file://{tmp_path}"
    store = ArtifactStore(root)
    values = {"xs": [1, 0, 2]}
    for name in topological_order(pipeline):
        base = invocation_for(pipeline, pipeline.step(name), "run-1", root, values)
        InlineStep(pipeline, values, base, Cancellation()).run()  # a failed step's exit code does not stop Compose
    record = {name: store.read_json(f"{store.step_dir(pipeline.name, 'run-1', name)}/meta.json")
              for name in ("invert", "halve", "total", "doubled")}
    assert record["invert"]["status"] == "failed"
    assert (record["halve"]["status"], record["halve"]["reason"]) == ("skipped", "upstream step 'invert' failed")
    assert (record["total"]["status"], record["total"]["reason"]) == ("skipped", "upstream step 'invert' failed")
    assert record["doubled"]["reason"] == "upstream step 'total' was skipped"
