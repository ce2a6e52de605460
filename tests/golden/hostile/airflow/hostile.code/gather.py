"""Golden case: literal lists and dicts of step outputs, parameters and constants passed as one input."""

import json

from pipecast import pipeline, step


@step
def make(x: int) -> int:
    return 2 * x


@step
def score(x: int) -> float:
    return x / 4


@step
def total(values: list[int]) -> int:
    return sum(values)


@step
def report(metrics: dict[str, float], grid: list) -> str:
    return json.dumps({"metrics": metrics, "grid": grid})


@pipeline
def gather(lr: float = 0.1, n: int = 3):
    a = make(n)
    b = make(2)
    summed = total([a, b, n, 4])
    hostile = "it's \"{{ x }}\" $(y) ${{ z }} `w`\n%"
    return report({"train": score(summed), "eval": score(a), hostile: 0.5}, grid=[lr, 0.01, (n, "a")])
