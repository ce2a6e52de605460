"""Small pipelines used by the unit tests (importable by module path, as engine tasks import steps)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Annotated

from pipecast import Resources, Retry, pipeline, step

BARRIER = threading.Barrier(2, timeout=20)


@step
def add(a: int, b: int) -> int:
    return a + b


@step
def pair(x: int) -> tuple[Annotated[int, "low"], Annotated[int, "high"]]:
    return x - 1, x + 1


@pipeline
def arithmetic(x: int = 3, y: int = 4):
    low, high = pair(add(x, y))
    return add(low, high)


@step
def meet(name: str) -> str:
    """Both copies must be running at once to pass the barrier: proves parallel execution."""
    BARRIER.wait()
    return name


@pipeline
def parallel_pair():
    meet("left")
    meet("right")


@step(retry=Retry(attempts=3, delay="10ms", backoff=2.0))
def flaky(counter_file: str, failures: int) -> int:
    """Fails ``failures`` times (counted in a file), then succeeds with the number of tries."""
    path = Path(counter_file)
    tries = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(tries))
    if tries <= failures:
        raise RuntimeError(f"flaky failure {tries}")
    return tries


@pipeline
def flaky_pipeline(counter_file: str, failures: int = 2):
    flaky(counter_file, failures)


@step(timeout="1s")
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pipeline
def timeout_pipeline(seconds: float = 30.0):
    sleepy(seconds)


@step
def boom(message: str) -> int:
    raise ValueError(message)


@step
def independent() -> str:
    return "ran"


@pipeline
def failing(message: str = "broken"):
    add(boom(message), 1)
    independent()


@step
def record(marker_dir: str, name: str) -> str:
    """Leaves a marker per real execution, so tests can tell runs from cache hits."""
    Path(marker_dir, f"{name}-{os.getpid()}-{time.time_ns()}").write_text(name)
    return name


@step
def wait_for(marker_dir: str, gate: str, before: str) -> str:
    """Blocks until ``gate`` exists (bounded), so a test can kill the run here."""
    deadline = time.monotonic() + 60
    while not Path(marker_dir, gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("gate never opened")
        time.sleep(0.02)
    return before + "+gate"


@pipeline
def resumable(marker_dir: str):
    first = record(marker_dir, "first")
    second = record(marker_dir, "second").after(first)
    gated = wait_for(marker_dir, "open", second)
    record(marker_dir, gated)


@step(resources=Resources(cpu=1), cache=False)
def uncached(marker_dir: str) -> str:
    Path(marker_dir, f"uncached-{time.time_ns()}").write_text("x")
    return "x"


@pipeline
def cache_pipeline(marker_dir: str):
    record(marker_dir, "cached-step")
    uncached(marker_dir)


@step
def make_object() -> object:
    return {1, 2, 3}


@step
def describe(value: object, blob: bytes) -> str:
    return f"{sorted(value)} {blob!r}"


@step
def make_blob() -> bytes:
    return b"\x00\x01raw"


@pipeline
def materializer_pipeline():
    describe(make_object(), make_blob())
