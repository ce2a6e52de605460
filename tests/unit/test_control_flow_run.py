"""The local runner with control flow: maps, bounds, per-item retries and cache, conditions, exit handlers, hooks."""

from __future__ import annotations

import signal
from io import StringIO

import pytest

from pipecast.errors import RunFailedError
from pipecast.runs.store import RunStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.progress import PlainProgress
from tests.helpers.processes import finish, start_cli, wait_until
from tests.unit import flow_pipelines as flows


def states(run, *names):
    return {name: run.steps[name].status for name in names}


def test_a_map_over_a_step_output_chains_item_by_item_and_collects_in_order():
    run = flows.squares.run({"n": 4})
    assert run.outputs == {"output": sum(x * x + x for x in range(4))}
    assert run.steps["square"].items == 4
    assert run.step_outputs("add") == {"output": [0, 2, 6, 12]}  # item order, whatever order they ran in
    assert states(run, "square[0]", "square[3]", "add[3]") == {"square[0]": "done", "square[3]": "done",
                                                               "add[3]": "done"}


def test_expand_over_parameters_zip_product_and_a_chained_expand():
    run = flows.expanded.run()
    assert run.outputs == {"squares": 1 + 16 + 81, "zipped": 11 + 22 + 33, "crossed": 101 + 102 + 103,
                           "product": sum(x + y for x in (1, 2, 3) for y in (10, 20, 30))}
    assert run.step_outputs("square_2") == {"output": [1, 16, 81]}


def test_zip_and_product_blocks_unpack_their_items():
    assert flows.zipped_pairs.run().outputs == {"zip": 6 + 8, "product": 6 + 7 + 7 + 8}


def test_a_nested_map_gives_a_list_of_lists_and_an_empty_list_maps_to_nothing():
    run = flows.nested.run()
    assert run.outputs == {"output": [1 + 4, 9, 0]}
    assert [name for name in run.steps if name.startswith("square[")] == ["square[0][0]", "square[0][1]",
                                                                            "square[1][0]"]


def test_zip_of_lists_of_different_lengths_fails_the_step_saying_why():
    with pytest.raises(RunFailedError, match=r"zips lists of different lengths \[1, 2\]"):
        flows.zipped_pairs.run({"xs": [1], "ys": [1, 2]})


def test_an_empty_list_maps_to_no_items_and_an_empty_collected_list():
    run = flows.squares.run({"n": 0})
    assert run.outputs == {"output": 0} and run.steps["square"].items == 0


def test_the_map_and_pipeline_bounds_hold():
    flows.RUNNING.update(now=0, most=0)
    run = flows.bounded.run({"n": 6}, workers=8)
    assert run.outputs == {"output": 15}
    assert 1 <= flows.RUNNING["most"] <= 2


def test_each_item_retries_on_its_own_and_a_rerun_comes_from_the_cache(tmp_path):
    run = flows.retried.run({"folder": str(tmp_path)})
    assert run.outputs == {"output": 6}
    assert [run.steps[f"fails_once_for[{i}]"].attempts for i in range(3)] == [1, 2, 1]
    again = flows.retried.run({"folder": str(tmp_path), "xs": [1, 2, 3, 4]})
    assert states(again, "fails_once_for[0]", "fails_once_for[2]", "fails_once_for[3]") == {
        "fails_once_for[0]": "cached", "fails_once_for[2]": "cached", "fails_once_for[3]": "done"}


@pytest.mark.parametrize(("mode", "n", "chosen", "ran"), [
    ("fast", 3, "fast", "echo"),
    ("slow", 3, "slow", "echo_2"),
    ("slow", 1, "other", "echo_3"),  # the elif's condition needs square(n) > 4
    ("careful", 3, "slow", "echo_2"),
])
def test_if_elif_else_runs_one_branch_and_oneof_takes_it(mode, n, chosen, ran):
    run = flows.branches.run({"mode": mode, "n": n})
    branches = {"echo", "echo_2", "echo_3"}
    assert {b: run.steps[b].status for b in branches} == {b: "done" if b == ran else "skipped" for b in branches}
    assert run.outputs["chosen"] == chosen
    assert run.outputs["after"] == ("fast" if ran == "echo" else None)  # skipped with the branch it reads
    if ran != "echo":
        assert run.steps["echo_5"].error == "upstream step 'echo' was skipped"
        assert "is false" in (run.steps["echo"].error or "")
    assert run.status == "succeeded"


