"""Small pipelines for the kubernetes driver's failure, retry, cancel and secret paths."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pipecast
from pipecast import Else, ExitHandler, If, OneOf, ParallelFor, Retry, Secret, pipeline, step


@step(retry=Retry(attempts=2, delay="3s"))
def flaky(marker: str) -> int:
    """Fails on its first try (leaves ``marker`` behind), succeeds on the second."""
    path = Path(marker)
    if not path.exists():
        path.write_text("first try")
        raise RuntimeError("first try fails on purpose")
    return 41


@step
def plus_one(value: int) -> int:
    return value + 1


@pipeline(name="flaky")
def flaky_pipeline(marker: str):
    return plus_one(flaky(marker))


@step
def broken(value: int) -> int:
    raise ValueError(f"broken on purpose with {value}")


@step
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pipeline(name="failing")
def failing_pipeline(seconds: float = 30.0):
    slow(seconds)
    return plus_one(broken(1))


@pipeline(name="sleepy")
def sleepy_pipeline(seconds: float = 60.0):
    return plus_one(1).after(slow(seconds))


@step(secrets=[Secret("db-credentials", key="password", env="DB_PASSWORD")],
      env={"MODE": "$(PIPECAST_RUN_ID) $$ $(DB_PASSWORD)"})  # Kubernetes would expand these unless escaped
def read_secret() -> dict:
    return {"password": os.environ.get("DB_PASSWORD"), "mode": os.environ.get("MODE")}


@pipeline(name="secretive")
def secret_pipeline():
    return read_secret()


@step(env={"PIPECAST_PARAM_x": "1"})
def uses_reserved(x: int) -> int:
    return x


@pipeline(name="reserved", schedule="@daily")
def reserved_pipeline(x: int):
    uses_reserved(x)


@step
def a_very_long_step_name_that_goes_on_and_on_and_on_and_on_and_on_forever() -> int:
    return 1


@pipeline(name="a-pipeline-name-that-is-long-enough-to-need-cutting-by-the-name-rule", schedule="@hourly")
def long_names_pipeline():
    a_very_long_step_name_that_goes_on_and_on_and_on_and_on_and_on_forever()


@step(name="load-data")
def load_first() -> int:
    return 1


@step(name="load_data")
def load_second() -> int:
    return 2


@pipeline(name="clash")
def clash_pipeline():
    load_first()
    load_second()


@step
def take(blob: str) -> int:
    return len(blob)


@pipeline(name="big")
def huge_constant_pipeline():
    take("x" * (200 * 1024))


def _noise(seed: int) -> str:
    """100 KiB of hex that gzip cannot shrink much below half."""
    return f"{random.Random(seed).getrandbits(100 * 1024 * 4):0{100 * 1024}x}"


@pipeline(name="bigger")
def many_constants_pipeline():
    for seed in range(24):
        take(_noise(seed))


def chain_pipeline(steps: int):
    """A chain of ``steps`` steps (for size limits)."""

    @pipeline(name=f"chain_{steps}")
    def chain(seed: int = 1):
        value = plus_one(seed)
        for _ in range(steps - 1):
            value = plus_one(value)
        return value

    return chain


@step
def ten_over(x: int) -> float:
    return 10 / x  # item 0 of [1, 0, 5] fails with ZeroDivisionError


@step
def total(parts: list) -> float:
    return sum(parts)


@step
def big(value: float) -> str:
    return f"big: {value}"


@step
def summary(status: dict) -> dict:
    return status


@step
def alert(status: dict) -> str:
    return f"alert: {status['status']} {status['failed_steps']}"


@pipeline(name="flow-failure", on_failure=alert)
def flow_failure_pipeline(xs: list = [1, 0, 5]):  # noqa: B006 - never mutated
    """An item fails: the steps after the map are skipped, the exit handler and the hook see the failure."""
    with ExitHandler() as work:
        with ParallelFor(xs, parallelism=1) as x:  # one at a time: item 2 is never started (fail-fast)
            parts = ten_over(x)
        value = total(parts)
        with If(value > 1):
            big(value)
    summary(work.status)


@pipeline(name="sleepy-map")
def sleepy_map_pipeline(waits: list = [120.0, 120.0]):  # noqa: B006 - never mutated
    with ParallelFor(waits) as seconds:
        slow(seconds)


@step(cache=False)  # each run really runs it: the test reads the Job pods' env and this step's own record
def seen_time(tag: str) -> dict:
    """The logical time this step's Job gave it, as text (an aware datetime, or None)."""
    moment = pipecast.context().logical_time
    return {"tag": tag, "logical_time": moment.isoformat() if moment else None}


@pipeline(name="scheduled-time", schedule="0 5 * * 1")  # Mondays 05:00 (in the CronJob's timeZone)
def scheduled_time_pipeline():
    return seen_time("second").after(seen_time("first"))


@pipeline(name="scheduled-map", schedule="@hourly")
def scheduled_map_pipeline(tags: list = ["a", "b"]):  # noqa: B006 - never mutated
    with ParallelFor(tags) as tag:
        seen_time(tag)


@step(env={"PIPECAST_LOGICAL_TIME": "2020-01-01T00:00:00Z"})  # a step's own value: kept, as on Argo
def fixed_time() -> str:
    return str(pipecast.context().logical_time)


@pipeline(name="fixed-time", schedule="@daily")
def fixed_time_pipeline():
    fixed_time()


@step
def plus_hundred(x: float) -> float:
    return 100 + x


@step
def same(x: float) -> float:
    return x


@pipeline(name="item-one-of")
def item_one_of_pipeline(xs: list = [1, 5, 2, 7]):  # noqa: B006 - never mutated
    """In each item: a OneOf of the branch that ran for it, and an exit handler that gets that item's status."""
    with ParallelFor(xs) as x:
        with ExitHandler() as item:
            with If(x > 3):
                a = plus_hundred(x)
            with Else():
                b = same(x)
            shown = same(OneOf(a, b))
        summary(item.status)
    total(shown)
