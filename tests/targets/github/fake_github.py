"""A local stand-in for GitHub's REST API (the parts pipecast uses), answering as GitHub documents.

Served on 127.0.0.1 from a thread; it records every request. A dispatch creates a run that appears in
the run list only after ``appear_after`` list calls (GitHub creates runs asynchronously) with the title
GitHub computes from the workflow's ``run-name``; each GET of a run moves it one state further along
``states``. ``faults`` answers chosen requests with errors first (rate limits, 5xx); a fault marked
``after_work`` does the request's work first and then fails (a 5xx, or ``DROP``: the connection closes
without an answer), as a network or a proxy failing after GitHub acted would.

Workflows (``GET /repos/{o}/{r}/actions/workflows``, "List repository workflows": ``total_count`` and
``workflows`` with ``id``, ``name``, ``path``, ``state``, paged by ``per_page``/``page``) are the files pushed under
``.github/workflows/`` on ``main``, each with a fixed id; ``PUT …/actions/workflows/{id or file name}/disable``
answers 204 and sets its ``state`` to ``disabled_manually``, as "Disable a workflow" documents.

Paths are served both at the root (api.github.com) and under ``/api/v3`` (GitHub Enterprise Server).

Job logs (``GET /repos/{o}/{r}/actions/jobs/{job_id}/logs``) answer as GitHub documents them ("Download job
logs for a workflow run"): 302 Found with a ``Location`` download URL, here under ``/_storage/`` on this
server reached as another origin (``localhost``), which, as a signed storage URL does, takes no
``Authorization`` header (400 if one comes); a job that has not finished has no log yet (404, what
``gh run view --log`` meets while a run is in progress). A run's jobs are ``failed_jobs`` (given by the test:
``id``, ``name``, ``status``, ``conclusion``, ``started_at``, ``run_attempt``), their logs ``job_logs`` by id.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

from tests.targets.github.replay import dispatch_inputs, load_workflow, render


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


DROP = 0  # a fault status: close the connection without answering


@dataclass
class Fault:
    """Answer the next request matching ``method`` and a path ending with ``suffix`` with this."""

    method: str
    suffix: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    after_work: bool = False  # do what the request asks first, then fail


@dataclass
class FakeRun:
    id: int
    workflow: str
    title: str
    inputs: dict[str, Any]
    ref: str
    states: list[tuple[str, str | None]]
    polls_until_visible: int
    position: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.states[self.position][0]

    @property
    def conclusion(self) -> str | None:
        return self.states[self.position][1]


class FakeGitHub:
    """The server's state: repositories' workflow files, runs, recorded requests, scripted faults."""

    def __init__(self, *, owner_repo: str = "acme/ml", token: str = "t0ken", appear_after: int = 1,
                 run_details: bool = False) -> None:
        self.repo = owner_repo
        self.token = token
        self.appear_after = appear_after
        self.appear_after_each: list[int] = []  # list calls until visible for the next dispatches, in order
        self.run_details = run_details
        self.content_limit = 1024 * 1024  # the contents API leaves out files larger than 1 MB
        self.files: dict[tuple[str, str], str] = {}  # (ref, path) -> text
        self.disabled: set[str] = set()  # paths of the workflows disabled
        self.runs: dict[int, FakeRun] = {}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.states: list[tuple[str, str | None]] = [("queued", None), ("in_progress", None),
                                                     ("completed", "success")]
        self.failed_jobs: list[dict[str, Any]] = []  # the jobs of each new run (failed or not)
        self.job_logs: dict[int, str] = {}  # job id -> its log's text
        self.next_id = 9000
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeGitHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def push(self, path: str, text: str, ref: str = "main") -> None:
        self.files[(ref, path)] = text

    def calls(self, method: str, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    # The API, one method per documented endpoint.
    def answer(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: Any) -> tuple[int, dict[str, str], Any]:
        self.requests.append(Recorded(method, path, query, headers, body))
        for fault in self.faults:
            if fault.method == method and path.endswith(fault.suffix):
                self.faults.remove(fault)
                if fault.after_work:
                    self._route(method, path, query, headers, body)
                return fault.status, fault.headers, fault.body
        return self._route(method, path, query, headers, body)

    def _route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: Any) -> tuple[int, dict[str, str], Any]:
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"message": "Bad credentials"}
        if headers.get("accept") not in ("application/vnd.github+json", "application/vnd.github.raw+json"):
            return 415, {}, {"message": "Unsupported media type"}
        prefix = f"/repos/{self.repo}"
        if path.startswith(f"{prefix}/actions/jobs/"):
            return self._job(path[len(prefix):].strip("/").split("/"), method)
        if not path.startswith(prefix):
            return 404, {}, {"message": "Not Found"}
        rest = path[len(prefix):]
        parts = rest.strip("/").split("/")
        if rest == "" and method == "GET":
            return 200, {}, {"full_name": self.repo, "default_branch": "main"}
        if parts[0] == "contents" and method == "GET":
            text = self.files.get((query.get("ref", "main"), "/".join(parts[1:])))
            if text is None:
                return 404, {}, {"message": "Not Found"}
            if headers.get("accept") == "application/vnd.github.raw+json":
                return 200, {"Content-Type": "application/vnd.github.raw"}, text
            if len(text.encode()) > self.content_limit:  # GitHub leaves larger files' content out
                return 200, {}, {"type": "file", "encoding": "none", "content": "", "size": len(text.encode())}
            wrapped = base64.encodebytes(text.encode()).decode()  # GitHub wraps the base64 text in lines
            return 200, {}, {"type": "file", "encoding": "base64", "content": wrapped}
        if parts == ["actions", "workflows"] and method == "GET":
            return self._workflows(query)
        if parts[:2] == ["actions", "workflows"] and len(parts) == 4 and parts[3] == "disable" and method == "PUT":
            every = self._workflows({"per_page": "100"})[2]["workflows"]
            found = [w for w in every if parts[2] in (str(w["id"]), w["path"].rsplit("/", 1)[-1])]
            if not found:
                return 404, {}, {"message": "Not Found"}
            self.disabled.add(found[0]["path"])
            return 204, {}, None
        if parts[:2] == ["actions", "workflows"] and len(parts) == 4 and parts[3] == "dispatches" and method == "POST":
            return self._dispatch(parts[2], body)
        if parts[:2] == ["actions", "workflows"] and len(parts) == 4 and parts[3] == "runs" and method == "GET":
            return self._list(parts[2], query)
        if parts[:2] == ["actions", "runs"] and len(parts) >= 3:
            run = self.runs.get(int(parts[2]))
            if run is None:
                return 404, {}, {"message": "Not Found"}
            if len(parts) == 3 and method == "GET":
                if run.position < len(run.states) - 1:
                    run.position += 1
                return 200, {}, self._run_json(run)
            if parts[3:] == ["jobs"] and method == "GET":
                return 200, {}, {"total_count": len(run.jobs), "jobs": run.jobs}
            if parts[3:] == ["cancel"] and method == "POST":
                if run.status == "completed":
                    return 409, {}, {"message": "Cannot cancel a workflow run that is completed."}
                run.states, run.position = [("completed", "cancelled")], 0
                return 202, {}, {}
        return 404, {}, {"message": "Not Found"}

    def _workflows(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        paths = sorted(path for ref, path in self.files if ref == "main" and path.startswith(".github/workflows/"))
        every = [{"id": 7000 + n, "name": _workflow_name(self.files[("main", path)], path), "path": path,
                  "state": "disabled_manually" if path in self.disabled else "active"} for n, path in enumerate(paths)]
        size, page = int(query.get("per_page", "30")), int(query.get("page", "1"))
        return 200, {}, {"total_count": len(every), "workflows": every[(page - 1) * size: page * size]}

    def _job(self, parts: list[str], method: str) -> tuple[int, dict[str, str], Any]:
        jobs = {job["id"]: job for run in self.runs.values() for job in run.jobs}
        job = jobs.get(int(parts[2])) if len(parts) >= 3 and parts[2].isdigit() else None
        if job is None or method != "GET":
            return 404, {}, {"message": "Not Found"}
        if len(parts) == 3:
            return 200, {}, job
        if parts[3:] == ["logs"]:
            if job.get("status") != "completed":
                return 404, {}, {"message": "Not Found"}
            # Another origin (localhost, not 127.0.0.1), as GitHub's storage is another host.
            storage = f"http://localhost:{self.server.server_address[1]}"
            return 302, {"Location": f"{storage}/_storage/jobs/{job['id']}.txt?sig=signed"}, None
        return 404, {}, {"message": "Not Found"}

    def storage(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """A signed download URL: the signature is the credential; an Authorization header is refused."""
        self.requests.append(Recorded("GET", path, {}, headers, None))
        if "authorization" in headers:
            return 400, {}, {"message": "storage URLs take no Authorization header"}
        job_id = int(path.rsplit("/", 1)[-1].removesuffix(".txt"))
        return 200, {"Content-Type": "text/plain"}, self.job_logs.get(job_id, "")

    def _dispatch(self, workflow: str, body: Any) -> tuple[int, dict[str, str], Any]:
        text = self.files.get((body.get("ref"), f".github/workflows/{workflow}"))
        if text is None:
            return 404, {}, {"message": "Not Found"}
        parsed = load_workflow(text)
        if "workflow_dispatch" not in parsed["on"]:
            return 422, {}, {"message": "Workflow does not have 'workflow_dispatch' trigger"}
        given = body.get("inputs", {})
        if not all(isinstance(v, str) for v in given.values()):
            return 422, {}, {"message": "inputs values must be strings"}
        try:
            inputs = dispatch_inputs(parsed, given)
        except AssertionError as err:
            return 422, {}, {"message": str(err)}
        contexts = {"inputs": inputs, "github": {"event_name": "workflow_dispatch"}}
        with self.lock:
            self.next_id += 7
            run = FakeRun(id=self.next_id, workflow=workflow, title=render(parsed.get("run-name", ""), contexts),
                          inputs=inputs, ref=body["ref"], states=list(self.states),
                          polls_until_visible=self.appear_after_each.pop(0) if self.appear_after_each
                          else self.appear_after, jobs=list(self.failed_jobs))
            self.runs[run.id] = run
        if self.run_details and body.get("return_run_details"):
            return 200, {}, {"workflow_run_id": run.id, "run_url": f"{self.base}/repos/{self.repo}/actions/runs/"
                             f"{run.id}", "html_url": self._html(run)}
        return 204, {}, None

    def _list(self, workflow: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        visible = []
        with self.lock:
            for run in self.runs.values():
                if run.workflow != workflow:
                    continue
                if run.polls_until_visible > 0:
                    run.polls_until_visible -= 1
                    continue
                visible.append(self._run_json(run))
        visible.sort(key=lambda r: -r["id"])  # newest first, as GitHub lists them
        return 200, {}, {"total_count": len(visible), "workflow_runs": visible}

    def _html(self, run: FakeRun) -> str:
        return f"{self.base}/{self.repo}/actions/runs/{run.id}"

    def _run_json(self, run: FakeRun) -> dict[str, Any]:
        return {"id": run.id, "name": run.workflow.removesuffix(".yml"), "display_title": run.title,
                "event": "workflow_dispatch", "head_branch": run.ref, "status": run.status,
                "conclusion": run.conclusion, "run_attempt": 1, "html_url": self._html(run),
                "created_at": "2030-01-01T00:00:00Z"}


def _workflow_name(text: str, path: str) -> str:
    """The ``name:`` of a workflow file, else its path, as GitHub names a workflow."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return path
    return str(document.get("name") or path) if isinstance(document, dict) else path


def _handler(state: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            path = split.path.removeprefix("/api/v3")
            query = dict(urllib.parse.parse_qsl(split.query))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            if path.startswith("/_storage/"):
                status, extra, payload = state.storage(path, headers)
            else:
                status, extra, payload = state.answer(self.command, path, query, headers, body)
            if status == DROP:
                self.close_connection = True
                return
            raw_text = isinstance(payload, str)
            data = b"" if payload is None else payload.encode() if raw_text else json.dumps(payload).encode()
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            if data and not raw_text:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