def test_a_condition_inside_a_map_skips_items_which_are_left_out_of_the_list():
    run = flows.item_conditions.run({"n": 5})
    assert run.outputs == {"output": 4 + 9}
    assert states(run, "add[0]", "add[2]", "add[3]", "add[4]") == {"add[0]": "skipped", "add[2]": "done",
                                                                   "add[3]": "done", "add[4]": "skipped"}


def test_an_exit_handler_and_the_failure_hook_run_after_a_failed_item(tmp_path):
    out = StringIO()
    store = RunStore(str(tmp_path / "runs.db"))
    run = flows.guarded.run(raise_on_failure=False, progress=PlainProgress(out), store=store)
    assert run.status == "failed"
    status = run.step_outputs("report")["output"]
    assert status["status"] == "failed" and status["failed_steps"] == ["boom[1]"]
    assert "item 2 is bad" in status["error"]
    assert run.step_outputs("alert") == {"output": "alert: failed ['boom[1]']"}
    assert run.steps["cheer"].status == "skipped"
    assert run.steps["cheer"].error == "on_success hook: step 'boom' failed"
    text = out.getvalue()
    assert "failed    boom[1]" in text and "skipped   cheer: on_success hook" in text
    recorded = {row["step"]: row["status"] for row in store.get(run.id)["steps"]}
    assert recorded["boom[1]"] == "failed" and recorded["report"] == "done"


def test_on_success_runs_when_nothing_failed():
    run = flows.guarded_ok.run()
    assert run.step_outputs("report") == {"output": {"status": "succeeded", "failed_steps": [], "error": None}}
    assert run.step_outputs("cheer") == {"output": "all good"}
    assert run.steps["alert"].status == "skipped"


def test_the_example_promotes_only_above_the_threshold():
    from tests.helpers.cases import case

    pipeline = case("hyperparameter_search").build()
    from pipecast.runtime.local_runner import run_pipeline

    promoted = run_pipeline(pipeline, {"threshold": 0.5})
    assert promoted.steps["promote"].status == "done" and promoted.steps["keep_current"].status == "skipped"
    assert promoted.step_outputs("record_decision")["output"].startswith("promoted lr=")
    kept = run_pipeline(pipeline, {"threshold": 0.99})
    assert kept.steps["promote"].status == "skipped"
    assert kept.step_outputs("record_decision")["output"].startswith("kept the current model")
    assert kept.outputs == {"output": "search succeeded"}
    assert len(kept.step_outputs("evaluate")["output"]) == 3


def test_an_items_log_is_read_by_its_instance_name():
    from click.testing import CliRunner

    from pipecast.cli import main

    run = flows.squares.run({"n": 2})
    result = CliRunner().invoke(main, ["runs", "logs", run.id, "--step", "square[1]"])
    assert result.exit_code == 0, result.output
    assert "pipecast: step 'square[1]' done" in result.output
    refused = CliRunner().invoke(main, ["runs", "logs", run.id, "--step", "../x[1]"])
    assert refused.exit_code == 2 and "step '../x' is not allowed" in refused.output


def test_items_and_collected_lists_reach_a_supervised_child_process():
    run = flows.supervised.run({"n": 3})
    assert run.outputs == {"output": 0 + 1 + 4}
    assert run.step_outputs("square_in_child") == {"output": [0, 1, 4]}


def test_without_fail_fast_the_other_items_still_run():
    run = flows.guarded.run(fail_fast=False, raise_on_failure=False)
    assert states(run, "boom[0]", "boom[1]", "boom[2]") == {"boom[0]": "done", "boom[1]": "failed",
                                                            "boom[2]": "done"}
    assert run.step_outputs("report")["output"]["failed_steps"] == ["boom[1]"]
    assert run.status == "failed"


