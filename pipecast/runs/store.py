"""The run store: every run, local or submitted, in one SQLite file.

The path is ``$PIPECAST_RUN_STORE``, else ``$PIPECAST_HOME/runs.db`` (``~/.pipecast/runs.db``). WAL mode
and a busy timeout make it safe for several processes writing at once. Credentials never go here:
only the run's pipeline, target, parameters, status, engine run id, UI URL and timestamps (a password
inside a URL is masked before it is written: :func:`pipecast.redaction.redact_credentials`).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from pipecast.errors import RunNotFoundError
from pipecast.redaction import redact_credentials

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    target TEXT NOT NULL,
    parameters TEXT NOT NULL,
    status TEXT NOT NULL,
    engine_run_id TEXT,
    url TEXT,
    detail TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    ended_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_pipeline ON runs (pipeline, created_at);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    cached INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    ended_at TEXT,
    error TEXT,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS graphs (
    run_id TEXT PRIMARY KEY,
    graph TEXT NOT NULL
);
"""

# Stores whose schema this process has already set up, by absolute path, and the lock that makes one
# thread do it: many threads opening a new store at once is the common case for concurrent submits.
_initialised: set[str] = set()
_initialise_lock = threading.Lock()
_INITIALISE_DEADLINE_SECONDS = 30.0


