"""Golden case: the ML pipeline without control flow (two learning rates, a split, the better model kept).

The pipeline every target's engine tests run (schedules, submits, replays, act, Compose, SkyPilot, SageMaker and
Azure ML): examples/ml_pipeline.py, the ML example users read, has a map, a condition and an exit handler, which
SageMaker, Azure ML, Compose and SkyPilot refuse. Its own image, resources, retries and schedule are kept here.

    pipecast run tests/golden/cases/ml_training.py -p samples=400 -p epochs=50
"""

import math
import random
from typing import Annotated

from pipecast import Resources, Retry, pipeline, step


@step(resources=Resources(cpu=1, memory="512Mi"))
def make_dataset(samples: int, seed: int) -> list:
    """Two Gaussian blobs in 2-D, labelled 0 and 1."""
    rng = random.Random(seed)
    rows = []
    for i in range(samples):
        label = i % 2
        center = 1.0 if label else -1.0
        rows.append([rng.gauss(center, 1.0), rng.gauss(center, 1.0), label])
    return rows


@step
def split_data(rows: list, test_fraction: float) -> tuple[Annotated[list, "train"], Annotated[list, "test"]]:
    cut = int(len(rows) * (1 - test_fraction))
    return rows[:cut], rows[cut:]


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-max(min(z, 30), -30)))


@step(resources=Resources(cpu=2, memory="1Gi"), retry=Retry(attempts=2, delay="10s"), timeout="30m")
def train_model(train: list, lr: float, epochs: int) -> dict:
    """Logistic regression by full-batch gradient descent."""
    w = [0.0, 0.0]
    b = 0.0
    n = len(train)
    for _ in range(epochs):
        gw, gb = [0.0, 0.0], 0.0
        for x1, x2, y in train:
            err = _sigmoid(w[0] * x1 + w[1] * x2 + b) - y
            gw[0] += err * x1
            gw[1] += err * x2
            gb += err
        w = [w[0] - lr * gw[0] / n, w[1] - lr * gw[1] / n]
        b -= lr * gb / n
    return {"weights": [round(v, 6) for v in w], "bias": round(b, 6), "lr": lr, "epochs": epochs}


@step
def evaluate(model: dict, test: list) -> dict:
    correct = 0
    loss = 0.0
    for x1, x2, y in test:
        p = _sigmoid(model["weights"][0] * x1 + model["weights"][1] * x2 + model["bias"])
        correct += int((p >= 0.5) == bool(y))
        loss -= y * math.log(max(p, 1e-12)) + (1 - y) * math.log(max(1 - p, 1e-12))
    return {"accuracy": round(correct / len(test), 4), "log_loss": round(loss / len(test), 4), "lr": model["lr"]}


@step
def pick_best(first: dict, second: dict, first_model: dict, second_model: dict) -> dict:
    """Keep the model with the lower test loss and write a small model card."""
    best, model = (first, first_model) if first["log_loss"] <= second["log_loss"] else (second, second_model)
    return {"model": model, "metrics": best, "compared": [first, second]}


@pipeline(name="ml_training", image="ghcr.io/acme/pipecast-ml:1.0", schedule="0 4 * * 1",
          description="Train two logistic regressions on synthetic data and keep the better one.")
def ml_training(samples: int = 200, seed: int = 42, test_fraction: float = 0.25, epochs: int = 30,
                lr_small: float = 0.1, lr_large: float = 1.0):
    train, test = split_data(make_dataset(samples, seed), test_fraction)
    small = train_model(train, lr_small, epochs)
    large = train_model(train, lr_large, epochs)
    return pick_best(evaluate(small, test), evaluate(large, test), small, large)
