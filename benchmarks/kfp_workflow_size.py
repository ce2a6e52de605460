"""The Argo Workflow a Kubeflow backend makes of the one-function ladder: pipecast's IR and kfp 2.17's IR.

For 1,000, 2,000 and 5,000 steps (``benchmarks.generated.layered``, the ladder of ``kfp_compare``), and for a
map of 5,000 items, prints the IR's size and the lower bound on the backend's Workflow
(:mod:`pipecast.targets.kfpspec.workflow_size`) against the 1 MiB Argo keeps. kfp comes with the ``kubeflow``
extra; ``--no-kfp`` leaves it out (kfp takes minutes for 5,000 steps). Figures only, no asserts.
"""

# No ``from __future__ import annotations`` here: kfp reads the components' annotations as types, not text.
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generated import layered, source, work
from benchmarks.kfp_compare import SETTINGS, kfp_seconds
from pipecast import ParallelFor, pipeline
from pipecast.flow import EmitOptions, compile_pipeline
from pipecast.targets.kfpspec.workflow_size import WORKFLOW_LIMIT, describe, estimate


def mapped(items: int):
    """One step mapped over a constant list of ``items`` numbers, and one step before it."""

    @pipeline(name=f"mapped_{items}")
    def generated(seed: int = 1):
        start = source(seed)
        with ParallelFor(list(range(items))) as k:
            work(start, k)

    return generated


def mapped_parameter(items: int):
    """The same map over a pipeline parameter (its list arrives at run time)."""

    @pipeline(name=f"mapped_parameter_{items}")
    def generated(seed: int = 1, ks: list = list(range(items))):  # noqa: B006 - a default, never mutated
        start = source(seed)
        with ParallelFor(ks) as k:
            work(start, k)

    return generated


def pipecast_ir(pipeline_ir: object) -> str:
    bundle = compile_pipeline(pipeline_ir, "kubeflow", EmitOptions(settings=SETTINGS, on_unsupported="warn"))
    return bundle[bundle.main_file]


def row(label: str, text: str) -> str:
    docs = [doc for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc]
    found = estimate(docs[0], docs[1] if len(docs) > 1 else None)
    verdict = "fits" if found.total <= WORKFLOW_LIMIT else "over"
    per_task = found.tasks / max(found.task_count, 1)
    return (f"  {label:<28} IR {len(text.encode()):>10,} B   Workflow ≥ {describe(found.total):<28} {verdict}"
            f"   ({per_task:,.0f} B of DAG tasks per IR task)")


def main(with_kfp: bool = True) -> None:
    print(f"Argo Workflow of a Kubeflow run, lower bound, against {WORKFLOW_LIMIT:,} bytes (Argo's MAX_WORKFLOW_SIZE):")
    for steps in (1_000, 2_000, 5_000):
        print(row(f"pipecast, {steps:,} steps", pipecast_ir(layered(steps).build())))
        if with_kfp:
            with tempfile.TemporaryDirectory() as tmp:
                kfp_seconds(steps, Path(tmp))
                print(row(f"kfp 2.17, {steps:,} steps", (Path(tmp) / "kfp.yaml").read_text()))
    print(row("pipecast, map of 5,000 items", pipecast_ir(mapped(5_000).build())))
    print(row("pipecast, map over a parameter", pipecast_ir(mapped_parameter(5_000).build())))


if __name__ == "__main__":
    main(with_kfp="--no-kfp" not in sys.argv[1:])
