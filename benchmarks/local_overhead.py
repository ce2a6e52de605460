"""Local-run overhead per step: a 200-step chain of trivial steps (issue: ≤ 5 ms/step, ≤ 0.3 s fixed)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generated import chain
from pipecast.runtime.local_runner import run_pipeline


def measure(steps: int, repeats: int = 3) -> float:
    built = chain(steps).build()
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as home:
            os.environ["PIPECAST_HOME"] = home
            started = time.perf_counter()
            run_pipeline(built, {}, cache=False)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    small, large = measure(1), measure(201)
    per_step = (large - small) / 200
    print("local run of a chain of trivial steps (median of 3, cache off)")
    print(f"  1 step:    {small * 1000:7.1f} ms  (fixed cost: run store, artifact root, scheduler)")
    print(f"  201 steps: {large * 1000:7.1f} ms")
    print(f"  overhead per step: {per_step * 1000:.2f} ms")


if __name__ == "__main__":
    main()
