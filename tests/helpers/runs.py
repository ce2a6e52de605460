"""Run-store states that only tests create."""

from __future__ import annotations

import sqlite3

from pipecast.runs.store import RunStore


def forget_engine_identity(run_id: str) -> None:
    """Clear a recorded run's engine id and URL, as if its submit had died before the engine answered."""
    with sqlite3.connect(RunStore.default().path) as db:
        db.execute("UPDATE runs SET engine_run_id = NULL, url = NULL WHERE id = ?", (run_id,))
