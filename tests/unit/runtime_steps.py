"""Steps and pipelines for the runtime's failure, timeout, signal and output tests (importable by module path).

Steps that a test must catch in the act announce themselves by writing a file (``announce``) and then wait for
a gate file, always with a bound, so a test waits on events and never on a guessed delay.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from pipecast import pipeline, step

GATE_SECONDS = 120.0  # how long a gated step waits before giving up (far beyond any test's own bound)
BARRIER = threading.Barrier(2, timeout=60)


def announce(folder: str, name: str) -> None:
    """Write ``folder/name`` atomically with this process's pid: the test's signal that the step is running."""
    temporary = Path(folder, f".{name}.tmp")
    temporary.write_text(str(os.getpid()))
    temporary.replace(Path(folder, name))


def wait_for_gate(folder: str) -> None:
    deadline = time.monotonic() + GATE_SECONDS
    while not Path(folder, "gate").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("gate never opened")
        time.sleep(0.01)


@step
def numbers(n: int) -> list:
    return list(range(n))


@step
def count(values: list) -> int:
    return len(values)


@pipeline
def counted(n: int = 10):
    count(numbers(n))


@step
def quits(code: int) -> int:
    sys.exit(code)


@step
def interrupts() -> int:
    raise KeyboardInterrupt


@step
def after(value: int) -> int:
    return value + 1


@pipeline
def exits(code: int = 1):
    after(quits(code))


@pipeline
def interrupted():
    after(interrupts())


@step(timeout="2s")
def busy_in_c(n: int) -> int:
    """A C loop: no Python bytecode runs until ``sum`` returns, so an in-process alarm cannot stop it."""
    return sum(range(n))


@pipeline
def busy(n: int = 10**11):
    busy_in_c(n)


@step(timeout="2s")
def swallows(folder: str) -> str:
    """Catches Exception around a long wait: an alarm raised as an exception would be swallowed."""
    try:
        announce(folder, "started")
        wait_for_gate(folder)
    except Exception:
        pass
    return "survived"


@pipeline
def swallowing(folder: str):
    swallows(folder)


@step
def runs_until_stopped(folder: str) -> str:
    """Announces itself, then waits for the gate (the test stops it first)."""
    announce(folder, "started")
    wait_for_gate(folder)
    return "finished"


@step(timeout="10m")
def runs_until_stopped_in_a_child(folder: str) -> str:
    announce(folder, "started")
    wait_for_gate(folder)
    return "finished"


@pipeline
def abandoned(folder: str):
    runs_until_stopped_in_a_child(folder)


@step
def hello() -> str:
    """Writes half a line, waits until the other step has too, then ends the line."""
    sys.stdout.write("Hello ")
    BARRIER.wait()
    sys.stdout.write("World!\n")
    return "hello"


@step
def complains() -> str:
    sys.stdout.write("Task ")
    BARRIER.wait()
    sys.stdout.write("failed.\n")
    print("no newline at the end", end="", file=sys.stderr)
    return "complains"


@step(timeout="5m")
def prints_in_a_child() -> str:
    print("from the child")
    print("an error line", file=sys.stderr)
    return "child"


@pipeline
def chatty():
    hello()
    complains()
    prints_in_a_child()


@step(timeout="5m")
def timed_add(a: int, b: int) -> int:
    return a + b


@pipeline
def timed(a: int = 1):
    timed_add(timed_add(a, 2), 3)


@step(timeout="2s")
def spawns_and_waits(folder: str) -> str:
    """Starts a subprocess of its own, then waits: killing the step must kill that subprocess too."""
    import subprocess

    helper = subprocess.Popen(["sleep", "600"])
    Path(folder, "helper").write_text(str(helper.pid))
    announce(folder, "started")
    wait_for_gate(folder)
    return "finished"


@step
def fails_after_announcing(folder: str) -> int:
    announce(folder, "started")
    raise RuntimeError("fails every time")
