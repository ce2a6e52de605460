"""``pipecast runs logs``: a run's step logs, whatever engine ran it, and what every log reader shares.

A target's :meth:`~pipecast.targets.base.Target.logs` yields a run's log as lines (no trailing newline): one
step's with ``step=``, else every step's in the order they ran, each after a :func:`header`. With ``follow``
it keeps reading until the run (or the step) ends, bounded by ``timeout`` seconds. The local target reads the
files the local runner writes (:func:`local_logs`); the others ask their engine (``pipecast/targets/*_logs.py``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipecast.compiler.naming import name_problem
from pipecast.errors import SubmitError

FOLLOW_TIMEOUT = 3600.0  # seconds --follow keeps reading at most, unless told otherwise
POLL_SECONDS = 1.0  # between two reads of a log that is still growing
FINISHED_STEP = ("done", "cached", "failed", "skipped", "cancelled")


def header(step: str, note: str = "") -> str:
    """The line printed before a step's log when several steps' logs follow each other."""
    return f"==> {step}{f' ({note})' if note else ''} <=="


def check_step_name(step: str | None) -> None:
    """Refuse a ``--step`` that cannot be a pipecast step name (it is mapped to an engine name, never sent raw).

    A map item's instance (``train[2]``, ``train[0][1]``) is the step's name followed by item numbers.
    """
    if step is not None:
        problem = name_problem("step", re.sub(r"(\[\d+\])+$", "", step))
        if problem:
            raise SubmitError(problem)


def unknown_step(step: str, run_id: str, known: Iterable[str], what: str = "steps") -> SubmitError:
    """The error for a ``--step`` the run does not have, listing the ones it has."""
    names = sorted(set(known))
    listed = ", ".join(map(repr, names)) if names else "none yet"
    return SubmitError(f"run {run_id!r} has no step {step!r}; its {what}: {listed} (pass one of them to --step)")


class Deadline:
    """The end of a bounded ``--follow``: :meth:`expired` after ``timeout`` seconds."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = FOLLOW_TIMEOUT if timeout is None else timeout
        self.end = time.monotonic() + self.timeout

    def expired(self) -> bool:
        """Whether the time is up."""
        return time.monotonic() >= self.end

    def sleep(self, seconds: float = POLL_SECONDS) -> None:
        """Wait ``seconds``, never past the deadline."""
        time.sleep(max(0.0, min(seconds, self.end - time.monotonic())))

    def message(self, what: str) -> str:
        """The last line of a follow that ran out of time."""
        return f"pipecast: stopped following {what} after {self.timeout:g}s (--timeout); it has not ended yet"


def lines_of(text: str | bytes) -> list[str]:
    """The lines of a log text (bytes decoded as UTF-8, undecodable bytes replaced), without newlines."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text.splitlines()


class LineBuffer:
    """Cuts a stream of text chunks into whole lines (a line split across two chunks comes out once, whole)."""

    def __init__(self) -> None:
        self.partial = ""

    def feed(self, chunk: str | bytes) -> list[str]:
        """The whole lines that ``chunk`` completes."""
        if isinstance(chunk, bytes):
            chunk = chunk.decode("utf-8", errors="replace")
        *lines, self.partial = (self.partial + chunk).split("\n")
        return [line.removesuffix("\r") for line in lines]

    def rest(self) -> list[str]:
        """What is left without a newline at the end of the stream."""
        rest, self.partial = self.partial, ""
        return [rest] if rest else []


def tail_file(path: str, ended: Callable[[], bool], deadline: Deadline | None, what: str,
              ) -> Generator[str, None, bool]:
    """The lines of ``path``; with a ``deadline``, keep reading as it grows until ``ended()`` (then read the rest).

    Returns whether it stopped because the deadline passed (its last line, then, says so about ``what``).
    """
    buffer = LineBuffer()
    position = 0
    while True:
        finished = deadline is None or ended()  # asked before reading: what was written before it ended is read
        if os.path.exists(path):
            with open(path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read()
            position += len(chunk)
            yield from buffer.feed(chunk)
        if finished:
            yield from buffer.rest()
            return False
        assert deadline is not None
        if deadline.expired():
            yield from buffer.rest()
            yield deadline.message(what)
            return True
        deadline.sleep()


def local_logs(record: Mapping[str, Any], step: str | None, follow: bool, timeout: float | None,
               read: Callable[[str], Mapping[str, Any]]) -> Iterator[str]:
    """A local run's step logs, from the files the local runner wrote (``read(run_id)`` gives its record now)."""
    check_step_name(step)
    run_id = str(record["id"])
    log_dir = (record.get("metadata") or {}).get("log_dir")
    if not log_dir:
        raise SubmitError(f"run {run_id!r} kept no step logs (it ran with a pipecast older than `pipecast runs "
                          "logs`); its output went to the terminal that ran it")
    deadline = Deadline(timeout) if follow else None

    def states() -> dict[str, str]:
        return {s["step"]: s["status"] for s in read(run_id)["steps"]}

    def run_over() -> bool:
        return bool(read(run_id)["status"] != "running")

    def step_over(name: str) -> Callable[[], bool]:
        return lambda: run_over() or states().get(name) in FINISHED_STEP

    if step is not None:
        if step not in states() and not os.path.exists(os.path.join(log_dir, f"{step}.log")):
            if not follow or run_over():
                raise unknown_step(step, run_id, states())
        yield from tail_file(os.path.join(log_dir, f"{step}.log"), step_over(step), deadline, f"step {step!r}")
        return
    shown: set[str] = set()
    while True:
        over = run_over()
        pending = [s for s in _in_order(read(run_id)["steps"]) if s["step"] not in shown]
        for row in pending:
            name = str(row["step"])
            shown.add(name)
            path = os.path.join(log_dir, f"{name}.log")
            if row["status"] == "skipped" or (not os.path.exists(path) and row["status"] in FINISHED_STEP):
                yield header(name, f"{row['status']}: no log")
                continue
            yield header(name)
            if (yield from tail_file(path, step_over(name), deadline, f"run {run_id!r}")):
                return
        if deadline is None or over:
            return
        if deadline.expired():
            yield deadline.message(f"run {run_id!r}")
            return
        if not pending:
            deadline.sleep()


