"""Process control for steps: cancellation (signals, the local runner), and children that die with their parent.

A step that runs in a child process is started in a session of its own (so the step's own subprocesses can be
killed with it, as one process group) and told its parent's pid through ``PIPECAST_PARENT_PID``. At start the
child asks Linux to kill it when that parent ends (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) and checks the parent
is still there; before it records a result it checks again, so a step whose run was abandoned (``kill -9`` of
``pipecast run``) never writes a result that a resumed run could trust.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

PARENT_PID_ENV = "PIPECAST_PARENT_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_expected_parent: int | None = None


class StepCancelled(BaseException):  # a control-flow signal, like KeyboardInterrupt
    """The step was stopped from outside: SIGTERM or Ctrl-C, the run was cancelled, or its parent ended.

    A ``BaseException`` so that a step's ``except Exception`` cannot swallow it.
    """

    def __init__(self, reason: str, signum: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal."""
        return 128 + (self.signum or signal.SIGTERM)


class Cancellation:
    """A request to stop, made by a signal or by the local runner, and the child processes it must kill.

    In a signal handler only :meth:`on_signal` runs: it takes no lock (the interrupted code may hold one) and
    raises :class:`StepCancelled` into the main thread when that thread waits inside :meth:`interruptible`.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.signum: int | None = None
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen[Any]] = set()
        self._interruptible = 0  # depth of interruptible() on the main thread

    @property
    def requested(self) -> bool:
        """Whether a stop was requested."""
        return self.reason is not None

    def install(self, signums: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Handle ``signums`` with :meth:`on_signal`.

        Installing the handler explicitly is also what makes SIGTERM work when the runtime is PID 1 in a
        container: the kernel drops signals to PID 1 that have no handler, and Python installs none for SIGTERM.
        """
        for signum in signums:
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, frame: Any) -> None:
        """The signal handler: note the stop; raise StepCancelled when inside :meth:`interruptible`."""
        if self.reason is None:
            self.reason = f"received {signal.Signals(signum).name}"
            self.signum = signum
        if self._interruptible:
            raise StepCancelled(self.reason, self.signum)

    def cancel(self, reason: str) -> None:
        """Request a stop from ordinary code (never from a signal handler): kill every tracked child."""
        if self.reason is None:
            self.reason = reason
        self._event.set()
        with self._lock:
            children = list(self._children)
        for child in children:
            kill_group(child)

    def check(self) -> None:
        """Raise StepCancelled if a stop was requested."""
        if self.reason is not None:
            raise StepCancelled(self.reason, self.signum)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """While inside, a handled signal raises StepCancelled on the main thread (other threads: no effect)."""
        main = threading.current_thread() is threading.main_thread()
        if main:
            self._interruptible += 1
        try:
            self.check()
            yield
        finally:
            if main:
                self._interruptible -= 1

    def sleep(self, seconds: float) -> None:
        """Sleep, ending early with StepCancelled when a stop is requested."""
        with self.interruptible():
            self._event.wait(seconds)
        self.check()

    def track(self, child: subprocess.Popen[Any]) -> None:
        """Kill ``child`` on a stop from now on (at once if one was already requested)."""
        with self._lock:
            self._children.add(child)
        if self.reason is not None:  # cancelled while the child was starting
            kill_group(child)

    def untrack(self, child: subprocess.Popen[Any]) -> None:
        """Stop tracking ``child``, which has ended."""
        with self._lock:
            self._children.discard(child)


def kill_group(child: subprocess.Popen[Any]) -> None:
    """SIGKILL the child's whole process group (it leads one: see :func:`start_child`)."""
    try:
        if sys.platform == "win32":
            child.kill()
        else:
            os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone (a reaped group leader with no members left)


def start_child(command: Sequence[str], env: Mapping[str, str], *, stdout: int | IO[Any] | None = None,
                stderr: int | IO[Any] | None = None) -> subprocess.Popen[bytes]:
    """Start a step's child process in a session (and process group) of its own, bound to this process."""
    return subprocess.Popen(list(command), env={**env, PARENT_PID_ENV: str(os.getpid())}, stdout=stdout,
                            stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=sys.platform != "win32")


def die_with_parent() -> None:
    """In a step's child process: die when the parent ends, and refuse to start if it has already ended.

    The parent-death signal is set here rather than in ``preexec_fn`` because the local runner starts children
    from threads, where ``preexec_fn`` is unsafe. It is delivered when the parent *thread* that started the
    child ends; the runner's thread waits for the child, so that thread ends only with the process.
    """
    global _expected_parent
    given = os.environ.pop(PARENT_PID_ENV, None)  # the step's own subprocesses have another parent
    if not given:
        return
    _expected_parent = int(given)
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if not parent_alive():
        raise StepCancelled("the process that started this step has ended")


def parent_alive() -> bool:
    """False once the process that started this one is gone (this process was re-parented)."""
    return _expected_parent is None or os.getppid() == _expected_parent
