"""Output parameters in a supervised child (a step with a timeout) and in a map, collected as ``list[Model]``.

Run by tests/unit/test_typed_artifacts.py.
"""

from __future__ import annotations

from pipecast import Metrics, Model, Output, OutputPath, pipeline, step


@step(timeout="5m")
def fit(seed: int, model: Output[Model], log: OutputPath) -> Metrics:
    model.path.write_text(f"model {seed}")
    model.metadata["seed"] = seed
    log.mkdir()
    (log / "a.txt").write_text("x")
    return {"score": seed / 10}


@step
def pick(models: list[Model], scores: list[Metrics]) -> str:
    best = max(range(len(models)), key=lambda i: scores[i]["score"])
    return models[best].path.read_text() + f" seed={models[best].metadata['seed']}"


@pipeline(name="flowtyped")
def flowtyped():
    fits = fit.expand(seed=[1, 2, 3])
    return pick(fits["model"], fits["output"])
