"""kubernetes and local_docker emit time against pipeline size, and how big the kubernetes plan gets.

No timing asserts: it prints figures. The plan ConfigMap holds the plan as text up to 900 KiB and gzipped
above that; etcd's object limit is 1 MiB.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generated import layered
from pipecast.targets.base import EmitContext
from pipecast.targets.checks import parse_settings
from pipecast.targets.kube.pod import ETCD_OBJECT_LIMIT
from pipecast.targets.kubernetes import contract
from pipecast.targets.kubernetes.manifests import Lowering
from pipecast.targets.registry import get_target

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts"}


def emit_seconds(pipeline_ir: object, name: str, repeats: int = 3) -> float:
    target = get_target(name)
    times = []
    for _ in range(repeats):
        context = EmitContext(target=name, overrides=SETTINGS)
        parse_settings(pipeline_ir, target, SETTINGS, context)  # type: ignore[arg-type]
        started = time.perf_counter()
        target.emit(pipeline_ir, context)  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    print(f"emit (median of 3); plan ConfigMap limit {ETCD_OBJECT_LIMIT} B")
    for steps in (100, 500, 1_000, 2_000, 5_000):
        pipeline_ir = layered(steps).build()
        context = EmitContext("kubernetes", SETTINGS)
        parse_settings(pipeline_ir, get_target("kubernetes"), SETTINGS, context)
        plan = Lowering(pipeline_ir, context).plan()
        plan_text = contract.dump_plan(plan)
        field, _, stored = contract.pack_plan(plan)
        over = "  OVER the limit" if len(stored) > ETCD_OBJECT_LIMIT else ""
        k8s = emit_seconds(pipeline_ir, "kubernetes")
        docker = emit_seconds(pipeline_ir, "local_docker")
        print(f"  {steps:>5} steps: kubernetes {k8s * 1000:7.1f} ms ({k8s / steps * 1e6:5.1f} µs/step), "
              f"local_docker {docker * 1000:7.1f} ms ({docker / steps * 1e6:5.1f} µs/step); "
              f"plan {len(plan_text) / 1024:7.1f} KiB text → {field} {len(stored) / 1024:6.1f} KiB "
              f"({len(stored) / steps:5.0f} B/step){over}")


if __name__ == "__main__":
    main()
