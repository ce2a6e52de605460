"""A pipeline whose first step takes as long as the test wants: it waits for a file (the gate) to appear.

The hyperai tests against a real Docker engine copy this folder into their image (``/code/hyperai``), so the
steps' ``--fn hyperai_gated:…`` imports it there.
"""

import os
import time

from pipecast import pipeline, step

GATE_LIMIT = 1800.0  # seconds; a gate that never opens ends the step (and the run) in time


@step
def wait_for_gate(gate: str, n: int) -> list:
    """Wait until the file ``gate`` exists (no wait when it is empty), then make ``n`` numbers."""
    deadline = time.monotonic() + GATE_LIMIT
    while gate and not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} did not open within {GATE_LIMIT:g}s")
        time.sleep(0.2)
    return list(range(n))


@step
def square(values: list, fail: bool) -> list:
    """Square each number, or fail on purpose."""
    if fail:
        raise RuntimeError("square fails on purpose")
    return [v * v for v in values]


@step
def total(values: list) -> int:
    return sum(values)


@pipeline(name="gated")
def gated(gate: str = "", n: int = 5, fail: bool = False):
    return total(square(wait_for_gate(gate, n), fail))
