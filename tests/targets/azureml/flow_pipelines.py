"""Control-flow pipelines for the azureml target (issue 16): what it lowers, and what it refuses."""

from pipecast import Elif, Else, ExitHandler, If, OneOf, ParallelFor, Product, Zip, pipeline, step


@step
def rates(count: int) -> list:
    return [round(0.1 * (i + 1), 4) for i in range(count)]


@step
def train(lr: float, bias: float) -> float:
    return round(lr * 10 + bias, 6)


@step
def best(scores: list) -> float:
    return max(scores)


@step
def pair(a: float, b: str) -> str:
    return f"{b}={a}"


@step
def joined(texts: list) -> str:
    return ",".join(texts)


@step
def promote(score: float) -> str:
    return f"promoted at {score}"


@step
def stage(score: float) -> str:
    return f"staged at {score}"


@step
def keep(score: float) -> str:
    return f"kept at {score}"


@step
def shout(text: str) -> str:
    return text.upper()


@step
def report(status: dict) -> str:
    return str(status["status"])


@step
def square(x: int) -> int:
    return x * x


@pipeline(name="az_flow", description="Maps over a step's output, a parameter and constants; if/elif/else.")
def az_flow(count: int = 3, threshold: float = 2.5, bias: float = 0.5,
            names: list = ["x", "y"], label: str = "it's ${{x}} $(id)"):  # noqa: B006 - never mutated
    found = rates(count)
    with ParallelFor(found, parallelism=2) as lr:
        score = train(lr, bias)
    top = best(score)
    with ParallelFor(Zip(names, [1.5, 2.5])) as (b, a):
        text = pair(a, b)
    joined(text)
    with ParallelFor([2, 3]) as n:
        square(n)
    with If(top > threshold):
        shout(promote(top))
    with Elif((top > 1.0) & (label != "it's ${{ skip }}")):  # hostile text on both sides reaches the decision
        stage(top)
    with Else():
        keep(top)


@pipeline(name="az_refused", parallelism=3)
def az_refused(xs: list = [1.0, 2.0]):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:  # over a parameter, two steps and a nested map in the body
        y = train(x, 0.0)
        z = train(y, 1.0)
        with ParallelFor([1, 2]) as k:
            square(k)
    top = best(z)
    with If(top > 1.0):
        up = promote(top)
    with Else():
        down = keep(top)
    shout(OneOf(up, down))
    with If(down == "kept"):  # a condition on a step that may have been skipped
        stage(top)


@pipeline(name="az_exit", on_failure=report)
def az_exit():
    with ExitHandler() as work:
        best([1.0, 2.0])
    report(work.status)


@pipeline(name="az_multi", description="Maps whose bodies are several steps: a chain and a second sink.")
def az_multi(count: int = 3, bias: float = 0.5, xs: list = [1.0, 2.5]):  # noqa: B006 - never mutated
    found = rates(count)
    with ParallelFor(found, parallelism=2) as lr:
        first = train(lr, bias)
        second = train(first, 1.0)  # chained: item i reads item i of the step before it
        text = pair(lr, "lr")  # a second sink of the body
    best(second)
    joined(text)
    with ParallelFor(xs) as x:  # over a parameter
        shouted = shout(pair(x, "x's $(id)"))
    joined(shouted)


@pipeline(name="az_item_conditions", description="A condition inside a map: each item's if_else in the body.")
def az_item_conditions(xs: list = [0.05, 0.2, 0.35], threshold: float = 2.5):  # noqa: B006 - never mutated
    with ParallelFor(xs, parallelism=2) as x:
        score = train(x, 0.5)  # item i decides for itself
        with If(score > threshold):
            shout(promote(score))
        with Else():
            keep(score)
    best(score)  # the fan-in of a step outside the branches


@pipeline(name="az_item_refused")
def az_item_refused(xs: list = [1.0, 2.0], threshold: float = 2.5):  # noqa: B006 - never mutated
    top = best(xs)
    with ParallelFor(xs) as x:
        score = train(x, 0.5)
        with If((top > threshold) & (x > 1.0)):  # the item, beside a step outside the map
            promote(score)
        with If(top > threshold):  # a step outside the map
            keep(score)
        with If(score > 1.0):
            staged = stage(score)
        shout(staged)  # a step of the body outside the branch reading it


