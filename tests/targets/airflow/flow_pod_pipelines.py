"""Pipelines for issue 16's Airflow lowering: secrets on TaskFlow tasks (a mapped step, a hook); steps of the
control flow in pods (KubernetesPodOperator): mapped, collected, in a branch, an exit handler (in a map too), a hook."""

from __future__ import annotations

import os

from pipecast import ExitHandler, If, ParallelFor, Secret, pipeline, step
from tests.targets.airflow.flow_pipelines import alert, invert, joined, letters, pair, shout, summary, total


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


POD = {"airflow": {"mode": "kubernetes"}}


@pipeline(name="flow_pods", image="ghcr.io/acme/flow:1", settings=POD,
          on_failure=alert)
def flow_pods(n: int = 2, env: str = "dev", suffix: int = 1, words: list = ["it's \"q\""]):  # noqa: B006
    """Every step in a pod: a map over a step's output (mapped pods), a collected list, a branch and a handler;
    a map over a parameter whose items a template, a shell or the kubelet could misread."""
    with ExitHandler() as work:
        with ParallelFor(letters(n)) as letter:
            paired = pair(letter, suffix)
        text = joined(paired)
        with If(env == "dev"):
            shout(text)
    summary(work.status)
    with ParallelFor(words) as word:
        loud = shout(word)
    joined(loud)


@pipeline(name="item_exit_pods", image="ghcr.io/acme/flow:1", settings=POD)
def item_exit_pods(xs: list = [1, 0, 2]):  # noqa: B006 - never mutated
    """An exit handler inside a map, in pods: a mapped teardown pod per item, reading its own item's status."""
    with ParallelFor(xs) as x:
        with ExitHandler() as group:
            invert(x)
        summary(status=group.status)


@step
def quote(text: str) -> str:
    return f"<{text}>"


@pipeline(name="chained_pods", image="ghcr.io/acme/flow:1", settings=POD)
def chained_pods(words: list = ["a", "it's $(HOME) {{ ds }} \"q\"", "c"]):  # noqa: B006 - never mutated
    """A map of two chained steps in pods, bounded: one mapped task group, each pod's arguments its item's; items a
    template, a shell or the kubelet could misread."""
    with ParallelFor(words, parallelism=2) as word:
        quoted = quote(shout(word))
    joined(quoted)
