"""pipecast against kfp 2.17 in one process: trace + compile the same 1,000-step ladder to a KFP IR file.

Rounds alternate pipecast and kfp so both see the same machine load; the figure is the ratio of the two
same-round medians (goal: pipecast ≥ 50× faster). kfp comes with the ``kubeflow`` extra. No timing asserts.
"""

# No ``from __future__ import annotations`` here: kfp reads the components' annotations as types, not text.
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generated import layered
from pipecast.flow import EmitOptions, compile_pipeline

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "gs://acme/artifacts"}


def pipecast_seconds(steps: int, folder: Path) -> float:
    started = time.perf_counter()
    bundle = compile_pipeline(layered(steps).build(), "kubeflow", EmitOptions(settings=SETTINGS, on_unsupported="warn"))
    (folder / "pipecast.yaml").write_text(bundle[bundle.main_file])
    return time.perf_counter() - started


def kfp_seconds(steps: int, folder: Path) -> float:
    from kfp import compiler, dsl

    @dsl.component(base_image=SETTINGS["image"])
    def source(seed: int) -> int:
        return seed

    @dsl.component(base_image=SETTINGS["image"])
    def work(value: int, k: int) -> int:
        return value + k

    started = time.perf_counter()

    @dsl.pipeline(name=f"layered-{steps}")
    def generated(seed: int = 1) -> None:  # the same shape as benchmarks.generated.layered
        previous = [source(seed=seed)]
        count = 1
        while count < steps:
            layer = []
            for k in range(min(10, steps - count)):
                layer.append(work(value=previous[k % len(previous)].output, k=k))
                count += 1
            previous = layer

    compiler.Compiler().compile(generated, str(folder / "kfp.yaml"))
    return time.perf_counter() - started


def main(steps: int = 1_000, rounds: int = 3) -> None:
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pipecast_seconds(steps, folder)  # warm: first-use imports are not what is compared
        for _ in range(rounds):
            ours.append(pipecast_seconds(steps, folder))
            theirs.append(kfp_seconds(steps, folder))
        sizes = {name: (folder / f"{name}.yaml").stat().st_size for name in ("pipecast", "kfp")}
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"trace + compile {steps} steps to KFP IR, {rounds} alternating rounds (median; min–max):")
    print(f"  pipecast {a:8.3f} s ({min(ours):.3f}–{max(ours):.3f}), IR {sizes['pipecast']:>9,} bytes")
    print(f"  kfp      {b:8.3f} s ({min(theirs):.3f}–{max(theirs):.3f}), IR {sizes['kfp']:>9,} bytes")
    print(f"  pipecast is {b / a:.1f}× faster (goal ≥ 50×)")


if __name__ == "__main__":
    main()
