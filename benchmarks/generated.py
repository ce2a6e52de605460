"""Generated pipelines for the benchmarks: a wide fan-out/fan-in of N steps, and a chain of N steps."""

from __future__ import annotations

from pipecast import pipeline, step


@step
def source(seed: int) -> int:
    return seed


@step
def work(value: int, k: int) -> int:
    return value + k


@step
def combine(a: int, b: int) -> int:
    return a + b


def layered(steps: int):
    """About ``steps`` nodes: layers of 10 parallel steps, each layer reading the previous one."""

    @pipeline(name=f"layered_{steps}")
    def generated(seed: int = 1):
        previous = [source(seed)]
        count = 1
        while count < steps:
            layer = []
            for k in range(min(10, steps - count)):
                layer.append(work(previous[k % len(previous)], k))
                count += 1
            previous = layer
        return previous[0]

    return generated


def chain(steps: int):
    """``steps`` trivial steps, each reading the one before."""

    @pipeline(name=f"chain_{steps}")
    def generated(seed: int = 1):
        value = source(seed)
        for k in range(steps - 1):
            value = work(value, k)
        return value

    return generated
