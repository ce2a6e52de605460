"""A scheduled pipeline for the SageMaker logical-time tests (issue 17): each step returns what it saw.

The steps are not cached: the runtime's cache key does not hold the logical time, so a cached step would give a
later run the output of an earlier run with another time.
"""

from __future__ import annotations

import pipecast
from pipecast import pipeline, step


def _seen() -> str:
    time = pipecast.context().logical_time
    return "none" if time is None else time.isoformat()


@step(cache=False)
def stamp() -> str:
    return _seen()


@step(cache=False, settings={"sagemaker": {"step_type": "training"}})
def stamp_training(before: str) -> str:
    """A training job: its values reach the command through Environment and the launcher."""
    return f"{before}|{_seen()}"


@pipeline(name="sm_scheduled", schedule="0 4 * * 1")
def sm_scheduled(label: str = "weekly"):
    stamp_training(stamp())


@pipeline(name="sm_clash", schedule="0 4 * * 1")
def sm_clash(pipecast_logical_time: str = ""):
    """A parameter named like the one that carries a scheduled run's time: refused."""
    stamp()
