"""A run cancelled while its first step runs: the step after it, an exit handler that waits for a gate, both hooks.

Copied into the hyperai tests' image (``/code/hyperai``). The shape of ``compose_cancel`` (local_docker's
``test_exit_real.py``), with the handler held at a gate so the test reads the run's status while it runs.
"""

import os
import pathlib
import time

import pipecast
from pipecast import ExitHandler, pipeline, step

LIMIT = 1800.0  # seconds; a gate that never opens (or a cancel that never comes) ends the step in time


@step
def block_until_stopped() -> int:
    """Marks that it runs (a file ``started`` in its folder), then waits to be stopped (bounded)."""
    folder = pathlib.Path(pipecast.context().artifact_uri.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "started").write_text("1")
    time.sleep(LIMIT)
    return 1


@step
def halve(value: int) -> float:
    return value / 2


@step
def failed_steps_after_gate(status: dict, gate: str) -> str:
    """The handler, once the file ``gate`` exists (bounded)."""
    deadline = time.monotonic() + LIMIT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} did not open within {LIMIT:g}s")
        time.sleep(0.2)
    return f"{status['status']} {','.join(status['failed_steps'])}"


@step
def alert(status: dict) -> str:
    return f"alert {status['status']} {status['failed_steps']}: {status['error']}"


@step
def celebrate() -> str:
    return "all good"


@pipeline(name="hyperai_cancel", on_failure=alert, on_success=celebrate)
def hyperai_cancel(gate: str):
    """A step that runs until the run is cancelled, the step after it, a gated exit handler and both hooks."""
    with ExitHandler() as work:
        halve(block_until_stopped())
    failed_steps_after_gate(work.status, gate)
