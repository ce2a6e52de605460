"""Nested maps for the github target (issue 16): the outer map a matrix, the inner items run by its jobs' runtime.

Imported by the runtime as ``nested_pipelines`` (the act run sets ``working_directory`` to this folder).
"""

import json

from pipecast import Else, ExitHandler, If, OneOf, ParallelFor, Retry, pipeline, step


@step
def double(x: int) -> int:
    return 2 * x


@step
def row_sum(xs: list) -> int:
    return sum(xs)


@step
def name_col(total: int, col: str) -> str:
    return f"{col}{total}"


@step
def spread(row: list) -> list:
    return [f"p{v}" for v in row]


@step
def tag(total: int, part: str) -> str:
    return f"{part}:{total}"


@step
def gather(doubled: list, sums: list, named: list, tags: list) -> str:
    return json.dumps([doubled, sums, named, tags])


@pipeline(name="gh_nested", description="maps in maps: over the outer item, a parameter and a list a step of the "
                                        "outer body makes; fan-in inside the outer map and after it.")
def gh_nested(rows: list = [[1, 2], [3], []], cols: list = ["a", "b"]):  # noqa: B006 - never mutated
    with ParallelFor(rows, parallelism=2) as row:
        with ParallelFor(row) as x:
            doubled = double(x)
        summed = row_sum(doubled)  # a list per row, in item order
        with ParallelFor(cols) as col:
            named = name_col(summed, col)
        parts = spread(row)
        with ParallelFor(parts, parallelism=1) as part:
            tagged = tag(summed, part)
    return gather(doubled, summed, named, tagged)  # lists of lists


@step
def power(x: int, k: int) -> int:
    return x ** k


@pipeline(name="gh_nested_constant", description="a constant inner list in a constant outer list.")
def gh_nested_constant():
    with ParallelFor([1, 2, 3]) as x:
        with ParallelFor([1, 2]) as k:
            powered = power(x, k)
    return gather(powered, [], [], [])


@pipeline(name="gh_nested_too_many", description="refused: 300 outer items, over GitHub's 256 jobs per matrix.")
def gh_nested_too_many():
    with ParallelFor(list(range(300))) as x:
        with ParallelFor([1, 2]) as k:
            power(x, k)


@step(retry=Retry(attempts=2))
def flaky_ratio(x: int, k: int) -> float:
    return x / k  # k == 0 fails every try


@pipeline(name="gh_nested_failing", description="an inner item that fails both of its tries.")
def gh_nested_failing():
    with ParallelFor([1, 2]) as x:
        with ParallelFor([1, 0, 4], parallelism=1) as k:
            ratios = flaky_ratio(x, k)
    return gather(ratios, [], [], [])


@step
def flatten(rows: list) -> list:
    return [v for row in rows for v in row]


@pipeline(name="gh_nested_iterated", description="a map over the list of a step that collects a nested map.")
def gh_nested_iterated():
    with ParallelFor([1, 2]) as x:
        with ParallelFor([1, 2]) as k:
            powered = power(x, k)
    with ParallelFor(flatten(powered)) as v:
        double(v)


@pipeline(name="gh_nested_in_item_branch", description="refused: a nested map inside a condition inside a map.")
def gh_nested_in_item_branch():
    with ParallelFor([1, 2]) as x:
        with If(x == 1):
            with ParallelFor([1, 2]) as k:
                power(x, k)


@step
def measure(row: list) -> int:
    return len(row)


@pipeline(name="gh_nested_branches", description="conditions and nested maps combined: a nested map inside a "
                                                 "condition inside a map, a condition inside an inner map, fan-ins.")
def gh_nested_branches(rows: list = [[1, 2], [3], [], [4, 5, 6]]):  # noqa: B006 - never mutated
    with ParallelFor(rows, parallelism=2) as row:
        n = measure(row)
        with If(n >= 2):  # decided per outer item by its job's runtime
            with ParallelFor(row) as x:
                powered = power(x, n)
        with ParallelFor(row) as y:
            with If(y != 2):  # decided per inner item
                doubled = double(y)
        summed = row_sum(doubled)  # fan-in after the inner level, per outer item
        powers = row_sum(powered)  # [] where the outer item's branch was skipped
    return gather(powered, summed, powers, doubled)  # fan-in after both levels


@pipeline(name="gh_nested_branch_lists", description="an inner map over a list a step of a branch inside the outer "
                                                     "map makes; a step reading both emulations.")
def gh_nested_branch_lists(rows: list = [[1, 2], [3], [], [4, 5, 6]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        n = measure(row)
        with If(n >= 2):
            parts = spread(row)  # made only where the branch runs
            with ParallelFor(parts) as part:  # no items where it did not
                tagged = tag(n, part)
        counted = measure(tagged)  # fan-in after the inner level: [] where the branch was skipped
    return gather(tagged, counted, parts, [])  # reads a nested map and a step a condition inside a map skips



@step
def risky(x: int) -> int:
    return 12 // x  # x == 0 fails


@step
def report(status: dict) -> str:
    return f"{status['status']}:{','.join(status['failed_steps'])}"


@step
def pick(value: int, x: int) -> str:
    return f"{x}->{value}"


@step
def scale(flag: bool) -> int:
    return 10 if flag else 1


@pipeline(name="gh_nested_status", description="an exit handler's status and OneOf in a nested map, and a map over "
                                               "the list of a step that collects one.")
def gh_nested_status(rows: list = [[2, 3], [4], []], big: bool = True):  # noqa: B006 - never mutated
    with If(big):
        high = scale(big)
    with Else():
        low = scale(big)
    with ParallelFor(rows) as row:
        with ParallelFor(row, parallelism=1) as x:
            with ExitHandler() as work:
                q = risky(x)
                with If(q > 4):  # decided per inner item
                    doubled = double(q)
                with Else():
                    powered = power(q, 2)
                chosen = pick(OneOf(doubled, powered), x)  # this item's branch
            checked = report(work.status)  # this item's status
            scaled = pick(OneOf(high, low), x)  # a branch outside the maps
    flat = flatten(q)
    with ParallelFor(flat) as v:  # the list of a step that collects a nested map
        twice = double(v)
    return gather(chosen, checked, scaled, twice)


@pipeline(name="gh_nested_status_failing", description="a failing inner item: its handler's status reads failed "
                                                       "(no map over a list a failed job would not publish).")
def gh_nested_status_failing(rows: list = [[2, 0, 5]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with ParallelFor(row, parallelism=1) as x:
            with ExitHandler() as work:
                q = risky(x)
                with If(q > 4):
                    doubled = double(q)
                with Else():
                    powered = power(q, 2)
                pick(OneOf(doubled, powered), x)
            report(work.status)  # this item's status


@pipeline(name="gh_map_status", description="an exit handler inside a map (not nested): its runtime builds item i's "
                                            "status from the records (needs.*.result is the whole matrix's).")
def gh_map_status(xs: list = [2, 0, 3]):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        with ExitHandler() as work:
            risky(x)
        report(work.status)  # report[i]: item i's status
