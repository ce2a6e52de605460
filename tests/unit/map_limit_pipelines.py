"""Pipelines whose maps iterate list parameters, for the map-size checks (tests/unit/test_map_limits.py)."""

from __future__ import annotations

from pipecast import ParallelFor, Product, pipeline, step


@step
def square(x: int) -> int:
    return x * x


@step
def total(values: list) -> int:
    return sum(values)


@pipeline(name="long_default")
def long_default(items: list = list(range(300))):  # noqa: B006
    with ParallelFor(items) as item:
        squares = square(x=item)
    total(values=squares)


@pipeline(name="short_default")
def short_default(items: list = [1, 2, 3]):  # noqa: B006
    with ParallelFor(items) as item:
        squares = square(x=item)
    total(values=squares)


@pipeline(name="product_default")
def product_default(rows: list = [1, 2, 3], cols: list = [4, 5]):  # noqa: B006
    with ParallelFor(Product(rows, cols)) as (row, col):
        square(x=row)
        square(x=col)


@step
def size(text: str) -> int:
    return len(text)


@pipeline(name="wide_default")
def wide_default(texts: list = ["x" * 1000] * 70):  # 70 items of 1,000 characters: 70 KB as JSON
    with ParallelFor(texts) as text:
        size(text=text)


@pipeline(name="many_ints")
def many_ints(items: list = list(range(10_000))):  # noqa: B006 - Argo: 10,000 items, 58,901 bytes as its argument
    with ParallelFor(items) as item:
        squares = square(x=item)
    total(values=squares)


@pipeline(name="too_many_ints")
def too_many_ints(items: list = list(range(25_000))):  # noqa: B006 - Argo: 163,901 bytes, past one pod argument
    with ParallelFor(items) as item:
        squares = square(x=item)
    total(values=squares)


@pipeline(name="long_text_default")
def long_text_default(note: str = "x" * 140_000):  # Argo: one container argument past Linux's 131,072 bytes
    size(text=note)


@pipeline(name="long_constant")
def long_constant():
    size(text="y" * 140_000)  # written into the step's arguments as it is


@step
def count_keys(rows: dict) -> int:
    return len(rows)


@pipeline(name="short_text")
def short_text(note: str = "x", rows: dict = {}):  # noqa: B006
    size(text=note)
    count_keys(rows=rows)
