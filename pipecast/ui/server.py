"""``pipecast ui``: a small local web server (the standard library's) over the run store.

Routes: ``/`` runs list (``?pipeline=&stack=&status=``), ``/runs/<id>`` a run's page, ``/runs/<id>/logs``
(``?step=``) its logs as text, ``/api/runs`` and ``/api/runs/<id>`` the same data as JSON. Unfinished
submitted runs are refreshed from their engines in the background (:mod:`pipecast.ui.refresh`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pipecast.errors import PipecastError, RunNotFoundError
from pipecast.redaction import redact_credentials
from pipecast.runs.store import RunStore
from pipecast.ui import pages, views
from pipecast.ui.refresh import LOCAL_TARGETS, Refresher

LOG_TIMEOUT = 30.0  # seconds a logs request waits for an engine before saying so
LOG_LINES = 400  # last lines of each step shown inline on a local run's page


class UiApp:
    """Answers the UI's requests from ``store``; ``config`` is the ``-c`` connection settings for engines."""

    def __init__(self, store: RunStore, config: Mapping[str, Any] | None = None, *,
                 refresher: Refresher | None = None) -> None:
        self.store = store
        self.config = dict(config or {})
        self.refresher = refresher or Refresher(store, self.config)
        self.log_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pipecast-ui-logs")

    def answer(self, target: str) -> tuple[int, str, str]:
        """``(HTTP status, content type, body)`` for a request path with its query."""
        parts = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        path = parts.path.rstrip("/") or "/"
        try:
            if path == "/":
                return 200, "text/html", self._runs(query, as_json=False)
            if path == "/api/runs":
                return 200, "application/json", self._runs(query, as_json=True)
            if path.startswith("/api/runs/"):
                return 200, "application/json", json.dumps(self._detail(unquote(path[10:])), indent=1)
            if path.startswith("/runs/") and path.endswith("/logs"):
                return self._logs(unquote(path[6:-5]), query.get("step") or None)
            if path.startswith("/runs/"):
                run_id = unquote(path[6:])
                run = self._detail(run_id)
                return 200, "text/html", pages.run_page(run, refresh_error=self.refresher.error(run["id"]),
                                                        local_logs=self._local_logs(run))
        except RunNotFoundError as err:
            return 404, "text/html", pages.text_page("run not found", str(err))
        return 404, "text/html", pages.text_page("not found", f"no page at {path}")

    def _runs(self, query: Mapping[str, str], *, as_json: bool) -> str:
        self.store.reap_stale_local_runs()
        filters = {key: query.get(key) for key in ("pipeline", "stack", "status")}
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else views.LIST_LIMIT
        rows = views.list_runs(self.store, filters, limit)
        self.refresher.request({"id": r["id"], "target": r["target"], "status": r["status"],
                                "metadata": {"stack": r["stack"]}} for r in rows)
        if as_json:
            return redact_credentials(json.dumps(rows, indent=1))
        return pages.runs_page(rows, views.choices(self.store), filters)

    def _detail(self, run_id: str) -> dict[str, Any]:
        run = views.detail(self.store, run_id)
        self.refresher.request([{"id": run["id"], "target": run["target"], "status": run["status"],
                                 "metadata": run["metadata"]}])
        run["refresh_error"] = self.refresher.error(run["id"])
        return run

    def _local_logs(self, run: Mapping[str, Any]) -> dict[str, list[str]]:
        """Each step's last log lines, for a run this machine ran (read from files: nothing to wait for)."""
        if run["target"] not in LOCAL_TARGETS:
            return {}
        from pipecast.runs.logs import run_logs

        found = {}
        for step in views.step_statuses(run):
            try:
                lines = list(run_logs(run["id"], {}, step, store=self.store))
            except PipecastError as err:
                lines = [f"(no log: {err})"]
            found[step] = [redact_credentials(line) for line in lines[-LOG_LINES:]]
        return found

    def _logs(self, run_id: str, step: str | None) -> tuple[int, str, str]:
        """The run's logs as text, from the engine if need be, waiting at most :data:`LOG_TIMEOUT` seconds."""
        from pipecast.runs.logs import run_logs

        record = self.store.get(run_id)
        from pipecast.ui.refresh import _config_for

        def read() -> list[str]:
            return list(run_logs(record["id"], _config_for(record, self.config), step, store=self.store))

        try:
            lines = self.log_pool.submit(read).result(timeout=LOG_TIMEOUT)
        except FutureTimeout:
            return 504, "text/plain", f"the engine did not answer within {LOG_TIMEOUT:g}s; try again later\n"
        except PipecastError as err:
            return 200, "text/plain", redact_credentials(f"no logs: {err}") + "\n"
        return 200, "text/plain; charset=utf-8", redact_credentials("\n".join(lines)) + "\n"

    def close(self) -> None:
        """Stop the background work."""
        self.refresher.close()
        self.log_pool.shutdown(wait=False, cancel_futures=True)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _local_host_header(value: str) -> bool:
    """Whether a request's ``Host`` names this machine's loopback address (any port)."""
    try:
        return urlsplit(f"//{value}").hostname in _LOOPBACK
    except ValueError:  # not a host at all
        return False


def make_server(app: UiApp, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A threaded HTTP server answering with ``app``, bound to ``host:port`` (``0``: a free port).

    Bound to a loopback address, it answers only requests whose ``Host`` is one (DNS rebinding).
    """
    loopback = host in _LOOPBACK

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                if loopback and not _local_host_header(self.headers.get("Host", "")):
                    # A page from another site, its name re-pointed at 127.0.0.1 (DNS rebinding), is refused.
                    status, kind = 403, "text/html"
                    body = pages.text_page("refused", "this server answers only requests addressed to this "
                                                      "machine (Host: 127.0.0.1 or localhost)")
                else:
                    status, kind, body = app.answer(self.path)
            except Exception as err:  # a bad record must not kill the server: say what broke
                status, kind = 500, "text/html"
                body = pages.text_page("error", redact_credentials(f"{type(err).__name__}: {err}"))
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", kind if "charset" in kind else f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the terminal shows the URL, not every request

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_thread(app: UiApp, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start serving in a daemon thread; return the server and its base URL (tests, embedding)."""
    server = make_server(app, host, port)
    threading.Thread(target=server.serve_forever, name="pipecast-ui", daemon=True).start()
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    return server, f"http://{bound_host}:{bound_port}"
