"""Submitting and tracking Kubernetes custom resources (Tekton PipelineRuns, Argo Workflows).

One code path for both engines, through the ``kubernetes`` client's ``CustomObjectsApi``: the
definition (``Pipeline``/``WorkflowTemplate``) is created or replaced (idempotent), the run object is
created under a name derived from pipecast's run id, and the returned handle reads the run's status,
waits, cancels and knows its UI URL. The client is imported lazily; this module itself is light.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from pipecast.compiler import ir, naming
from pipecast.errors import SubmitError
from pipecast.runtime.params import render_parameter
from pipecast.targets import kube_crd
from pipecast.targets.base import Bundle, RunHandle, RunStatus, Target

CONFIG_KEYS = ("kubeconfig", "context", "in_cluster", "namespace")
REQUEST_TIMEOUT = 30.0  # seconds for any one API call
_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class Engine:
    """What differs between the engines that run as custom resources.

    Attributes:
        group: API group (``tekton.dev``).
        version: API version (``v1``).
        definition_kinds: Kinds created or replaced before the run, mapped to their plural.
        run_kind: The kind of the run object (``PipelineRun``).
        run_plural: Its plural (``pipelineruns``).
        set_parameters: Writes run parameter values into the run object.
        read_status: Maps a run object to a RunStatus and a message.
        failure_detail: Names what failed (``task 'x' failed: …``) given the API and the failed run object.
        cancel_patch: The merge patch that cancels a run.
        ui_setting: The ``--config`` key of the UI base URL.
        ui_env: The environment variable read when the config has no UI base URL.
        default_ui: The UI base URL when none is configured (the engine's port-forward address).
        ui_url: Builds a run's URL from the base, namespace and name.
        injected_env: Name prefixes of env the engine adds to each step container (see
            ``kube_crd.kubelet_change``).
    """

    group: str
    version: str
    definition_kinds: Mapping[str, str]
    run_kind: str
    run_plural: str
    set_parameters: Callable[[dict[str, Any], ir.Pipeline, Mapping[str, Any]], None]
    read_status: Callable[[Mapping[str, Any]], tuple[RunStatus, str]]
    failure_detail: Callable[[Any, Mapping[str, Any]], str]
    cancel_patch: Mapping[str, Any]
    ui_setting: str
    ui_env: str
    default_ui: str
    ui_url: Callable[[str, str, str], str]
    injected_env: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def submit_bundle(target: Target, pipeline: ir.Pipeline, bundle: Bundle, parameters: Mapping[str, Any],
                  config: Mapping[str, Any], run_id: str, engine: Engine) -> CustomResourceRun:
    """Create the bundle's definitions (idempotently) and its run object; return the run's handle."""
    from pipecast.targets.registry import require_extra

    require_extra(target)
    _check_config(target, config, engine)
    _check_parameter_values(pipeline, parameters, engine)
    definitions, run = _documents(bundle, engine)
    api_client, context_namespace = api_client_for(config)
    namespace = str(config.get("namespace") or run["metadata"].get("namespace") or context_namespace or "default")
    name = naming.rule_for("dns1123_label").apply(run_id)
    for definition in definitions:
        definition["metadata"]["namespace"] = namespace
    run["metadata"] = {
        "name": name, "namespace": namespace, "labels": run["metadata"].get("labels", {}),
        "annotations": {**run["metadata"].get("annotations", {}), kube_crd.RUN_ANNOTATION: run_id},
    }
    engine.set_parameters(run, pipeline, parameters)
    for document in [*definitions, run]:
        problem = kube_crd.size_problem(document)
        if problem:
            raise SubmitError(f"{problem}; nothing was submitted")
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    for definition in definitions:
        _create_or_replace(api, engine, namespace, engine.definition_kinds[definition["kind"]], definition)
    _call(f"create {engine.run_kind} {name!r}", api.create_namespaced_custom_object,
          engine.group, engine.version, namespace, engine.run_plural, run)
    base = str(config.get(engine.ui_setting) or os.environ.get(engine.ui_env) or engine.default_ui)
    return CustomResourceRun(run_id=run_id, target=target.name, engine=engine, api=api, namespace=namespace,
                             name=name, url=engine.ui_url(base, namespace, name))


def reconnect(target: Target, record: Mapping[str, Any], config: Mapping[str, Any],
              engine: Engine) -> CustomResourceRun:
    """The handle of a recorded run (its engine run id is ``namespace/name``)."""
    from pipecast.targets.registry import require_extra

    require_extra(target)
    _check_config(target, config, engine)
    namespace, _, name = str(record.get("engine_run_id") or "").partition("/")
    if not namespace or not name:
        raise SubmitError(f"run {record.get('id')!r} has no engine run id 'namespace/name' to reconnect to")
    api_client, _ = api_client_for(config)
    from kubernetes import client

    return CustomResourceRun(run_id=str(record["id"]), target=target.name, engine=engine,
                             api=client.CustomObjectsApi(api_client), namespace=namespace, name=name,
                             url=record.get("url"))


class CustomResourceRun(RunHandle):
    """A run object in a namespace: status from the object, cancel by a merge patch."""

    def __init__(self, *, run_id: str, target: str, engine: Engine, api: Any, namespace: str, name: str,
                 url: str | None) -> None:
        super().__init__(run_id=run_id, target=target, engine_run_id=f"{namespace}/{name}", url=url)
        self.engine = engine
        self.api = api
        self.namespace = namespace
        self.name = name

    def fetch_status(self) -> RunStatus:
        """Read the run object and map its state (the failing task goes into ``detail``)."""
        engine = self.engine
        obj = _call(f"read {engine.run_kind} {self.name!r}", self.api.get_namespaced_custom_object,
                    engine.group, engine.version, self.namespace, engine.run_plural, self.name)
        status, message = engine.read_status(obj)
        self.detail = message
        if status is RunStatus.FAILED:
            self.detail = engine.failure_detail(self.api, obj) or message
        return status

    def cancel(self) -> None:
        """Ask the engine to stop the run (it stops its tasks and ends the run as cancelled)."""
        engine = self.engine
        _call(f"cancel {engine.run_kind} {self.name!r}", self.api.patch_namespaced_custom_object,
              engine.group, engine.version, self.namespace, engine.run_plural, self.name,
              copy.deepcopy(dict(engine.cancel_patch)))


def api_client_for(config: Mapping[str, Any]) -> tuple[Any, str | None]:
    """An ``ApiClient`` from the kubeconfig (``kubeconfig``/``context``) or in-cluster, and its namespace."""
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        if config.get("in_cluster"):
            configuration = client.Configuration()
            kube_config.load_incluster_config(client_configuration=configuration)
            namespace = None
            if os.path.exists(_SERVICE_ACCOUNT_NAMESPACE):
                with open(_SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
                    namespace = handle.read().strip() or None
            return client.ApiClient(configuration), namespace
        path = config.get("kubeconfig")
        context = config.get("context")
        api = kube_config.new_client_from_config(config_file=path, context=context, persist_config=False)
        contexts, active = kube_config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
        return api, (chosen or {}).get("context", {}).get("namespace")
    except kube_config.ConfigException as err:
        raise SubmitError(f"cannot load the Kubernetes configuration: {err}; pass --config kubeconfig=PATH "
                          f"(and context=NAME), set KUBECONFIG, or --config in_cluster=true inside a pod") from None


def _check_config(target: Target, config: Mapping[str, Any], engine: Engine) -> None:
    known = (*CONFIG_KEYS, engine.ui_setting)
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise SubmitError(f"unknown --config key(s) {unknown!r} for target {target.name!r}; known: {list(known)!r}")


def _check_parameter_values(pipeline: ir.Pipeline, parameters: Mapping[str, Any], engine: Engine) -> None:
    """Refuse values the kubelet would change, before any request.

    A value equal to the parameter's default is left alone: compile already reported the default
    (as an error, or as a warning the user accepted with ``--on-unsupported=warn``).
    """
    given = {}
    for param in pipeline.parameters:
        if param.name in parameters and (param.required or render_parameter(param.type, parameters[param.name])
                                         != render_parameter(param.type, param.default)):
            given[param.name] = parameters[param.name]
    problems = kube_crd.parameter_value_problems(pipeline, given, "value", prefixes=engine.injected_env)
    if problems:
        raise SubmitError("; ".join(message for _, message in problems)
                          + f"; nothing was submitted ({kube_crd.KUBELET_CHANGE_FIX})")


def _documents(bundle: Bundle, engine: Engine) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The definitions and the one run object of the bundle (the schedule's objects are left out)."""
    definitions: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for _, text in bundle.files:
        for document in yaml.safe_load_all(text):
            if not isinstance(document, dict) or document.get("apiVersion") != engine.api_version:
                continue
            if document.get("kind") in engine.definition_kinds:
                definitions.append(document)
            elif document.get("kind") == engine.run_kind:
                runs.append(document)
    if len(runs) != 1:
        raise SubmitError(f"the bundle holds {len(runs)} {engine.run_kind} objects; expected exactly one")
    return definitions, runs[0]


def _create_or_replace(api: Any, engine: Engine, namespace: str, plural: str, body: dict[str, Any]) -> None:
    """Create ``body``; if it exists, replace it at its current resourceVersion (a few tries on conflict)."""
    name = body["metadata"]["name"]
    what = f"{body['kind']} {name!r}"
    created = _call(f"create {what}", api.create_namespaced_custom_object, engine.group, engine.version,
                    namespace, plural, body, conflict_ok=True)
    if created is not CONFLICT:
        return
    for _ in range(3):
        current = _call(f"read {what}", api.get_namespaced_custom_object, engine.group, engine.version,
                        namespace, plural, name)
        replacement = copy.deepcopy(body)
        replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        replaced = _call(f"replace {what}", api.replace_namespaced_custom_object, engine.group, engine.version,
                         namespace, plural, name, replacement, conflict_ok=True)
        if replaced is not CONFLICT:
            return
    raise SubmitError(f"cannot replace {what}: it kept changing while pipecast updated it; try again")


CONFLICT = object()  # what _call returns for a 409 when the caller handles conflicts


def _call(what: str, method: Callable[..., Any], *args: Any, conflict_ok: bool = False) -> Any:
    """Call the API with a bounded timeout; turn its failures into SubmitErrors that say what failed."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return method(*args, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as err:
        if conflict_ok and err.status == 409:
            return CONFLICT
        raise _submit_error(what, err) from None
    except (OSError, HTTPError) as err:  # connection refused, DNS, TLS, timeouts
        raise SubmitError(f"cannot {what}: the Kubernetes API is unreachable ({err})") from None


def _submit_error(what: str, err: Any) -> SubmitError:
    message = err.reason
    try:
        import json

        message = json.loads(err.body).get("message") or message
    except (TypeError, ValueError, AttributeError):
        pass
    hint = {401: "check your credentials", 403: "your account lacks RBAC rights for this",
            404: "is the engine's CRD installed, and the namespace right?"}.get(err.status, "")
    return SubmitError(f"cannot {what}: {err.status} {message}" + (f" ({hint})" if hint else ""))


def list_objects(api: Any, group: str, version: str, namespace: str, plural: str, selector: str) -> dict[str, Any]:
    """List custom objects by label selector (a SubmitError if the API refuses)."""
    from kubernetes.client.rest import ApiException

    try:
        result: dict[str, Any] = api.list_namespaced_custom_object(group, version, namespace, plural,
                                                                   label_selector=selector,
                                                                   _request_timeout=REQUEST_TIMEOUT)
    except ApiException as err:
        raise _submit_error(f"list {plural}", err) from None
    return result
