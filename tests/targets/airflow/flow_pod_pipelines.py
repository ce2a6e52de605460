"""Pipelines for issue 16's Airflow lowering of secrets on TaskFlow tasks (a mapped step, a hook)."""

from __future__ import annotations

import os

from pipecast import ParallelFor, Secret, pipeline, step
from tests.targets.airflow.flow_pipelines import total


@step(secrets=[Secret("api-token", env="API_TOKEN")])
def with_token(x: int) -> int:
    return x + len(os.environ["API_TOKEN"])


@step(secrets=[Secret("db-credentials", key="password", env="DB_PASSWORD")])
def audit(status: dict) -> str:
    return f"{status['status']} ({len(os.environ['DB_PASSWORD'])})"


@pipeline(name="flow_secrets", on_failure=audit)
def flow_secrets(xs: list = [1, 2]):  # noqa: B006 - never mutated
    """Secrets on TaskFlow tasks: an Airflow variable on a mapped step, a connection's password on a hook."""
    with ParallelFor(xs) as x:
        counted = with_token(x)
    return total(counted)
