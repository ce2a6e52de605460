"""Pipelines with mistakes, one per validation rule (line numbers are asserted by the tests).

``everything_wrong`` holds every rule validation checks at once; each pipeline after it holds one mistake
the user's own Python makes while pipecast traces it, or one a target refuses. The comment on the line of
the mistake is how the tests find that line.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Optional

from pipecast import Resources, Retry, pipeline, step


def line_of(marker: str) -> int:
    """The line of this file whose text holds ``marker`` (the comment on the line of a mistake)."""
    lines = Path(__file__).read_text().splitlines()
    return next(number for number, text in enumerate(lines, 1) if marker in text)


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


@step
def total(values: list) -> int:
    return sum(values)


@step
def label_of(text: str) -> str:
    return text


@step
def maybe(limit: Optional[int]) -> int:  # noqa: UP045 — the spelling users write
    return limit or 0


@pipeline
def raises_an_error(n: int = 1):
    takes_int(n)
    return {"first": 1 / 0}                   # a bug: ZeroDivisionError


@pipeline
def iterates_a_dict(weights: dict = {}):  # noqa: B006
    for _name, value in weights.items():      # .items() on a dict parameter
        takes_int(value)


@pipeline(schedule=timedelta(days=1))  # a timedelta schedule
def timedelta_schedule():
    tick()


@pipeline
def branches_on_a_parameter(n: int = 3):
    if n > 2:                                 # if on a parameter
        tick()


@pipeline
def branches_on_an_output():
    result = takes_int(1)
    if result == 5:                           # if on a step output
        tick()


@pipeline
def loops_over_a_parameter(items: list = []):  # noqa: B006
    for item in items:                        # for over a parameter
        takes_int(item)


@pipeline
def loops_while_a_parameter(n: int = 3):
    while n:                                  # while on a parameter
        tick()


@pipeline
def measures_a_parameter(items: list = []):  # noqa: B006
    takes_int(len(items))                     # len() of a parameter


@pipeline
def formats_a_parameter(n: int = 3):
    label_of(f"run {n}")                      # f-string of a parameter


@pipeline
def fans_in():
    total({takes_int(1), takes_int(2)})       # a set of step outputs (a list is gathered; a set has no order)


@pipeline
def escapes_the_run_folder():
    tick.with_options(name="../../../../escaped_dir/x")()  # a step name with a path


@pipeline
def defaults_to_none(
    limit: Optional[int] = None,  # noqa: UP045 — a None default
):
    maybe(limit)


@pipeline(settings={"airflow": {"moed": "kubernetes"}})  # a misspelt airflow setting
def misspells_a_setting():
    tick()


@pipeline
def has_an_untyped_parameter(anything):  # a parameter with no type
    tick()


@step(outputs=("fine", "../up"))  # an output name with a path
def two_outputs() -> tuple[int, int]:
    return 1, 2


@pipeline(name="bad..name")  # a pipeline name with '..'
def badly_named():
    two_outputs()  # uses the bad output name
