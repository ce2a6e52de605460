"""The local runner: parallel steps, retries, timeouts, fail-fast, cache, resume after a kill, Ctrl-C."""

from __future__ import annotations

import os
import signal
import time
from io import StringIO
from pathlib import Path

import pytest

from pipecast import Client
from pipecast.errors import ParameterError, RunFailedError, RunNotFoundError
from pipecast.runs.store import RunStore
from pipecast.runtime.local_runner import run_pipeline
from pipecast.runtime.progress import RichProgress
from tests.helpers.processes import announced_pid, finish, process_gone, start_cli, wait_until
from tests.unit import pipelines, runtime_steps


def markers(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.glob(f"{prefix}-*"))


def test_outputs_and_calling_the_pipeline_directly():
    run = pipelines.arithmetic(x=10, y=1)
    assert run.status == "succeeded"
    assert run.outputs == {"output": 22}
    assert run.step_outputs("pair") == {"low": 10, "high": 12}


def test_independent_steps_run_at_the_same_time():
    # Each step waits on a two-party barrier: run one after the other, the first would never pass it.
    run = pipelines.parallel_pair.run(workers=2)
    assert {s.status for s in run.steps.values()} == {"done"}


def test_retries_with_delay_then_success(tmp_path):
    run = pipelines.flaky_pipeline.run({"counter_file": str(tmp_path / "n"), "failures": 2})
    assert run.steps["flaky"].attempts == 3
    assert run.outputs == {"flaky": {"output": 3}}


def test_retries_exhausted_fail_the_run(tmp_path):
    with pytest.raises(RunFailedError, match="flaky failure 3"):
        pipelines.flaky_pipeline.run({"counter_file": str(tmp_path / "n"), "failures": 5})


def test_timeout_stops_the_step():
    started = time.monotonic()
    with pytest.raises(RunFailedError, match="timed out after 1s"):
        pipelines.timeout_pipeline.run({"seconds": 30.0})
    assert time.monotonic() - started < 25  # the 30 s sleep was cut short


def test_fail_fast_skips_downstream_and_continue_runs_the_rest():
    run = pipelines.failing.run(raise_on_failure=False, workers=1)
    assert run.status == "failed"
    assert run.steps["boom"].status == "failed" and run.steps["add"].status == "skipped"
    kept = pipelines.failing.run(fail_fast=False, raise_on_failure=False, workers=1, cache=False)
    assert kept.steps["independent"].status == "done"
    assert kept.steps["add"].error == "upstream step 'boom' failed"


def test_cache_reuses_outputs_unless_turned_off(tmp_path):
    params = {"marker_dir": str(tmp_path)}
    first = pipelines.cache_pipeline.run(params)
    second = pipelines.cache_pipeline.run(params)
    assert first.steps["record"].status == "done" and second.steps["record"].status == "cached"
    assert second.steps["uncached"].status == "done"  # cache=False on the step
    assert len(markers(tmp_path, "cached-step")) == 1 and len(markers(tmp_path, "uncached")) == 2
    third = pipelines.cache_pipeline.run(params, cache=False)
    assert third.steps["record"].status == "done"
    assert second.step_outputs("record") == {"output": "cached-step"}


def test_parameters_are_checked():
    with pytest.raises(ParameterError, match="unknown parameter"):
        pipelines.arithmetic.run({"z": 1})
    with pytest.raises(ParameterError, match="parameter 'x': cannot read 'many' as int"):
        pipelines.arithmetic.run({"x": "many"})


def test_runs_are_recorded_with_a_file_url():
    run = pipelines.arithmetic.run({"x": 1})
    recorded = Client().get_pipeline_run("arithmetic")
    assert recorded.id == run.id and recorded.status == "succeeded" and recorded.target == "local"
    assert recorded.run_metadata["orchestrator_url"].startswith("file://")
    assert Path(recorded.run_metadata["orchestrator_url"][len("file://"):]).is_dir()
    assert {s["step"]: s["status"] for s in recorded.steps} == {"add": "done", "pair": "done", "add_2": "done"}


