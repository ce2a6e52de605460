"""Step output in local runs: every line a step prints is prefixed with its step, ``[step_name] text``.

Parallel steps share one stdout and stderr; without a prefix their text interleaves character by character.
Engines keep one log per task; locally each *line* is kept whole and labelled instead. Steps that run in a
thread of the runner write through :func:`prefixed_step_output`'s thread-aware streams; steps that run in a
child process are piped and forwarded line by line with :func:`line_forwarder`. Output a step writes to the
file descriptors directly (``os.write(1, ...)``, a subprocess it starts without a pipe) bypasses both.
Each line is also written, unprefixed, to the step's log file when one is given (``pipecast runs logs``).
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_current = threading.local()  # .step: the step the current thread runs; .log: its log file, if any
_install_lock = threading.Lock()
_installed: list[_StepLines] = []  # [stdout proxy, stderr proxy] while at least one run is active
_runs_active = 0


class _StepLines(io.TextIOBase):
    """A text stream that prefixes complete lines written by a step's thread; other threads pass through."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self._lock = threading.Lock()
        self._partial: dict[int, str] = {}  # thread ident -> text after its last newline

    def write(self, text: str) -> int:
        step = getattr(_current, "step", None)
        if step is None:
            return self.target.write(text)
        ident = threading.get_ident()
        pending = self._partial.pop(ident, "") + text
        *lines, rest = pending.split("\n")
        if rest:
            self._partial[ident] = rest
        if lines:
            self._emit("".join(f"[{step}] {line}\n" for line in lines))
            _to_log(getattr(_current, "log", None), lines)
        return len(text)

    def end_step(self, step: str) -> None:
        """Write what the current thread left without a newline."""
        rest = self._partial.pop(threading.get_ident(), "")
        if rest:
            self._emit(f"[{step}] {rest}\n")
            _to_log(getattr(_current, "log", None), [rest])

    def write_line(self, text: str) -> None:
        """Write one whole line (already prefixed) from any thread."""
        self._emit(text + "\n")

    def _emit(self, block: str) -> None:
        with self._lock:  # one write per block: lines of different steps never mix
            self.target.write(block)
            self.target.flush()

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # TextIOBase declares a plain attribute; this is the target's
        return getattr(self.target, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


@contextmanager
def prefixed_step_output() -> Iterator[None]:
    """Install the prefixing streams as ``sys.stdout``/``sys.stderr`` for the duration of a run.

    Install it after a live progress view has redirected the streams (lines then go above the view) and
    leave it before the view stops. Runs in several threads at once share one installation.
    """
    global _runs_active
    with _install_lock:
        if _runs_active == 0:
            _installed[:] = [_StepLines(sys.stdout), _StepLines(sys.stderr)]
            sys.stdout, sys.stderr = _installed[0], _installed[1]
        _runs_active += 1
    try:
        yield
    finally:
        with _install_lock:
            _runs_active -= 1
            if _runs_active == 0:
                out, err = _installed
                if sys.stdout is out:
                    sys.stdout = out.target
                if sys.stderr is err:
                    sys.stderr = err.target
                _installed.clear()


def _to_log(log: TextIO | None, lines: list[str]) -> None:
    """Append whole lines to a step's log file (flushed, so ``pipecast runs logs --follow`` sees them)."""
    if log is None:
        return
    log.write("".join(f"{line}\n" for line in lines))
    log.flush()


@contextmanager
def step_output(step: str, log: TextIO | None = None) -> Iterator[None]:
    """Label what the current thread prints as ``step``'s output (and copy it to ``log``)."""
    _current.step = step
    _current.log = log
    try:
        yield
    finally:
        for stream in list(_installed):
            stream.end_step(step)
        _current.step = None
        _current.log = None


def line_forwarder(step: str, log: TextIO | None = None) -> Callable[[str, str], None]:
    """Forward a child process's lines to this process's stdout/stderr, prefixed with ``step`` (and to ``log``)."""
    lock = threading.Lock()  # stdout and stderr are read by two threads

    def forward(stream: str, line: str) -> None:
        with lock:
            _to_log(log, [line])
        target = sys.stdout if stream == "stdout" else sys.stderr
        text = f"[{step}] {line}"
        if isinstance(target, _StepLines):
            target.write_line(text)
        else:
            target.write(text + "\n")
            target.flush()

    return forward
