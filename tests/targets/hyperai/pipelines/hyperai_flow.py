"""Maps and conditions on hyperai: run by each step's runtime inside its container (``pipecast.runtime.inline_flow``).

Copied into the hyperai tests' image (``/code/hyperai``), so ``--fn hyperai_flow:…`` imports it there.
"""

from pipecast import Else, If, OneOf, ParallelFor, pipeline, step


@step
def square(x: int) -> int:
    return x * x


@step
def label(value: int) -> str:
    return f"big {value}"


@step
def total(values: list) -> int:
    return sum(values)


@step
def promote(score: int) -> str:
    return f"promoted {score}"


@step
def keep(score: int) -> str:
    return f"kept {score}"


@step
def announce(decision: str) -> str:
    return decision.upper()


@pipeline(name="hyperai_flow")
def hyperai_flow(xs: list = [1, 2, 3], limit: int = 5):  # noqa: B006 - never mutated
    with ParallelFor(xs, parallelism=2) as x:
        squared = square(x)
        with If(squared > 1):
            label(squared)
    summed = total(squared)
    with If(summed > limit):
        promoted = promote(summed)
    with Else():
        kept = keep(summed)
    announce(OneOf(promoted, kept))
