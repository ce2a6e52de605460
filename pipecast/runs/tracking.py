"""The run handle users get from ``submit``, and reconnecting to a recorded run (``pipecast runs wait|cancel``).

:class:`RunHandle` wraps the target's :class:`~pipecast.runs.status.EngineRun` and is the one place that
records what happens to a submitted run: a status that changed, its detail, a cancel. Targets never write the
run store themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from pipecast.errors import SubmitError
from pipecast.redaction import redact_credentials
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.runs.store import RunStore


class RunHandle:
    """One submitted run: its ids, UI URL, and ``status()`` / ``wait()`` / ``cancel()`` on every engine.

    Attributes:
        run_id: pipecast's id of the run (also :attr:`id`).
        engine: The target's view of the run.
    """

    def __init__(self, engine: EngineRun, store: RunStore | None = None, *,
                 recorded: tuple[str, str | None] | None = None) -> None:
        self.engine = engine
        self.run_id = engine.run_id
        self._store = store
        self._recorded: tuple[RunStatus, str] | None = None
        # The engine id and URL the record holds; one learnt later (a launch whose answer came late) is recorded.
        self._identity = recorded if recorded is not None else self._engine_identity()

    @property
    def id(self) -> str:
        """The id pipecast gave the run."""
        return self.run_id

    @property
    def target(self) -> str:
        """The target the run was submitted to."""
        return self.engine.target

    @property
    def engine_run_id(self) -> str:
        """The engine's own id of the run."""
        return self.engine.engine_run_id

    @property
    def url(self) -> str | None:
        """The run's page in the engine's UI."""
        return self.engine.url

    @property
    def detail(self) -> str:
        """A short explanation of the last status (the failed step, a cancel note...)."""
        return self.engine.detail

    @property
    def poll_interval(self) -> float:
        """Seconds between two status requests while waiting."""
        return self.engine.poll_interval

    @poll_interval.setter
    def poll_interval(self, seconds: float) -> None:
        self.engine.poll_interval = seconds

    @property
    def store(self) -> RunStore:
        """The run store this handle was given, else the default one."""
        return self._store or RunStore.default()

    def status(self) -> RunStatus:
        """Ask the engine for the run's status; a change is recorded in the run store."""
        current = self.engine.fetch_status()
        self.note_identity()
        observed = (current, self.engine.detail)
        if observed != self._recorded:
            self.store.update_status(self.run_id, current.value, detail=self.engine.detail or None)
            self._recorded = observed
        return current

    def note_identity(self) -> None:
        """Record the engine's run id and URL (and the run's metadata) if they changed since last recorded."""
        identity = self._engine_identity()
        if identity != self._identity:
            self.store.note_run(self.run_id, engine_run_id=identity[0] or None, url=identity[1],
                                metadata=self.engine.metadata)
            self._identity = identity

    def _engine_identity(self) -> tuple[str, str | None]:
        return self.engine.engine_run_id or "", self.engine.url or None

    def wait(self, timeout: float | None = 3600.0) -> RunStatus:
        """Poll until the run finishes or ``timeout`` seconds pass (a SubmitError then)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.status()
            if current.finished:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise SubmitError(f"run {self.engine_run_id!r} on {self.target} still {current.value} "
                                  f"after {timeout:g}s")
            time.sleep(self.poll_interval)

    def cancel(self) -> None:
        """Ask the engine to stop the run, and record it as cancelled.

        A run whose exit handlers and hooks run on after the cancel (hyperai) is recorded running until they end.
        """
        self.engine.cancel()
        self.note_identity()
        if getattr(self.engine, "still_running_after_cancel", False):
            self.store.update_status(self.run_id, RunStatus.RUNNING.value, detail=self.engine.detail)
            self._recorded = (RunStatus.RUNNING, self.engine.detail)
            return
        detail = self.engine.detail or "cancelled by pipecast"
        self.store.update_status(self.run_id, RunStatus.CANCELLED.value, detail=detail)
        self._recorded = (RunStatus.CANCELLED, self.engine.detail)

    def logs(self, step: str | None = None, follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """The run's log lines, ``step``'s or every step's (see :meth:`EngineRun.logs`)."""
        return self.engine.logs(step, follow, timeout)

    def __getattr__(self, name: str) -> Any:
        # What only one engine has (Azure ML's log stream, GitHub's repository...) is the engine run's own.
        if name.startswith("_") or name == "engine":
            raise AttributeError(name)
        return getattr(self.engine, name)

    def __repr__(self) -> str:
        return redact_credentials(f"<run {self.run_id} on {self.target}: {self.url or self.engine_run_id}>")


def track(name_or_id: str, config: Mapping[str, Any], store: RunStore | None = None) -> RunHandle:
    """The handle of a submitted run (by id or pipeline name), its target reconnecting with ``config``."""
    from pipecast.targets.registry import get_target

    store = store or RunStore.default()
    record = store.get(name_or_id)
    if record["target"] == "local":
        raise SubmitError(f"run {record['id']!r} ran locally and is {record['status']}; nothing to wait for")
    target = get_target(record["target"])
    handle = RunHandle(target.reconnect(record, config), store,
                       recorded=(str(record.get("engine_run_id") or ""), record.get("url") or None))
    handle.note_identity()  # e.g. a run found by its correlation id, whose submit never learnt the engine's id
    return handle



def record_stack(run_id: str, stack: str, store: RunStore | None = None) -> None:
    """Record that run ``run_id`` ran on stack ``stack`` (``Client().list_pipeline_runs(stack=...)`` finds it)."""
    (store or RunStore.default()).note_run(run_id, metadata={"stack": stack})
