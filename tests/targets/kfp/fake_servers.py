"""Local HTTP servers that answer as the KFP v2beta1 REST API and the Vertex AI v1 REST API document, and
record every request (method, path, query, JSON body, headers) for the tests to assert on.

Only the endpoints the real clients call are implemented; anything else is a 404 with a google.rpc.Status
body, as both APIs answer. Run states advance through a scripted list, one step per GET of the run.
:meth:`RecordingServer.fault` makes the next matching requests fail as networks and busy servers do: an
answer such as 503 or 429 (the request is not served), or a dropped connection, before or after the server
did the work.
"""

from __future__ import annotations

import email
import http.server
import itertools
import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass
class Request:
    """One recorded request (header names in lower case)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """How the next ``times`` requests matching ``method`` and ``pattern`` fail.

    ``kind``: ``"reply"`` answers ``reply`` without serving the request; ``"drop"`` serves it, then closes the
    connection without an answer (the work is done, the client never hears of it); ``"drop_unserved"`` closes
    the connection without serving it; ``"served_reply"`` serves it, then answers ``reply`` instead of the
    result (a proxy or load balancer that gave up while the backend did the work).
    """

    method: str
    pattern: re.Pattern[str]
    kind: str
    times: int
    reply: Reply | None = None


Route = Callable[[Request, re.Match[str]], Reply]


@dataclass
class RecordingServer:
    """A threaded server on 127.0.0.1 and a free port; ``routes`` map (method, path regex) to handlers."""

    routes: list[tuple[str, re.Pattern[str], Route]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def start(self) -> RecordingServer:
        owner = self
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                request = Request(self.command, urllib.parse.unquote(parsed.path),
                                  dict(urllib.parse.parse_qsl(parsed.query)), body,
                                  {k.lower(): v for k, v in self.headers.items()})
                owner.requests.append(request)
                fault = owner.take_fault(request)
                if fault is not None and fault.kind == "reply" and fault.reply is not None:
                    reply = fault.reply
                elif fault is not None and fault.kind == "served_reply" and fault.reply is not None:
                    owner.dispatch(request)
                    reply = fault.reply
                elif fault is not None and fault.kind == "drop_unserved":
                    self.close_connection = True
                    return
                else:
                    reply = owner.dispatch(request)
                if fault is not None and fault.kind == "drop":
                    self.close_connection = True  # the work is done; the answer never leaves
                    return
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _serve  # noqa: N815 - http.server's names

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def fault(self, method: str, pattern: str, kind: str, times: int = 1, reply: Reply | None = None) -> None:
        """Make the next ``times`` requests matching ``method`` and the path regex ``pattern`` fail (see Fault)."""
        assert kind in ("reply", "served_reply", "drop", "drop_unserved")
        assert kind not in ("reply", "served_reply") or reply is not None
        self.faults.append(Fault(method, re.compile(pattern), kind, times, reply))

    def take_fault(self, request: Request) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == request.method and fault.pattern.fullmatch(request.path):
                    fault.times -= 1
                    return fault
        return None

    def dispatch(self, request: Request) -> Reply:
        for method, pattern, route in self.routes:
            match = pattern.fullmatch(request.path)
            if method == request.method and match:
                return route(request, match)
        return Reply(404, {"code": 5, "message": f"no route for {request.method} {request.path}", "details": []})

    def route(self, method: str, pattern: str) -> Callable[[Route], Route]:
        def register(fn: Route) -> Route:
            self.routes.append((method, re.compile(pattern), fn))
            return fn
        return register

    def find(self, method: str, pattern: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]


_NOW = "2026-01-02T03:04:05Z"


class FakeKfp(RecordingServer):
    """The KFP API server (v2beta1): healthz, experiments, runs, recurring runs. Paths may carry a prefix
    (``/pipeline/apis/…``), as behind the Kubeflow central dashboard."""

    def __init__(self, *, multi_user: bool = False, states: tuple[str, ...] = ("PENDING", "RUNNING", "SUCCEEDED"),
                 failure: dict[str, Any] | None = None, refuse_runs: bool = False) -> None:
        super().__init__()
        self.multi_user, self.states, self.failure, self.refuse_runs = multi_user, states, failure, refuse_runs
        self.tag_name = "2.5.0"  # the release healthz reports
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.ids = (f"{n:08x}-0000-4000-8000-000000000000" for n in itertools.count(1))
        api = r"(?:/[\w.-]+)*/apis/v2beta1"
        self.route("GET", f"{api}/healthz")(self._healthz)
        self.route("GET", f"{api}/experiments")(self._list_experiments)
        self.route("POST", f"{api}/experiments")(self._create_experiment)
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self.route("POST", f"{api}/runs")(self._create_run)
        self.route("GET", f"{api}/runs")(self._list_runs)
        self.route("GET", f"{api}/runs/([^/:]+)")(self._get_run)
        self.route("POST", f"{api}/runs/([^/:]+):terminate")(self._terminate)
        self.route("POST", f"{api}/recurringruns")(self._create_recurring_run)
        self.route("GET", f"{api}/recurringruns")(self._list_recurring_runs)
        self.route("DELETE", f"{api}/recurringruns/([^/:]+)")(self._delete_recurring_run)
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}
        self.route("POST", f"{api}/pipelines")(self._create_pipeline)
        self.route("GET", f"{api}/pipelines")(self._list_pipelines)
        self.route("POST", f"{api}/pipelines/upload_version")(self._upload_version)
        self.route("GET", f"{api}/pipelines/([^/:]+)/versions")(self._list_versions)

    def _healthz(self, request: Request, match: re.Match[str]) -> Reply:
        # As the API server's own handler writes it (backend/src/apiserver/main.go): TAG_NAME is the release.
        return Reply(200, {"commit_sha": "0000000", "tag_name": self.tag_name, "multi_user": self.multi_user,
                           "pipeline_store": "database"})

    def _list_experiments(self, request: Request, match: re.Match[str]) -> Reply:
        predicates = json.loads(request.query.get("filter") or '{"predicates": []}')["predicates"]
        names = {p["stringValue"] for p in predicates if p.get("key") == "display_name"}
        found = [e for e in self.experiments.values() if not names or e["display_name"] in names]
        return Reply(200, {"experiments": found, "total_size": len(found)} if found else {})

    def _create_experiment(self, request: Request, match: re.Match[str]) -> Reply:
        experiment = {**request.body, "experiment_id": next(self.ids), "created_at": _NOW,
                      "storage_state": "AVAILABLE"}
        self.experiments[experiment["experiment_id"]] = experiment
        return Reply(200, experiment)

    def _create_run(self, request: Request, match: re.Match[str]) -> Reply:
        if self.refuse_runs:
            return Reply(400, {"error": "Invalid input error: bad pipeline spec", "code": 3,
                               "message": "Invalid input error: bad pipeline spec", "details": []})
        if request.body.get("experiment_id") not in self.experiments:
            return Reply(404, {"code": 5, "message": "experiment not found", "details": []})
        if not self._source_ok(request.body):
            return Reply(400, {"code": 3, "message": "Invalid input error: a run needs either a pipeline spec or "
                               "an existing pipeline version", "details": []})
        run = {**request.body, "run_id": next(self.ids), "state": "PENDING", "created_at": _NOW,
               "storage_state": "AVAILABLE"}
        self.runs[run["run_id"]] = run
        self.polls[run["run_id"]] = 0
        return Reply(200, run)

    @staticmethod
    def _matching(items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
        """The v2beta1 list filter: ``experiment_id`` and EQUALS predicates on string fields."""
        found = [i for i in items if "experiment_id" not in request.query
                 or i.get("experiment_id") == request.query["experiment_id"]]
        for predicate in json.loads(request.query.get("filter") or '{"predicates": []}')["predicates"]:
            assert predicate["operation"] == "EQUALS", predicate
            found = [i for i in found if i.get(predicate["key"]) == predicate["stringValue"]]
        return found

    def _list_runs(self, request: Request, match: re.Match[str]) -> Reply:
        found = self._matching(list(self.runs.values()), request)
        return Reply(200, {"runs": found, "total_size": len(found)} if found else {})

    def _list_recurring_runs(self, request: Request, match: re.Match[str]) -> Reply:
        found = self._matching(list(self.recurring_runs.values()), request)
        return Reply(200, {"recurringRuns": found, "total_size": len(found)} if found else {})

    def _get_run(self, request: Request, match: re.Match[str]) -> Reply:
        run = self.runs.get(match[1])
        if run is None:
            return Reply(404, {"code": 5, "message": f"run {match[1]} not found", "details": []})
        if run["state"] not in ("CANCELING", "CANCELED"):
            self.polls[match[1]] += 1
            run["state"] = self.states[min(self.polls[match[1]], len(self.states) - 1)]
            if run["state"] == "FAILED" and self.failure:
                run.update(self.failure)
        elif run["state"] == "CANCELING":
            run["state"] = "CANCELED"
        return Reply(200, run)

    def _terminate(self, request: Request, match: re.Match[str]) -> Reply:
        run = self.runs.get(match[1])
        if run is None:
            return Reply(404, {"code": 5, "message": f"run {match[1]} not found", "details": []})
        run["state"] = "CANCELING"
        return Reply(200, {})

    def _source_ok(self, body: dict[str, Any]) -> bool:
        """A run starts from exactly one of an inline spec and an existing pipeline version (v2beta1 Run)."""
        reference = body.get("pipeline_version_reference")
        if reference is None:
            return "pipeline_spec" in body
        version = self.versions.get(reference.get("pipeline_version_id", ""))
        return "pipeline_spec" not in body and version is not None and \
            version["pipeline_id"] == reference.get("pipeline_id")

    def _create_pipeline(self, request: Request, match: re.Match[str]) -> Reply:
        """``CreatePipeline``: a pipeline without versions; display names are unique per namespace (409)."""
        body = request.body
        if any(p["display_name"] == body.get("display_name") and p.get("namespace") == body.get("namespace")
               for p in self.pipelines.values()):
            return Reply(409, {"code": 6, "message": f"pipeline {body.get('display_name')!r} already exists",
                               "details": []})
        pipeline = {**body, "pipeline_id": next(self.ids), "created_at": _NOW}
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        return Reply(200, pipeline)

    def _list_pipelines(self, request: Request, match: re.Match[str]) -> Reply:
        found = [p for p in self._matching(list(self.pipelines.values()), request)
                 if p.get("namespace") == request.query.get("namespace")]
        return Reply(200, {"pipelines": found, "total_size": len(found)} if found else {})

    def _upload_version(self, request: Request, match: re.Match[str]) -> Reply:
        """``UploadPipelineVersion``: multipart ``uploadfile``, query ``name`` and ``pipelineid``; names are unique
        per pipeline (409); the spec must parse as a pipeline IR YAML."""
        pipeline_id, name = request.query.get("pipelineid", ""), request.query.get("name", "")
        if pipeline_id not in self.pipelines:
            return Reply(404, {"code": 5, "message": f"pipeline {pipeline_id} not found", "details": []})
        if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name for v in self.versions.values()):
            return Reply(409, {"code": 6, "message": f"pipeline version {name!r} already exists", "details": []})
        message = email.message_from_bytes(f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
                                           + str(request.body).encode("utf-8"))
        files = [part for part in message.walk() if part.get_param("name", header="content-disposition")
                 == "uploadfile"]
        if len(files) != 1:
            return Reply(400, {"code": 3, "message": "no uploadfile part", "details": []})
        spec = list(yaml.safe_load_all(files[0].get_payload(decode=True)))
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": next(self.ids), "display_name": name,
                   "description": request.query.get("description", ""), "created_at": _NOW,
                   "pipeline_spec": spec[0] if len(spec) == 1 else {"pipeline_spec": spec[0],
                                                                     "platform_spec": spec[1]}}
        self.versions[version["pipeline_version_id"]] = version
        return Reply(200, version)

    def _list_versions(self, request: Request, match: re.Match[str]) -> Reply:
        found = [v for v in self._matching(list(self.versions.values()), request) if v["pipeline_id"] == match[1]]
        return Reply(200, {"pipeline_versions": found, "total_size": len(found)} if found else {})

    def _create_recurring_run(self, request: Request, match: re.Match[str]) -> Reply:
        if not self._source_ok(request.body):
            return Reply(400, {"code": 3, "message": "Invalid input error: a recurring run needs either a pipeline "
                               "spec or an existing pipeline version", "details": []})
        recurring = {**request.body, "recurring_run_id": next(self.ids), "status": "ENABLED", "created_at": _NOW}
        self.recurring_runs[recurring["recurring_run_id"]] = recurring
        return Reply(200, recurring)


    def _delete_recurring_run(self, request: Request, match: re.Match[str]) -> Reply:
        if self.recurring_runs.pop(match[1], None) is None:
            return Reply(404, {"code": 5, "message": f"recurring run {match[1]} not found", "details": []})
        return Reply(200, {})


class FakeVertex(RecordingServer):
    """Vertex AI v1: pipelineJobs create/get/cancel and schedules create/list/get/patch/delete, under
    projects/*/locations/*."""

    def __init__(self, *, states: tuple[str, ...] = ("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING",
                                                     "PIPELINE_STATE_SUCCEEDED"),
                 failure: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.states, self.failure = states, failure
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        parent = r"/v1/(projects/[^/]+/locations/[^/]+)"
        self.route("POST", f"{parent}/pipelineJobs")(self._create_job)
        self.route("GET", f"{parent}/pipelineJobs/([^/:]+)")(self._get_job)
        self.route("POST", f"{parent}/pipelineJobs/([^/:]+):cancel")(self._cancel_job)
        self.route("POST", f"{parent}/schedules")(self._create_schedule)
        self.route("GET", f"{parent}/schedules")(self._list_schedules)
        self.route("PATCH", f"{parent}/schedules/([^/:]+)")(self._update_schedule)
        self.route("GET", f"{parent}/schedules/([^/:]+)")(self._get_schedule)
        self.route("DELETE", f"{parent}/schedules/([^/:]+)")(self._delete_schedule)
        self.schedules: dict[str, dict[str, Any]] = {}
        self.schedule_ids = itertools.count(1234567890)

    def _create_job(self, request: Request, match: re.Match[str]) -> Reply:
        job_id = request.query.get("pipelineJobId")
        if not job_id or not re.fullmatch(r"[a-z][-a-z0-9]{0,127}", job_id):
            return Reply(400, {"error": {"code": 400, "message": f"invalid pipelineJobId {job_id!r}",
                                         "status": "INVALID_ARGUMENT"}})
        name = f"{match[1]}/pipelineJobs/{job_id}"
        if name in self.jobs:
            return Reply(409, {"error": {"code": 409, "message": f"{name} already exists", "status": "ALREADY_EXISTS"}})
        job = {**request.body, "name": name, "state": "PIPELINE_STATE_PENDING", "createTime": _NOW,
               "updateTime": _NOW}
        self.jobs[name] = job
        self.polls[name] = 0
        return Reply(200, job)

    def _get_job(self, request: Request, match: re.Match[str]) -> Reply:
        name = f"{match[1]}/pipelineJobs/{match[2]}"
        job = self.jobs.get(name)
        if job is None:
            return Reply(404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}})
        if job["state"] not in ("PIPELINE_STATE_CANCELLING", "PIPELINE_STATE_CANCELLED"):
            self.polls[name] += 1
            job["state"] = self.states[min(self.polls[name], len(self.states) - 1)]
            if job["state"] == "PIPELINE_STATE_FAILED" and self.failure:
                job.update(self.failure)
        elif job["state"] == "PIPELINE_STATE_CANCELLING":
            job["state"] = "PIPELINE_STATE_CANCELLED"
        return Reply(200, job)

    def _cancel_job(self, request: Request, match: re.Match[str]) -> Reply:
        name = f"{match[1]}/pipelineJobs/{match[2]}"
        if name not in self.jobs:
            return Reply(404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}})
        self.jobs[name]["state"] = "PIPELINE_STATE_CANCELLING"
        return Reply(200, {})

    def _create_schedule(self, request: Request, match: re.Match[str]) -> Reply:
        schedule = {**request.body, "name": f"{match[1]}/schedules/{next(self.schedule_ids)}", "state": "ACTIVE",
                    "createTime": _NOW}
        self.schedules[schedule["name"]] = schedule
        return Reply(200, schedule)

    def _list_schedules(self, request: Request, match: re.Match[str]) -> Reply:
        """``schedules.list`` with a ``display_name="…"`` filter (the only filter the tests' callers send)."""
        found = [s for s in self.schedules.values() if s["name"].startswith(f"{match[1]}/")]
        text = request.query.get("filter")
        if text:
            wanted = re.fullmatch(r'display_name=("(?:[^"\\]|\\.)*")', text)
            if wanted is None:
                return Reply(400, {"error": {"code": 400, "message": f"unsupported filter {text!r}",
                                             "status": "INVALID_ARGUMENT"}})
            found = [s for s in found if s.get("displayName") == json.loads(wanted[1])]
        return Reply(200, {"schedules": found} if found else {})

    def _get_schedule(self, request: Request, match: re.Match[str]) -> Reply:
        name = f"{match[1]}/schedules/{match[2]}"
        if name not in self.schedules:
            return Reply(404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}})
        return Reply(200, self.schedules[name])

    def _delete_schedule(self, request: Request, match: re.Match[str]) -> Reply:
        """``schedules.delete``: a long-running operation (answered done, with an empty response)."""
        name = f"{match[1]}/schedules/{match[2]}"
        if self.schedules.pop(name, None) is None:
            return Reply(404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}})
        return Reply(200, {"name": f"{name}/operations/1", "done": True,
                           "metadata": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1."
                                                 "DeleteOperationMetadata"},
                           "response": {"@type": "type.googleapis.com/google.protobuf.Empty"}})

    def _update_schedule(self, request: Request, match: re.Match[str]) -> Reply:
        """``schedules.patch``: the fields ``updateMask`` names, on an active or paused schedule."""
        name = f"{match[1]}/schedules/{match[2]}"
        schedule = self.schedules.get(name)
        if schedule is None:
            return Reply(404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}})
        if schedule["state"] not in ("ACTIVE", "PAUSED"):
            return Reply(400, {"error": {"code": 9, "message": "only an active or paused schedule can be updated",
                                         "status": "FAILED_PRECONDITION"}})
        paths = [p for p in (request.query.get("updateMask") or "").split(",") if p]
        fields = {"cron", "maxConcurrentRunCount", "createPipelineJobRequest", "displayName", "startTime",
                  "endTime", "allowQueueing", "maxRunCount"}
        camel = [re.sub(r"_([a-z])", lambda m: m[1].upper(), p) for p in paths]
        if not camel or not set(camel) <= fields:
            return Reply(400, {"error": {"code": 400, "message": f"invalid updateMask {paths!r}",
                                         "status": "INVALID_ARGUMENT"}})
        for key in camel:
            if key in request.body:
                schedule[key] = request.body[key]
        schedule["updateTime"] = _NOW
        return Reply(200, schedule)
