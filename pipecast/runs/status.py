"""What a target hands back for a run: its status vocabulary and :class:`EngineRun`.

A target's submit returns an :class:`EngineRun` (the engine's id, the UI URL, metadata, and how to ask the
engine for the status or cancel). It never writes the run store: :class:`pipecast.runs.tracking.RunHandle`
wraps it and records what changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from typing import Any


class RunStatus(str, Enum):
    """A run's state, the same for every engine."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        """Whether the run has ended (it will not change any more)."""
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class EngineRun:
    """One run as the engine knows it. Subclasses implement :meth:`fetch_status` and, if they can, :meth:`cancel`.

    Attributes:
        run_id: pipecast's id of the run (the run store's key).
        target: The target's name.
        engine_run_id: The engine's own id of the run.
        url: The run's page in the engine's UI, if it has one.
        metadata: Extra facts worth keeping in the run's record (DAG id, namespace, ...).
        detail: A short explanation of the last status (the failed step...), set by :meth:`fetch_status`.
        poll_interval: Seconds between two status requests while waiting.
    """

    poll_interval: float = 2.0

    def __init__(self, *, run_id: str, target: str, engine_run_id: str, url: str | None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.run_id = run_id
        self.target = target
        self.engine_run_id = engine_run_id
        self.url = url
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.detail = ""

    def fetch_status(self) -> RunStatus:
        """Ask the engine for the run's status now (and set :attr:`detail`)."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Ask the engine to stop the run."""
        from pipecast.errors import SubmitError

        raise SubmitError(f"target {self.target!r} cannot cancel runs")

    def logs(self, step: str | None = None, follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """The run's log lines: ``step``'s, else every step's in order, each after a header line.

        With ``follow``, keep reading until the run (or the step) ends, at most ``timeout`` seconds
        (:data:`pipecast.runs.logs.FOLLOW_TIMEOUT` by default). See :mod:`pipecast.runs.logs`.
        """
        from pipecast.errors import SubmitError

        raise SubmitError(f"target {self.target!r} cannot fetch logs: its run handle does not read the engine's "
                          f"logs; read them in the engine's UI{f' ({self.url})' if self.url else ''}")

    def __repr__(self) -> str:
        from pipecast.redaction import redact_credentials

        return redact_credentials(f"<{self.target} run {self.engine_run_id}: {self.url or 'no URL'}>")
