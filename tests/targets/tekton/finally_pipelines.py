"""Exit handlers inside maps and branches on Tekton (issue 16): matrixed ``finally`` tasks and guarded ones.

The replay imports them as ``tests.targets.tekton.finally_pipelines`` (it runs from the repository root).
"""

from pipecast import Else, ExitHandler, If, ParallelFor, pipeline, step


@step
def sizes(n: int) -> list:
    return [float(i + 1) for i in range(n)]


@step
def measure(scale: float) -> float:
    return round(0.9 * scale, 4)


@step
def fail_on(x: float, limit: float) -> float:
    if x > limit:
        raise ValueError(f"{x} is over {limit}")
    return x


@step
def keep(score: float) -> str:
    return f"kept at {score}"


@step
def report(status: dict) -> str:
    return f"{status['status']}:{','.join(status['failed_steps'])}"


@pipeline(name="tk_finally_map", description="an exit handler inside a map over a step's list: a finally task "
                                            "matrixed over the items task's indices, item i's status.")
def tk_finally_map(n: int = 3, limit: float = 5.0):
    xs = sizes(n)
    with ParallelFor(xs) as x:
        with ExitHandler() as work:
            fail_on(x, limit)
        report(work.status)  # report[i]: item i's status


@pipeline(name="tk_finally_branch", description="an exit handler inside a branch: a finally task with the branch's "
                                               "when.")
def tk_finally_branch(scale: float = 1.0, limit: float = 5.0):
    score = measure(scale)
    with If(score > 0.5):
        with ExitHandler() as work:
            fail_on(score, limit)
        report(work.status)
    with Else():
        keep(score)


@pipeline(name="tk_finally_both", description="an exit handler inside a map inside a branch: a matrixed finally "
                                             "task with the branch's when.")
def tk_finally_both(n: int = 3, limit: float = 5.0, go: bool = True):
    xs = sizes(n)
    with If(go):
        with ParallelFor(xs) as x:
            with ExitHandler() as work:
                fail_on(x, limit)
            report(work.status)
    with Else():
        keep(limit)


@pipeline(name="tk_finally_item_branch", description="an exit handler inside a condition inside a map: item i's "
                                                    "runtime decides its branch (a when holds for every TaskRun).")
def tk_finally_item_branch(xs: list = [1.0, 2.0, 3.0], limit: float = 5.0):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        with If(x > 1.5):
            with ExitHandler() as work:
                fail_on(x, limit)
            report(work.status)


@pipeline(name="tk_finally_nested", description="an exit handler inside a nested map: TaskRun i runs the handler "
                                               "instances report[i][j], each with its own item's status.")
def tk_finally_nested(rows: list = [[1.0, 2.0], [3.0]], limit: float = 5.0):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with ParallelFor(row) as x:
            with ExitHandler() as work:
                fail_on(x, limit)
            report(work.status)


@step
def note(status: dict, value: float) -> str:
    return f"{status['status']}:{value}"


@pipeline(name="tk_finally_reads", description="an exit handler inside a map reading its item's output: an item "
                                              "whose output was not made skips only its own handler instance.")
def tk_finally_reads(xs: list = [1.0, 2.0], limit: float = 5.0, cut: float = 0.0):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        with ExitHandler() as work:
            y = fail_on(x, limit)
        with If(x > cut):
            note(work.status, y)
