"""A pipeline that uses the step context, metadata logging and the typed materializers (numpy, pandas, pickle).

Run by tests/unit/test_step_context.py through ``pipecast run`` (a real local run, with a supervised step).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import pipecast
from pipecast import Retry, pipeline, step


class Reading:
    """A class no materializer knows: stored with pickle, and the run says so."""

    def __init__(self, celsius: float) -> None:
        self.celsius = celsius


@step(retry=Retry(attempts=2))
def make_frame(rows: int, label: str) -> pd.DataFrame:
    """Fails its first try, so the context's attempt is 2 when it succeeds; logs metadata for step and run."""
    ctx = pipecast.context()
    ctx.logger.warning("making %d rows in try %d", rows, ctx.attempt)
    pipecast.log_metadata(try_seen=ctx.attempt)
    if ctx.attempt == 1:
        raise RuntimeError("first try fails on purpose")
    pipecast.log_metadata(rows=rows, context={"run_id": ctx.run_id, "pipeline": ctx.pipeline, "step": ctx.step,
                                              "attempt": ctx.attempt, "parameters": dict(ctx.parameters),
                                              "logical_time": ctx.logical_time and ctx.logical_time.isoformat(),
                                              "artifact_uri": ctx.artifact_uri, "logger": ctx.logger.name})
    pipecast.log_metadata(run=True, label=label, rows=rows)
    return pd.DataFrame({"x": np.arange(rows, dtype="int64"), "label": [label] * rows},
                        index=pd.Index([f"r{i}" for i in range(rows)], name="id"))


@step(timeout="10m")
def features(frame: pd.DataFrame, scale: float) -> np.ndarray:
    """Runs supervised in a child process (it has a timeout): the context reaches it there too."""
    ctx = pipecast.context()
    pipecast.log_metadata(attempt=ctx.attempt, parameters=dict(ctx.parameters))
    pipecast.log_metadata(run=True, features=len(frame))
    return frame["x"].to_numpy(dtype="float64") * scale


@step
def summarise(frame: pd.DataFrame, values: np.ndarray) -> tuple[pd.DataFrame, Reading]:
    """Checks what arrived (types and values) and returns a DataFrame and a pickled object."""
    assert type(frame) is pd.DataFrame and list(frame.index[:2]) == ["r0", "r1"], frame
    assert type(values) is np.ndarray and values.dtype == np.float64, values
    return frame.assign(y=values), Reading(21.5)


@pipeline(name="contextual")
def contextual(rows: int = 4, label: str = "demo", scale: float = 0.5):
    frame = make_frame(rows, label)
    summarise(frame, features(frame, scale))
