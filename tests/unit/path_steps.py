"""A pipeline that passes a directory and a file between steps (``-> OutputPath``, ``InputPath``).

Run by tests/unit/test_paths.py through ``pipecast run`` (a real local run) and through moto S3.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipecast import InputPath, OutputPath, pipeline, step


@step
def write_model(size: int) -> OutputPath:
    """A model directory with a nested file, as training code writes one."""
    folder = Path(tempfile.mkdtemp(prefix="model-"))
    (folder / "weights").mkdir()
    (folder / "weights" / "w.bin").write_bytes(bytes(range(256)) * size)
    (folder / "config.json").write_text('{"layers": 2}')
    return OutputPath(folder)


@step
def evaluate(model: InputPath) -> OutputPath:
    """Reads the directory it was given locally, writes a report file."""
    weights = (model / "weights" / "w.bin").read_bytes()
    report = Path(tempfile.mkdtemp(prefix="report-")) / "report.csv"
    report.write_text(f"bytes,{len(weights)}\nconfig,{(model / 'config.json').read_text()}\n")
    return OutputPath(report)


@step
def summarise(report: InputPath) -> str:
    """A file input arrives under its own name."""
    return f"{report.name}:{report.read_text().splitlines()[0]}"


@pipeline(name="paths")
def paths_pipeline(size: int = 4):
    return summarise(evaluate(write_model(size)))