def _initialise(connection: sqlite3.Connection) -> None:
    """Switch to WAL and create the tables, retrying while another process holds the lock.

    SQLite answers a race for the journal-mode change with SQLITE_BUSY at once, without calling the busy
    handler (it would deadlock otherwise), so ``busy_timeout`` does not cover it; retry, bounded.
    """
    deadline = time.monotonic() + _INITIALISE_DEADLINE_SECONDS
    delay = 0.005
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(_SCHEMA)
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id(pipeline: str) -> str:
    """A unique, sortable run id: ``<pipeline>-<UTC time>-<random>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{pipeline}-{stamp}-{secrets.token_hex(3)}"


def default_path() -> str:
    """The run store's file: ``$PIPECAST_RUN_STORE``, else ``runs.db`` in pipecast's home folder."""
    explicit = os.environ.get("PIPECAST_RUN_STORE")
    if explicit:
        return os.path.expanduser(explicit)
    from pipecast.runtime.artifacts import pipecast_home

    return os.path.join(pipecast_home(), "runs.db")


class RunStore:
    """Reads and writes the run store at ``path``."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or default_path()

    @classmethod
    def default(cls) -> RunStore:
        """The store at :func:`default_path`."""
        return cls()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        key = os.path.abspath(self.path)
        if key in _initialised and not os.path.exists(key):
            _initialised.discard(key)  # deleted under us (a test, or a user starting afresh)
        if key not in _initialised:
            os.makedirs(os.path.dirname(key), exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA busy_timeout = 30000")
            if key not in _initialised:
                with _initialise_lock:
                    if key not in _initialised:
                        _initialise(connection)
                        _initialised.add(key)
            yield connection
        finally:
            connection.close()

    def create_run(self, run_id: str, *, pipeline: str, target: str, parameters: Mapping[str, Any],
                   status: str, url: str | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        """Record a new run; credentials in its URL and metadata are redacted."""
        now = _now()
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, pipeline, target, parameters, status, url, metadata, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, pipeline, target, json.dumps(dict(parameters), sort_keys=True), status, _redacted(url),
                 redact_credentials(json.dumps(dict(metadata or {}), sort_keys=True)), now, now),
            )

    def update_status(self, run_id: str, status: str, *, detail: str | None = None) -> None:
        """Set the run's status (and detail, when given); a finished status sets the end time once."""
        now = _now()
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = ?, detail = COALESCE(?, detail), updated_at = ?,"
                " ended_at = CASE WHEN ? IN ('succeeded', 'failed', 'cancelled') THEN COALESCE(ended_at, ?)"
                " ELSE ended_at END WHERE id = ?",
                (status, _redacted(detail), now, status, now, run_id),
            )

    def note_run(self, run_id: str, *, engine_run_id: str | None = None, url: str | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        """Record what a target learnt about a run (engine id, URL, metadata); ``None`` keeps what is there."""
        with self._connect() as db:
            row = db.execute("SELECT metadata FROM runs WHERE id = ?", (run_id,)).fetchone()
            merged = {**json.loads(row["metadata"] if row else "{}"), **dict(metadata or {})}
            db.execute(
                "UPDATE runs SET engine_run_id = COALESCE(?, engine_run_id), url = COALESCE(?, url), metadata = ?,"
                " updated_at = ? WHERE id = ?",
                (engine_run_id, _redacted(url), redact_credentials(json.dumps(merged, sort_keys=True)), _now(), run_id),
            )

    def record_steps(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Record many step results in one transaction (the local runner's end-of-run write)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO steps (run_id, step, status, cached, attempts, started_at, ended_at, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r["step"], r["status"], int(r.get("cached", False)), r.get("attempts", 0),
                  r.get("started_at"), r.get("ended_at"), r.get("error")) for r in rows],
            )
            db.execute("COMMIT")

    def record_graph(self, run_id: str, graph: Mapping[str, Any]) -> None:
        """Keep the run's DAG (:func:`pipecast.compiler.drawing.graph_record`) for ``pipecast ui`` to draw."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO graphs (run_id, graph) VALUES (?, ?)",
                       (run_id, json.dumps(dict(graph), sort_keys=True)))

    def graph(self, run_id: str) -> dict[str, Any] | None:
        """The DAG recorded for the run, or None (a run recorded before graphs were kept)."""
        with self._connect() as db:
            row = db.execute("SELECT graph FROM graphs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else dict(json.loads(row["graph"]))

    def reap_stale_local_runs(self) -> int:
        """Mark local runs whose process died (killed, crashed) as failed; return how many."""
        import socket

        host = socket.gethostname()
        with self._connect() as db:
            rows = db.execute("SELECT id, metadata FROM runs WHERE target = 'local' AND status = 'running'").fetchall()
        reaped = 0
        for row in rows:
            meta = json.loads(row["metadata"])
            pid = meta.get("pid")
            if meta.get("host") != host or not isinstance(pid, int) or _alive(pid):
                continue
            self.update_status(row["id"], "failed", detail=f"the process running it (pid {pid}) ended without "
                                                           "finishing; run it again to resume from the cache")
            reaped += 1
        return reaped

    def get(self, name_or_id: str) -> dict[str, Any]:
        """A run by id, or the newest run of the pipeline with that name."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (name_or_id,)).fetchone()
            if row is None:
                row = db.execute(
                    "SELECT * FROM runs WHERE pipeline = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    (name_or_id,),
                ).fetchone()
            if row is None:
                raise RunNotFoundError(f"no run with id or pipeline name {name_or_id!r} in {self.path}")
            steps = db.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY started_at, step",
                               (row["id"],)).fetchall()
        return _row(row, steps)

    def list(self, *, pipeline: str | None = None, limit: int = 20, stack: str | None = None,
             status: str | None = None) -> list[dict[str, Any]]:
        """The latest ``limit`` runs, newest first (without steps), filtered by the arguments given.

        The stack is the ``stack`` the run's metadata records (runs started through a stack).
        """
        conditions, args = [], []
        for column, value in (("pipeline", pipeline), ("json_extract(metadata, '$.stack')", stack),
                              ("status", status)):
            if value:
                conditions.append(f"{column} = ?")
                args.append(value)
        query = "SELECT * FROM runs" + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        query += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [_row(r, []) for r in rows]


def _redacted(text: str | None) -> str | None:
    return None if text is None else redact_credentials(text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _row(row: sqlite3.Row, steps: list[sqlite3.Row]) -> dict[str, Any]:
    record = dict(row)
    record["parameters"] = json.loads(record["parameters"])
    record["metadata"] = json.loads(record["metadata"])
    record["steps"] = [dict(s) for s in steps]
    return record
