"""Control-flow pipelines for the Compose targets (local_docker, hyperai): maps and conditions run by the steps'
runtime (``pipecast.runtime.inline_flow``), and the constructs Compose refuses.

Imported in the test image as ``tests.targets.local_docker.flow_pipelines``.
"""

from pipecast import Else, ExitHandler, If, OneOf, ParallelFor, Product, pipeline, step

HOSTILE = "$HOME ${PIPECAST_RUN_ID} $$ `id` '\"\n-- --step"  # Compose, shell and argv syntax: must stay data


@step
def make_sizes(n: int) -> list:
    return [size * 10 for size in range(1, n + 1)]


@step(retry=2)
def square(x: int) -> int:
    return x * x


@step
def halve(value: int) -> float:
    return value / 2


@step
def describe(value: float, tag: str) -> str:
    return f"{tag}:{value}"


@step
def total(values: list) -> float:
    return float(sum(values))


@step
def labels(words: list) -> str:
    return ",".join(words)


@step
def rows_total(rows: list) -> float:
    return float(sum(sum(row) for row in rows))


@step
def promote(score: float) -> str:
    return f"promoted {score}"


@step
def keep(score: float) -> str:
    return f"kept {score}"


@step
def announce(decision: str) -> str:
    return decision.upper()


@step
def pair(a: int, b: str) -> str:
    return f"{a}{b}"


@step
def report(status: dict) -> str:
    return status["status"]


@pipeline(name="compose_flow")
def compose_flow(xs: list = [1, 2, 3, 4], limit: float = 10.0, n: int = 2):  # noqa: B006 - never mutated
    """A map over a parameter (bounded, chained item by item, a condition per item, fan-in), a map over a step's
    output, a product map, and an if/else on the fan-in with OneOf."""
    with ParallelFor(xs, parallelism=2) as x:
        halves = halve(square(x))
        with If(halves > 4.0):
            words = describe(halves, "big")
    summed = total(halves)
    joined = labels(words)
    with ParallelFor(make_sizes(n)) as size:
        sized = square(size)
    with ParallelFor(Product([1, 2], ["a", HOSTILE])) as (a, b):  # a constant list holding hostile text
        pairs = pair(a, b)
    with ParallelFor([[1, 2], [3]]) as row, ParallelFor(row) as v:  # nested: a list per row
        nested = square(v)
    with If(summed > limit):
        promoted = promote(summed)
    with Else():
        kept = keep(summed)
    announce(OneOf(promoted, kept))
    return {"joined": joined, "sized": total(sized), "pairs": labels(pairs), "nested": rows_total(nested)}


@pipeline(name="compose_exit")
def compose_exit():
    """An exit handler: refused on Compose."""
    with ExitHandler() as work:
        halve(square(3))
    report(work.status)


@pipeline(name="compose_bound", parallelism=2)
def compose_bound(xs: list = [1, 2]):  # noqa: B006 - never mutated
    """A pipeline-wide bound: refused on Compose (a map's own bound is kept)."""
    with ParallelFor(xs) as x:
        square(x)


@step
def check_below(x: int, limit: int) -> int:
    if x >= limit:
        raise ValueError(f"{x} is not below {limit}")
    return x


@step
def wait_for_stop(x: int, folder: str) -> int:
    import pathlib
    import time

    pathlib.Path(folder, f"started-{x}").write_text("started\n")
    time.sleep(600)  # until the stop reaches it
    return x


@pipeline(name="compose_fail")
def compose_fail(xs: list = [1, 5, 2, 3], limit: int = 4):  # noqa: B006 - never mutated
    """Item 1 fails: the items after it do not start (fail-fast) and the step's record names the item."""
    with ParallelFor(xs, parallelism=1) as x:
        checked = check_below(x, limit)
    total(checked)


@pipeline(name="compose_stop")
def compose_stop(folder: str, xs: list = [1, 2]):  # noqa: B006 - never mutated
    """Two items that wait to be stopped."""
    with ParallelFor(xs) as x:
        wait_for_stop(x, folder)


@step
def die(x: int) -> int:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer ends a process: no chance to record
    return x


