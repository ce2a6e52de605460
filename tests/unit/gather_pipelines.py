"""Pipelines that pass a literal list or dict of step outputs and parameters as one input (line numbers asserted)."""

from __future__ import annotations

from pathlib import Path

import pipecast
from pipecast import pipeline, step


def line_of(marker: str) -> int:
    """The line of this file whose text holds ``marker``."""
    lines = Path(__file__).read_text().splitlines()
    return next(number for number, text in enumerate(lines, 1) if marker in text)


@step
def number(n: int) -> int:
    return n


@step
def word(text: str) -> str:
    return text


@step
def total(values: list[int]) -> int:
    return sum(values)


@step
def describe(values: dict, pair: tuple) -> str:
    return f"{sorted(values.items())} {pair}"


@step
def twice(n: int) -> int:
    return 2 * n


@step
def as_int(value: int) -> int:
    return value


@step
def paths(files: list[Path]) -> str:
    return ",".join(type(f).__name__ + ":" + f.read_text() for f in files)


@step
def write(text: str) -> Path:
    target = Path(pipecast.context().artifact_uri.removeprefix("file://")) / "note.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


@pipeline
def sums(n: int = 3):
    return total([number(n), number(2), n, 4])


@pipeline
def nested(n: int = 3, name: str = "x"):
    return describe({"n": n, "inner": {"words": [word(name), "c"]}, "k": number(5)}, pair=(n, number(1)))


@pipeline
def order_matters(n: int = 1):
    a, b = number(10), number(20)
    return total([a, b, 0]), total([b, a, 1])


@pipeline
def inside_a_map(items: list = [1, 2]):  # noqa: B006
    with pipecast.ParallelFor(items) as item:
        total([twice(item), 1])                # a gather inside a map


@pipeline
def of_a_mapped_output(items: list = [1, 2]):  # noqa: B006
    with pipecast.ParallelFor(items) as item:
        doubled = twice(item)
    total([doubled, 1])                        # a mapped output in a gather


@pipeline
def with_a_set(n: int = 1):
    total({number(n), 2})                      # a set of outputs


@pipeline
def wrong_element(n: int = 1):
    total([number(n), word("a")])              # a str in a list[int]


@pipeline
def not_a_list(n: int = 1):
    as_int([number(n), 1])                     # a list for an int


@pipeline
def of_paths(n: int = 1):
    return paths([write("a"), write("b")])