def _recorded_steps(home: Path, pipeline: str) -> dict[str, str]:
    store = RunStore(str(home / "runs.db"))
    try:
        return {s["step"]: s["status"] for s in store.get(pipeline)["steps"]}
    except RunNotFoundError:
        return {}


def test_rerun_after_a_kill_resumes_from_the_cache(tmp_path, pipecast_home):
    args = ("run", "tests/unit/pipelines.py:resumable", "-p", f"marker_dir={tmp_path}", "-q")
    killed = start_cli(*args)
    # The run store shows both finished steps: the kill comes after the runner recorded them.
    wait_until(lambda: _recorded_steps(pipecast_home, "resumable").get("record_2") == "done",
               "the runner to record the two finished steps")
    killed.kill()
    finish(killed)
    (tmp_path / "open").write_text("")
    resumed = start_cli(*args)
    _, stderr = finish(resumed)
    assert resumed.returncode == 0, stderr
    assert len(markers(tmp_path, "first")) == 1, "finished steps must come from the cache, not run again"
    store = RunStore(str(pipecast_home / "runs.db"))
    killed_run = store.list(pipeline="resumable")[-1]
    assert killed_run["status"] == "failed" and "ended without finishing" in killed_run["detail"]
    assert _recorded_steps(pipecast_home, "resumable") == {
        "record": "cached", "record_2": "cached", "wait_for": "done", "record_3": "done"}


def test_ctrl_c_cancels_the_run_cleanly(tmp_path, pipecast_home):
    process = start_cli("run", "tests/unit/pipelines.py:resumable", "-p", f"marker_dir={tmp_path}", "-q")
    wait_until(lambda: _recorded_steps(pipecast_home, "resumable").get("wait_for") == "running",
               "the gated step to be running")
    process.send_signal(signal.SIGINT)
    _, stderr = finish(process)
    assert process.returncode == 130
    assert "Traceback" not in stderr and "cancelled" in stderr
    run = RunStore(str(pipecast_home / "runs.db")).get("resumable")
    assert run["status"] == "cancelled"
    assert {s["step"]: s["status"] for s in run["steps"]}["wait_for"] == "cancelled"


def test_ctrl_c_kills_a_step_running_in_a_child_process(tmp_path, pipecast_home):
    process = start_cli("run", "tests/unit/runtime_steps.py:abandoned", "-p", f"folder={tmp_path}", "-q")
    step_pid = announced_pid(tmp_path)
    process.send_signal(signal.SIGINT)
    _, stderr = finish(process)
    assert process.returncode == 130, stderr
    wait_until(lambda: process_gone(step_pid), "the step's process to be killed")
    run = RunStore(str(pipecast_home / "runs.db")).get("abandoned")
    assert run["status"] == "cancelled"
    assert _recorded_steps(pipecast_home, "abandoned") == {"runs_until_stopped_in_a_child": "cancelled"}


def test_kill_9_of_the_runner_takes_its_child_steps_with_it(tmp_path, pipecast_home):
    """A step in a child process dies with the runner and records nothing; the resumed run runs it again."""
    args = ("run", "tests/unit/runtime_steps.py:abandoned", "-p", f"folder={tmp_path}", "-q")
    runner = start_cli(*args)
    step_pid = announced_pid(tmp_path)
    try:
        os.kill(runner.pid, signal.SIGKILL)  # the runner alone, as `kill -9 PID` does
        finish(runner)
        wait_until(lambda: process_gone(step_pid), "the step's process to die with the runner")
    finally:
        if not process_gone(step_pid):
            os.kill(step_pid, signal.SIGKILL)
    (tmp_path / "gate").write_text("")  # an orphan would now finish and record its result
    artifacts = pipecast_home / "artifacts" / "abandoned"
    assert not list(artifacts.glob("runs/*/*/meta.json")) and not list(artifacts.glob("cache/*"))
    (tmp_path / "started").unlink()
    resumed = start_cli(*args)
    _, stderr = finish(resumed)
    assert resumed.returncode == 0, stderr
    assert _recorded_steps(pipecast_home, "abandoned") == {"runs_until_stopped_in_a_child": "done"}


