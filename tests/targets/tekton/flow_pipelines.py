"""Control-flow pipelines for the tekton target (issue 16): one per construct, and the refusals.

The replay imports them as ``tests.targets.tekton.flow_pipelines`` (it runs from the repository root).
"""

from pipecast import Elif, Else, ExitHandler, If, OneOf, ParallelFor, Product, Zip, is_in, pipeline, step


@step
def measure(scale: float) -> float:
    return round(0.9 * scale, 4)


@step
def grade(score: float) -> str:
    return "high" if score > 0.5 else "low"


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
def announce(decision: str) -> str:
    return decision.upper()


@step
def shout(text: str) -> str:
    return text + "!"


@step
def square(x: float) -> float:
    return x * x


@step
def plus(a: float, b: float) -> float:
    return round(a + b, 6)


@step
def sizes(n: int) -> list:
    return [float(i + 1) for i in range(n)]


@step
def total(values: list) -> float:
    return round(sum(values), 6)


@step
def fail_on(x: float, limit: float) -> float:
    if x > limit:
        raise ValueError(f"{x} is over {limit}")
    return x


@step
def report(status: dict) -> str:
    return f"{status['status']}:{','.join(status['failed_steps'])}"


@step
def alert(status: dict) -> str:
    return f"alert {status['status']} {status['failed_steps']}"


@step
def celebrate() -> str:
    return "all good"


@pipeline(name="tk_branches", description="if/elif/else on outputs and parameters, membership, OneOf, and a step "
                                          "after a branch.")
def tk_branches(scale: float = 1.0, threshold: float = 0.5, env: str = "prod"):
    score = measure(scale)
    tag = grade(score)
    with If((score > threshold) & (env == "prod")):
        promoted = promote(score)
        shout(promoted)  # after a branch: skipped with it
    with Elif(is_in(tag, ["low", "mid"]) | ~(env != "dev")):
        staged = stage(score)
    with Else():
        kept = keep(score)
    return shout(announce(OneOf(promoted, staged, kept)))


@pipeline(name="tk_map", description="maps over a parameter (chained), an output zipped with a constant, and a "
                                     "product of constants; each collected.")
def tk_map(xs: list = [0.5, 1.0, 1.5], n: int = 2):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        squares = plus(square(x), 1.0)
    first = total(squares)
    with ParallelFor(Zip(sizes(n), [1.0, 10.0])) as (size, k):
        scaled = plus(size, k)
    with ParallelFor(Product([1.0, 2.0], [10.0, 20.0])) as (a, b):
        sums = plus(a, b)
    return first, total(scaled), total(sums)


@pipeline(name="tk_exit", on_failure=alert, on_success=celebrate,
          description="an exit handler over a map with a failing item, and both hooks.")
def tk_exit(xs: list = [1.0, 5.0], limit: float = 3.0):  # noqa: B006 - never mutated
    with ExitHandler() as work:
        with ParallelFor(xs) as x:
            checked = fail_on(x, limit)
        total(checked)
    return report(work.status)


