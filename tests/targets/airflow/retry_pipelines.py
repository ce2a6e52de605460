"""A map whose item Airflow retries, with the step's delay and backoff, until its third try succeeds; each item
reads an Airflow variable as a secret (a TaskFlow task's rendered op_kwargs)."""

from __future__ import annotations

import os
from pathlib import Path

from pipecast import Retry, Secret, pipeline, step
from tests.targets.airflow.flow_pipelines import total


@step(retry=Retry(attempts=3, delay=2, backoff=2.0), secrets=[Secret("api-token", env="API_TOKEN")])
def fails_twice(x: int, folder: str) -> int:
    """Item ``x == 1`` fails its first two tries (a file counts them): Airflow retries it twice. Each item adds
    the length of its secret, so the result shows every item read it."""
    tries = Path(folder) / f"tries-{x}"
    count = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(count))
    if x == 1 and count < 3:
        raise RuntimeError(f"try {count} of item {x} fails")
    (Path(folder) / f"secret-{x}").write_text(os.environ["API_TOKEN"])
    return x * 10 + len(os.environ["API_TOKEN"])


@pipeline(name="retried_item")
def retried_item(folder: str, xs: list = [0, 1, 2]):  # noqa: B006 - never mutated
    got = fails_twice.partial(folder=folder).expand(x=xs)
    return total(got)
