"""Trace + validate time against pipeline size (issue: ≤ 80 ms for 1,000 steps, linear to 10,000)."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generated import layered


def measure(steps: int, repeats: int = 5) -> float:
    definition = layered(steps)
    definition.build()  # warm caches that are per function, not per pipeline (signatures, source hashes)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        definition.build()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    print("trace + validate (median of 5)")
    base = None
    for steps in (1_000, 2_000, 5_000, 10_000):
        seconds = measure(steps)
        base = base or seconds / steps
        print(f"  {steps:>6} steps: {seconds * 1000:8.1f} ms  ({seconds / steps * 1e6:5.1f} µs/step, "
              f"{seconds / steps / base:4.2f}× the 1,000-step rate)")


if __name__ == "__main__":
    main()
