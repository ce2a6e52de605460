"""A pipeline of typed outputs (issue 17) for the azureml target: each becomes an Azure ML output of its type."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

from pipecast import Dataset, Metrics, Model, Output, pipeline, step


@step
def prepare(rows: int) -> tuple[Annotated[Dataset, "table"], Annotated[int, "count"]]:
    """A Dataset (a value a materializer stores) beside a plain output, which stays pipecast's only."""
    return Dataset({"rows": list(range(rows))}, metadata={"source": "${{outputs.x}} $(HOME) 'q\""}), rows


@step
def train(table: Dataset, model: Output[Model], scores: Output[Metrics]) -> Metrics:
    """A model directory, metrics logged on an Output[Metrics], and Metrics returned."""
    model.path.mkdir()
    (model.path / "config.json").write_text(json.dumps({"rows": len(table.value["rows"])}))
    (model.path / "weights").mkdir()
    (model.path / "weights" / "w.txt").write_text("0.5 1.5")
    scores.log_metric("loss", 0.25)
    return Metrics(accuracy=0.75)


@step
def report(model: Model, count: int) -> Annotated[Dataset, "summary"]:
    """A Dataset that is a file the step wrote."""
    out = Path(tempfile.mkdtemp(prefix="az-typed-")) / "summary.csv"
    out.write_text(f"files,count\n{len(list(model.path.rglob('*')))},{count}\n")
    return Dataset(out)


@pipeline(name="az_typed")
def az_typed(rows: int = 3):
    table, count = prepare(rows)
    trained = train(table)
    report(trained["model"], count)


# -- metrics on the job's MLflow run (test_mlflow_metrics.py); kept last so the goldens above keep their lines --

from pipecast import log_metadata  # noqa: E402 - with the pipeline that uses it, below the golden's source lines


@step
def score(rows: int, fail: bool) -> Metrics:
    """Metrics with names MLflow refuses, and log_metadata of every JSON kind; ``fail`` raises after logging."""
    log_metadata(epochs=3, lr=0.01, ok=True, classes=["a", "b"], note="${{inputs.x}} $(HOME) 'q\"", accuracy=0.7,
                 long="x" * 9000, **{"mlflow.runName": "hijack", "../up": 2})
    log_metadata(run=True, rows=rows)
    if fail:
        raise RuntimeError("failed after logging")
    return Metrics({"accuracy": 0.75, "f1 score/val": 0.5, "loss$%": 0.25})


@pipeline(name="az_metrics")
def az_metrics(rows: int = 3, fail: bool = False):
    score(rows, fail)
