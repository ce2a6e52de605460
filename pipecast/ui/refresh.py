"""Refreshing unfinished runs' status from their engines, in the background, so no page waits on an engine.

A page asks :meth:`Refresher.request` for the runs it shows and answers at once from the run store. Each
unfinished submitted run is asked about at most once every ``interval`` seconds, by a small pool of threads,
through the same run handle as ``pipecast runs wait`` (:func:`pipecast.runs.tracking.track`), which records
a change in the run store; the next page load shows it. A run on a stack reconnects with the stack's
connection settings; others with the ``-c`` settings ``pipecast ui`` was given. What went wrong is kept per
run and shown on its page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipecast.redaction import redact_credentials
from pipecast.runs.store import RunStore

LOCAL_TARGETS = ("local", "local_docker")  # recorded by the process that ran them: nothing to ask


def _config_for(record: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    stack = (record.get("metadata") or {}).get("stack")
    if isinstance(stack, str) and stack:
        from pipecast.stacks.files import get_stack
        from pipecast.stacks.running import stack_config

        found = get_stack(stack)
        if found.target == record.get("target"):
            return stack_config(found)
    return dict(config)


def ask_engine(record: Mapping[str, Any], config: Mapping[str, Any], store: RunStore) -> str:
    """Ask the run's engine for its status now (recorded in ``store`` when it changed); return it."""
    from pipecast.runs.tracking import track

    return track(str(record["id"]), _config_for(record, config), store).status().value


class Refresher:
    """Background status refresh of unfinished submitted runs, at most ``workers`` engine requests at once."""

    def __init__(self, store: RunStore, config: Mapping[str, Any] | None = None, *, interval: float = 10.0,
                 workers: int = 4, ask: Callable[[Mapping[str, Any], Mapping[str, Any], RunStore], str] = ask_engine,
                 ) -> None:
        self.store = store
        self.config = dict(config or {})
        self.interval = interval
        self.ask = ask
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pipecast-ui-refresh")
        self.lock = threading.Lock()
        self.in_flight: set[str] = set()
        self.last_asked: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.done = threading.Condition(self.lock)

    def request(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Queue a refresh of each unfinished submitted run not asked about lately; never waits."""
        now = time.monotonic()
        for record in records:
            run_id = str(record["id"])
            if record.get("target") in LOCAL_TARGETS or record.get("status") in ("succeeded", "failed", "cancelled"):
                continue
            with self.lock:
                if run_id in self.in_flight or now - self.last_asked.get(run_id, -1e9) < self.interval:
                    continue
                self.in_flight.add(run_id)
                self.last_asked[run_id] = now
            self.pool.submit(self._refresh, dict(record))

    def _refresh(self, record: dict[str, Any]) -> None:
        run_id = str(record["id"])
        try:
            self.ask(record, self.config, self.store)
            error = None
        except Exception as err:  # an engine down, a stack gone: shown on the run's page, the server goes on
            error = redact_credentials(f"{type(err).__name__}: {err}")
        with self.lock:
            if error is None:
                self.errors.pop(run_id, None)
            else:
                self.errors[run_id] = error
            self.in_flight.discard(run_id)
            self.done.notify_all()

    def error(self, run_id: str) -> str | None:
        """Why the last refresh of ``run_id`` failed, if it did."""
        with self.lock:
            return self.errors.get(run_id)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no refresh is under way (tests); False if ``timeout`` seconds passed first."""
        with self.lock:
            return self.done.wait_for(lambda: not self.in_flight, timeout)

    def close(self) -> None:
        """Stop taking work; refreshes under way finish in their threads."""
        self.pool.shutdown(wait=False, cancel_futures=True)
