"""Tekton and Argo emit time and object size against pipeline size, and where the 1 MiB object limit is hit.

No timing asserts: it prints figures. Emit is called directly so objects over the limit are measured too
(compile would refuse them, as it should).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from benchmarks.generated import layered
from pipecast.targets.base import EmitContext
from pipecast.targets.checks import parse_settings
from pipecast.targets.kube.limits import object_size
from pipecast.targets.kube.pod import ETCD_OBJECT_LIMIT
from pipecast.targets.registry import get_target

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts"}


def measure(pipeline_ir: object, name: str, repeats: int = 3) -> tuple[float, int]:
    target = get_target(name)
    times, size = [], 0
    for _ in range(repeats):
        context = EmitContext(target=name, overrides=SETTINGS)
        parse_settings(pipeline_ir, target, SETTINGS, context)  # type: ignore[arg-type]
        started = time.perf_counter()
        bundle = target.emit(pipeline_ir, context)  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
        size = object_size(yaml.safe_load(bundle[bundle.main_file]))
    return statistics.median(times), size


def main() -> None:
    print(f"Tekton Pipeline / Argo WorkflowTemplate emit (median of 3); API object limit {ETCD_OBJECT_LIMIT} B")
    for steps in (100, 500, 1_000, 2_000, 5_000):
        pipeline_ir = layered(steps).build()
        for target in ("tekton", "argo"):
            seconds, size = measure(pipeline_ir, target)
            over = "  OVER the limit" if size > ETCD_OBJECT_LIMIT else ""
            print(f"  {target:<6} {steps:>5} steps: {seconds * 1000:8.1f} ms ({seconds / steps * 1e6:6.1f} µs/step), "
                  f"object {size / 1024:8.1f} KiB ({size / steps:5.0f} B/step){over}")


if __name__ == "__main__":
    main()
