"""Control flow (issue 16): trace + compile of big maps and many branches, and the local overhead per map item.

Goals: trace + compile stays linear (a 1,000-item map, 100 branches); a map item costs <= 5 ms locally.
The local IR is measured up to 10,000 items / 1,000 branches; each natively lowering target at 2-3 sizes too.
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


# The targets that lower maps and branches natively (compile_targets.py's settings); each is measured where it
# accepts the pipeline (GitHub and Tekton refuse a constant list over 256 items, Airflow over 1,024).
NATIVE = ("argo", "tekton", "github", "airflow", "kubeflow", "kubernetes", "sagemaker")


def target_seconds(definition, target: str, repeats: int = 3) -> tuple[float, int] | None:
    """Median seconds to trace + compile ``definition`` for ``target`` and the bytes emitted; None if refused."""
    from benchmarks.compile_targets import SETTINGS
    from pipecast.errors import PipecastError
    from pipecast.flow import EmitOptions

    options = EmitOptions(settings=SETTINGS.get(target, SETTINGS["default"]))
    times, size = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            bundle = compile_pipeline(definition.build(), target, options)
        except PipecastError:
            return None
        times.append(time.perf_counter() - started)
        size = sum(len(text.encode()) for _, text in bundle.files)
    return statistics.median(times), size


def targets_report() -> None:
    """Trace + compile per native target: a map over a constant list, and an if/elif/else chain, at 2-3 sizes."""
    print("trace + compile per target, median of 3 (ms, KB emitted; '-' = refused by the target's limit)")
    for label, make, sizes in (("map items", item_map, (100, 250, 1_000)), ("branches", branches, (50, 100, 200))):
        print(f"  {label}: " + ", ".join(str(size) for size in sizes))
        for target in NATIVE:
            cells = []
            for size in sizes:
                found = target_seconds(make(size), target)
                cells.append("-" if found is None else f"{found[0] * 1000:7.1f} ms {found[1] / 1024:7.1f} KB")
            print(f"    {target:<11}" + " | ".join(f"{cell:>21}" for cell in cells))


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
    targets_report()
    small, large = local_run(1), local_run(501)
    plain = (local_run(501, make=wide) - local_run(1, make=wide)) / 500
    print("local run of a map of one trivial step (median of 3, cache off)")
    print(f"  1 item: {small * 1000:7.1f} ms   501 items: {large * 1000:7.1f} ms")
    print(f"  overhead per item: {(large - small) / 500 * 1000:.2f} ms (goal <= 5 ms); "
          f"the same step unmapped, per step: {plain * 1000:.2f} ms")


if __name__ == "__main__":
    main()
