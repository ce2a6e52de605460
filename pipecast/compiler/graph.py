"""Graph helpers over the IR: topological order, levels and cycle detection (all linear time)."""

from __future__ import annotations

from collections import deque

from pipecast.compiler.ir import Pipeline


def topological_order(pipeline: Pipeline) -> tuple[str, ...]:
    """Step names in an order where every step comes after its upstream steps.

    Ties keep the order the steps were traced in, so the result is deterministic.
    Raises ValueError naming the steps of a cycle if there is one.
    """
    order, leftover = _kahn(pipeline)
    if leftover:
        raise ValueError(f"cycle through steps {sorted(leftover)!r}")
    return order


def find_cycle(pipeline: Pipeline) -> list[str]:
    """The steps left on a cycle (empty if the graph is acyclic)."""
    return sorted(_kahn(pipeline)[1])


def _kahn(pipeline: Pipeline) -> tuple[tuple[str, ...], set[str]]:
    names = [s.name for s in pipeline.steps]
    known = set(names)
    indegree = dict.fromkeys(names, 0)
    downstream: dict[str, list[str]] = {n: [] for n in names}
    for step in pipeline.steps:
        for up in step.upstream():
            if up in known:
                indegree[step.name] += 1
                downstream[up].append(step.name)
    position = {n: i for i, n in enumerate(names)}
    ready = deque(n for n in names if indegree[n] == 0)
    order: list[str] = []
    while ready:
        name = ready.popleft()
        order.append(name)
        released = []
        for child in downstream[name]:
            indegree[child] -= 1
            if indegree[child] == 0:
                released.append(child)
        ready.extend(sorted(released, key=position.__getitem__))
    return tuple(order), known - set(order)


def downstream_map(pipeline: Pipeline) -> dict[str, tuple[str, ...]]:
    """For each step, the steps that depend on it directly."""
    result: dict[str, list[str]] = {s.name: [] for s in pipeline.steps}
    for step in pipeline.steps:
        for up in step.upstream():
            if up in result:
                result[up].append(step.name)
    return {k: tuple(v) for k, v in result.items()}