@pipeline(name="az_outer_condition", description="Conditions inside maps on a step outside them.")
def az_outer_condition(xs: list = [0.1, 0.2], threshold: float = 1.0):  # noqa: B006 - never mutated
    top = best(xs)  # decided once, before the maps
    with ParallelFor(xs) as x:
        y = train(x, 0.5)
        with If(top > threshold):
            promote(y)
    best(y)
    with ParallelFor([1, 2]) as n:  # a body of one step in a branch: still a pipeline component
        with If(top > threshold):
            square(n)


@pipeline(name="az_item_compare", description="A condition inside a map comparing the item itself.")
def az_item_compare(xs: list = [0.05, 0.3, 0.1], threshold: float = 2.0):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        score = train(x, 0.5)  # takes the item as `lr`: its runtime resolves the item from there
        with If((score > threshold) | (x < 0.06)):
            promote(score)


@pipeline(name="az_nested_conditions", description="Conditions inside conditions: if_else nodes in a block.")
def az_nested_conditions(xs: list = [0.1, 0.3], threshold: float = 0.2):  # noqa: B006 - never mutated
    top = best(xs)
    with If(top > threshold):
        score = train(top, 0.5)  # decided inside the outer branch: its if_else is in the outer block
        with If(score > 3.5):
            shout(promote(score))
        with Elif(score > 2.0):
            stage(score)
        with If(top > 0.25):  # the outer branch's own source, read again inside
            keep(score)
    with Else():
        with If(top > 0.05):
            keep(top)


@pipeline(name="az_map_in_branch", description="Maps inside a branch: parallel_for nodes in a block.")
def az_map_in_branch(count: int = 2, xs: list = [1.5, 2.5], threshold: float = 1.0):  # noqa: B006 - never mutated
    top = best(xs)
    with If(top > threshold):
        found = rates(count)
        with ParallelFor(found) as lr:  # over a list made inside the branch
            score = train(lr, top)
        best(score)
        with ParallelFor(xs) as x:  # over a parameter: the items node is in the block too
            shout(pair(x, "x"))


@step
def grid(lr: float, count: int) -> list:
    return [round(lr * (k + 1), 4) for k in range(count)]


@pipeline(name="az_nested_maps", description="A map inside a map: a parallel_for in the outer body's component.")
def az_nested_maps(xs: list = [0.1, 0.2], count: int = 2):  # noqa: B006 - never mutated
    with ParallelFor(xs, parallelism=2) as x:
        lrs = grid(x, count)  # the inner list, made for each outer item
        with ParallelFor(lrs) as lr:
            score = train(lr, x)  # instance train[i][j]: the inner item and the outer one
        best(score)  # the inner fan-in, per outer item: best[i]
        with ParallelFor([1, 2]) as n:  # over constants
            square(n)
    joined_scores(score)  # the outer fan-in: a list of lists


@step
def joined_scores(scores: list) -> str:
    return ";".join(",".join(str(s) for s in row) for row in scores)