@dataclass(frozen=True)
class StepLog:
    """One log an engine keeps for a run: one try of one step, listed in the order the engine started them.

    Attributes:
        key: What tells this log from every other of the run (a pod's name, a task try, a job id).
        step: The step's name as the engine spells it (shown in the header, matched against ``--step``).
        read: Its lines: what is there now (``None``), or, given a deadline, followed until it ends.
        note: Shown in the header beside the step (a try number, a state).
    """

    key: str
    step: str
    read: Callable[[Deadline | None], Iterable[str]]
    note: str = ""


def engine_logs(run_id: str, listing: Callable[[], Sequence[StepLog]], run_over: Callable[[], bool],
                step: str | None, follow: bool, timeout: float | None) -> Iterator[str]:
    """A run's logs from an engine: ``step``'s (its engine name), else each step's in order after a header.

    ``listing()`` gives the run's logs so far; with ``follow`` it is asked again until ``run_over()`` and
    every log listed has been read to its end, or the deadline passes.
    """
    deadline = Deadline(timeout) if follow else None
    shown: set[str] = set()
    first = True
    while True:
        over = deadline is None or run_over()  # asked first: logs listed after it include every last one
        every = list(listing())
        if step is not None and first and not follow and every and not any(log.step == step for log in every):
            raise unknown_step(step, run_id, (log.step for log in every))
        chosen = [log for log in every if step is None or log.step == step]
        if step is not None and first and not follow and not chosen:
            raise SubmitError(f"run {run_id!r} has no log for step {step!r} yet (no step has started); "
                              "pass --follow to wait for it")
        first = False
        tries = {log.step: sum(1 for other in chosen if other.step == log.step) for log in chosen}
        fresh = [log for log in chosen if log.key not in shown]
        for log in fresh:
            shown.add(log.key)
            if step is None or tries[log.step] > 1:
                yield header(log.step, log.note)
            yield from log.read(deadline)
            if deadline is not None and deadline.expired():
                yield deadline.message(f"run {run_id!r}")
                return
        if over:
            if step is not None and not shown:
                raise unknown_step(step, run_id, (log.step for log in every))
            return
        assert deadline is not None
        if deadline.expired():
            yield deadline.message(f"run {run_id!r}")
            return
        if not fresh:
            deadline.sleep()


def _in_order(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Steps in the order they started (steps that never started last, by name)."""
    return sorted(rows, key=lambda r: (r.get("started_at") is None, r.get("started_at") or "", r["step"]))


def no_logs(target: str, why: str) -> SubmitError:
    """The error of a target whose runs' logs pipecast cannot read: which target, why, where to read them."""
    return SubmitError(f"target {target!r} cannot fetch logs: {why}")


def run_logs(name_or_id: str, config: Mapping[str, Any], step: str | None = None, follow: bool = False,
             timeout: float | None = None, store: Any = None) -> Iterator[str]:
    """The log lines of a recorded run (by id, or the newest of a pipeline), from whatever engine ran it."""
    from pipecast.runs.store import RunStore
    from pipecast.targets.registry import get_target

    store = store or RunStore.default()
    store.reap_stale_local_runs()  # a local run whose process died is over: --follow must not wait for it
    record = store.get(name_or_id)
    if record["target"] == "local":
        if config:
            raise SubmitError("a local run's logs are read from this machine: -c/--config does not apply")
        return local_logs(record, step, follow, timeout, store.get)
    check_step_name(step)
    if record["target"] == "local_docker":  # run here by `pipecast run`, not submitted: nothing to reconnect to
        from pipecast.targets.compose_logs import local_docker_logs

        return local_docker_logs(record, step, follow, timeout, store.get)
    return get_target(str(record["target"])).logs(record, config, step, follow, timeout)
