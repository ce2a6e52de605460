"""Pipelines whose map lists cannot be made at run time, for the Airflow target: the publisher task fails, and the
map's steps must be recorded failed as ``pipecast run`` fails them, so handlers and hooks read the same status."""

from __future__ import annotations

from pipecast import ExitHandler, ParallelFor, Zip, pipeline, step


@step
def pair(letter: str, number: int) -> str:
    return f"{letter}{number}"


@step
def shout(text: str) -> str:
    return text.upper()


@step
def double(number: int) -> int:
    return 2 * number


@step
def joined(parts: list) -> str:
    return ",".join(parts)


@step
def total(values: list) -> int:
    return sum(values)


@step
def add(x: int, bias: int) -> int:
    return x + bias


@step
def summary(status: dict) -> str:
    return f"{status['status']}: {status['failed_steps']} {status['error']}"


@step
def alert(status: dict) -> str:
    return f"failed: {status['failed_steps']}"


@step
def celebrate(status: dict) -> str:
    return status["status"]


@pipeline(name="publisher_fails", on_failure=alert, on_success=celebrate)
def publisher_fails(letters: list = ["a", "b"], numbers: list = [1, 2, 3],  # noqa: B006 - never mutated
                    rows: list = [[1, 2], [4]], biases: list = [[0, 1], [2, 3]]):  # noqa: B006
    """A single map whose zipped lists differ in length (its publisher fails: `pair`, `double` and the handler
    inside the map fail, `shout` and the fan-in are skipped) and a nested map whose inner zip differs at row 1
    (`add` fails as a whole, the outer body runs); handlers around everything and per row, and both hooks, read
    the failures."""
    with ExitHandler() as everything:
        with ParallelFor(Zip(letters, numbers)) as (letter, number):
            with ExitHandler() as item_group:
                word = pair(letter, number)
                shout(word)
            double(number)
            summary(status=item_group.status)
        joined(word)
        with ParallelFor(Zip(rows, biases)) as (row, bias):
            total(row)
            with ExitHandler() as row_group:
                with ParallelFor(Zip(row, bias)) as (x, b):
                    add(x, b)
            summary(status=row_group.status)
    summary(status=everything.status)
