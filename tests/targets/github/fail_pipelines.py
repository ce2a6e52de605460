"""A map with a failing item for the github target (issue 16): what the other items do, against ``pipecast run``.

Imported by the runtime as ``fail_pipelines`` (the act run sets ``working_directory`` to this folder). A module of
its own: goldens embed line numbers, and appending here shifts no other golden.
"""

from pipecast import ExitHandler, ParallelFor, pipeline, step


@step
def fragile(x: int) -> int:
    return 12 // x  # x == 0 fails


@step
def total(values: list) -> int:
    return sum(values)


@step
def report(status: dict) -> str:
    return str(status["status"])


@pipeline(name="gh_fail_fast", description="a bounded map whose second item fails: the items not started yet are "
                                           "skipped (fail-fast), the one that ran is kept, the handler reads failed.")
def gh_fail_fast(xs: list = [2, 0, 3, 4]):  # noqa: B006 - never mutated
    with ExitHandler() as work:
        with ParallelFor(xs, parallelism=1) as x:
            q = fragile(x)
        total(q)
    report(work.status)
