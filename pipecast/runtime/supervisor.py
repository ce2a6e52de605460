"""A step with a timeout: every try runs in a child process that is killed, with its process group, at the deadline.

An in-process alarm cannot stop a step that is inside a long C call (a regular expression, ``sum(range(10**10))``)
and is swallowed by a step that catches ``Exception``; killing a process cannot be ignored. The supervisor does
the retries and the timeout and records timeouts and cancellations in ``meta.json``; the child
(``python -m pipecast.runtime run ... --try-number N``) runs one try through
:func:`~pipecast.runtime.executor.execute_step` and records the step's own success or failure. Used by
``python -m pipecast.runtime run ... --timeout S`` (every engine without a native timeout) and by the local
runner, so both stop a step the same way.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from pipecast.errors import ArtifactError, PipecastError, StepFailedError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.command import MODULE, TryOptions, try_args
from pipecast.runtime.executor import StepInvocation, StepResult, check_invocation, now
from pipecast.runtime.process import Cancellation, StepCancelled, kill_group, start_child

# Exit statuses of a child try (see pipecast.runtime.__main__).
_STEP_FAILED = 1
_SETUP_ERROR = 2

# How long to wait for a child's output pipes to close after it ended: a process the step started in a
# session of its own may hold them; its output is then cut, never the run.
_PIPE_DRAIN_SECONDS = 5.0

Forward = Callable[[str, str], None]  # (stream name "stdout"|"stderr", one line without its newline)


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: str  # succeeded | failed | timeout | setup | cancelled
    detail: str = ""
    meta: Mapping[str, Any] | None = None


def supervise(inv: StepInvocation, *, cancellation: Cancellation, on_attempt: Callable[[int], None] | None = None,
              forward: Forward | None = None, env: Mapping[str, str] | None = None) -> StepResult:
    """Run ``inv`` try by try in child processes, each killed at ``inv.timeout_seconds``.

    Args:
        inv: The step; its retry policy and timeout apply per try.
        cancellation: Stops the step (the child is killed) and records it as cancelled.
        on_attempt: Called with the number of each try before it starts.
        forward: Receives the child's output line by line; None lets the child write to this process's
            stdout and stderr directly.
        env: The child's environment (default: this process's).
    """
    check_invocation(inv)
    store = ArtifactStore(inv.artifact_root)
    meta_path = f"{store.step_dir(inv.pipeline, inv.run_id, inv.step)}/meta.json"
    base_meta = {"pipeline": inv.pipeline, "step": inv.step, "run_id": inv.run_id, "function": inv.function}
    outcome = _Outcome("failed")
    attempt = 0
    for attempt in range(1, inv.retry.attempts + 1):
        if on_attempt:
            on_attempt(attempt)
        started = now()
        outcome = _one_try(inv, attempt, cancellation, forward, env, meta_path, store)
        if outcome.status == "succeeded":
            meta = dict(outcome.meta or {})
            return StepResult(inv.step, "succeeded", bool(meta.get("cached")), attempt, meta)
        if outcome.status == "setup":
            raise PipecastError(outcome.detail)
        if outcome.status in ("timeout", "cancelled") or outcome.meta is None:
            store.write_json(meta_path, {**base_meta, "status": "failed" if outcome.status != "cancelled"
                                         else "cancelled", "reason": outcome.status, "attempt": attempt,
                                         "started_at": started, "ended_at": now(), "error": outcome.detail})
        if outcome.status == "cancelled":
            raise StepCancelled(outcome.detail, cancellation.signum)
        if attempt < inv.retry.attempts:
            try:
                cancellation.sleep(inv.retry.delay_before(attempt + 1))
            except StepCancelled as stop:
                store.write_json(meta_path, {**base_meta, "status": "cancelled", "reason": "cancelled",
                                             "attempt": attempt, "ended_at": now(), "error": stop.reason})
                raise
    plural = "y" if attempt == 1 else "ies"
    raise StepFailedError(f"step {inv.step!r} failed after {attempt} tr{plural}: {outcome.detail}")


def _one_try(inv: StepInvocation, attempt: int, cancellation: Cancellation, forward: Forward | None,
             env: Mapping[str, str] | None, meta_path: str, store: ArtifactStore) -> _Outcome:
    try_id = secrets.token_hex(8)
    command = [sys.executable, "-m", MODULE, *try_args(inv, TryOptions(attempt, try_id, quiet=forward is not None))]
    pipe = subprocess.PIPE if forward is not None else None
    child = start_child(command, os.environ if env is None else env, stdout=pipe, stderr=pipe)
    cancellation.track(child)
    last_error: list[str] = []
    readers = [] if forward is None else [
        _reader(child.stdout, "stdout", forward, last_error), _reader(child.stderr, "stderr", forward, last_error)]
    timed_out = False
    try:
        with cancellation.interruptible():
            child.wait(timeout=inv.timeout_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    except StepCancelled:
        pass  # cancellation.requested is set: handled below
    finally:
        if child.returncode is None:
            kill_group(child)
            child.wait()
        cancellation.untrack(child)
        for reader in readers:
            reader.join(_PIPE_DRAIN_SECONDS)
    code = child.returncode
    if code == 0:
        return _recorded(store, meta_path, try_id)
    if cancellation.requested:
        return _Outcome("cancelled", cancellation.reason or "cancelled")
    if timed_out:
        return _Outcome("timeout", f"timed out after {inv.timeout_seconds:g}s (try {attempt} of {inv.retry.attempts}); "
                                   "the step's process group was killed")
    if code == _SETUP_ERROR:
        return _Outcome("setup", (last_error or ["the step's process could not run the step (exit status 2; its "
                                                 "error is printed above)"])[-1].removeprefix("pipecast: error: "))
    recorded = _read_meta(store, meta_path)
    if code == _STEP_FAILED and recorded and recorded.get("try_id") == try_id:
        return _Outcome("failed", str(recorded.get("error", "")), recorded)
    return _Outcome("failed", _exit_text(code))


def _recorded(store: ArtifactStore, meta_path: str, try_id: str) -> _Outcome:
    meta = _read_meta(store, meta_path)
    if meta and meta.get("try_id") == try_id and meta.get("status") == "succeeded":
        return _Outcome("succeeded", meta=meta)
    return _Outcome("failed", "the step's process exited with status 0 without recording a result "
                              "(did the step call os._exit?)")


def _read_meta(store: ArtifactStore, path: str) -> dict[str, Any] | None:
    try:
        meta = store.read_json(path)
    except (ArtifactError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the step's process was killed by {name}{hint}"
    return f"the step's process exited with status {code}"


def _reader(pipe: IO[bytes] | None, name: str, forward: Forward, last_error: list[str]) -> threading.Thread:
    def pump() -> None:
        assert pipe is not None
        with pipe:
            for raw in pipe:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if name == "stderr" and line.startswith("pipecast: error: "):
                    last_error.append(line)
                forward(name, line)

    thread = threading.Thread(target=pump, name=f"pipecast-{name}", daemon=True)
    thread.start()
    return thread
