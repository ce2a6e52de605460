"""Pipelines with the control-flow constructs the hyper-parameter example does not use, for the Airflow target:
a map over a step's output with zip, a product, if/elif/else on a parameter with membership, and both hooks."""

from __future__ import annotations

from pipecast import Elif, Else, ExitHandler, If, OneOf, ParallelFor, Product, Zip, is_in, pipeline, step


@step
def letters(n: int) -> list:
    return [chr(ord("a") + i) for i in range(n)]


@step
def numbers(n: int) -> list:
    return list(range(n))


@step
def pair(letter: str, number: int) -> str:
    return f"{letter}{number}"


@step
def joined(parts: list) -> str:
    return ",".join(parts)


@step
def label(text: str) -> str:
    return f"[{text}]"


@step
def shout(text: str) -> str:
    return text.upper()


@step
def alert(status: dict) -> str:
    return f"failed: {status['failed_steps']}"


@step
def celebrate(status: dict) -> str:
    return status["status"]


@pipeline(name="flow_constructs", parallelism=3, on_failure=alert, on_success=celebrate)
def flow_constructs(n: int = 3, env: str = "dev", sizes: list = [1, 2]):  # noqa: B006 - never mutated
    with ParallelFor(Zip(letters(n), numbers(n)), parallelism=2) as (letter, number):
        zipped = pair(letter, number)
    with ParallelFor(Product(["x", "y"], sizes)) as (letter, size):
        crossed = pair(letter, size)
    first = joined(zipped)
    second = joined(crossed)
    with If(env == "prod"):
        chosen = label(first)
    with Elif(is_in(env, ["dev", "staging"])):
        chosen_too = label(second)
    with Else():
        neither = label("none")
    return shout(OneOf(chosen, chosen_too, neither))


@step(retry=1)
def invert(x: int) -> float:
    return 1 / x


@step
def total(values: list) -> float:
    return sum(values)


@step
def summary(status: dict) -> str:
    return f"{status['status']}: {status['failed_steps']}"


@pipeline(name="failing_item", on_failure=alert, on_success=celebrate)
def failing_item(xs: list = [1, 0, 2]):  # noqa: B006 - never mutated
    with ExitHandler() as work:
        with ParallelFor(xs) as x:
            inverse = invert(x)
        total(inverse)
    summary(work.status)


@step
def score(x: int) -> int:
    return x * 3


@pipeline(name="item_conditions")
def item_conditions(xs: list = [1, 4, 2, 5], limit: int = 7):  # noqa: B006 - never mutated
    """If/elif/else inside a map, on an item's own output and on the item: each step decides per item."""
    with ParallelFor(xs) as x:
        scored = score(x)
        with If(scored > limit):
            loud = shout(pair("big", scored))  # a chained step after the branch's step, item by item
        with Elif(x == 2):
            middle = pair("mid", x)
        with Else():
            small = pair("small", scored)
    joined(loud)
    joined(middle)
    joined(small)


@pipeline(name="item_one_of")
def item_one_of(xs: list = [1, 5, 2, 7]):  # noqa: B006 - never mutated
    """OneOf of branches inside a map: each item reads the branch that ran for it (big for 5, 2 and 7)."""
    with ParallelFor(xs) as x:
        s = score(x)
        with If(s > 3):
            a = label("big")
        with Else():
            b = shout("small")
        shout(OneOf(a, b))


@pipeline(name="item_exit")
def item_exit(xs: list = [1, 0, 2]):  # noqa: B006 - never mutated
    """An exit handler inside a map: each item's handler gets its own item's status (Airflow: a mapped teardown)."""
    with ParallelFor(xs) as x:
        with ExitHandler() as group:
            invert(x)
        summary(status=group.status)


@pipeline(name="item_exit_branches")
def item_exit_branches(xs: list = [1, 0, 5]):  # noqa: B006 - never mutated
    """An exit handler inside a map around a condition: item 0 inverts, item 1 fails to, item 2 takes the else
    branch; each item's handler reads its own item's status, and a step after the group reads the item's score."""
    with ParallelFor(xs) as x:
        with ExitHandler() as group:
            scored = score(x)
            with If(x < 3):
                invert(x)
            with Else():
                shout("big")
        summary(status=group.status)
        pair("scored", scored)


@step
def halve(value: float) -> float:
    return value / 2


@pipeline(name="chained_failing_item")
def chained_failing_item(xs: list = [1, 0, 2]):  # noqa: B006 - never mutated
    """A map of two chained steps (one mapped task group on Airflow) whose item 1 fails its first step: the other
    items' chains still run their second step; the fan-in after the map does not run."""
    with ParallelFor(xs) as x:
        halved = halve(invert(x))
    total(halved)


@step
def row_sum(values: list) -> float:
    return float(sum(values))


