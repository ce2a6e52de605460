"""A local server that answers as Argo Server's REST API does, for the paths pipecast uses.

Modelled on Argo Server's OpenAPI spec (api/openapi-spec/swagger.json: ``WorkflowService_CreateWorkflow``
``POST /api/v1/workflows/{namespace}`` with ``{"namespace", "workflow"}``, ``GetWorkflow``, ``TerminateWorkflow``
``PUT …/{name}/terminate``; ``WorkflowTemplateService`` create/get/update under ``/api/v1/workflow-templates``;
``CronWorkflowService`` create/get/delete and list with ``listOptions.labelSelector`` (``k=v`` terms) under
``/api/v1/cron-workflows``, the list answering ``{"items": [...]}`` and a delete ``{}``; ``InfoService_GetVersion``,
``GET /api/v1/version``, a ``Version`` message, behind the token like every call) and
on its errors, grpc-gateway's ``{"code", "message"}`` with the gRPC code's HTTP status (AlreadyExists 409,
NotFound 404, Unauthenticated 401). A request without ``Authorization: Bearer <token>`` is refused (401), as
Argo Server does in ``--auth-mode=client``. Binds 127.0.0.1 only; stop it with :meth:`FakeArgoServer.stop`.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

GRPC = {401: 16, 404: 5, 409: 6, 400: 3}


class FakeArgoServer:
    def __init__(self, token: str) -> None:
        self.token = token
        self.objects: dict[str, dict[str, Any]] = {}  # "workflows/ns/name" -> object
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.version = 0
        self.argo_version = "v3.6.2"  # what GET /api/v1/version reports
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                code, payload = fake.handle(self.command, self.path, body, self.headers.get("Authorization", ""))
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _error(code: int, message: str) -> tuple[int, Any]:
        return code, {"code": GRPC.get(code, 2), "message": message}

    def handle(self, method: str, path: str, body: Any, authorization: str) -> tuple[int, Any]:
        with self.lock:
            self.requests.append({"method": method, "path": path, "body": body, "authorization": authorization})
            if authorization != f"Bearer {self.token}":
                return self._error(401, "token not valid. see https://argo-workflows.readthedocs.io/en/latest/faq/")
            path, _, query = path.partition("?")
            if method == "GET" and path == "/api/v1/version":  # InfoService.GetVersion, a `Version` message
                return 200, {"version": self.argo_version, "gitTag": self.argo_version, "platform": "linux/amd64"}
            parts = path.strip("/").split("/")  # api v1 <kind> <ns> [name] [action]
            kind, namespace, rest = parts[2], parts[3], parts[4:]
            field = {"workflows": "workflow", "workflow-templates": "template", "cron-workflows": "cronWorkflow"}[kind]
            if method == "GET" and not rest:
                return 200, {"items": self._list(kind, namespace, parse_qs(query).get("listOptions.labelSelector"))}
            if method == "POST" and not rest:
                obj = copy.deepcopy(body[field])
                key = f"{kind}/{namespace}/{obj['metadata']['name']}"
                if key in self.objects:
                    return self._error(409, f'{kind.replace("-", "")}.argoproj.io "{obj["metadata"]["name"]}" '
                                            "already exists")
                obj["metadata"]["namespace"] = namespace
                self._bump(obj)
                self.objects[key] = obj
                return 200, copy.deepcopy(obj)
            key = f"{kind}/{namespace}/{rest[0]}"
            current = self.objects.get(key)
            if current is None:
                return self._error(404, f'{kind} "{rest[0]}" not found')
            if method == "GET":
                return 200, copy.deepcopy(current)
            if method == "DELETE":
                del self.objects[key]
                return 200, {}
            if method == "PUT" and rest[1:] == ["terminate"]:
                current.setdefault("spec", {})["shutdown"] = "Terminate"
                current["status"] = {"phase": "Failed", "message": "Stopped with strategy 'Terminate'"}
                return 200, copy.deepcopy(current)
            if method == "PUT":
                sent = body[field]
                if sent["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                    return self._error(409, "the object has been modified")
                self.objects[key] = copy.deepcopy(sent)
                self._bump(self.objects[key])
                return 200, copy.deepcopy(self.objects[key])
            return self._error(400, f"{method} not supported")

    def _list(self, kind: str, namespace: str, selector: list[str] | None) -> list[dict[str, Any]]:
        terms = [term.split("=", 1) for term in (selector or [""])[0].split(",") if "=" in term]
        return [copy.deepcopy(obj) for key, obj in sorted(self.objects.items())
                if key.startswith(f"{kind}/{namespace}/")
                and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in terms)]

    def _bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        with self.lock:
            self.objects[f"workflows/{namespace}/{name}"]["status"] = status
