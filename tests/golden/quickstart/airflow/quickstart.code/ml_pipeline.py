"""The ML example: a hyper-parameter search that promotes its best model only if it beats a threshold, and a
report that always runs. Pure Python, no ML library.

Synthetic data → one logistic regression per learning rate, trained in parallel (a map), each written as a model
directory (``Output[Model]``) and scored as ``Metrics`` → the best candidate → promoted, a copy of its model
directory, only when its accuracy beats the threshold (a condition; else the current model is kept) → the decision
→ a report that runs whatever happened before it, reading the search's final status (an exit handler).
See docs/control-flow.md and docs/artifacts.md.

    pipecast run examples/ml_pipeline.py -p threshold=0.9
    pipecast runs show ml_pipeline            # every model directory, metrics and the branch that was skipped
"""

import json
import math
import random
import shutil
from typing import Annotated

from pipecast import Else, ExitHandler, If, Metrics, Model, OneOf, Output, ParallelFor, Retry, pipeline, step


@step
def make_dataset(samples: int, seed: int) -> list:
    """Two Gaussian blobs in 2-D, labelled 0 and 1: the first three quarters train, the rest test."""
    rng = random.Random(seed)
    rows = []
    for i in range(samples):
        label = i % 2
        center = 1.0 if label else -1.0
        rows.append([rng.gauss(center, 1.0), rng.gauss(center, 1.0), label])
    return rows


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-max(min(z, 30), -30)))


@step(retry=Retry(attempts=2, delay="10s"), timeout="30m")
def train_model(rows: list, lr: float, epochs: int, model: Output[Model]) -> None:
    """Logistic regression by full-batch gradient descent, written as a model directory."""
    train = rows[: len(rows) * 3 // 4]
    w, b = [0.0, 0.0], 0.0
    for _ in range(epochs):
        gw, gb = [0.0, 0.0], 0.0
        for x1, x2, y in train:
            err = _sigmoid(w[0] * x1 + w[1] * x2 + b) - y
            gw, gb = [gw[0] + err * x1, gw[1] + err * x2], gb + err
        w, b = [w[0] - lr * gw[0] / len(train), w[1] - lr * gw[1] / len(train)], b - lr * gb / len(train)
    model.path.mkdir()
    (model.path / "weights.json").write_text(json.dumps({"weights": [round(v, 6) for v in w], "bias": round(b, 6)}))
    (model.path / "README.md").write_text(f"Logistic regression, lr={lr}, {epochs} epochs, {len(train)} rows.\n")
    model.metadata.update(framework="pure-python", lr=lr, epochs=epochs)


@step
def evaluate(model: Model, rows: list) -> Metrics:
    """Accuracy and log loss of one model directory on the test quarter of the rows."""
    params = json.loads((model.path / "weights.json").read_text())
    test = rows[len(rows) * 3 // 4:]
    right, loss = 0, 0.0
    for x1, x2, y in test:
        p = _sigmoid(params["weights"][0] * x1 + params["weights"][1] * x2 + params["bias"])
        right += int((p >= 0.5) == bool(y))
        loss -= y * math.log(max(p, 1e-12)) + (1 - y) * math.log(max(1 - p, 1e-12))
    return Metrics(accuracy=round(right / len(test), 4), log_loss=round(loss / len(test), 4),
                   lr=model.metadata["lr"])


@step
def pick_best(scores: list) -> tuple[Annotated[int, "index"], Annotated[float, "accuracy"]]:
    """The candidate with the best accuracy (the first one on a tie): its index in the search and its accuracy."""
    index = max(range(len(scores)), key=lambda i: (scores[i]["accuracy"], -i))
    return index, float(scores[index]["accuracy"])


@step
def promote(models: list[Model], index: int, accuracy: float, promoted: Output[Model]) -> str:
    """Copy the best model directory to the promoted model (where a real project would register it)."""
    best = models[index]
    shutil.copytree(best.path, promoted.path)
    promoted.metadata.update(best.metadata, accuracy=accuracy, source=best.uri)
    return f"promoted lr={best.metadata['lr']} (accuracy {accuracy})"


@step
def keep_current(accuracy: float, threshold: float) -> str:
    return f"kept the current model: the best candidate reached {accuracy}, not above {threshold}"


@step
def record_decision(decision: str) -> str:
    print(decision)
    return decision


@step
def report(status: dict) -> str:
    """Runs whatever happened in the search: its final status and the steps that failed."""
    failed = f" (failed: {', '.join(status['failed_steps'])})" if status["failed_steps"] else ""
    return f"search {status['status']}{failed}"


@pipeline(name="ml_pipeline",
          description="Train one model per learning rate, promote the best if it beats a threshold, report.")
def ml_pipeline(rates: list = [0.01, 0.1, 1.0], threshold: float = 0.8,  # noqa: B006 - never mutated
                samples: int = 200, seed: int = 7, epochs: int = 20):
    rows = make_dataset(samples, seed)
    with ExitHandler() as search:
        with ParallelFor(rates) as lr:
            model = train_model(rows, lr, epochs)
            score = evaluate(model, rows)
        best, accuracy = pick_best(score)
        with If(accuracy > threshold):
            promoted = promote(model, best, accuracy)
        with Else():
            kept = keep_current(accuracy, threshold)
        record_decision(OneOf(promoted["output"], kept))
    return report(search.status)
