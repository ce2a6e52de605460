"""Small pipelines for the kubernetes driver's failure, retry, cancel and secret paths."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipecast import Retry, Secret, pipeline, step


@step(retry=Retry(attempts=2, delay="1s"))
def flaky(marker: str) -> int:
    """Fails on its first try (leaves ``marker`` behind), succeeds on the second."""
    path = Path(marker)
    if not path.exists():
        path.write_text("first try")
        raise RuntimeError("first try fails on purpose")
    return 41


@step
def plus_one(value: int) -> int:
    return value + 1


@pipeline(name="flaky")
def flaky_pipeline(marker: str):
    return plus_one(flaky(marker))


@step
def broken(value: int) -> int:
    raise ValueError(f"broken on purpose with {value}")


@step
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pipeline(name="failing")
def failing_pipeline(seconds: float = 30.0):
    slow(seconds)
    return plus_one(broken(1))


@pipeline(name="sleepy")
def sleepy_pipeline(seconds: float = 60.0):
    return plus_one(1).after(slow(seconds))


@step(secrets=[Secret("db-credentials", key="password", env="DB_PASSWORD")],
      env={"MODE": "$(PIPECAST_RUN_ID) $$ $(DB_PASSWORD)"})  # Kubernetes would expand these unless escaped
def read_secret() -> dict:
    return {"password": os.environ.get("DB_PASSWORD"), "mode": os.environ.get("MODE")}


@pipeline(name="secretive")
def secret_pipeline():
    return read_secret()
