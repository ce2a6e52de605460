"""Golden case: a diamond, a reused step, explicit names, and an ordering edge without data."""

from pipecast import pipeline, step


@step
def start() -> int:
    return 1


@step
def double(x: int) -> int:
    return 2 * x


@step
def add(a: int, b: int) -> int:
    return a + b


@step(name="cleanup-tmp")
def cleanup() -> None:
    pass


@pipeline
def diamond_after():
    root = start()
    left = double(root)
    right = double.with_options(name="double_right")(root)
    total = add(left, right)
    cleanup().after(total)
    add(total, 10)
    return total
