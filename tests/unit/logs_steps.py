"""Pipelines for the ``pipecast runs logs`` tests (importable by module path): steps that print, fail, wait.

``slow_talker`` prints a line, then waits for a gate file (bounded) before printing its last line, so a test
can follow its log while it runs and end it when it chooses, waiting on events rather than delays.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pipecast import pipeline, step

GATE_SECONDS = 120.0


@step
def greet(name: str) -> str:
    print(f"hello {name}")
    print("a warning", file=sys.stderr)
    return name


@step(timeout="5m")
def shout(name: str) -> str:
    print(f"HELLO {name.upper()}")  # in a child process (the step has a timeout)
    return name.upper()


@step
def explode(name: str) -> str:
    print("about to fail")
    raise ValueError(f"no {name} here")


@step
def never(value: str) -> str:
    return value


@pipeline
def talk(name: str = "world"):
    shout(greet(name))


@pipeline
def broken(name: str = "world"):
    never(explode(name))


@step
def waits(folder: str) -> str:
    print("first line", flush=True)
    Path(folder, "started").write_text(str(os.getpid()))
    deadline = time.monotonic() + GATE_SECONDS
    while not Path(folder, "gate").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("gate never opened")
        time.sleep(0.01)
    print("last line")
    return "done"


@step
def then(value: str) -> str:
    print(f"then got {value}")
    return value


@pipeline
def slow_talker(folder: str):
    then(waits(folder))


@pipeline
def chatter(name: str = "world"):
    """A step that prints on stdout and stderr, then one that prints and fails (for engines' task logs)."""
    explode(greet(name))
