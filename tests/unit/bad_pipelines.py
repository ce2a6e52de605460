"""Pipelines with mistakes, one per validation rule (line numbers are asserted by the tests)."""

from __future__ import annotations

import threading

from pipecast import Resources, Retry, pipeline, step


@step
def needs_two(a: int, b: str) -> int:
    return a


@step
def takes_int(n: int) -> int:
    return n


@step(name="fixed")
def first_fixed() -> int:
    return 1


@step(name="fixed")
def second_fixed() -> int:
    return 2


@step
def tick() -> None:
    pass


@step(resources=Resources(cpu="two", memory="4GB"), retry=Retry(attempts=2, delay="soon"), timeout="1 hour")
def badly_configured() -> None:
    pass


@pipeline(schedule="0 25 * * *")
def everything_wrong(label: str = "x", count: int = "three"):  # type: ignore[assignment]
    needs_two(1, b="x", c=3)                  # unknown input 'c'
    needs_two(a=1)                            # missing input 'b'
    takes_int(label)                          # parameter of the wrong type
    takes_int("7")                            # constant of the wrong type
    takes_int(threading.Lock())               # not serialisable
    first_fixed()
    second_fixed()                            # duplicate explicit name
    one = tick()
    two = tick().after(one)
    one.after(two)                            # a cycle
    badly_configured()                        # bad cpu, memory, delay, timeout
