"""A pipeline whose first step fails, for the local_docker run path."""

from pipecast import pipeline, step


@step
def fails() -> int:
    raise RuntimeError("fails on purpose")


@step
def never(value: int) -> int:
    return value


@pipeline(name="failing_docker")
def failing_docker():
    never(fails())
