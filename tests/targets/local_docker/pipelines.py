"""Pipelines for the real-Docker runs of local_docker: retries, a timeout, a failure, and a step to cancel.

Their steps run in containers (the module is copied into the test image), where the artifact folder is mounted
at ``/pipecast/artifacts``; a step's ``/tmp`` is its container's own.
"""

import os
import time
from pathlib import Path

from pipecast import Retry, pipeline, step

MOUNTED = Path("/pipecast/artifacts")  # the run's artifact folder, as every container sees it


@step(retry=Retry(attempts=2, delay="1s"))
def flaky() -> int:
    """Fails its first try; the runtime retries it in the same container, whose /tmp keeps the mark."""
    mark = Path("/tmp/flaky-tried")
    if not mark.exists():
        mark.write_text("tried\n")
        raise RuntimeError("first try fails on purpose")
    return 1


@step(timeout="2s")
def too_slow(value: int) -> int:
    time.sleep(600)  # the runtime's 2 s timeout ends it
    return value


@step
def never(value: int) -> int:
    return value


@pipeline(name="failing_docker")
def failing_docker():
    never(too_slow(flaky()))


@step
def wait_for_cancel() -> int:
    """Says it started (a file in the mounted artifact folder), then waits to be cancelled."""
    (MOUNTED / "started").write_text(str(os.getpid()))
    time.sleep(600)
    return 0


@pipeline(name="cancel_docker")
def cancel_docker():
    never(wait_for_cancel())
