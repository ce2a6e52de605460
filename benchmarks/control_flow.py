"""Control flow (issue 16): trace + compile of big maps and many branches, and the local overhead per map item.

Goals: trace + compile stays linear (a 1,000-item map, 100 branches); a map item costs <= 5 ms locally.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generated import source, work
from pipecast import Elif, Else, If, ParallelFor, pipeline, step
from pipecast.flow import compile_pipeline
from pipecast.runtime.local_runner import run_pipeline


@step
def gather(values: list) -> int:
    return len(values)


def item_map(items: int):
    """One step mapped over a constant list of ``items`` items, collected by a second step."""

    @pipeline(name=f"map_{items}")
    def generated(seed: int = 1):
        with ParallelFor(list(range(items))) as k:
            value = work(seed, k)
        return gather(value)  # the collected list, in item order

    return generated


def many_maps(count: int):
    """``count`` map blocks, each with two steps."""

    @pipeline(name=f"maps_{count}")
    def generated(seed: int = 1, ks: list = [1, 2]):  # noqa: B006
        for _ in range(count):
            with ParallelFor(ks) as k:
                work(source(seed), k)

    return generated


def branches(count: int):
    """An if/elif chain of ``count`` branches on a parameter, ending in an else."""

    @pipeline(name=f"branches_{count}")
    def generated(seed: int = 1):
        with If(seed == 0):
            work(seed, 0)
        for k in range(1, count - 1):
            with Elif(seed == k):
                work(seed, k)
        with Else():
            work(seed, -1)

    return generated


def timed(definition, repeats: int = 5) -> float:
    definition.build()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        compile_pipeline(definition.build(), "local")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def wide(steps: int):
    """The same work without a map: ``steps`` independent steps, for the per-step cost on this machine now."""

    @pipeline(name=f"wide_{steps}")
    def generated(seed: int = 1):
        for k in range(steps):
            work(seed, k)

    return generated


def local_run(items: int, repeats: int = 3, make=item_map) -> float:
    built = make(items).build()
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as home:
            os.environ["PIPECAST_HOME"] = home
            started = time.perf_counter()
            run_pipeline(built, {}, cache=False)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    # Steps are imported by module path: when run as a script (or by run_all.py) this file is __main__, so use its
    # importable twin, whose steps the local runner can load.
    from benchmarks import control_flow as this

    this.report()


def report() -> None:
    """Print every figure."""
    print("trace + validate + compile (local IR), median of 5")
    for label, make, sizes in (("map items", item_map, (1_000, 10_000)), ("map blocks", many_maps, (100, 1_000)),
                               ("branches", branches, (100, 1_000))):
        rates = []
        for size in sizes:
            seconds = timed(make(size))
            rates.append(seconds / size)
            print(f"  {size:>6} {label:<10}: {seconds * 1000:8.1f} ms ({seconds / size * 1e6:6.1f} µs each)")
        print(f"    {sizes[1] // sizes[0]}× the size costs {rates[1] / rates[0]:.2f}× per unit (1.00 is linear)")
    small, large = local_run(1), local_run(501)
    plain = (local_run(501, make=wide) - local_run(1, make=wide)) / 500
    print("local run of a map of one trivial step (median of 3, cache off)")
    print(f"  1 item: {small * 1000:7.1f} ms   501 items: {large * 1000:7.1f} ms")
    print(f"  overhead per item: {(large - small) / 500 * 1000:.2f} ms (goal <= 5 ms); "
          f"the same step unmapped, per step: {plain * 1000:.2f} ms")


if __name__ == "__main__":
    main()
