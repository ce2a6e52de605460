"""A pipeline of typed artifacts (Dataset, Model, Metrics), output parameters, path inputs and an IncludeFile.

Run by tests/unit/test_typed_artifacts.py through ``pipecast run`` (a real local run, and with its artifact root
on moto S3).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipecast import Dataset, IncludeFile, InputPath, Metrics, Model, Output, OutputPath, pipeline, step


@step
def prepare(rows: int, notes: InputPath) -> Dataset:
    """Returns a Dataset holding an array, with metadata; ``notes`` is the IncludeFile parameter's local copy."""
    assert isinstance(notes, Path) and notes.is_file(), notes
    return Dataset(np.arange(rows * 2, dtype=np.int64).reshape(rows, 2),
                   metadata={"rows": rows, "source": notes.read_text()})


@step
def train(data: Dataset, model: Output[Model], weights: OutputPath) -> Metrics:
    """Writes a model directory to its Output[Model] and a file to its OutputPath; returns Metrics."""
    assert data.metadata["rows"] == len(data.value), data.metadata
    assert data.uri and data.uri.endswith("/prepare/outputs/output.npy"), data.uri
    model.path.mkdir()
    (model.path / "config.json").write_text(json.dumps({"rows": int(data.value.shape[0])}))
    (model.path / "layers").mkdir()
    (model.path / "layers" / "0.bin").write_bytes(data.value.tobytes())
    model.metadata["framework"] = "numpy"
    weights.write_bytes(b"w" * 1000)
    metrics = Metrics(rows=int(data.value.shape[0]))
    metrics.log_metric("loss", 0.25)
    return metrics


@step
def evaluate(model: Model, weights: InputPath, table: np.ndarray, train_metrics: dict) -> Metrics:
    """Takes the Model (a local directory), the weights file, the Dataset's bare array and the Metrics as a dict;
    returns a dict, wrapped into Metrics by the annotation."""
    assert model.metadata == {"framework": "numpy"} and model.path.is_dir(), model
    assert json.loads((model.path / "config.json").read_text())["rows"] == table.shape[0]
    assert weights.read_bytes() == b"w" * 1000 and weights.name == "weights"
    return {"accuracy": 0.5 + table.shape[0] / 100, "train_loss": train_metrics["loss"]}


@step
def report(metrics: Metrics, table_file: InputPath, raw: Path) -> str:
    """Metrics as the artifact; the Dataset's stored ``.npy`` file as a local path (InputPath and Path)."""
    loaded = np.load(table_file, allow_pickle=False)
    assert table_file.name == "output.npy" and raw.read_bytes() == table_file.read_bytes()
    return f"accuracy={metrics['accuracy']} rows={loaded.shape[0]}"


@pipeline(name="typed")
def typed_pipeline(notes: IncludeFile, rows: int = 3):
    data = prepare(rows, notes)
    trained = train(data)
    metrics = evaluate(trained["model"], trained["weights"], data, trained["output"])
    return report(metrics, data, data)
