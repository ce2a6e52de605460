"""Tekton leftovers of issue 16: a step after a nested step a condition may skip, a handler in a constant map.

The replay imports them as ``tests.targets.tekton.rest_pipelines`` (it runs from the repository root).
"""

from pipecast import ExitHandler, If, ParallelFor, pipeline, step


@step
def width(row: list) -> float:
    return float(len(row))


@step
def square(x: float) -> float:
    return x * x


@step
def celebrate() -> str:
    return "done"


@step
def shout(text: str) -> str:
    return text + "!"


@step
def fail_on(x: float, limit: float) -> float:
    if x > limit:
        raise ValueError(f"{x} is over {limit}")
    return x


@step
def report(status: dict) -> str:
    return f"{status['status']}:{','.join(status['failed_steps'])}"


@pipeline(name="tk_after_nested", description="steps after a nested step a condition inside a map may skip: one "
                                              "outside the maps (and what reads it), one inside the outer map.")
def tk_after_nested(rows: list = [[1.0, 2.0], [3.0]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with If(width(row) >= 2.0):
            with ParallelFor(row) as x:
                powered = square(x)
        celebrate().after(powered)  # per outer item, after every instance of the nested step
    done = celebrate().after(powered)  # Tekton sees square's TaskRuns succeed: the records say if it ran
    return shout(done)


@pipeline(name="tk_finally_const", description="an exit handler inside a map over a constant list: a finally task "
                                              "matrixed over a literal array of item indices.")
def tk_finally_const(limit: float = 5.0):
    with ParallelFor([1.0, 2.0, 3.0]) as x:
        with ExitHandler() as work:
            fail_on(x, limit)
        report(work.status)  # report[i]: item i's status


HELD_SECONDS = 120.0  # a gated step gives up by itself after this, so an abandoned process always ends


@step
def gated(folder: str, x: float) -> float:
    """Announces it runs, then waits for a gate no test opens: the run is cancelled here."""
    import time
    from pathlib import Path

    Path(folder, f"running-{x}").write_text("")
    deadline = time.monotonic() + HELD_SECONDS
    while not Path(folder, "gate").exists():  # bounded: the cancel, not the gate, ends it
        if time.monotonic() > deadline:
            raise TimeoutError("the gate never opened")
        time.sleep(0.02)
    return x


@step
def total(values: list) -> float:
    return sum(values)


@step
def failure_note(status: dict) -> str:
    return f"on_failure: {status['status']}"


@pipeline(name="tk_cancel_map", description="a cancelled run: an exit handler inside a map over a constant list "
                                           "(a matrixed finally task), a step after the map, a failure hook.",
          on_failure=failure_note)
def tk_cancel_map(folder: str):
    with ParallelFor([1.0, 2.0]) as x:
        with ExitHandler() as work:
            held = gated(folder, x)
        report(work.status)  # report[i]: item i's status
    total(held)  # never starts
