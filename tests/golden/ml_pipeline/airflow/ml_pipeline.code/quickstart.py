"""Quickstart: parameters, fan-out and fan-in, and a step with two outputs.

    pipecast run examples/quickstart.py -p n=20
    pipecast compile examples/quickstart.py --target airflow --out build/airflow
"""

from typing import Annotated

from pipecast import Retry, pipeline, step


@step
def make_numbers(n: int, seed: int) -> list:
    """Make ``n`` pseudo-random integers (a tiny linear congruential generator: no dependencies)."""
    values, state = [], seed
    for _ in range(n):
        state = (1103515245 * state + 12345) % 2**31
        values.append(state % 100)
    return values


@step
def split(numbers: list) -> tuple[Annotated[list, "evens"], Annotated[list, "odds"]]:
    """Two outputs: the even and the odd numbers."""
    return [x for x in numbers if x % 2 == 0], [x for x in numbers if x % 2 == 1]


@step(retry=Retry(attempts=2, delay="1s"))
def total(values: list) -> int:
    return sum(values)


@step
def report(evens_total: int, odds_total: int, label: str) -> dict:
    """Fan-in: combine both totals."""
    return {"label": label, "evens": evens_total, "odds": odds_total, "all": evens_total + odds_total}


@pipeline(name="quickstart", description="Split numbers by parity and add each half up.", tags=["example"])
def quickstart(n: int = 10, seed: int = 7, label: str = "numbers"):
    evens, odds = split(make_numbers(n, seed))
    return report(total(evens), total(odds), label)


if __name__ == "__main__":
    # `python examples/quickstart.py` runs on the active stack: this machine, unless $PIPECAST_STACK or
    # `pipecast stack use NAME` chose another (docs/stacks.md). It waits, then prints the run's id.
    print(quickstart(n=20).id)
