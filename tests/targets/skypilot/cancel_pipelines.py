"""A pipeline cancelled while a step runs (test_cancel.py): its steps are importable by module path, as on the VM."""

from __future__ import annotations

import time
from pathlib import Path

from pipecast import ExitHandler, ParallelFor, pipeline, step

HELD_SECONDS = 120.0  # bounded, so a step nobody cancels still ends (and fails) by itself


@step
def prepare(n: int) -> list:
    return list(range(n))


@step
def hold(folder: str, x: int) -> int:
    """Announces it runs (a marker file per item), then waits for a gate no test opens: the run is cancelled here."""
    Path(folder, f"running-{x}").write_text("")
    _wait_for(Path(folder, "gate"))
    return x


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + HELD_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} never appeared")
        time.sleep(0.02)


@step
def after(values: list) -> int:
    return sum(values)


@step
def summary(total: int) -> str:
    return f"total {total}"


@step
def report(folder: str, status: dict, hold_report: bool) -> dict:
    """The exit handler: announces it runs; with ``hold_report`` it waits (so a second signal can abort it)."""
    Path(folder, "handler-running").write_text("")
    if hold_report:
        _wait_for(Path(folder, "release"))
    return status


@step
def note_failure(status: dict) -> str:
    return f"on_failure: {status['status']}"


@step
def note_success() -> str:
    return "all good"


@pipeline(name="sky_cancel", on_failure=note_failure, on_success=note_success)
def sky_cancel(folder: str, n: int = 2, hold_report: bool = False):
    """A map whose items block until the run is cancelled, two steps after it, an exit handler and both hooks."""
    with ExitHandler() as work:
        items = prepare(n)
        with ParallelFor(items) as x:
            held = hold(folder, x)
        total = after(held)
        summary(total)
    report(folder, work.status, hold_report)
