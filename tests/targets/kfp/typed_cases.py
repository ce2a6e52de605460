"""A pipeline of typed outputs (issue 17) for the KFP targets: a golden case of kubeflow and vertex only.

It lives here, not in tests/golden/cases/, because only the KFP targets show typed outputs in their UI yet; an
untyped pipeline's files are unchanged (tests/golden).
"""

from __future__ import annotations

import json
from typing import Annotated

from pipecast import Dataset, Metrics, Model, Output, pipeline, step


@step
def prepare(rows: int) -> tuple[Annotated[Dataset, "table"], Annotated[int, "count"]]:
    """A Dataset with metadata beside a scalar output (an output parameter)."""
    return Dataset({"rows": list(range(rows))}, metadata={"rows": rows, "source": "{{$}} $(HOME) 'q\""}), rows


@step
def train(table: Dataset, model: Output[Model], scores: Output[Metrics]) -> Metrics:
    """A model directory, metrics logged on an Output[Metrics], and Metrics returned (with metadata)."""
    model.path.mkdir()
    (model.path / "config.json").write_text(json.dumps({"rows": len(table.value["rows"])}))
    model.metadata["framework"] = "plain"
    scores.log_metric("loss", 0.25)
    scores.log_metric("rows", len(table.value["rows"]))
    return Metrics(accuracy=0.75, metadata={"split": "validation"})


@step
def evaluate(model: Model, count: int) -> Metrics:
    """A dict of numbers, wrapped into Metrics by the annotation."""
    return {"auc": 0.5 + count / 100, "framework_ok": int(model.metadata["framework"] == "plain")}


@pipeline(name="typed_outputs")
def typed_outputs(rows: int = 3):
    table, count = prepare(rows)
    trained = train(table)
    evaluate(trained["model"], count)