@pipeline(name="tk_nested", description="a map in a map (emulated), and a condition inside a map.")
def tk_nested(rows: list = [[1.0, 2.0], [3.0]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row, ParallelFor(row) as x:
        square(x)
    with ParallelFor([1.0, 2.0]) as y:
        with If(y > 1.5):
            square(y)


@pipeline(name="tk_bounded", parallelism=2, description="refused: parallelism bounds.")
def tk_bounded(xs: list = [1.0, 2.0]):  # noqa: B006 - never mutated
    with ParallelFor(xs, parallelism=1) as x:
        square(x)


HOSTILE = "$(params.env) $(tasks.a.results.b) $(context.pipelineRun.name) '\"{{x}}\n%24("


@step
def echo(text: str) -> str:
    return text


@step
def join(texts: list) -> str:
    return "|".join(texts)


@pipeline(name="tk_hostile", description="Tekton's $(…) text in a condition's constant and a map's constant list.")
def tk_hostile():
    said = echo(HOSTILE)
    with If(said == HOSTILE):
        same = echo(said)
    with Else():
        other = echo("different")
    with ParallelFor([HOSTILE, "plain"]) as item:
        echoed = echo(item)
    return shout(OneOf(same, other)), join(echoed)


@pipeline(name="tk_empty_if", description="an if branch with no step: only the else branch has a task.")
def tk_empty_if(scale: float = 1.0):
    score = measure(scale)
    with If(score > 5.0):
        pass
    with Else():
        keep(score)


@pipeline(name="tk_item_branches", description="conditions inside a map, decided per item by the step's runtime: "
                                              "on an item's output and a parameter, on the item, OneOf per item, "
                                              "steps after a branch, and fan-ins of the items that ran.")
def tk_item_branches(xs: list = [0.5, 1.0, 2.0, 3.0], limit: float = 2.5):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        sq = square(x)
        with If(sq > limit):
            high = plus(sq, 100.0)
            after = plus(high, 1.0)  # in the branch, after its first step
        with Elif(x == 1.0):
            mid = plus(sq, 10.0)
        with Else():
            low = plus(sq, 0.5)
        picked = plus(OneOf(high, mid, low), 0.25)
        with If(high > 105.0):  # reads a step this item may have skipped: skipped with it
            plus(x, 1000.0)
        with If(x > 100.0):
            never = square(x)  # no item runs it
        later = plus(sq, 2.0)
    nothing = total(never)  # every item skipped: skipped, and what reads it
    return total(picked), total(after), total(later), shout(announce(grade(nothing)))


@step
def upto(limit: float) -> list:
    return [float(i) for i in range(int(limit))]


@pipeline(name="tk_item_skip_read", description="refused: a map's list and a condition outside maps that read a "
                                               "step a condition inside a map may skip.")
def tk_item_skip_read(xs: list = [1.0, 2.0]):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        with If(x > 1.5):
            big = square(x)
    count = total(big)
    with ParallelFor(upto(count)) as size:
        square(size)
    with If(count > 1.0):
        keep(count)


@step
def halves(x: float, n: int) -> list:
    return [x / (k + 1) for k in range(n)]


@step
def sums(rows: list) -> list:
    return [sum(row) for row in rows]


@pipeline(name="tk_nested_maps", description="nested maps, emulated: inner items run by the outer item's TaskRun; "
                                            "over the outer item and over a list the outer body makes, chained, "
                                            "fan-ins per outer item and lists of lists, and inside a condition.")
def tk_nested_maps(rows: list = [[1.0, 2.0], [3.0]], n: int = 2):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with ParallelFor(row) as x:
            sq = square(x)
            more = plus(sq, 1.0)  # chained: item [i][j] reads item [i][j]
        row_total = total(more)  # per outer item: the inner items' list
        shown = shout(grade(row_total))
    with ParallelFor([2.0, 4.0]) as y:
        parts = halves(y, n)
        with ParallelFor(parts) as part:  # a list this outer item's body makes
            grown = plus(part, y)
    with If(n > 1):
        with ParallelFor(rows) as again:
            with ParallelFor(again) as z:
                squared = square(z)
        kept = sums(squared)
    return total(row_total), join(shown), sums(grown), announce(grade(total(kept)))


@pipeline(name="tk_nested_item_branch", description="a nested map inside a condition inside a map.")
def tk_nested_item_branch(xs: list = [1.0, 2.0]):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        with If(x > 1.0):
            with ParallelFor([1.0, 2.0]) as y:
                plus(x, y)


@step
def width(row: list) -> float:
    return float(len(row))


@step
def spread(row: list) -> list:
    return [v / 2 for v in row]


@step
def gather(first: list, second: list, third: list) -> list:
    return [first, second, third]


@pipeline(name="tk_nested_branches", description="conditions and nested maps combined: a nested map inside a "
                                                 "condition inside a map, a condition inside an inner map, fan-ins.")
def tk_nested_branches(rows: list = [[1.0, 2.0], [3.0], [], [4.0, 5.0, 6.0]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        n = width(row)
        with If(n >= 2.0):  # decided per outer item by its TaskRun's runtime
            with ParallelFor(row) as x:
                powered = plus(x, n)
        with ParallelFor(row) as y:
            with If(y != 2.0):  # decided per inner item
                doubled = square(y)
        summed = total(doubled)  # fan-in after the inner level, per outer item: the inner items that ran
        powers = total(powered)  # 0.0 where the outer item's branch did not run (an empty list)
    return gather(powered, summed, doubled), total(powers)  # fan-ins after both levels


@pipeline(name="tk_nested_branch_lists", description="an inner map over a list a step of a branch inside the outer "
                                                     "map makes; a step reading both emulations.")
def tk_nested_branch_lists(rows: list = [[1.0, 2.0], [3.0], [], [4.0, 5.0, 6.0]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        n = width(row)
        with If(n >= 2.0):
            parts = spread(row)  # made only where the branch runs
            with ParallelFor(parts) as part:  # no items where it did not
                tagged = plus(part, n)
        counted = width(tagged)  # fan-in after the inner level: [] where the branch did not run
    return gather(tagged, counted, parts)  # reads a nested map and a step a condition inside a map skips


@pipeline(name="tk_nested_bounded", description="refused: an inner map's parallelism bound (Tekton bounds nothing).")
def tk_nested_bounded(rows: list = [[1.0, 2.0], [3.0]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with ParallelFor(row, parallelism=1) as x:
            square(x)


@pipeline(name="tk_nested_after", description="a step outside the emulation after a nested step that a condition "
                                              "inside a map may skip (runs through the emulation).")
def tk_nested_after(rows: list = [[1.0, 2.0], [3.0]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with If(width(row) >= 2.0):
            with ParallelFor(row) as x:
                powered = square(x)
    celebrate().after(powered)


@pipeline(name="tk_nested_skip_read", description="inner items reading a step a condition inside the outer map may "
                                                  "skip, and a condition inside the inner map on an inner output.")
def tk_nested_skip_read(rows: list = [[1.0, 2.0], [3.0]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        n = width(row)
        with If(n >= 2.0):
            big = square(n)  # skipped at outer item 1
        with ParallelFor(row) as x:
            lifted = plus(x, big)  # item [i][j] reads big[i]: skipped where it was
            with If(lifted > 5.5):  # on this inner item's output
                top = square(lifted)
    return gather(lifted, big, top)