@pipeline(name="az_nested_refused")
def az_nested_refused(rows: list = [[1, 2], [3]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with ParallelFor(row) as n:  # over the outer item: no step publishes its items
            square(n)
    with ParallelFor([1, 2]) as k:
        with ParallelFor([3, 4]) as m:  # a body of two steps
            shout(pair(m, "m"))
        square(k)


@step
def table(count: int) -> list:
    return [[k + j for j in range(k + 1)] for k in range(count)]


@step
def pick(a: int, b: float) -> str:
    return f"{a}@{b}"


@pipeline(name="az_inner_items", description="Inner maps whose items an items node counts per outer item.")
def az_inner_items(count: int = 2, xs: list = [0.5, 1.5], bias: float = 0.5):  # noqa: B006 - never mutated
    rows = table(count)
    lrs = rates(count)
    with ParallelFor(rows, parallelism=2) as row:
        with ParallelFor(row) as n:  # over the outer item: instance square[i][j]
            squared = square(n)
        best(squared)  # the inner fan-in, per outer item
        with ParallelFor(Product(row, xs)) as (a, b):  # a product of the outer item and a parameter
            pick(a, b)
        with ParallelFor(lrs) as lr:  # over a step before the outer map (its items node waits on it)
            train(lr, bias)
    joined_scores(squared)  # the outer fan-in: a list of lists
    with ParallelFor(xs) as _x:
        with ParallelFor(xs) as y:  # over a parameter inside a map over the same parameter
            pair(y, "y")
        square(count)


@pipeline(name="az_inner_refused")
def az_inner_refused(rows: list = [[1, 2], [3]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        sizes = grid(1.0, 2)
        with ParallelFor(Zip(row, sizes)) as (n, s):  # the body step's list is not the first
            pick(n, s)


@pipeline(name="az_row_maps", description="The common nested shape: a map over each row of a list of rows.")
def az_row_maps(rows: list = [[1, 2], [3]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with ParallelFor(row) as n:  # the outer body is only the inner map
            squared = square(n)
    joined_scores(squared)


@pipeline(name="az_inner_chain", description="Inner maps of several steps: a pipeline component in the outer body's.")
def az_inner_chain(xs: list = [0.1, 0.2], count: int = 2, rows: list = [[1, 2], [3]]):  # noqa: B006 - never mutated
    with ParallelFor(xs, parallelism=2) as x:
        lrs = grid(x, count)  # the inner list, made for each outer item
        with ParallelFor(lrs) as lr:
            score = train(lr, x)
            text = pair(score, "s")  # chained item by item: pair[i][j] reads train[i][j]
            shout(text)
        best(score)  # the inner fan-in, per outer item
    joined_scores(score)  # the outer fan-in of a chained inner step: a list of lists
    with ParallelFor(rows) as row:
        with ParallelFor(row) as n:  # over the outer item (an items node), two steps: the outer body is only this
            shout(pick(square(n), 0.5))


@pipeline(name="az_inner_conditions", description="Conditions inside an inner map: if_else nodes of its body.")
def az_inner_conditions(xs: list = [0.1, 0.3], count: int = 2, threshold: float = 2.5):  # noqa: B006 - never mutated
    overall = best(xs)  # decides once, outside both maps
    with ParallelFor(xs) as x:
        lrs = grid(x, count)
        top = best(lrs)  # decides once per outer item, in the outer body
        with ParallelFor(lrs) as lr:
            score = train(lr, x)
            with If(score > threshold):  # each inner item decides for itself
                shout(promote(score))
            with Else():
                keep(score)
            with If(top > 0.5):
                stage(score)
            with If(overall > 0.2):
                square(count)


@pipeline(name="az_map_in_branch_in_map", description="Maps inside a branch inside a map: loops in its if_else block.")
def az_map_in_branch_in_map(xs: list = [0.1, 0.3], count: int = 2, threshold: float = 0.2):  # noqa: B006
    with ParallelFor(xs) as x:
        top = best(grid(x, count))  # decides per outer item
        lrs = grid(x, 3)  # its run per outer item publishes the inner items (a list made inside the branch:
        # az_branch_list_map, at the end of this module)
        with If(top > threshold):
            with ParallelFor(lrs) as lr:
                score = train(lr, x)  # instance train[i][j]
            best(score)  # the inner fan-in, in the branch too
            with ParallelFor(xs) as y:  # over a parameter: its items node is in the block
                pick(count, y)
        with Else():
            with ParallelFor([1, 2]) as n:  # over constants, in the other block
                shout(pair(n, "n"))


@pipeline(name="az_inner_branch_refused")
def az_inner_branch_refused(xs: list = [0.1, 0.3], threshold: float = 0.2):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        top = best(grid(x, 2))
        with If(top > threshold):
            lrs = grid(x, 3)  # made in a branch the inner map is not in
        with ParallelFor(lrs) as lr:
            train(lr, x)


@pipeline(name="az_inner_exit")
def az_inner_exit(xs: list = [0.1, 0.3]):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        with ParallelFor(grid(x, 2)) as lr:
            with ExitHandler() as work:  # a handler per inner item: an on_finalize in a pipeline component
                train(lr, x)
            report(work.status)


@pipeline(name="az_branch_list_map", description="A map inside a branch inside a map, over a list the branch makes.")
def az_branch_list_map(xs: list = [0.1, 0.3], count: int = 2, threshold: float = 0.2):  # noqa: B006
    with ParallelFor(xs) as x:
        top = best(grid(x, count))  # decides per outer item
        with If(top > threshold):
            lrs = grid(x, 3)  # made inside the branch: skipped with it, and the inner map with it
            with ParallelFor(lrs) as lr:
                score = train(lr, x)  # instance train[i][j]
            best(score)  # the inner fan-in, in the branch too
        with Else():
            keep(top)
