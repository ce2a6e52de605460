"""KFP-IR emit time and size against pipeline size, for the kubeflow and vertex targets (no timing asserts).

Kubeflow refuses an IR over 1 MiB (about 1,300 steps here); with on_unsupported="warn" it is still timed.
Almost all of the time is PyYAML's pure-Python dumper (pipecast.targets.serialize).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generated import layered
from pipecast.flow import EmitOptions, compile_pipeline

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "gs://acme/artifacts"}


def measure(pipeline_ir: object, target: str, repeats: int = 3) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        bundle = compile_pipeline(pipeline_ir, target,  # type: ignore[arg-type]
                                  EmitOptions(settings=SETTINGS, on_unsupported="warn"))
        times.append(time.perf_counter() - started)
        size = len(bundle[bundle.main_file].encode())
    return statistics.median(times), size


def main() -> None:
    print("KFP IR emit (median of 3): time and YAML size")
    for steps in (100, 500, 1_000, 2_000):
        pipeline_ir = layered(steps).build()
        for target in ("kubeflow", "vertex"):
            seconds, size = measure(pipeline_ir, target)
            print(f"  {target:<8} {steps:>5} steps: {seconds * 1000:8.1f} ms ({seconds / steps * 1e6:6.1f} µs/step), "
                  f"{size / 1024:8.1f} KiB ({size / steps:5.0f} B/step)")


if __name__ == "__main__":
    main()