@pipeline(name="compose_killed")
def compose_killed(xs: list = [1, 2]):  # noqa: B006 - never mutated
    """The first item's process is killed."""
    with ParallelFor(xs, parallelism=1) as x:
        die(x)


@step
def pick_size(x: int) -> int:
    return x


@step
def big_size(x: int) -> int:
    return 100 + x


@step
def small_size(x: int) -> int:
    return x


@step
def shown(v: int) -> int:
    return v


@pipeline(name="compose_one_of")
def compose_one_of(xs: list = [1, 5, 2, 7]):  # noqa: B006 - never mutated
    """OneOf of branches inside a map: each item reads the branch that ran for it (big for 5 and 7)."""
    with ParallelFor(xs) as x:
        s = pick_size(x)
        with If(s > 3):
            a = big_size(s)
        with Else():
            b = small_size(s)
        v = shown(OneOf(a, b))
    total(v)


@step
def alert(status: dict) -> str:
    return f"alert {status['status']} {status['failed_steps']}: {status['error']}"


@step
def celebrate() -> str:
    return "all good"


@pipeline(name="sky_exit", on_failure=alert, on_success=celebrate)
def sky_exit(x: int = 5, limit: int = 4):
    """An exit handler around a chain whose first step fails when x >= limit, and both pipeline hooks."""
    with ExitHandler() as work:
        checked = check_below(x, limit)
        halve(checked)
    report(work.status)


@pipeline(name="sky_exit_map")
def sky_exit_map(xs: list = [1, 5, 2], limit: int = 4):  # noqa: B006 - never mutated
    """An exit handler inside a map: each item's handler reads its own item's status (item 1 fails)."""
    with ParallelFor(xs, parallelism=1) as x:
        with ExitHandler() as work:
            checked = check_below(x, limit)
            halve(checked)
        report(work.status)


@step(env={"STAGE": "report"})
def report_apart(status: dict) -> str:
    return status["status"]


@pipeline(name="sky_exit_split")
def sky_exit_split():
    """A handler whose env differs from its group's steps: another SkyPilot task, refused there."""
    with ExitHandler() as work:
        square(3)
    report_apart(work.status)


@step
def failed_steps(status: dict) -> str:
    return f"{status['status']} {','.join(status['failed_steps'])}"


@pipeline(name="compose_hooks", on_failure=alert, on_success=celebrate)
def compose_hooks(x: int = 2, limit: int = 4):
    """An exit handler reading its group's status, and both hooks: a step of the group fails when x >= limit
    (the step after it does not run; the handler names the failed step; on_failure runs, on_success does not)."""
    with ExitHandler() as work:
        checked = check_below(square(x), limit)
        halve(checked)
    failed_steps(work.status)


@step
def wait_for_record(step_name: str) -> int:
    """Returns once step ``step_name`` of this run has its record (bounded): the steps after it start after that."""
    import time

    import fsspec

    import pipecast

    uri = pipecast.context().artifact_uri.rsplit("/", 1)[0] + f"/{step_name}/meta.json"
    fs, path = fsspec.core.url_to_fs(uri)
    deadline = time.monotonic() + 300
    while not fs.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no record at {uri}")
        time.sleep(0.05)
    return 2


@pipeline(name="compose_fail_fast", on_failure=alert)
def compose_fail_fast(x: int = 5, limit: int = 4):
    """A failure, and a step not downstream of it that becomes ready only after it: fail-fast does not start it."""
    check_below(x, limit)
    halve(wait_for_record("check_below"))


@step
def block_until_stopped() -> int:
    """Marks that it runs (a file ``started`` in its folder), then waits to be stopped (bounded)."""
    import pathlib
    import time

    import pipecast

    folder = pathlib.Path(pipecast.context().artifact_uri.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "started").write_text("1")
    time.sleep(600)
    return 1


@pipeline(name="compose_cancel", on_failure=alert, on_success=celebrate)
def compose_cancel():
    """A step that runs until the run is cancelled, the step after it, an exit handler and both hooks."""
    with ExitHandler() as work:
        halve(block_until_stopped())
    failed_steps(work.status)
