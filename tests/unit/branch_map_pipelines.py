"""A map inside a branch whose list cannot be made: the branch decides first, as the engines skip its block."""

from __future__ import annotations

from pipecast import If, ParallelFor, Zip, pipeline, step


@step
def count_up(n: int) -> list:
    return list(range(n))


@step
def weigh(x: int, y: int) -> int:
    return 2 * x + y


@step
def add_up(xs: list) -> int:
    return sum(xs)


@pipeline
def branch_map(flag: bool = False, n: int = 3) -> int:
    a = count_up(n=n)
    b = count_up(n=2)
    with If(flag == True):  # noqa: E712 (a traced comparison, not Python's)
        with ParallelFor(Zip(a, b)) as (x, y):
            weighed = weigh(x=x, y=y)
        add_up(xs=weighed)
    return a
