"""Golden case: the hyper-parameter search with parallelism bounds (a whole-run bound and one per map).

The control-flow fixture of the targets' flow tests (Airflow `dags test`, the Argo, KFP, Tekton and Kubernetes
replays): a map, promote-if-better (If/Else with OneOf) and an always-run report, plus the bounds that
examples/ml_pipeline.py (the ML example users read) leaves out because KFP, Vertex, Tekton and Compose refuse them.

    pipecast run tests/golden/cases/hyperparameter_search.py -p threshold=0.8
"""

import math
import random

from pipecast import Else, ExitHandler, If, OneOf, ParallelFor, pipeline, step


@step
def make_dataset(samples: int, seed: int) -> list:
    """Two Gaussian blobs in 2-D, labelled 0 and 1."""
    rng = random.Random(seed)
    rows = []
    for i in range(samples):
        label = i % 2
        center = 1.0 if label else -1.0
        rows.append([rng.gauss(center, 1.0), rng.gauss(center, 1.0), label])
    return rows


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-max(min(z, 30), -30)))


@step(retry=2)
def train_model(rows: list, lr: float, epochs: int) -> dict:
    """Logistic regression by full-batch gradient descent on the first three quarters of the rows."""
    train = rows[: len(rows) * 3 // 4]
    w, b = [0.0, 0.0], 0.0
    for _ in range(epochs):
        gw, gb = [0.0, 0.0], 0.0
        for x1, x2, y in train:
            err = _sigmoid(w[0] * x1 + w[1] * x2 + b) - y
            gw, gb = [gw[0] + err * x1, gw[1] + err * x2], gb + err
        w, b = [w[0] - lr * gw[0] / len(train), w[1] - lr * gw[1] / len(train)], b - lr * gb / len(train)
    return {"weights": [round(v, 6) for v in w], "bias": round(b, 6), "lr": lr}


@step
def evaluate(model: dict, rows: list) -> dict:
    """Accuracy on the last quarter of the rows."""
    test = rows[len(rows) * 3 // 4:]
    right = sum(int((_sigmoid(model["weights"][0] * x1 + model["weights"][1] * x2 + model["bias"]) >= 0.5) == bool(y))
                for x1, x2, y in test)
    return {**model, "accuracy": round(right / len(test), 4)}


@step
def pick_best(scores: list) -> dict:
    """The model with the best accuracy (the first one on a tie)."""
    return max(scores, key=lambda s: s["accuracy"])


@step
def accuracy_of(model: dict) -> float:
    return float(model["accuracy"])


@step
def promote(model: dict) -> str:
    return f"promoted lr={model['lr']} (accuracy {model['accuracy']})"


@step
def keep_current(model: dict) -> str:
    return f"kept the current model; the best candidate lr={model['lr']} reached {model['accuracy']}"


@step
def record_decision(decision: str) -> str:
    print(decision)
    return decision


@step
def report(status: dict) -> str:
    failed = f" (failed: {', '.join(status['failed_steps'])})" if status["failed_steps"] else ""
    return f"search {status['status']}{failed}"


@pipeline(name="hyperparameter_search", parallelism=4,
          description="Train one model per learning rate, promote the best if it beats a threshold, report.")
def hyperparameter_search(rates: list = [0.01, 0.1, 1.0], threshold: float = 0.8,  # noqa: B006 - never mutated
                          samples: int = 200, seed: int = 7, epochs: int = 20):
    rows = make_dataset(samples, seed)
    with ExitHandler() as search:
        with ParallelFor(rates, parallelism=2) as lr:
            score = evaluate(train_model(rows, lr, epochs), rows)
        best = pick_best(score)
        with If(accuracy_of(best) > threshold):
            promoted = promote(best)
        with Else():
            kept = keep_current(best)
        record_decision(OneOf(promoted, kept))
    return report(search.status)
