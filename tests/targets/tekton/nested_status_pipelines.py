"""An exit handler's status and ``OneOf`` in a nested map on Tekton (issue 16), run by the outer item's TaskRun."""

from pipecast import Else, ExitHandler, If, OneOf, ParallelFor, pipeline, step


@step
def scale(flag: bool) -> int:
    return 10 if flag else 1


@step
def pick(value: int, x: int) -> str:
    return f"{x}->{value}"


@step
def count(labels: list) -> int:
    return sum(len(row) for row in labels)


@step
def risky(x: int, n: int) -> int:
    return (12 + n) // x  # x == 0 fails


@step
def summary(status: dict, labels: list) -> str:
    return f"{status['status']}:{','.join(status['failed_steps'])}:{labels}"


@pipeline(name="tk_nested_status", description="a OneOf read in a nested map, and a handler collecting a nested "
                                               "map that reads the status of a group with a failing inner item.")
def tk_nested_status(rows: list = [[2, 3], [4], []], big: bool = True):  # noqa: B006 - never mutated
    with If(big):
        high = scale(big)
    with Else():
        low = scale(big)
    with ExitHandler() as work:
        with ParallelFor(rows) as row:
            with ParallelFor(row) as x:
                picked = pick(OneOf(high, low), x)  # the branch that ran
        n = count(picked)  # every pick ends before any risky starts
        with ParallelFor(rows) as again:
            with ParallelFor(again) as y:
                risky(y, n)
    return summary(work.status, picked)  # a finally task whose runtime collects the nested map
