"""Compile time and emitted size against pipeline size for every target, and the 1 MiB object limit.

Every target compiles the ladder (``benchmarks.generated.layered``) at 100, 1,000 and 10,000 steps, a few
rounds with the sizes interleaved; figures are medians, and the 10,000/1,000 ratio is the median of
same-round ratios (goal: ≤ 0.2 s at 1,000 steps, ratio ≤ 10). Then the 5,000-step ladder (its steps share one
function) on the engines that store the pipeline as one Kubernetes object, against the 1 MiB limit. No timing
asserts.

Times are this process's CPU time (``time.process_time``), not wall time: the machine is shared, and other
processes' load landed in random rounds (a 10,000-step round that lost the core for 0.2 s moved the ratio by
2). Each compile starts after a full collection, so garbage left by the previous one is not collected inside a
random later round. ``python benchmarks/compile_targets.py [rounds] [target,...]``.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from benchmarks.generated import layered
from pipecast.errors import PipecastError
from pipecast.flow import EmitOptions, compile_pipeline
from pipecast.targets.base import EmitContext
from pipecast.targets.checks import parse_settings
from pipecast.targets.kube.limits import object_size
from pipecast.targets.registry import get_target, target_paths

SETTINGS: dict[str, dict[str, str]] = {
    "default": {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts"},
    "vertex": {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "gs://acme/artifacts"},
    "azureml": {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "azureml://datastores/d/paths/p",
                "compute": "cpu-cluster"},
}
SIZES = (100, 1_000, 10_000)
MIB = 1024 * 1024


def compile_once(pipeline_ir: object, target: str) -> tuple[float, int | None]:
    """Seconds and bytes emitted; bytes ``None`` when the target refuses the result (over an engine limit)."""
    options = EmitOptions(settings=SETTINGS.get(target, SETTINGS["default"]), on_unsupported="warn")
    gc.collect()
    started = time.process_time()
    try:
        bundle = compile_pipeline(pipeline_ir, target, options)  # type: ignore[arg-type]
    except PipecastError:  # emitted, then refused: the time is still the compile's
        return time.process_time() - started, None
    seconds = time.process_time() - started
    return seconds, sum(len(text.encode()) for _, text in bundle.files)


def object_bytes(pipeline_ir: object, name: str) -> int:
    """The size the engine stores: the IR file (Kubeflow), the WorkflowTemplate / Pipeline object (Argo, Tekton).

    Emit is called directly, as in ``crd_emit.py``, so an object over the limit is measured too.
    """
    target = get_target(name)
    context = EmitContext(target=name, overrides=SETTINGS["default"])
    parse_settings(pipeline_ir, target, SETTINGS["default"], context)  # type: ignore[arg-type]
    bundle = target.emit(pipeline_ir, context)  # type: ignore[arg-type]
    text = bundle[bundle.main_file]
    if name == "kubeflow":
        return len(text.encode())
    # Tekton's file holds the shared Tasks before the Pipeline: the largest object is the one that must fit
    return max(object_size(doc) for doc in yaml.load_all(text, Loader=yaml.CSafeLoader))


def kib(size: int | None) -> str:
    return "refused" if size is None else f"{size / 1024:.0f} KiB"


def main(rounds: int = 5, only: list[str] | None = None) -> None:
    pipelines = {steps: layered(steps).build() for steps in SIZES}
    targets = only or [name for name in target_paths() if name != "local"]
    print(f"compile (trace excluded), CPU seconds, median of {rounds} rounds; emitted bytes (all files)")
    print(f"  {'target':<13}" + "".join(f"{steps:>10,} steps      " for steps in SIZES) + "  10k/1k")
    for target in targets:
        try:
            compile_once(pipelines[100], target)  # first-use imports
        except Exception as err:  # a target that cannot compile the ladder is reported, not fatal
            print(f"  {target:<13} cannot compile the ladder: {type(err).__name__}: {str(err)[:100]}")
            continue
        times: dict[int, list[float]] = {steps: [] for steps in SIZES}
        size: dict[int, int | None] = {}
        for _ in range(rounds):
            for steps in SIZES:
                seconds, size[steps] = compile_once(pipelines[steps], target)
                times[steps].append(seconds)
        ratio = statistics.median(big / small for big, small in zip(times[10_000], times[1_000], strict=True))
        cells = "".join(f"{statistics.median(times[s]):7.3f} s {kib(size[s]):>11}" for s in SIZES)
        print(f"  {target:<13}{cells}  {ratio:5.1f}")
    if only:
        return
    print("5,000-step ladder (steps share one function) against the 1 MiB object limit:")
    shared = layered(5_000).build()
    for target in ("kubeflow", "argo", "tekton"):
        size = object_bytes(shared, target)
        verdict = "fits" if size < MIB else "OVER"
        print(f"  {target:<9} {size:>10,} bytes  {size / MIB:5.2f} MiB  {verdict}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, sys.argv[2].split(",") if len(sys.argv) > 2 else None)