def test_any_fsspec_root_works(tmp_path):
    """Outputs go through fsspec: an in-memory filesystem stands in for s3:// or gs:// here."""
    run = pipelines.arithmetic.run({"x": 2}, artifact_root="memory://pipecast-test")
    assert run.outputs == {"output": 12}
    assert run.url.startswith("memory://")


def test_a_different_parameter_misses_the_cache(tmp_path):
    first = pipelines.arithmetic.run({"x": 1})
    again = pipelines.arithmetic.run({"x": 1})
    other = pipelines.arithmetic.run({"x": 5})
    assert {s.status for s in first.steps.values()} == {"done"}
    assert {s.status for s in again.steps.values()} == {"cached"}
    assert {s.status for s in other.steps.values()} == {"done"}


def test_a_step_that_calls_sys_exit_fails_and_its_downstream_does_not_run(pipecast_home):
    process = start_cli("run", "tests/unit/runtime_steps.py:exits", "-q")
    _, stderr = finish(process)
    assert process.returncode == 1, stderr
    assert _recorded_steps(pipecast_home, "exits") == {"quits": "failed", "after": "skipped"}
    run = runtime_steps.exits.run(raise_on_failure=False)
    assert run.status == "failed" and "the step called sys.exit(1)" in (run.steps["quits"].error or "")


def test_a_step_that_raises_keyboard_interrupt_fails_without_cancelling_the_run():
    run = runtime_steps.interrupted.run(raise_on_failure=False)
    assert run.status == "failed"
    assert run.steps["interrupts"].status == "failed" and run.steps["after"].status == "skipped"
    assert "KeyboardInterrupt" in (run.steps["interrupts"].error or "")


def test_a_timeout_stops_a_step_inside_a_c_loop():
    started = time.monotonic()
    run = runtime_steps.busy.run(raise_on_failure=False)
    elapsed = time.monotonic() - started
    assert run.steps["busy_in_c"].status == "failed"
    assert "timed out after 2s" in (run.steps["busy_in_c"].error or "")
    # Before, the runner's own budget (timeout x attempts + 30 s) ended it after 32 s.
    assert elapsed < 20, f"the step ran {elapsed - 2:.1f}s past its 2s timeout"


def test_a_step_that_catches_exception_cannot_swallow_its_timeout(tmp_path):
    run = runtime_steps.swallowing.run({"folder": str(tmp_path)}, raise_on_failure=False)
    assert run.steps["swallows"].status == "failed", run.steps["swallows"]
    assert "timed out after 2s" in (run.steps["swallows"].error or "")


def test_steps_with_a_timeout_pass_values_and_use_the_cache():
    first = runtime_steps.timed.run({"a": 1})
    assert first.outputs == {"timed_add": {"output": 3}, "timed_add_2": {"output": 6}}
    again = runtime_steps.timed.run({"a": 1})
    assert {s.status for s in again.steps.values()} == {"cached"}


def test_each_line_a_step_prints_is_prefixed_with_its_step(pipecast_home):
    process = start_cli("run", "tests/unit/runtime_steps.py:chatty", "-q", "--workers", "3")
    stdout, stderr = finish(process)
    assert process.returncode == 0, stderr
    assert "[hello] Hello World!\n" in stdout and "[complains] Task failed.\n" in stdout
    assert "[prints_in_a_child] from the child\n" in stdout
    assert "[complains] no newline at the end\n" in stderr and "[prints_in_a_child] an error line\n" in stderr
    assert all(line.startswith("[") for line in stdout.splitlines()[:-1]), stdout  # the last line: the run id


def test_step_lines_appear_above_the_live_progress_view():
    from rich.console import Console

    progress = RichProgress()
    screen = StringIO()
    progress.console = Console(file=screen, force_terminal=True, width=200)  # the live view needs a terminal
    run_pipeline(runtime_steps.chatty.build(), progress=progress, workers=3)
    shown = screen.getvalue()
    assert "[hello] Hello World!" in shown and "[prints_in_a_child] from the child" in shown
    assert "succeeded" in shown