def test_items_chain_item_0_ends_while_item_1_of_the_first_step_runs():
    """held[1] waits (bounded) for chain_end[0]: it gets there only if item 0 does not wait for item 1."""
    flows.ITEM_0_CHAIN_ENDED.clear()
    run = flows.chains.run(workers=4)
    assert run.status == "succeeded", {n: s.error for n, s in run.steps.items() if s.error}
    assert run.outputs == {"output": 0 + 1}
    assert run.step_outputs("chain_end") == {"output": [0, 1]}


def test_a_failed_item_skips_only_its_own_chain():
    run = flows.failing_chain.run(fail_fast=False, raise_on_failure=False)
    assert states(run, "boom[1]", "square[0]", "square[1]", "square[2]") == {
        "boom[1]": "failed", "square[0]": "done", "square[1]": "skipped", "square[2]": "done"}
    assert run.steps["square[1]"].error == "upstream 'boom[1]' failed"
    assert run.status == "failed"


def _cancelled_run(home, tmp_path, *signals, hold=False):
    """Start `pipecast run` on the cancellable pipeline, send ``signals`` after events; return it and its run."""
    args = ["run", "tests/unit/flow_pipelines.py:cancellable", "-p", f"folder={tmp_path}", "-q", "--workers", "2"]
    process = start_cli(*args, *(["-p", "hold=true"] if hold else []))
    try:
        wait_until(lambda: (tmp_path / "running-1").exists() and (tmp_path / "running-2").exists(),
                   "both items to run")
        process.send_signal(signals[0])
        if len(signals) > 1:
            wait_until((tmp_path / "handler-running").exists, "the exit handler to run after the first signal")
            process.send_signal(signals[1])
        _, stderr = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in stderr and "interrupted: run cancelled" in stderr, stderr
    store = RunStore(str(home / "runs.db"))
    run = store.list(pipeline="cancellable")[-1]
    return process, store.get(run["id"])


def test_ctrl_c_cancels_the_items_then_runs_the_exit_handler_and_the_failure_hook(tmp_path, pipecast_home):
    process, run = _cancelled_run(pipecast_home, tmp_path, signal.SIGINT)
    assert process.returncode == 130
    assert run["status"] == "cancelled" and run["detail"] == "interrupted (SIGINT)"
    steps = {s["step"]: s["status"] for s in run["steps"]}
    assert steps == {"gated": "cancelled", "gated[0]": "cancelled", "gated[1]": "cancelled",
                     "exit_report": "done", "failure_note": "done"}
    root = run["metadata"]["artifact_root"]
    assert load_outputs(root, "cancellable", run["id"], "exit_report") == {
        "output": {"status": "cancelled", "failed_steps": [], "error": None}}
    assert load_outputs(root, "cancellable", run["id"], "failure_note") == {"output": "on_failure: cancelled"}


def test_sigterm_runs_the_exit_handler_and_a_second_signal_aborts_it(tmp_path, pipecast_home):
    process, run = _cancelled_run(pipecast_home, tmp_path, signal.SIGTERM, signal.SIGINT, hold=True)
    assert process.returncode == 128 + signal.SIGTERM
    assert run["status"] == "cancelled" and run["detail"] == "interrupted (SIGTERM)"
    steps = {s["step"]: s["status"] for s in run["steps"]}
    assert steps["exit_report"] == "cancelled" and steps["failure_note"] == "cancelled"
    assert steps["gated[0]"] == steps["gated[1]"] == "cancelled"


def test_exit_handlers_after_ctrl_c_are_bounded_by_the_grace_period(tmp_path, monkeypatch):
    from pipecast.runtime.flow_runner import FlowScheduler

    monkeypatch.setattr(FlowScheduler, "grace_seconds", 1.0)
    store = RunStore(str(tmp_path / "runs.db"))
    try:
        with pytest.raises(KeyboardInterrupt):
            flows.self_interrupted.run({"folder": str(tmp_path)}, store=store)
        assert (tmp_path / "handler-running").exists()  # it started, and held past the grace period
        (run,) = store.list(pipeline="self_interrupted")
        recorded = {s["step"]: s["status"] for s in store.get(run["id"])["steps"]}
        assert run["status"] == "cancelled"
        assert recorded == {"interrupts_its_run": "cancelled", "exit_report": "cancelled"}
    finally:
        (tmp_path / "gate").write_text("")  # lets the abandoned step threads end
        (tmp_path / "release").write_text("")
