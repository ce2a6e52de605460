"""A step of an exit handler's group fails; the handler waits for a gate file, so the run goes on after the failure.

Copied into the hyperai tests' image (``/code/hyperai``), so ``--fn hyperai_hooks_gated:…`` imports it there.
"""

import os
import time

from pipecast import ExitHandler, pipeline, step

GATE_LIMIT = 1800.0  # seconds; a gate that never opens ends the handler (and the run) in time


@step
def check_below(x: int, limit: int) -> int:
    if x >= limit:
        raise ValueError(f"{x} is not below {limit}")
    return x


@step
def halve(value: int) -> float:
    return value / 2


@step
def failed_steps_after_gate(status: dict, gate: str) -> str:
    """The handler, once the file ``gate`` exists (bounded): the test reads the run's status while it waits."""
    deadline = time.monotonic() + GATE_LIMIT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} did not open within {GATE_LIMIT:g}s")
        time.sleep(0.2)
    return f"{status['status']} {','.join(status['failed_steps'])}"


@pipeline(name="hyperai_hooks_gated")
def hyperai_hooks_gated(gate: str, x: int = 4, limit: int = 4):
    """The group's first step fails; its exit handler waits for the gate."""
    with ExitHandler() as work:
        halve(check_below(x, limit))
    failed_steps_after_gate(work.status, gate)
