"""Compose fail-fast: what one step pays to learn whether a step of its run failed (``PIPECAST_FLOW_FAIL_FAST``).

On Compose (local_docker, hyperai) with exit handlers or hooks, every ordinary step with upstream steps asks this
once before it runs, so a run of N such steps asks N times. The figure is one ask in a run that already holds N
records (none failed: the answer is no), and N asks, the whole run's cost, on a local artifact folder.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.inline_flow import InlineStep

PIPELINE, RUN_ID = "fail_fast", "run-1"


def one_ask(records: int, repeats: int = 5) -> float:
    """Seconds of one ``run_failed`` in a run of ``records`` succeeded steps (median of ``repeats``)."""
    with tempfile.TemporaryDirectory() as root:
        store = ArtifactStore(f"file://{root}")
        for index in range(records):
            store.write_json(f"{store.step_dir(PIPELINE, RUN_ID, f'step_{index}')}/meta.json",
                             {"step": f"step_{index}", "status": "succeeded"})
        step = InlineStep.__new__(InlineStep)  # only what run_failed reads: the store and the run
        step.store, step.base, step.records = store, SimpleNamespace(pipeline=PIPELINE, run_id=RUN_ID), {}
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            assert not step.run_failed()
            times.append(time.perf_counter() - started)
        return statistics.median(times)


def report() -> None:
    """Print every figure."""
    print("fail-fast check of one Compose step (local folder, median of 5)")
    for records in (100, 1_000):
        seconds = one_ask(records)
        print(f"  run of {records:>5} steps: {seconds * 1e3:8.3f} ms per step, "
              f"{seconds * records:8.3f} s for the run's {records} steps")


if __name__ == "__main__":
    report()
