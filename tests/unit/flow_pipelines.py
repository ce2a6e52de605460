"""Pipelines with control flow used by the unit tests (importable by module path, as engine tasks import steps)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from pipecast import Elif, Else, ExitHandler, If, OneOf, ParallelFor, Product, Zip, is_in, pipeline, step

_LOCK = threading.Lock()
RUNNING = {"now": 0, "most": 0}


@step
def numbers(n: int) -> list:
    return list(range(n))


@step
def square(x: int) -> int:
    return x * x


@step
def add(a: int, b: int) -> int:
    return a + b


@step
def total(values: list) -> int:
    return sum(values)


@step
def nested_total(values: list) -> list:
    return [sum(v) for v in values]


@step
def echo(value: str) -> str:
    return value


@step
def counted(x: int) -> int:
    """Records how many copies run at once (steps run in the runner's threads)."""
    with _LOCK:
        RUNNING["now"] += 1
        RUNNING["most"] = max(RUNNING["most"], RUNNING["now"])
    threading.Event().wait(0.02)  # long enough for the pool to start others, if the bound allows
    with _LOCK:
        RUNNING["now"] -= 1
    return x


@step(retry=1)
def fails_once_for(x: int, bad: int, folder: str) -> int:
    """Fails the first try of item ``bad`` (a marker file remembers the try)."""
    marker = Path(folder) / f"tried-{x}"
    if x == bad and not marker.exists():
        marker.write_text("1")
        raise RuntimeError(f"first try of item {x} fails")
    return x


@step
def boom(x: int) -> int:
    if x == 2:
        raise ValueError("item 2 is bad")
    return x


@step
def report(status: dict) -> dict:
    return status


@step
def alert(status: dict) -> str:
    return f"alert: {status['status']} {status['failed_steps']}"


@step
def cheer() -> str:
    return "all good"


@pipeline
def squares(n: int = 4):
    """A map over a step's output, chained item by item, collected in item order."""
    items = numbers(n)
    with ParallelFor(items) as x:
        sq = square(x)
        plus = add(sq, x)
    return total(plus)


@pipeline
def expanded(xs: list = [1, 2, 3], ys: list = [10, 20, 30]):  # noqa: B006
    """expand() over a parameter, a zip and a product; a chained expand over an expand's result."""
    sq = square.expand(x=xs)
    again = square.expand(x=sq)  # item by item over the same map
    zipped = add.expand(a=xs, b=ys, combine="zip")
    crossed = add.partial(b=100).expand(a=xs)
    product = add.expand(a=xs, b=ys, combine="product")
    return {"squares": total(again), "zipped": total(zipped), "crossed": total(crossed),
            "product": total(product)}


@pipeline
def nested(rows: list = [[1, 2], [3], []]):  # noqa: B006
    """A map inside a map: the inner results arrive as a list per outer item, then a list of lists."""
    with ParallelFor(rows) as row, ParallelFor(row) as x:
        sq = square(x)
    return nested_total(sq)


@pipeline(parallelism=2)
def bounded(n: int = 6):
    with ParallelFor(numbers(n), parallelism=2) as x:
        got = counted(x)
    return total(got)


@pipeline
def zipped_pairs(xs: list = [1, 2], ys: list = [5, 6]):  # noqa: B006
    with ParallelFor(Zip(xs, ys)) as (x, y):
        summed = add(x, y)
    with ParallelFor(Product(xs, ys)) as (x, y):
        crossed = add(x, y)
    return {"zip": total(summed), "product": total(crossed)}


@pipeline
def retried(folder: str, xs: list = [1, 2, 3]):  # noqa: B006
    got = fails_once_for.partial(bad=2, folder=folder).expand(x=xs)
    return total(got)


@pipeline
def branches(mode: str = "fast", n: int = 3):
    """if/elif/else on a parameter and on an output; a OneOf after the branches; a step after a skipped one."""
    size = square(n)
    with If(mode == "fast"):
        fast = echo("fast")
    with Elif(is_in(mode, ["slow", "careful"]) & (size > 4)):
        slow = echo("slow")
    with Else():
        other = echo("other")
    chosen = echo(OneOf(fast, slow, other))
    after_fast = echo(fast)  # skipped when the If branch did not run
    return {"chosen": chosen, "after": after_fast}


@pipeline
def item_conditions(n: int = 5):
    """A condition inside a map, on the item's own output: skipped items are left out of the collected list."""
    with ParallelFor(numbers(n)) as x:
        sq = square(x)
        with If((sq > 3) & ~(x == 4)):
            kept = add(sq, 0)
    return total(kept)


@pipeline(on_failure=alert, on_success=cheer)
def guarded(xs: list = [1, 2, 3]):  # noqa: B006
    """An exit handler sees item 2 fail; the on_failure hook runs, on_success does not."""
    with ExitHandler() as work:
        with ParallelFor(xs) as x:
            boom(x)
    report(work.status)


@pipeline(on_failure=alert, on_success=cheer)
def guarded_ok(xs: list = [1, 3]):  # noqa: B006
    with ExitHandler() as work:
        got = boom.expand(x=xs)
        total(got)
    report(work.status)


@step(timeout="5m")
def square_in_child(x: int) -> int:
    return x * x


@step(timeout="5m")
def total_in_child(values: list) -> int:
    return sum(values)


@pipeline
def supervised(n: int = 3):
    """Steps with a timeout run each try in a child process: an item, and a collected list, cross into it."""
    with ParallelFor(numbers(n)) as x:
        sq = square_in_child(x)
    return total_in_child(sq)


ITEM_0_CHAIN_ENDED = threading.Event()  # set by the last step of item 0's chain (steps run in the runner's threads)
HELD_SECONDS = 120.0  # generous: without item chains the held item waits this long, then fails


@step
def held(x: int) -> int:
    """Item 1 waits until item 0's chain has ended: only item chains let item 0 go on while item 1 runs."""
    if x == 1 and not ITEM_0_CHAIN_ENDED.wait(HELD_SECONDS):
        raise TimeoutError("item 0's chain did not end while item 1 of the first step was running")
    return x


@step
def chain_end(x: int) -> int:
    if x == 0:
        ITEM_0_CHAIN_ENDED.set()
    return x


@pipeline
def chains(xs: list = [0, 1]):  # noqa: B006
    """Three chained steps over one map: item 0's chain must end while item 1 of the first step is held."""
    with ParallelFor(xs) as x:
        first = held(x)
        middle = square(first)
        last = chain_end(middle)
    return total(last)


@pipeline
def failing_chain(xs: list = [1, 2, 3]):  # noqa: B006
    """Item 1 of the first step fails: item 1 of the next is skipped, the other items go on (no fail-fast)."""
    with ParallelFor(xs) as x:
        got = boom(x)
        square(got)


def _wait_for_file(path: Path, what: str) -> None:
    deadline = time.monotonic() + HELD_SECONDS  # bounded, so an abandoned step thread ends by itself
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {path.name} never appeared")
        time.sleep(0.02)


@step
def gated(folder: str, x: int) -> int:
    """Announces it runs, then waits for a gate no test opens: the run is interrupted here."""
    Path(folder, f"running-{x}").write_text("")
    _wait_for_file(Path(folder, "gate"), "the gate")
    return x


@step
def exit_report(folder: str, status: dict, hold: bool) -> dict:
    """The exit handler: announces it runs; with ``hold`` it waits (so a second signal can abort it)."""
    Path(folder, "handler-running").write_text("")
    if hold:
        _wait_for_file(Path(folder, "release"), "the handler's release")
    return status


@step
def failure_note(status: dict) -> str:
    return f"on_failure: {status['status']}"


@pipeline(on_failure=failure_note)
def cancellable(folder: str, hold: bool = False):
    """Two items block until the run is interrupted; the exit handler and the on_failure hook run after it."""
    with ExitHandler() as work:
        with ParallelFor([1, 2]) as x:
            gated(folder, x)
    exit_report(folder, work.status, hold)


@step
def interrupts_its_run(folder: str) -> int:
    """Sends Ctrl-C to its own runner (an in-process run: the signal reaches the runner's main thread), then waits."""
    os.kill(os.getpid(), signal.SIGINT)
    _wait_for_file(Path(folder, "gate"), "the gate")
    return 0


@pipeline
def self_interrupted(folder: str):
    """The exit handler holds after Ctrl-C: the grace bound must stop it."""
    with ExitHandler() as work:
        interrupts_its_run(folder)
    exit_report(folder, work.status, True)


@pipeline
def map_in_branch_in_map(xs: list = [1, 3], threshold: int = 2):  # noqa: B006
    """An inner map over a list a step of the branch makes: outer items whose branch is skipped have no inner map."""
    with ParallelFor(xs) as x:
        with If(x > threshold):
            made = numbers(x)  # the inner list, made only when the branch runs
            with ParallelFor(made) as y:
                summed = add(y, x)
                squared = square(summed)  # reads the inner items, in the branch too
            total(squared)  # the inner fan-in, per outer item
    return nested_total(squared)  # the outer fan-in: a list per outer item, of the inner items that ran


@pipeline
def maps_in_a_branch_chain(xs: list = [0, 1, 2, 7], ys: list = [5, 6]):  # noqa: B006
    """Inner maps in each block of an if/elif/else inside a map, and in a branch inside a branch."""
    with ParallelFor(xs) as x:
        before = numbers(2)  # an inner list made before the branch
        size = square(x)
        with If(size == 0):
            made = numbers(add(x, 2))  # made by a step of the branch
            with ParallelFor(made) as m:
                first = add(m, 100)
        with Elif(size == 1):
            with ParallelFor(ys) as y:  # over a parameter
                second = add(y, x)
            with ParallelFor(before) as b:
                third = add(b, 10)
        with Else():
            with If(x > 5):  # two levels of branches
                deep = numbers(x)
                with ParallelFor(deep) as d:
                    fourth = square(d)
            echo("else")
    return {"first": nested_total(first), "second": nested_total(second), "third": nested_total(third),
            "fourth": nested_total(fourth)}
