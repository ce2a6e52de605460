"""A map whose item Airflow retries, with the step's delay and backoff, until its third try succeeds."""

from __future__ import annotations

from pathlib import Path

from pipecast import Retry, pipeline, step
from tests.targets.airflow.flow_pipelines import total


@step(retry=Retry(attempts=3, delay=2, backoff=2.0))
def fails_twice(x: int, folder: str) -> int:
    """Item ``x == 1`` fails its first two tries (a file counts them): Airflow retries it twice."""
    tries = Path(folder) / f"tries-{x}"
    count = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(count))
    if x == 1 and count < 3:
        raise RuntimeError(f"try {count} of item {x} fails")
    return x * 10


@pipeline(name="retried_item")
def retried_item(folder: str, xs: list = [0, 1, 2]):  # noqa: B006 - never mutated
    got = fails_twice.partial(folder=folder).expand(x=xs)
    return total(got)
