"""Steps for tests/unit/test_cache_context.py: what each reads from its context decides where it may be cached."""

from __future__ import annotations

import pipecast
from pipecast import pipeline, step


@step
def stamp(n: int) -> str:
    """Reads the logical time: its output depends on the run's time."""
    when = pipecast.context().logical_time
    return f"{n} for {when.isoformat() if when else None}"


@step
def plain(n: int) -> int:
    """Reads only the attempt and logs: its output is the same in every run."""
    ctx = pipecast.context()
    ctx.logger.info("try %d", ctx.attempt)
    return n + 1


@step
def tagged(n: int) -> str:
    """Reads the run id."""
    return f"{pipecast.context().run_id}:{n}"


@step(timeout="10m")
def stamp_supervised(n: int) -> str:
    """Reads the logical time in a child process (a step with a timeout runs each try in one)."""
    when = pipecast.context().logical_time
    return f"{n} for {when.isoformat() if when else None}"


@pipeline(name="timed_run")
def timed_run(n: int = 1):
    stamp_supervised(n)
    plain(n)
