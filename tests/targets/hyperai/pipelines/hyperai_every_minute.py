"""A pipeline scheduled every minute, so that a test sees cron start it (see hyperai_gated.py for the image)."""

from pipecast import pipeline, step


@step
def greet(name: str) -> str:
    return f"hello {name}"


@pipeline(name="every_minute", schedule="* * * * *")
def every_minute(name: str = "cron"):
    return greet(name)
