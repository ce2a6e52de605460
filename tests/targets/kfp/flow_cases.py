"""Control-flow pipelines the KFP targets lower natively (issue 16): golden cases of kubeflow and vertex only.

They live here, not in tests/golden/cases/, because every other target still refuses them (its helper owns
that golden); :mod:`.test_control_flow` holds their goldens and replays.
"""

import json

from pipecast import ParallelFor, pipeline, step


@step
def make_rates(n: int) -> list:
    return [round(0.1 * (i + 1), 2) for i in range(n)]


@step
def train(lr: float, base: int) -> dict:
    return {"lr": lr, "score": round(base * lr, 4)}


@step
def evaluate(model: dict) -> float:
    return float(model["score"])


@step
def best(scores: list) -> float:
    return max(scores)


@step
def greet(name: str, suffix: str) -> str:
    return f"{name}{suffix}"


@step
def join(words: list, sizes: list) -> str:
    return ",".join(words) + f" {sizes}"


@step
def size(thing) -> int:
    return len(json.dumps(thing))


@pipeline(name="map_fan_in")
def map_fan_in(n: int = 3, base: int = 10, names: list = ["a", "1", "{{x}}"], suffix: str = "!"):  # noqa: B006
    """A map over a step's list (bounded, chained, collected), one over a parameter, one over a constant."""
    rates = make_rates(n)
    with ParallelFor(rates, parallelism=2) as lr:
        score = evaluate(train(lr, base))
    top = best(score)
    with ParallelFor(names) as name:
        word = greet(name, suffix)
    with ParallelFor([3, "x", [1, 2], {"k": True}]) as thing:
        sizes = size(thing)
    return top, join(word, sizes)


FLOW_CASES = {"map_fan_in": map_fan_in}
