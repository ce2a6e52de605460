"""The ``argo`` target's submit module: through the Kubernetes API, or through Argo Server's REST API.

With ``-c argo_server=URL`` the run goes through Argo Server (``/api/v1/workflow-templates/{ns}``,
``/api/v1/workflows/{ns}``), authenticated with ``Authorization: Bearer`` and the token in ``$ARGO_TOKEN``
(as the ``argo`` CLI reads it), which is how SSO and multi-tenant clusters let users in. Argo Server then
checks the caller's rights itself. Without it, :mod:`pipecast.targets.kube.submit` does the work.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any, cast

from pipecast.compiler import naming
from pipecast.errors import SubmitError
from pipecast.http import HttpClient, Response
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.targets import versions
from pipecast.targets.base import SubmitRequest
from pipecast.targets.kube import submit as kube_submit
from pipecast.targets.kube.client import check_config
from pipecast.targets.kube.crd import CustomResourceTarget, Engine
from pipecast.targets.kube.limits import refuse_oversized
from pipecast.targets.kube.objects import RUN_ANNOTATION

TOKEN_ENV = "ARGO_TOKEN"


def submit(request: SubmitRequest) -> EngineRun:
    """Submit through Argo Server when ``-c argo_server`` is given, else through the Kubernetes API."""
    if not request.config.get("argo_server"):
        return kube_submit.submit(request)
    target = cast(CustomResourceTarget, request.target)
    engine = target.engine
    check_config(target.name, request.config, target.connection_keys())
    kube_submit._check_parameter_values(request.pipeline, request.parameters, engine)
    definitions, run = kube_submit._documents(request.bundle, engine)
    namespace = str(request.config.get("namespace") or run["metadata"].get("namespace") or "default")
    name = naming.rule_for("dns1123_label").apply(request.run_id)
    for definition in definitions:
        definition["metadata"]["namespace"] = namespace
    run["metadata"] = {
        "name": name, "namespace": namespace, "labels": run["metadata"].get("labels", {}),
        "annotations": {**run["metadata"].get("annotations", {}), RUN_ANNOTATION: request.run_id},
    }
    engine.set_parameters(run, request.pipeline, request.parameters)
    refuse_oversized([*definitions, run])
    if engine.check_run:
        engine.check_run(request.pipeline, [*definitions, run], request.parameters)
    server = ArgoServer(str(request.config["argo_server"]))
    versions.check_argo_server(server)  # too old: refused before anything is made
    for definition in definitions:
        server.apply_template(namespace, definition)
    url = _ui_url(engine, request.config, namespace, name)
    request.note(engine_run_id=f"{namespace}/{name}", url=url)
    server.create_workflow(namespace, run, request.run_id)
    return ArgoServerRun(run_id=request.run_id, target=target.name, engine=engine, server=server,
                         namespace=namespace, name=name, url=url)


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> EngineRun:
    """The run of a record, through Argo Server when ``-c argo_server`` is given again, else the Kubernetes API."""
    if not config.get("argo_server"):
        return kube_submit.reconnect(record, config)
    from pipecast.targets.registry import get_target

    target = cast(CustomResourceTarget, get_target(str(record["target"])))
    check_config(target.name, config, target.connection_keys())
    namespace, _, name = str(record.get("engine_run_id") or "").partition("/")
    if not namespace or not name:
        raise SubmitError(f"run {record.get('id')!r} has no engine run id 'namespace/name' to reconnect to")
    return ArgoServerRun(run_id=str(record["id"]), target=target.name, engine=target.engine,
                         server=ArgoServer(str(config["argo_server"])), namespace=namespace, name=name,
                         url=record.get("url"))


class ArgoServer:
    """Argo Server's REST API (the ``WorkflowService`` and ``WorkflowTemplateService`` of its OpenAPI spec)."""

    def __init__(self, base: str) -> None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise SubmitError(f"-c argo_server is set but ${TOKEN_ENV} is empty; set it to your Argo Server token "
                              f"(`export {TOKEN_ENV}=\"Bearer $(argo auth token)\"`, or a service account token)")
        if not token.lower().startswith("bearer "):
            token = f"Bearer {token}"
        self.base = base.rstrip("/")
        self.http = HttpClient(engine="Argo Server", headers={"Authorization": token})

    def call(self, method: str, path: str, what: str, body: Any = None, *, ok: tuple[int, ...] = (200,),
             repeatable: bool | None = None) -> Response:
        """One request; an answer outside ``ok`` is a SubmitError saying what failed and Argo Server's message."""
        answer = self.http.send(method, f"{self.base}{path}", body=body, repeatable=repeatable)
        if answer.status not in ok:
            message = answer.body.get("message") if isinstance(answer.body, dict) else answer.body
            hint = {401: f"check ${TOKEN_ENV}", 403: "your account lacks the RBAC rights for this"}.get(
                answer.status, "")
            raise SubmitError(f"cannot {what}: Argo Server answered {answer.status} {message}"
                              + (f" ({hint})" if hint else ""))
        return answer

    def apply_template(self, namespace: str, template: dict[str, Any]) -> None:
        """Create the WorkflowTemplate, or update it at its current resourceVersion."""
        name = template["metadata"]["name"]
        what = f"create WorkflowTemplate {name!r} in namespace {namespace!r}"
        answer = self.call("POST", f"/api/v1/workflow-templates/{namespace}", what,
                           {"namespace": namespace, "template": template}, ok=(200, 409), repeatable=True)
        if answer.status == 200:
            return
        path = f"/api/v1/workflow-templates/{namespace}/{name}"
        current = self.call("GET", path, f"read WorkflowTemplate {name!r}").body
        replacement = copy.deepcopy(template)
        replacement["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
        self.call("PUT", path, f"update WorkflowTemplate {name!r} in namespace {namespace!r}",
                  {"namespace": namespace, "name": name, "template": replacement}, repeatable=True)

    def create_workflow(self, namespace: str, workflow: dict[str, Any], run_id: str) -> None:
        """Create the run's Workflow; a 409 on a retry is adopted when the Workflow is this run's."""
        name = workflow["metadata"]["name"]
        answer = self.call("POST", f"/api/v1/workflows/{namespace}", f"create Workflow {name!r} in namespace "
                           f"{namespace!r}", {"namespace": namespace, "workflow": workflow}, ok=(200, 409),
                           repeatable=True)
        if answer.status == 409:
            existing = self.get_workflow(namespace, name)
            owner = ((existing.get("metadata") or {}).get("annotations") or {}).get(RUN_ANNOTATION)
            if owner != run_id:
                raise SubmitError(f"cannot create Workflow {name!r} in namespace {namespace!r}: one of that name "
                                  f"exists and belongs to {f'run {owner!r}' if owner else 'no pipecast run'}")

    def get_workflow(self, namespace: str, name: str) -> dict[str, Any]:
        """Read one Workflow."""
        workflow: dict[str, Any] = self.call("GET", f"/api/v1/workflows/{namespace}/{name}",
                                             f"read Workflow {name!r} in namespace {namespace!r}").body
        return workflow


class ArgoServerRun(EngineRun):
    """A Workflow read and terminated through Argo Server."""

    def __init__(self, *, run_id: str, target: str, engine: Engine, server: ArgoServer, namespace: str, name: str,
                 url: str | None) -> None:
        super().__init__(run_id=run_id, target=target, engine_run_id=f"{namespace}/{name}", url=url)
        self.engine, self.server, self.namespace, self.name = engine, server, namespace, name

    def fetch_status(self) -> RunStatus:
        """Read the Workflow and map ``status.phase`` (the failing task goes into ``detail``)."""
        workflow = self.server.get_workflow(self.namespace, self.name)
        status, message = self.engine.read_status(workflow)
        self.detail = message
        if status is RunStatus.FAILED:
            self.detail = self.engine.failure_detail(None, workflow) or message
        return status

    def cancel(self) -> None:
        """Terminate the Workflow (``PUT …/terminate``, which sets ``spec.shutdown: Terminate``)."""
        self.server.call("PUT", f"/api/v1/workflows/{self.namespace}/{self.name}/terminate",
                         f"terminate Workflow {self.name!r}", {"namespace": self.namespace, "name": self.name},
                         repeatable=True)


def _ui_url(engine: Engine, config: Mapping[str, Any], namespace: str, name: str) -> str:
    base = str(config.get(engine.ui_setting) or os.environ.get(engine.ui_env) or config["argo_server"])
    return engine.ui_url(base, namespace, name)
