"""A local server answering as Airflow 3's REST API (v2) documents it, for the submit paths a real Airflow cannot
be made to take on purpose: a trigger whose answer is lost after the run was created, 429 with Retry-After, 5xx.

It serves what ``submit`` and ``AirflowRun`` call: ``/version``, ``/dags/{id}`` (found once the DAG file is in
the DAGs folder, never paused), ``/importErrors`` (none), ``/dagSources/{id}`` (the file's text), ``POST
/dags/{id}/dagRuns`` (409 when the run id exists, as Airflow's unique constraint answers), ``GET
/dags/{id}/dagRuns/{run_id}`` and the ``PATCH`` of its ``state`` and ``note`` that cancel sends (Airflow's
``DAGRunPatchBody``: a state of queued, success or failed, a note). ``faults`` lists what to do to the next
triggers, one entry each:

* ``"drop"``: create the run, then close the connection without an answer (a reset, a proxy timeout);
* ``"hang"``: create the run, then answer nothing until the client gives up (its read timeout);
* ``"429"``: answer 429 with ``Retry-After: 1`` and create nothing (``"429-long"``: ``Retry-After: 600``);
  ``"503"``: answer 503, create nothing.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FakeAirflow:
    """State shared by the handler threads: the DAGs folder, the runs created, the triggers received."""

    def __init__(self, dags: Path, faults: list[str]) -> None:
        self.dags = dags
        self.faults = list(faults)
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.triggers: list[str] = []  # what happened to each POST .../dagRuns, in order
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.url = ""
        # Bearer tokens let in (None: no check). Airflow 3 answers 401 {"detail": "Not authenticated"} without one,
        # and so does Cloud Composer's web server proxy for a request without a valid Google token.
        self.tokens: set[str] | None = None
        self.authorizations: list[str] = []  # the Authorization header of every request, in order


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeAirflow:
        return self.server.fake  # type: ignore[no-any-return]

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refused(self) -> bool:
        """Answer 401 (and say so) unless the request carries a bearer token the fake lets in."""
        header = self.headers.get("Authorization", "")
        with self.fake.lock:
            self.fake.authorizations.append(header)
            tokens = self.fake.tokens
        if tokens is None or (header.startswith("Bearer ") and header[len("Bearer "):] in tokens):
            return False
        self._answer(401, {"detail": "Not authenticated"})
        return True

    def _parts(self) -> list[str]:
        path = urllib.parse.urlsplit(self.path).path
        assert path.startswith("/api/v2/"), path
        return [urllib.parse.unquote(p) for p in path[len("/api/v2/"):].split("/")]

    def do_GET(self) -> None:
        if self._refused():
            return None
        parts = self._parts()
        if parts == ["version"]:
            return self._answer(200, {"version": "3.0.0"})
        if parts == ["importErrors"]:
            return self._answer(200, {"import_errors": [], "total_entries": 0})
        if parts[0] == "dagSources":
            file = self.fake.dags / f"{parts[1]}.dag.py"
            return self._answer(200, {"content": file.read_text()}) if file.exists() else self._answer(404, {})
        if parts[0] == "dags" and len(parts) == 2:
            if not (self.fake.dags / f"{parts[1]}.dag.py").exists():
                return self._answer(404, {"detail": f"Dag with id {parts[1]} was not found"})
            return self._answer(200, {"dag_id": parts[1], "is_paused": False, "file_token": "token",
                                      "last_parsed_time": datetime.now(timezone.utc).isoformat()})
        if parts[0] == "dags" and len(parts) == 4 and parts[2] == "dagRuns":
            with self.fake.lock:
                run = self.fake.runs.get((parts[1], parts[3]))
            return self._answer(200, run) if run else self._answer(404, {"detail": "DagRun not found"})
        return self._answer(404, {"detail": "not served by the fake"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self._refused():
            return None
        parts = self._parts()
        assert parts[0] == "dags" and parts[2:] == ["dagRuns"], parts
        with self.fake.lock:
            fault = self.fake.faults.pop(0) if self.fake.faults else "answer"
            key = (parts[1], body["dag_run_id"])
            exists = key in self.fake.runs
            self.fake.triggers.append("409" if exists and fault == "answer" else fault)
            if fault in ("429", "429-long", "503"):
                retry = {"429": {"Retry-After": "1"}, "429-long": {"Retry-After": "600"}}.get(fault, {})
                return self._answer(int(fault[:3]), {"detail": "try again"}, retry)
            if not exists:
                self.fake.runs[key] = {"dag_id": parts[1], "dag_run_id": body["dag_run_id"], "state": "queued",
                                       "conf": body["conf"], "logical_date": body.get("logical_date"), "note": None}
        if fault == "hang":
            self.fake.stopping.wait(30)  # until the client's read timeout ends the exchange (or the test ends)
        if fault in ("drop", "hang"):
            self.close_connection = True  # no answer at all: the client cannot tell whether the run exists
            return None
        if exists:
            return self._answer(409, {"detail": f"DagRun {body['dag_run_id']} already exists"})
        return self._answer(200, self.fake.runs[key])


    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self._refused():
            return None
        parts = self._parts()
        assert parts[0] == "dags" and len(parts) == 4 and parts[2] == "dagRuns", parts
        # DAGRunPatchBody (airflow/api_fastapi/core_api/datamodels/dag_run.py): these fields and states only.
        assert set(body) <= {"state", "note"} and body.get("state", "failed") in ("queued", "success", "failed"), body
        with self.fake.lock:
            run = self.fake.runs.get((parts[1], parts[3]))
            if run is None:
                return self._answer(404, {"detail": "DagRun not found"})
            run.update(body)
            return self._answer(200, run)


@contextmanager
def fake_airflow(dags: Path, faults: list[str] = ()) -> Iterator[FakeAirflow]:  # type: ignore[assignment]
    """A running fake on 127.0.0.1 (a free port), stopped on the way out."""
    fake = FakeAirflow(dags, list(faults))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.fake = fake  # type: ignore[attr-defined]
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
