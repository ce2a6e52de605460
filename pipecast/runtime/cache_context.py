"""The cache and the step context: an entry whose step read a run's own values serves only where they are equal.

The cache key (function, source, inputs, outputs) leaves out what differs between runs and map items that share
a key: the run id, the step's name, the logical time and the step's artifact URI. A step that reads one of them
through ``pipecast.context()`` has it recorded in ``meta.json`` (``context_read``: name → the value it read, as
text); a later lookup reuses that step's outputs only where every recorded value equals this step's (the logical
time as the same instant). A step that read none of them hits across runs and times as before, and a record
without ``context_read`` (older pipecast) is such a step.

Reading the run id (or the artifact URI, which holds it) thus limits reuse to the same run: an engine's retry or
a resumed run of that id. This is KFP's rule: its cache key (``CacheKey`` in kubeflow/pipelines
``api/v2alpha1/cache_key.proto``: input artifact names, input parameter values, output specs, container spec)
leaves the run out unless the task takes the run id as an input (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``), and then
the task never hits in another run. The step name matters where two steps share a key (map items, one function
used twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

RECORD = "context_read"  # the meta.json field


def current(*, run_id: str, step: str, logical_time: datetime | None, artifact_uri: str) -> dict[str, str | None]:
    """This step's values of what a cached step may have read, as :attr:`StepContext.reads` records them."""
    return {"run_id": run_id, "step": step, "artifact_uri": artifact_uri,
            "logical_time": None if logical_time is None else logical_time.isoformat()}


def mismatch(recorded: Any, values: Mapping[str, str | None]) -> str | None:
    """Why an entry whose step read ``recorded`` cannot serve a step with ``values``; None when it can."""
    if recorded is None:
        return None
    if not isinstance(recorded, dict):
        return f"its {RECORD} record is not a mapping"
    for name, then in recorded.items():
        if name not in values:  # a value this pipecast cannot compare: never guess
            return f"it read the context's {name!r}, which this runtime cannot compare"
        now = values[name]
        if not _same(name, then, now):
            return f"it read {name} {then!r} and this step's is {now!r}"
    return None


def _same(name: str, then: Any, now: str | None) -> bool:
    if name != "logical_time" or then is None or now is None:
        return bool(then == now)
    try:  # the same instant, written with any offset
        return datetime.fromisoformat(then) == datetime.fromisoformat(now)
    except (TypeError, ValueError):
        return False
