"""Pipelines whose fan-ins follow a map where an item failed (tests/unit/test_fanin_failed_items.py).

``invert(0)`` fails (division by zero), so the item whose value is 0 fails its first step; every expected value in
the tests is worked out by hand from these definitions.
"""

from __future__ import annotations

from pipecast import Else, ExitHandler, If, OneOf, ParallelFor, pipeline, step


@step
def invert(x: int) -> float:
    return 1 / x


@step
def halve(value: float) -> float:
    return value / 2


@step
def total(values: list) -> float:
    return sum(values)


@step
def row_sum(values: list) -> float:
    return sum(values)


@step
def grand_total(values: list) -> float:
    return sum(values)


@step
def nested_total(values: list) -> list:
    return [sum(row) for row in values]


@step
def doubled(value: float) -> float:
    return value * 2


@step
def spread(value: float) -> list:
    return [value, value * 2]


@step
def report(status: dict, values: list) -> str:
    return f"{status['status']}: {values}"


@pipeline
def chained(xs: list = [1, 0, 2]):  # noqa: B006 - never mutated
    """A chained map whose item 1 fails its first step; a fan-in after it, and a step after the fan-in."""
    with ParallelFor(xs) as x:
        halved = halve(invert(x))
    doubled(total(halved))


@pipeline
def nested(rows: list = [[1, 2], [0, 4], []]):  # noqa: B006 - never mutated
    """A chained inner map: item [1][0] fails. A fan-in per row, one over the rows' sums, one of lists of lists."""
    with ParallelFor(rows) as row:
        with ParallelFor(row) as x:
            halved = halve(invert(x))
        sums = row_sum(halved)
    grand_total(sums)
    nested_total(halved)


@pipeline
def condition_skips(xs: list = [1, 0, 2]):  # noqa: B006 - never mutated
    """A condition skips item 1 (it would fail): the fan-in gets the items that ran."""
    with ParallelFor(xs) as x:
        with If(x != 0):
            halved = halve(invert(x))
    total(halved)


@pipeline
def condition_and_failure(xs: list = [5, 0, 2]):  # noqa: B006 - never mutated
    """A condition skips item 0 and item 1 fails: the failure decides, the fan-in skips."""
    with ParallelFor(xs) as x:
        with If(x != 5):
            halved = halve(invert(x))
    total(halved)


@pipeline
def inner_list_failed(xs: list = [1, 0]):  # noqa: B006 - never mutated
    """Outer item 1 fails its first step, so its inner list is never made and its inner map does not expand."""
    with ParallelFor(xs) as x:
        with ParallelFor(spread(invert(x))) as y:
            halved = halve(y)
    nested_total(halved)


@pipeline
def handler_collects(xs: list = [1, 0, 2]):  # noqa: B006 - never mutated
    """An exit handler runs whatever happened: it collects the items that ran."""
    with ExitHandler() as group:
        with ParallelFor(xs) as x:
            halved = halve(invert(x))
    report(group.status, halved)


@pipeline
def one_of_failed(xs: list = [1, 0, -2]):  # noqa: B006 - never mutated
    """Item 1 takes the If branch, which fails: its OneOf has no branch that ran because of a failure."""
    with ParallelFor(xs) as x:
        with If(x >= 0):
            inverted = invert(x)
        with Else():
            halved = halve(x)
        twice = doubled(OneOf(inverted, halved))
    total(twice)
