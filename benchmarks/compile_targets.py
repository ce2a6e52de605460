"""Compile time and emitted size against pipeline size for every target, and the 1 MiB object limit.

Every target compiles the ladder (``benchmarks.generated.layered``) at 100, 1,000 and 10,000 steps, each
compile in a FRESH process (``--one TARGET STEPS``): a 1,000-step compile after a 10,000-step one in the same
process reuses the memory the big one freed (no page faults), and one before it leaves a warm allocator, so
in-process rounds flattered or hurt the ratio at random. The child imports, compiles 100 steps once (first-use
imports), builds the pipeline, collects, then times one compile. Rounds interleave targets and sizes; figures
are medians, ``10k/1k`` is the ratio of the medians and ``best`` that of the fastest rounds (the least disturbed
one, ``timeit``'s reasoning). Goal: ≤ 0.2 s at 1,000 steps, ratio ≤ 10. Then the 5,000-step ladder (its steps
share one function) on the engines that store the pipeline as one Kubernetes object, against the 1 MiB limit.
No timing asserts.

Times are the child's CPU time (``time.process_time``), not wall time: the machine is shared, and other
processes' load landed in random rounds. ``grown`` is how far the child's peak resident set rose during the
compile (``ru_maxrss``; the working set the compile touched anew). The load average is printed with the
figures: CPU time still grows with other processes' load (they share the caches).
``python benchmarks/compile_targets.py [rounds] [target,...]``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS: dict[str, dict[str, str]] = {
    "default": {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts"},
    "vertex": {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "gs://acme/artifacts"},
    "azureml": {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "azureml://datastores/d/paths/p",
                "compute": "cpu-cluster"},
    "sagemaker": {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts",
                  "role_arn": "arn:aws:iam::123456789012:role/pipecast"},
}
SIZES = (100, 1_000, 10_000)
MIB = 1024 * 1024


def compile_once(pipeline_ir: object, target: str) -> tuple[float, int | None]:
    """CPU seconds and bytes emitted; bytes ``None`` when the target refuses the result (over an engine limit)."""
    import gc

    from pipecast.errors import PipecastError
    from pipecast.flow import EmitOptions, compile_pipeline

    options = EmitOptions(settings=SETTINGS.get(target, SETTINGS["default"]), on_unsupported="warn")
    gc.collect()
    started = time.process_time()
    try:
        bundle = compile_pipeline(pipeline_ir, target, options)  # type: ignore[arg-type]
    except PipecastError:  # emitted, then refused: the time is still the compile's
        return time.process_time() - started, None
    seconds = time.process_time() - started
    return seconds, sum(len(text.encode()) for _, text in bundle.files)


def one(target: str, steps: int) -> dict[str, float | int | None]:
    """One measured compile in this (fresh) process: what the child prints as JSON."""
    from benchmarks.generated import layered

    compile_once(layered(100).build(), target)  # first-use imports
    pipeline_ir = layered(steps).build()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds, size = compile_once(pipeline_ir, target)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    return {"seconds": seconds, "bytes": size, "grown_kib": grown}


def measure(target: str, steps: int) -> dict[str, float | int | None]:
    """:func:`one` in a new interpreter."""
    done = subprocess.run([sys.executable, __file__, "--one", target, str(steps)], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output")
    result: dict[str, float | int | None] = json.loads(done.stdout)
    return result


def object_bytes(pipeline_ir: object, name: str) -> int:
    """The size the engine stores: the IR file (Kubeflow), the WorkflowTemplate / Pipeline object (Argo, Tekton).

    Emit is called directly, as in ``crd_emit.py``, so an object over the limit is measured too.
    """
    import yaml

    from pipecast.targets.base import EmitContext
    from pipecast.targets.checks import parse_settings
    from pipecast.targets.kube.limits import object_size
    from pipecast.targets.registry import get_target

    target = get_target(name)
    context = EmitContext(target=name, overrides=SETTINGS["default"])
    parse_settings(pipeline_ir, target, SETTINGS["default"], context)  # type: ignore[arg-type]
    bundle = target.emit(pipeline_ir, context)  # type: ignore[arg-type]
    text = bundle[bundle.main_file]
    if name == "kubeflow":
        return len(text.encode())
    # Tekton's file holds the shared Tasks before the Pipeline: the largest object is the one that must fit
    return max(object_size(doc) for doc in yaml.load_all(text, Loader=yaml.CSafeLoader))


def kib(size: float | int | None) -> str:
    return "refused" if size is None else f"{size / 1024:.0f} KiB"


def load() -> str:
    return "/".join(f"{figure:.1f}" for figure in os.getloadavg())


def main(rounds: int = 5, only: list[str] | None = None) -> None:
    from pipecast.targets.registry import target_paths

    targets = only or [name for name in target_paths() if name != "local"]
    results: dict[str, dict[int, list[dict[str, float | int | None]]]] = {t: {s: [] for s in SIZES} for t in targets}
    failed: dict[str, str] = {}
    print(f"load average at start: {load()}")
    for _ in range(rounds):
        for target in targets:
            for steps in SIZES:
                if target in failed:
                    continue
                try:
                    results[target][steps].append(measure(target, steps))
                except RuntimeError as err:  # a target that cannot compile the ladder is reported, not fatal
                    failed[target] = str(err)[:120]
    print(f"load average at end: {load()}")
    print(f"compile (trace excluded), CPU seconds, median of {rounds} fresh processes; emitted bytes (all files); "
          "peak RSS growth at 1k / 10k")
    print(f"  {'target':<13}" + "".join(f"{steps:>10,} steps      " for steps in SIZES)
          + "  10k/1k  best   grown 1k / 10k")
    for target in targets:
        if target in failed:
            print(f"  {target:<13} cannot compile the ladder: {failed[target]}")
            continue
        times = {s: [float(r["seconds"] or 0) for r in results[target][s]] for s in SIZES}
        ratio = statistics.median(times[10_000]) / statistics.median(times[1_000])
        best = min(times[10_000]) / min(times[1_000])
        cells = "".join(f"{statistics.median(times[s]):7.3f} s {kib(results[target][s][-1]['bytes']):>11}"
                        for s in SIZES)
        grown = [statistics.median(float(r["grown_kib"] or 0) for r in results[target][s]) / 1024
                 for s in (1_000, 10_000)]
        print(f"  {target:<13}{cells}  {ratio:5.1f}  {best:5.1f}   {grown[0]:4.1f} / {grown[1]:5.1f} MiB")
    if only:
        return
    from benchmarks.generated import layered

    print("5,000-step ladder (steps share one function) against the 1 MiB object limit:")
    shared = layered(5_000).build()
    for target in ("kubeflow", "argo", "tekton"):
        size = object_bytes(shared, target)
        verdict = "fits" if size < MIB else "OVER"
        print(f"  {target:<9} {size:>10,} bytes  {size / MIB:5.2f} MiB  {verdict}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(sys.argv[2], int(sys.argv[3]))))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, sys.argv[2].split(",") if len(sys.argv) > 2 else None)
