"""A scheduled pipeline whose steps report ``pipecast.context().logical_time`` (test_schedule_time.py)."""

from __future__ import annotations

import pipecast
from pipecast import pipeline, step


def _logical_time() -> str:
    when = pipecast.context().logical_time
    return "none" if when is None else when.isoformat()


@step
def stamp() -> str:
    """The logical time in the task's own process."""
    return _logical_time()


@step(timeout="10m")
def supervised(first: str) -> str:
    """The same in the child process a step with a timeout runs in."""
    return f"{first}|{_logical_time()}"


@pipeline(name="scheduled", schedule="0 4 * * 1")
def scheduled():
    supervised(stamp())


@pipeline(name="unscheduled")
def unscheduled():
    stamp()


@step
def clash(pipecast_logical_time: str) -> str:
    """An input (a parameter's) with the name of the input the target adds: refused."""
    return pipecast_logical_time


@pipeline(name="clashing", schedule="@daily")
def clashing(pipecast_logical_time: str = "x"):
    clash(pipecast_logical_time)
