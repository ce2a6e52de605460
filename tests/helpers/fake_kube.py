"""A fake Kubernetes API server for submit tests: stores objects, answers as the API does, records requests.

It speaks the REST paths the official ``kubernetes`` client uses::

    /api/v1/namespaces/{ns}/{plural}[/{name}[/status]]            core, namespaced
    /apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/status]]
    /api/v1/{plural}[/{name}], /apis/{group}/{version}/{plural}[/{name}]   cluster-scoped

POST creates (409 ``AlreadyExists`` as a ``Status``), GET reads or lists (``labelSelector`` with ``k=v``
terms), PUT replaces (409 ``Conflict`` when its resourceVersion is not the stored one), PATCH applies a
merge patch or a JSON patch, DELETE removes. Hooks registered with :meth:`FakeKube.on_create` run after
an object is created (in a thread of their own), which is how tests play the controller: moving a run's
status along, or running a Job's command. There is no watch; clients poll.
:meth:`FakeKube.lose_answers` makes the server do a request and then lose its answer (close the connection,
or hold it until the client gives up), as when a network drops or a proxy times out after the API server
stored an object. Access reviews (``SelfSubjectAccessReview``, ``LocalSubjectAccessReview``) are answered, not
stored, as the API server does: allowed, except what :meth:`FakeKube.deny` took away. With ``tls`` (a
``trustme`` CA) it serves HTTPS under a certificate for 127.0.0.1, as a cluster's API server does for in-cluster
clients. Binds only 127.0.0.1; stop it with :meth:`FakeKube.stop`.

Pod logs (``GET /api/v1/namespaces/{ns}/pods/{name}/log``, the ``log`` subresource) are served from text the
test (playing the kubelet) appends with :meth:`FakeKube.append_log`, as the API documents them and as the API
server and kubelet answer (kubernetes ``pkg/registry/core/pod/strategy.go`` ``LogLocation``, kubelet
``validateContainerLogStatus``): ``container`` may be left out only for a pod with one container (else 400
"a container name must be specified for pod ..., choose one of: [...]"), an unknown container is 400
"container ... is not valid for pod ...", a container that has not started is 400 "container ... in pod ... is
waiting to start: <reason>", and ``follow=true`` streams the log (chunked) until the container's status says
it terminated. Only ``container`` and ``follow`` are modelled; any other query parameter is refused (400).
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

Hook = Callable[["FakeKube", dict[str, Any]], None]
LOG_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
LOG_QUERY = {"container", "follow"}  # what the log endpoint models; pipecast sends no other parameter
# Query booleans are parsed with Go's strconv.ParseBool (the Python client sends "True").
GO_TRUE, GO_FALSE = {"1", "t", "T", "TRUE", "true", "True"}, {"0", "f", "F", "FALSE", "false", "False"}
STALL_LIMIT = 120.0  # seconds a "stall" holds a connection at most (the client gives up long before)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch: add, replace, remove (what clients send for these resources)."""
    result = copy.deepcopy(target)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent = result
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last, None)
    return result