@step
def spread(row: list) -> list:
    return [v + 10 for v in row]


@step
def gather(rows: list, sums: list, shifted: list) -> str:
    import json  # here: an import at the top would move the line numbers other goldens embed

    return json.dumps([rows, sums, shifted])


@pipeline(name="nested_map")
def nested_map(rows: list = [[1, 2], [4], []], bias: list = [0, 1]):  # noqa: B006 - never mutated
    """A map inside a map, flattened on Airflow: each row's items inverted then halved (instances
    ``invert[i][j]``, one mapped task group over the flat list), summed per row (an empty row sums []), a second
    inner map (bounded) over a product of a list a step of the row makes and a parameter, and lists of lists
    after the maps."""
    with ParallelFor(rows, parallelism=2) as row:
        with ParallelFor(row) as x:
            halved = halve(invert(x))
        summed = row_sum(halved)
        with ParallelFor(Product(spread(row), bias), parallelism=1) as (value, offset):
            shifted = pair(value, offset)
    gather(halved, summed, shifted)


@pipeline(name="bounded_chain")
def bounded_chain(xs: list = [1, 2, 4]):  # noqa: B006 - never mutated
    """A map of two chained steps with a bound of 3: one mapped task group on Airflow, the bound shared out over
    its two tasks (invert 2, halve 1)."""
    with ParallelFor(xs, parallelism=3) as x:
        halved = halve(invert(x))
    total(halved)


@step
def size(row: list) -> int:
    return len(row)


@step
def grade(value: float) -> str:
    return f"high {value}"


@pipeline(name="nested_conditions")
def nested_conditions(rows: list = [[1, 0.5], [4], [], [8, 3]], limit: float = 0.3):  # noqa: B006 - never mutated
    """Conditions around and inside a nested map on Airflow, decided per instance by the step's runtime: a branch
    inside the inner map on the pair's own output (a skipped pair leaves its row's fan-in), a branch of the outer
    body on a row's fan-in, and an inner map inside a branch of the outer body (a row whose branch does not run
    has no inner items: [] after the maps)."""
    with ParallelFor(rows) as row:
        with ParallelFor(row) as x:
            halved = halve(x)
            with If(halved > limit):
                kept = halve(halved)
        summed = row_sum(kept)
        with If(summed > 0.8):
            graded = grade(summed)
        with If(size(row) > 1), ParallelFor(spread(row)) as y:
            shifted = halve(y)
    gather(kept, graded, shifted)


@pipeline(name="nested_handlers", on_failure=alert, on_success=celebrate)
def nested_handlers(rows: list = [[1, 0], [2], []]):  # noqa: B006 - never mutated
    """Exit handlers and hooks with a nested map on Airflow: pair 0.1 fails; row 0's handler (inside the outer map)
    reads its own row's pairs, the handler around the maps and the on_failure hook every pair."""
    with ExitHandler() as run_group:
        with ParallelFor(rows) as row:
            with ExitHandler() as row_group, ParallelFor(row) as x:
                invert(x)
            summary(status=row_group.status)
    summary(status=run_group.status)


@pipeline(name="nested_one_of")
def nested_one_of(rows: list = [[1, 5], [2], []]):  # noqa: B006 - never mutated
    """OneOf with a nested map on Airflow: each pair reads its own branch's instance; a row's OneOf reads a branch
    that collects the row's pairs (long rows) or a constant label (short rows)."""
    with ParallelFor(rows) as row:
        with ParallelFor(row) as x:
            scored = score(x)
            with If(scored > 4):
                big = label("big")
            with Else():
                small = shout("small")
            picked = shout(OneOf(big, small))
        with If(size(row) > 1):
            long_row = joined(picked)
        with Else():
            short_row = label("short")
        shout(OneOf(long_row, short_row))


@pipeline(name="nested_pair_exit")
def nested_pair_exit(rows: list = [[1, 0], [2]]):  # noqa: B006 - never mutated
    """An exit handler inside the inner map on Airflow (a mapped teardown over the pairs): pair 0.1 fails, and each
    pair's handler reads its own pair's status."""
    with ParallelFor(rows) as row, ParallelFor(row) as x:
        with ExitHandler() as group:
            halve(invert(x))
        summary(status=group.status)


@step
def row_report(status: dict, values: list) -> str:
    return f"{status['status']}: {status['failed_steps']} {values}"


@pipeline(name="nested_row_exit")
def nested_row_exit(rows: list = [[1, 0], [2], []]):  # noqa: B006 - never mutated
    """An exit handler in the outer body that collects the inner map (a mapped teardown over the rows): pair 0.1
    fails; row 0's handler reads its row's status and the pair that ran, the empty row's handler gets []."""
    with ParallelFor(rows) as row:
        with ExitHandler() as group, ParallelFor(row) as x:
            inverted = invert(x)
        row_report(group.status, inverted)
