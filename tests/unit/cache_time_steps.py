"""Steps for tests/unit/test_cache_context.py: what each reads from its context decides where it may be cached."""

from __future__ import annotations

import pipecast
from pipecast import step


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