class FakeKube:
    """The fake API server. Use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(self, tls: Any = None) -> None:
        self.tls = tls  # a trustme.CA: serve HTTPS with a certificate it issues for 127.0.0.1
        self.authorizations: list[str] = []  # the Authorization header of every request, in order
        self.objects: dict[str, dict[str, Any]] = {}  # collection path + "/" + name -> object
        self.requests: list[dict[str, Any]] = []
        self.hooks: dict[str, list[Hook]] = {}
        self.lock = threading.RLock()
        self.version = 0
        self.git_version = "v1.35.0"  # what GET /version reports (a test may set an older cluster's)
        self.server: ThreadingHTTPServer | None = None
        self.threads: list[threading.Thread] = []
        self.faults: list[dict[str, Any]] = []  # answers to lose: {"method", "path" (regex), "times", "mode"}
        self.lost: list[dict[str, Any]] = []  # the requests whose answer was lost
        self.refusals: list[dict[str, Any]] = []  # requests to answer with an error Status: {"method", "path", ...}
        self.released = threading.Event()  # ends every stall (set by stop)
        self.denied: set[tuple[str | None, str, str, str]] = set()  # (user or None, verb, group, resource)
        self.logs: dict[str, str] = {}  # "namespace/pod/container" -> the container's log so far
        self.changed = threading.Condition(self.lock)  # notified when an object or a log changes

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeKube:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _send(self, code: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                fake.authorizations.append(self.headers.get("Authorization", ""))
                if self.command == "GET" and LOG_PATH.match(urlparse(self.path).path):
                    fake.serve_log(self)
                    return
                body = self._body() if self.command in ("POST", "PUT", "PATCH", "DELETE") else None
                code, payload = fake.handle(self.command, self.path, body, self.headers.get("Content-Type", ""))
                mode = fake._lose(self.command, self.path, code)
                if mode is None:
                    self._send(code, payload)
                    return
                if mode == "stall":  # hold the connection without a word until the client gives up
                    fake.released.wait(STALL_LIMIT)
                self.close_connection = True  # the server closes the socket: no status line ever comes

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.issue_cert("127.0.0.1").configure_cert(context)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for thread in self.threads:
            thread.join(timeout=10)

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{'https' if self.tls is not None else 'http'}://{host}:{port}"

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig whose current context points at this server."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }
        path.write_text(json.dumps(config))
        return path

    # -- hooks and helpers for tests --------------------------------------------------------------
    def on_create(self, plural: str, hook: Hook) -> None:
        """Call ``hook(fake, object)`` in a new thread after each object of ``plural`` is created."""
        self.hooks.setdefault(plural, []).append(hook)

    def get(self, collection: str, name: str) -> dict[str, Any] | None:
        """A stored object by collection path (e.g. ``/apis/batch/v1/namespaces/ns/jobs``) and name."""
        with self.lock:
            found = self.objects.get(f"{collection}/{name}")
            return copy.deepcopy(found) if found else None

    def items(self, collection: str) -> list[dict[str, Any]]:
        prefix = collection.rstrip("/") + "/"
        with self.lock:
            return [copy.deepcopy(v) for k, v in self.objects.items()
                    if k.startswith(prefix) and "/" not in k[len(prefix):]]

    def set_status(self, collection: str, name: str, status: dict[str, Any], merge: bool = True) -> None:
        """Change an object's status as a controller would."""
        with self.lock:
            obj = self.objects[f"{collection}/{name}"]
            obj["status"] = merge_patch(obj.get("status", {}), status) if merge else status
            self._bump(obj)

    def lose_answers(self, method: str, path: str, *, times: int = 1, mode: str = "drop") -> None:
        """Do the next ``times`` requests ``method`` to a path matching ``path`` (a regex), then lose the answer.

        ``mode`` ``"drop"`` closes the connection at once; ``"stall"`` holds it unanswered until the client's
        timeout ends it (bounded by :data:`STALL_LIMIT`). The object is stored either way: only the answer
        is lost, so the client cannot know whether its request was done.
        """
        assert mode in ("drop", "stall")
        with self.lock:
            self.faults.append({"method": method, "path": re.compile(path), "times": times, "mode": mode})

    def _lose(self, method: str, path: str, code: int) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault["times"] > 0 and fault["method"] == method and fault["path"].search(path):
                    fault["times"] -= 1
                    self.lost.append({"method": method, "path": path, "code": code, "mode": fault["mode"]})
                    return str(fault["mode"])
        return None

    def deny(self, verb: str, resource: str, group: str = "", *, user: str | None = None) -> None:
        """Make access reviews answer ``allowed: false`` for ``verb`` on ``group``/``resource``.

        ``user`` None: for the caller (SelfSubjectAccessReview); else for that user, such as
        ``system:serviceaccount:ml:runner`` (LocalSubjectAccessReview). Everything else stays allowed.
        """
        with self.lock:
            self.denied.add((user, verb, group, resource))

    def _review(self, plural: str, body: dict[str, Any]) -> tuple[int, Any]:
        """An access review's answer (``authorization.k8s.io/v1``): the request with its ``status``, not stored.

        The RBAC authorizer says no without a reason and without ``denied`` (it has no deny rules).
        """
        spec = body.get("spec") or {}
        attributes = spec.get("resourceAttributes") or {}
        user = spec.get("user") if plural == "localsubjectaccessreviews" else None
        if plural == "localsubjectaccessreviews" and not user:
            return 422, _status(422, "Invalid", "spec.user: Required value")
        key = (user, attributes.get("verb", ""), attributes.get("group", ""), attributes.get("resource", ""))
        answer = copy.deepcopy(body)
        answer["status"] = {"allowed": key not in self.denied}
        return 201, answer

    def start_pod(self, namespace: str, generate_name: str, labels: dict[str, str], containers: list[str],
                  created: str | None = None) -> str:
        """Create a running Pod as a controller and the kubelet would (not a request to the API); its name.

        ``created`` is its creationTimestamp (the API's, to the second), by default now.
        """
        running = {"running": {"startedAt": _now()}}
        meta = {"generateName": generate_name, "namespace": namespace, "labels": dict(labels),
                "creationTimestamp": created or _now()}
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                "spec": {"containers": [{"name": c} for c in containers], "restartPolicy": "Never"},
                "status": {"phase": "Running",
                           "containerStatuses": [{"name": c, "state": running} for c in containers]}}
        with self.lock:
            code, created = self._create(f"/api/v1/namespaces/{namespace}/pods", "pods", body)
        assert code == 201, created
        return str(created["metadata"]["name"])

    def end_pod(self, namespace: str, name: str, exit_code: int) -> None:
        """Every container of the pod terminated with ``exit_code`` (nothing if the pod was deleted meanwhile)."""
        collection = f"/api/v1/namespaces/{namespace}/pods"
        with self.lock:
            pod = self.objects.get(f"{collection}/{name}")
            if pod is None:
                return
            terminated = {"terminated": {"exitCode": exit_code, "finishedAt": _now()}}
            self.set_status(collection, name, {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [{"name": c["name"], "state": terminated} for c in pod["spec"]["containers"]]},
                merge=False)

    def append_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        """Append ``text`` to a container's log, as the kubelet does while the container writes."""
        with self.lock:
            key = f"{namespace}/{pod}/{container}"
            self.logs[key] = self.logs.get(key, "") + text
            self.changed.notify_all()

    def serve_log(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer ``GET .../pods/{name}/log`` (see the module's docstring for what is modelled)."""
        parsed = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        self.requests.append({"method": "GET", "path": parsed.path, "query": query, "body": None,
                              "content_type": ""})
        match = LOG_PATH.match(parsed.path)
        assert match is not None
        namespace, name = match.groups()
        with self.lock:
            code, answer = self._log_request(namespace, name, query)
        if code != 200:
            data = json.dumps(answer).encode()
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        key = f"{namespace}/{name}/{answer}"
        if query.get("follow", "false") not in GO_TRUE:
            data = self.logs.get(key, "").encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        handler.protocol_version = "HTTP/1.1"  # chunked transfer, as the API server streams a followed log
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        sent = 0
        deadline = time.monotonic() + STALL_LIMIT
        while True:
            with self.lock:
                text = self.logs.get(key, "")
                ended = self._terminated(namespace, name, str(answer))
                if len(text) == sent and not ended and not self.released.is_set():
                    self.changed.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                    continue
            chunk = text[sent:].encode()
            sent = len(text)
            try:
                if chunk:
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    handler.wfile.flush()
                if ended or self.released.is_set() or time.monotonic() > deadline:
                    handler.wfile.write(b"0\r\n\r\n")
                    handler.wfile.flush()
                    break
            except OSError:  # the client went away (a ctrl-c while following)
                break
        handler.close_connection = True

    def _log_request(self, namespace: str, name: str, query: dict[str, str]) -> tuple[int, Any]:
        """(200, container name) or the API's error answer for a log request."""
        unknown = sorted(set(query) - LOG_QUERY)
        if unknown:
            return 400, _status(400, "BadRequest", f"the fake does not model log parameters {unknown}")
        if query.get("follow", "false") not in GO_TRUE | GO_FALSE:
            return 400, _status(400, "BadRequest", f"follow: invalid boolean {query['follow']!r}")
        pod = self.objects.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        if pod is None:
            return 404, _status(404, "NotFound", f'pods "{name}" not found')
        names = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        container = query.get("container")
        if not container:
            if len(names) != 1:
                return 400, _status(400, "BadRequest", f"a container name must be specified for pod {name}, "
                                                       f"choose one of: [{' '.join(names)}]")
            container = names[0]
        if container not in names:
            return 400, _status(400, "BadRequest", f"container {container} is not valid for pod {name}")
        state = self._container_state(pod, container)
        if "running" not in state and "terminated" not in state:
            reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
            return 400, _status(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: '
                                                   f"{reason}")
        return 200, container

    @staticmethod
    def _container_state(pod: dict[str, Any], container: str) -> dict[str, Any]:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == container:
                return dict(status.get("state") or {})
        return {}

    def _terminated(self, namespace: str, name: str, container: str) -> bool:
        pod = self.objects.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        return pod is None or "terminated" in self._container_state(pod, container)

    def requests_to(self, method: str, fragment: str = "") -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and fragment in r["path"]]

    def refuse(self, method: str, path: str, code: int, reason: str, *, times: int = 1) -> None:
        """Answer the next ``times`` requests ``method`` to a path matching ``path`` (a regex) with an error.

        The answer is the API server's ``Status`` object for ``code`` and ``reason`` (e.g. 403 ``Forbidden``,
        503 ``ServiceUnavailable``; k8s.io/apimachinery/pkg/api/errors), and nothing is done.
        """
        with self.lock:
            self.refusals.append({"method": method, "path": re.compile(path), "times": times, "code": code,
                                  "reason": reason})

    def _refusal(self, method: str, path: str) -> tuple[int, Any] | None:
        with self.lock:
            for refusal in self.refusals:
                if refusal["times"] > 0 and refusal["method"] == method and refusal["path"].search(path):
                    refusal["times"] -= 1
                    code, reason = refusal["code"], refusal["reason"]
                    return code, _status(code, reason, f"{reason}: refused by the test ({method} {path})")
        return None

    def install(self, collection: str, obj: dict[str, Any]) -> None:
        """Store ``obj`` in ``collection`` (``/api/v1/namespaces/ns/configmaps``) as an installer left it: before
        the test, so not recorded as a request."""
        with self.lock:
            self._create(collection, collection.rsplit("/", 1)[-1], obj)

    # -- the API ----------------------------------------------------------------------------------
    def _bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.changed.notify_all()  # a followed log ends when its pod's status says the container terminated

    @staticmethod
    def _split(path: str) -> tuple[str, str | None, bool]:
        """(collection path, name or None, whether it targets the status subresource)."""
        parts = path.rstrip("/").split("/")
        base = 3 if parts[1] == "api" else 4  # ["", "api", "v1", ...] or ["", "apis", g, v, ...]
        rest = parts[base:]
        if rest and rest[0] == "namespaces" and len(rest) >= 3:
            head, rest = parts[: base + 2], rest[2:]
        else:
            head = parts[:base]
        plural = rest[0] if rest else ""
        collection = "/".join(head + [plural])
        name = rest[1] if len(rest) > 1 else None
        status = len(rest) > 2 and rest[2] == "status"
        return collection, name, status

    def handle(self, method: str, raw_path: str, body: Any, content_type: str) -> tuple[int, Any]:
        parsed = urlparse(raw_path)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        self.requests.append({"method": method, "path": parsed.path, "query": query, "body": body,
                              "content_type": content_type})
        refused = self._refusal(method, parsed.path)
        if refused is not None:
            return refused
        if parsed.path in ("/version", "/version/"):
            major, minor = self.git_version.lstrip("v").split(".")[:2]  # apimachinery's version.Info, every field
            return 200, {"major": major, "minor": minor, "gitVersion": self.git_version,
                         "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                         "goVersion": "go1.25.0", "compiler": "gc", "platform": "linux/amd64"}
        if parsed.path in ("/api", "/apis"):
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        collection, name, status_only = self._split(parsed.path)
        plural = collection.rsplit("/", 1)[-1]
        with self.lock:
            if method == "POST" and plural in ("selfsubjectaccessreviews", "localsubjectaccessreviews"):
                return self._review(plural, body or {})
            if method == "POST":
                return self._create(collection, plural, body or {})
            key = f"{collection}/{name}"
            if name is None and method == "GET":
                return 200, self._list(collection, query.get("labelSelector"))
            if name is None and method == "DELETE":
                for item in self._list(collection, query.get("labelSelector"))["items"]:
                    self.objects.pop(f"{collection}/{item['metadata']['name']}", None)
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            current = self.objects.get(key)
            if current is None:
                return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
            if method == "GET":
                return 200, copy.deepcopy(current)
            if method == "DELETE":
                del self.objects[key]
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                             "details": {"name": name, "kind": plural}}
            if method == "PUT":
                sent = (body.get("metadata") or {}).get("resourceVersion")
                if sent and sent != current["metadata"].get("resourceVersion"):  # optimistic concurrency
                    return 409, _status(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the '
                                                         "object has been modified; please apply your changes to "
                                                         "the latest version and try again")
                replaced = copy.deepcopy(body)
                replaced["metadata"] = {**current["metadata"], **replaced.get("metadata", {})}
                if status_only:
                    replaced = {**current, "status": body.get("status", {})}
                elif "status" in current:
                    replaced.setdefault("status", current["status"])
                self.objects[key] = replaced
                self._bump(replaced)
                return 200, copy.deepcopy(replaced)
            if method == "PATCH":
                patched = json_patch(current, body) if isinstance(body, list) else merge_patch(current, body)
                self.objects[key] = patched
                self._bump(patched)
                return 200, copy.deepcopy(patched)
        return 405, _status(405, "MethodNotAllowed", f"{method} not supported")

    def _create(self, collection: str, plural: str, body: dict[str, Any]) -> tuple[int, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            return 422, _status(422, "Invalid", "metadata.name: Required value")
        key = f"{collection}/{name}"
        if key in self.objects:
            return 409, _status(409, "AlreadyExists", f'{plural} "{name}" already exists')
        if "/namespaces/" in collection:
            meta.setdefault("namespace", collection.split("/namespaces/")[1].split("/")[0])
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        self._bump(obj)
        self.objects[key] = obj
        for hook in self.hooks.get(plural, []):
            thread = threading.Thread(target=hook, args=(self, copy.deepcopy(obj)), daemon=True)
            self.threads.append(thread)
            thread.start()
        return 201, copy.deepcopy(obj)

    def _list(self, collection: str, selector: str | None) -> dict[str, Any]:
        items = self.items(collection)
        if selector:
            terms = [t.split("=", 1) for t in selector.split(",") if "=" in t]
            items = [i for i in items
                     if all(i.get("metadata", {}).get("labels", {}).get(k.rstrip("!")) == v for k, v in terms)]
        return {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.version)},
                "items": items}
