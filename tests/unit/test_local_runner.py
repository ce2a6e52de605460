"""The local runner: parallel steps, retries, timeouts, fail-fast, cache, resume after a kill, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipecast import Client
from pipecast.errors import ParameterError, RunFailedError
from pipecast.runs.store import RunStore
from tests.helpers.cases import ROOT
from tests.unit import pipelines


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


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipecast.cli", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_rerun_after_a_kill_resumes_from_the_cache(tmp_path, pipecast_home):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ("run", "tests/unit/pipelines.py:resumable", "-p", f"marker_dir={tmp_path}", "-q")
    killed = _cli(*args, env=env)
    _wait_for(lambda: markers(tmp_path, "first") and markers(tmp_path, "second"))
    time.sleep(0.3)  # let the runner record the two finished steps before the kill
    killed.kill()
    killed.communicate(timeout=30)
    (tmp_path / "open").write_text("")
    resumed = _cli(*args, env=env)
    _, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr
    assert len(markers(tmp_path, "first")) == 1, "finished steps must come from the cache, not run again"
    store = RunStore(str(pipecast_home / "runs.db"))
    killed_run = store.list(pipeline="resumable")[-1]
    assert killed_run["status"] == "failed" and "ended without finishing" in killed_run["detail"]
    run = store.get("resumable")
    assert {s["step"]: s["status"] for s in run["steps"]} == {
        "record": "cached", "record_2": "cached", "wait_for": "done", "record_3": "done"}


def test_ctrl_c_cancels_the_run_cleanly(tmp_path, pipecast_home):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = _cli("run", "tests/unit/pipelines.py:resumable", "-p", f"marker_dir={tmp_path}", "-q", env=env)
    _wait_for(lambda: markers(tmp_path, "first") and markers(tmp_path, "second"))
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Traceback" not in stderr and "cancelled" in stderr
    run = RunStore(str(pipecast_home / "runs.db")).get("resumable")
    assert run["status"] == "cancelled"
    assert {s["step"]: s["status"] for s in run["steps"]}["wait_for"] == "cancelled"


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
