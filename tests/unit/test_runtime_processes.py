"""The runtime as an engine runs it: timeouts kill a child process, SIGTERM cancels (also as PID 1), and a step
whose parent is gone records nothing. Every wait is bounded and ends on an event (a file, a process ending)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipecast.runtime.executor import StepInvocation, execute_step
from pipecast.runtime.process import StepCancelled
from tests.helpers.processes import (
    announced_pid,
    env_with_root,
    finish,
    kill_group,
    process_gone,
    start_runtime,
    wait_until,
)

# A step stopped by a signal or a timeout must end within a second on an idle machine (the tests print what
# they measured); the bound is for a loaded one. Before, a C loop ran on for its whole length (hours here).
STOP_BOUND_SECONDS = 20.0


def args(function: str, root: Path, *extra: str, step: str | None = None) -> list[str]:
    return ["run", "--fn", f"tests.unit.runtime_steps:{function}", "--pipeline", "p", "--step", step or function,
            "--run-id", "r1", "--artifact-root", f"file://{root}", "--output", "output", *extra]


def meta_of(root: Path, step: str) -> dict:
    return json.loads((root / "p/runs/r1" / step / "meta.json").read_text())


def test_a_timeout_stops_a_step_inside_a_c_loop(tmp_path):
    started = time.monotonic()
    process = start_runtime(*args("busy_in_c", tmp_path, "--param", f"n=int:{10**11}", "--timeout", "2"))
    _, stderr = finish(process)
    elapsed = time.monotonic() - started
    assert process.returncode == 1, stderr
    assert "timed out after 2s (try 1 of 1)" in stderr
    assert elapsed < 2 + STOP_BOUND_SECONDS, f"a step with a 2s timeout ran {elapsed:.1f}s"
    meta = meta_of(tmp_path, "busy_in_c")
    assert meta["status"] == "failed" and meta["reason"] == "timeout"


def test_a_step_that_catches_exception_cannot_swallow_its_timeout(tmp_path):
    process = start_runtime(*args("swallows", tmp_path, "--param", f"folder=str:{tmp_path}", "--timeout", "1",
                                  "--attempts", "2", "--retry-delay", "0"))
    _, stderr = finish(process)
    assert process.returncode == 1, stderr
    assert "failed after 2 tries: timed out after 1s (try 2 of 2)" in stderr
    meta = meta_of(tmp_path, "swallows")
    assert meta["attempt"] == 2 and meta["reason"] == "timeout"


def test_a_timeout_kills_the_processes_the_step_started(tmp_path):
    process = start_runtime(*args("spawns_and_waits", tmp_path, "--param", f"folder=str:{tmp_path}",
                                  "--timeout", "2"))
    helper = announced_pid(tmp_path, "helper")
    try:
        _, stderr = finish(process)
        assert process.returncode == 1 and "timed out" in stderr
        wait_until(lambda: process_gone(helper), "the step's own subprocess to be killed with its process group")
    finally:
        if not process_gone(helper):
            os.kill(helper, signal.SIGKILL)


def test_retries_and_cache_work_through_the_child(tmp_path):
    counter = tmp_path / "count"
    first = start_runtime("run", "--fn", "tests.unit.pipelines:flaky", "--pipeline", "p", "--step", "flaky",
                          "--run-id", "r1", "--artifact-root", f"file://{tmp_path}", "--param",
                          f"counter_file=str:{counter}", "--param", "failures=int:2", "--output", "output",
                          "--attempts", "3", "--retry-delay", "0.01", "--timeout", "60")
    _, stderr = finish(first)
    assert first.returncode == 0, stderr
    assert meta_of(tmp_path, "flaky")["attempt"] == 3
    again = start_runtime(*first.args[3:])
    _, stderr = finish(again)
    assert again.returncode == 0 and "cached" in stderr, stderr
    assert counter.read_text() == "3", "a cache hit runs nothing"


@pytest.mark.parametrize("supervised", [False, True], ids=["in-process", "timeout-child"])
def test_sigterm_cancels_the_step_and_records_it(tmp_path, supervised):
    extra = ["--timeout", "600"] if supervised else []
    process = start_runtime(*args("runs_until_stopped", tmp_path, "--param", f"folder=str:{tmp_path}", *extra))
    step_pid = announced_pid(tmp_path)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = finish(process)
    took = time.monotonic() - sent
    print(f"SIGTERM to exit: {took:.3f}s")
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "cancelled: received SIGTERM" in stderr
    assert took < STOP_BOUND_SECONDS
    meta = meta_of(tmp_path, "runs_until_stopped")
    assert meta["status"] == "cancelled" and meta["error"] == "received SIGTERM"
    wait_until(lambda: process_gone(step_pid), "the step's process to end")


def test_sigterm_during_the_delay_before_a_retry_records_the_step_cancelled(tmp_path):
    process = start_runtime(*args("fails_after_announcing", tmp_path, "--param", f"folder=str:{tmp_path}",
                                  "--attempts", "3", "--retry-delay", "600", "--timeout", "600"))
    first_try = announced_pid(tmp_path)
    meta = tmp_path / "p/runs/r1/fails_after_announcing/meta.json"
    wait_until(lambda: process_gone(first_try) and json.loads(meta.read_text())["status"] == "failed",
               "the first try to fail and end (the supervisor then waits 600s before the next)")
    process.send_signal(signal.SIGTERM)
    _, stderr = finish(process)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    recorded = json.loads(meta.read_text())
    assert recorded["status"] == "cancelled" and recorded["attempt"] == 1


def _unshare_works() -> str | None:
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare --pid --fork fails here: {probe.stderr.strip()}"


@pytest.mark.parametrize("supervised", [False, True], ids=["in-process", "timeout-child"])
def test_sigterm_works_when_the_runtime_is_pid_1(tmp_path, supervised):
    """As in a container: PID 1 gets no default signal actions, only the handlers it installs."""
    reason = _unshare_works()
    if reason:
        pytest.skip(reason)
    extra = ["--timeout", "600"] if supervised else []
    process = start_runtime(*args("runs_until_stopped", tmp_path, "--param", f"folder=str:{tmp_path}", *extra),
                            prefix=("unshare", "--pid", "--fork"))
    try:
        announced_pid(tmp_path)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(children) == 1
        runtime_pid = int(children[0])
        namespace_pids = [line.split()[1:] for line in Path(f"/proc/{runtime_pid}/status").read_text().splitlines()
                          if line.startswith("NSpid:")]
        assert namespace_pids and namespace_pids[0][-1] == "1", "the runtime must be PID 1 in its namespace"
        sent = time.monotonic()
        os.kill(runtime_pid, signal.SIGTERM)
        wait_until(lambda: process_gone(runtime_pid), "PID 1 to end on SIGTERM", timeout=STOP_BOUND_SECONDS)
        print(f"SIGTERM to PID 1 exit: {time.monotonic() - sent:.3f}s")
    finally:
        finish(process) if process.poll() is not None else kill_group(process)
    meta = meta_of(tmp_path, "runs_until_stopped")
    assert meta["status"] == "cancelled" and meta["error"] == "received SIGTERM"


def test_a_child_whose_parent_is_gone_refuses_to_start(tmp_path):
    env = {**env_with_root(), "PIPECAST_PARENT_PID": str(os.getpid() + 10**6)}  # not the runtime's parent
    process = start_runtime(*args("numbers", tmp_path, "--param", "n=int:1"), env=env)
    _, stderr = finish(process)
    assert process.returncode == 128 + signal.SIGTERM
    assert "the process that started this step has ended" in stderr
    assert not tmp_path.joinpath("p").exists()


def test_an_abandoned_step_records_no_result(tmp_path):
    """The last guard before a result is recorded: once the run is abandoned nothing is committed."""
    root = f"file://{tmp_path}"
    invocation = StepInvocation(function="tests.unit.runtime_steps:numbers", pipeline="p", step="numbers",
                                run_id="r1", artifact_root=root, values={"n": 3}, outputs=("output",))
    with pytest.raises(StepCancelled, match="abandoned"):
        execute_step(invocation, may_commit=lambda: False)
    assert not (tmp_path / "p/runs/r1/numbers/meta.json").exists()
    assert not list(tmp_path.glob("p/cache/*")), "no cache pointer either"
    assert execute_step(invocation).cached is False, "and a later run does not find a result to reuse"

