"""Pipelines for issue 16's Airflow lowering of pods with a nested map (``pipecast/targets/airflow/nested.py``):
every step a KubernetesPodOperator task expanded over the flat list of (outer item, inner item) pairs, or over the
outer items, or after the maps; exit handlers and hooks in pods reading the pairs they cover."""

from __future__ import annotations

from pipecast import ExitHandler, ParallelFor, Product, pipeline
from tests.targets.airflow.flow_pipelines import (
    alert,
    celebrate,
    gather,
    halve,
    invert,
    pair,
    row_report,
    row_sum,
    spread,
    summary,
)
from tests.targets.airflow.flow_pod_pipelines import POD


@pipeline(name="nested_pods", image="ghcr.io/acme/flow:1", settings=POD)
def nested_pods(rows: list = [[1, 2], [4], []], words: list = ["a", "it's $(HOME) {{ ds }} \"q\""]):  # noqa: B006
    """A nested map in pods: each row's items inverted then halved (one mapped task group of pods over the flat
    pairs), summed per row by a pod mapped over the rows, a second inner map of one pod over a product of a list a
    pod of the row makes and words a template, a shell or the kubelet could misread, lists of lists after the maps."""
    with ParallelFor(rows) as row:
        with ParallelFor(row) as x:
            halved = halve(invert(x))
        summed = row_sum(halved)
        with ParallelFor(Product(spread(row), words)) as (value, word):
            shifted = pair(word, value)
    gather(halved, summed, shifted)


@pipeline(name="nested_pod_handlers", image="ghcr.io/acme/flow:1", settings=POD, on_failure=alert,
          on_success=celebrate)
def nested_pod_handlers(rows: list = [[1, 0], [2], []]):  # noqa: B006 - never mutated
    """Exit handlers and hooks in pods with a nested map: pair 0.1 fails; each pair's handler (inside the inner map)
    reads its own pair, each row's (in the outer body, collecting the inner map) its row's pairs and the values that
    ran, the handler around the maps and the on_failure hook every pair; on_success skips itself."""
    with ExitHandler() as run_group:
        with ParallelFor(rows) as row:
            with ExitHandler() as row_group, ParallelFor(row) as x:
                inverted = invert(x)
            row_report(row_group.status, inverted)
            with ParallelFor(row) as y:
                with ExitHandler() as pair_group:
                    halve(y)
                summary(status=pair_group.status)
    summary(status=run_group.status)
