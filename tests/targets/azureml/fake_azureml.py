"""A local HTTPS server that answers as the Azure ML REST API (ARM, Microsoft.MachineLearningServices) does.

It implements what ``azure-ai-ml`` calls for a pipeline job: environment and component version
registration (``PUT .../environments|components/{name}/versions/{version}``), job create and get
(``PUT|GET .../jobs/{name}``), cancel (``POST .../jobs/{name}/cancel``, 202 + ``Location``, as the REST
reference documents), schedules (``PUT|GET|DELETE .../schedules/{name}``, long-running with
``Azure-AsyncOperation``, and the list ``GET .../schedules`` answering ``{"value": [...]}``), the workspace's
discovery document, and the run history's child runs
(``GET /history/v1.0/.../runs/{run}/children``), one per node of the stored job, and the run's details
with its log files (``GET /history/v1.0/.../runs/{run}/details``, ``GET /logfiles/...``). Every request is
recorded with its decoded JSON body. Job status follows a script the test sets (``NotStarted`` →
``Running`` → ``Completed`` by default), one step per GET.

A job name is taken once: a second PUT of it is refused with the error Azure ML gives ("A job with this
name already exists", ``JobPropertyImmutable``; quoted in Azure/azure-sdk-for-python#47389). A test can
make the server store a job and then drop the connection without answering (``lose_job_answers``), as a
network failure after the service did the work would.

The certificate is made by ``trustme`` for 127.0.0.1; the test trusts its CA through
``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import trustme

PROVIDER = "/providers/Microsoft.MachineLearningServices/workspaces/"
STUDIO = "https://ml.azure.com"
DROP = 0  # a status that means: close the connection without answering
_RESOURCE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)" + re.escape(PROVIDER) +
    r"(?P<ws>[^/]+)(?P<rest>/.*)?$")


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeAzureML:
    """State of the fake service: stored resources, the recorded requests, job status scripts."""

    requests: list[Recorded] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    status_script: list[str] = field(default_factory=lambda: ["NotStarted", "Running", "Completed"])
    job_status: dict[str, list[str]] = field(default_factory=dict)
    child_status: dict[str, str] = field(default_factory=dict)  # node name → status; default Completed
    log_lines: list[str] = field(default_factory=list)  # the pipeline's execution log: one more line per details GET
    log_shown: int = 0
    run_properties: dict[str, dict[str, str]] = field(default_factory=dict)  # run id → properties PATCHed to it
    lose_job_answers: int = 0  # how many job creations to do without answering
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def calls(self, method: str, contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and contains in r.path]

    # -- request handling -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
        if path.startswith("/operations/"):
            return 200, {}, {"status": "Succeeded"}
        if path.startswith("/logfiles/"):
            return 200, {"Content-Type": "text/plain"}, "".join(line + "\n" for line in self.log_lines[:self.log_shown])
        if path == "/discovery":
            base = self.base_url.rstrip("/")
            return 200, {}, {key: base for key in ("api", "catalog", "experimentation", "history", "modelmanagement",
                                                   "pipelines", "studiometadata")}
        history = path.startswith("/history/v1.0")
        match = _RESOURCE.match(path.removeprefix("/history/v1.0"))
        if not match:
            return 404, {}, _error("NotFound", f"no route for {method} {path}")
        rest = match.group("rest") or ""
        scope = path.removeprefix("/history/v1.0").removesuffix(rest)
        parts = rest.strip("/").split("/")
        if history and parts[0] == "runs" and len(parts) == 3 and parts[2] == "children" and method == "GET":
            return self._children(scope, parts[1])
        if history and parts[0] == "runs" and len(parts) == 3 and parts[2] == "details" and method == "GET":
            status, _, job = self._job("GET", scope, parts[1], None)
            if status != 200:
                return status, {}, job
            log = "logs/azureml/executionlogs.txt"
            self.log_shown += 1
            return 200, {}, {"runId": parts[1], "status": job["properties"]["status"], "warnings": [],
                             "logFiles": {log: f"{self.base_url}logfiles/{parts[1]}/{log}"}}
        if history and parts[0] == "experimentids" and len(parts) == 4 and parts[2] == "runs" and method == "PATCH":
            return self._patch_run(parts[3], body)
        if not rest:
            return self._workspace(scope, match)
        if parts[0] == "jobs" and len(parts) == 3 and parts[2] == "cancel" and method == "POST":
            return self._cancel(scope, parts[1])
        if parts[0] == "jobs" and len(parts) == 2:
            return self._job(method, scope, parts[1], body)
        if parts[0] in ("environments", "components") and len(parts) == 4 and parts[2] == "versions":
            return self._version(method, path, body)
        if parts[0] == "schedules" and len(parts) == 2:
            return self._schedule(method, path, parts[1], body)
        if parts == ["schedules"] and method == "GET":
            return 200, {}, {"value": [s for key, s in sorted(self.resources.items())
                                       if key.startswith(f"{path}/")], "nextLink": None}
        if parts[0] == "computes" and len(parts) == 2 and method == "GET":
            return 200, {}, {"id": path, "name": parts[1], "type": "Microsoft.MachineLearningServices/workspaces/"
                             "computes", "properties": {"computeType": "AmlCompute", "provisioningState": "Succeeded"}}
        return 404, {}, _error("NotFound", f"no route for {method} {path}")

    def _workspace(self, scope: str, match: re.Match[str]) -> tuple[int, dict[str, str], Any]:
        return 200, {}, {"id": scope, "name": match.group("ws"), "location": "westeurope",
                         "type": "Microsoft.MachineLearningServices/workspaces",
                         "properties": {"workspaceId": "00000000-0000-0000-0000-000000000001",
                                        "discoveryUrl": f"{self.base_url}discovery"}}

    def _version(self, method: str, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
        if method == "PUT":
            parts = path.split("/")
            stored = {"id": path, "name": parts[-1], "type": parts[-4], "properties": body.get("properties", {})}
            self.resources[path] = stored
            return 201, {}, stored
        if path in self.resources:
            return 200, {}, self.resources[path]
        return 404, {}, _error("NotFound", f"{path} not found")

    def _job(self, method: str, scope: str, name: str, body: Any) -> tuple[int, dict[str, str], Any]:
        path = f"{scope}/jobs/{name}"
        if method == "PUT":
            if path in self.resources:
                return 400, {}, _error("UserError", "A job with this name already exists. Only description, tags, "
                                       "displayName, properties, and isArchived can be updated.")
            properties = dict(body.get("properties", {}))
            properties["status"] = "NotStarted"
            properties["services"] = {"Studio": {"jobServiceType": "Studio", "endpoint":
                                                 f"{STUDIO}/runs/{name}?wsid={scope}"}}
            self.resources[path] = {"id": path, "name": name, "type": "Microsoft.MachineLearningServices/"
                                    "workspaces/jobs", "properties": properties}
            self.job_status[name] = list(self.status_script)
            if self.lose_job_answers:
                self.lose_job_answers -= 1
                return DROP, {}, None
            return 201, {}, self.resources[path]
        if method == "GET":
            job = self.resources.get(path)
            if job is None:
                return 404, {}, _error("UserError", f"job {name!r} not found")
            script = self.job_status[name]
            job["properties"]["status"] = script.pop(0) if len(script) > 1 else script[0]
            return 200, {}, job
        return 405, {}, _error("MethodNotAllowed", method)

    def _children(self, scope: str, name: str) -> tuple[int, dict[str, str], Any]:
        job = self.resources.get(f"{scope}/jobs/{name}")
        if job is None:
            return 404, {}, _error("UserError", f"run {name!r} not found")
        runs = [{"runId": f"{name}-{node}", "parentRunId": name, "rootRunId": name, "runType": "azureml.StepRun",
                 "displayName": spec.get("display_name") or node, "status": self.child_status.get(node, "Completed")}
                for node, spec in job["properties"].get("jobs", {}).items()]
        return 200, {}, {"value": runs, "nextLink": None}

    def _patch_run(self, run: str, body: Any) -> tuple[int, dict[str, str], Any]:
        """A run's properties merged with the body's, as mldesigner writes a node's primitive outputs."""
        if not isinstance(body, dict) or body.get("runId") != run or not isinstance(body.get("properties"), dict):
            return 400, {}, _error("UserError", "the body must be {runId, properties} for this run")
        if not all(isinstance(v, str) and len(v) <= 1000 and len(k) <= 100 for k, v in body["properties"].items()):
            return 400, {}, _error("UserError", "a run property key is at most 100 characters, a value 1000")
        self.run_properties.setdefault(run, {}).update(body["properties"])
        return 200, {}, {"runId": run, "properties": self.run_properties[run]}

    def _cancel(self, scope: str, name: str) -> tuple[int, dict[str, str], Any]:
        path = f"{scope}/jobs/{name}"
        if path not in self.resources:
            return 404, {}, _error("UserError", f"job {name!r} not found")
        self.job_status[name] = ["CancelRequested", "Canceled"]
        location = f"{self.base_url}operations/cancel-{name}"
        return 202, {"Location": location, "Retry-After": "0"}, None

    def _schedule(self, method: str, path: str, name: str, body: Any) -> tuple[int, dict[str, str], Any]:
        if method == "PUT":
            properties = {**body.get("properties", {}), "provisioningState": "Succeeded", "isEnabled": True}
            self.resources[path] = {"id": path, "name": name, "type": "Microsoft.MachineLearningServices/"
                                    "workspaces/schedules", "properties": properties}
            headers = {"Azure-AsyncOperation": f"{self.base_url}operations/schedule-{name}", "Retry-After": "0"}
            return 201, headers, self.resources[path]
        if method == "DELETE" and path in self.resources:  # 202, then the operation, as the REST reference says
            del self.resources[path]
            operation = f"{self.base_url}operations/delete-schedule-{name}"
            return 202, {"Azure-AsyncOperation": operation, "Location": operation, "Retry-After": "0"}, None
        if method == "DELETE":
            return 204, {}, None
        if path in self.resources:
            return 200, {}, self.resources[path]
        return 404, {}, _error("UserError", f"schedule {name!r} not found")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def start(service: FakeAzureML, ca: trustme.CA) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``service`` over HTTPS on 127.0.0.1 (a free port); return the server and its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            url = urlsplit(self.path)
            with service.lock:
                service.requests.append(Recorded(self.command, url.path, url.query, dict(self.headers), body))
                status, headers, answer = service.handle(self.command, url.path, body)
            if status == DROP:
                self.close_connection = True
                return
            text = isinstance(answer, str)
            data = b"" if answer is None else answer.encode() if text else json.dumps(answer).encode()
            self.send_response(status)
            if "Content-Type" not in headers:
                self.send_header("Content-Type", "application/json")
            self.send_header("x-ms-request-id", f"req-{len(service.requests)}")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _answer  # noqa: N815 - http.server's names

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="fake-azureml", daemon=True).start()
    service.base_url = f"https://127.0.0.1:{server.server_address[1]}/"
    return server, service.base_url
