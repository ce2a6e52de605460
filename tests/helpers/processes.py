"""Bounded waits on events for tests that start, signal and kill processes (no sleeps as synchronisation)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.cases import ROOT

# Generous bounds: a loaded 2-core machine is several times slower than an idle one.
EVENT_SECONDS = 60.0
POLL_SECONDS = 0.01


def wait_until(predicate: Callable[[], object], what: str, timeout: float = EVENT_SECONDS) -> None:
    """Return as soon as ``predicate()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:g}s")
        time.sleep(POLL_SECONDS)


def announced_pid(folder: Path, name: str = "started") -> int:
    """Wait for a step's announcement file and return the pid it holds."""
    path = folder / name
    wait_until(path.exists, f"the step to write {name!r}")
    return int(path.read_text())


def process_gone(pid: int) -> bool:
    """True once ``pid`` has ended (a zombie waiting for its new parent to reap it counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def env_with_root() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``pipecast`` in a process group of its own (so a test can clean up everything it started)."""
    return subprocess.Popen([sys.executable, "-m", "pipecast.cli", *args], cwd=ROOT, env=env_with_root(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def start_runtime(*args: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None,
                  ) -> subprocess.Popen[str]:
    """``python -m pipecast.runtime ARGS`` (optionally behind ``prefix``, e.g. ``unshare``), in its own group."""
    return subprocess.Popen([*prefix, sys.executable, "-m", "pipecast.runtime", *args], cwd=ROOT,
                            env=env or env_with_root(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def finish(process: subprocess.Popen[str], timeout: float = EVENT_SECONDS) -> tuple[str, str]:
    """Wait for ``process`` (bounded); on failure kill its whole group so nothing outlives the test."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        process.communicate()
        raise AssertionError(f"{process.args!r} did not end within {timeout:g}s") from None


def kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
