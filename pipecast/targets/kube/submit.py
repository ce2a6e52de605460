"""Submitting and tracking Kubernetes custom resources (Tekton PipelineRuns, Argo Workflows).

One code path for both engines, through the ``kubernetes`` client's ``CustomObjectsApi``: the
definition (``Pipeline``/``WorkflowTemplate``) is created or replaced (idempotent), the run object is
created under a name derived from pipecast's run id, and the returned handle reads the run's status,
waits, cancels and knows its UI URL. The client is imported lazily; this module itself is light.

Every API call (here and in the ``kubernetes`` target) goes through :func:`call_api`: bounded by a timeout,
retried when its answer was lost (connection dropped, timed out) or the server asked to wait (429/5xx with
Retry-After, as client-go does). Writes are retried too, because every object pipecast writes has a name of
its own: a create whose first answer was lost meets 409 AlreadyExists on the next try, and the object is
then read back and recognised by its run-id annotation (:func:`create_run_object`) instead of failing.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from pipecast.compiler import ir, naming
from pipecast.errors import SubmitError
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import Bundle, RunHandle, RunStatus, Target
from pipecast.targets.kube import crd as kube_crd

CONFIG_KEYS = ("kubeconfig", "context", "in_cluster", "namespace")
REQUEST_TIMEOUT = 30.0  # seconds to connect, and again to read the answer, of any one API call
ATTEMPTS = 4  # tries of one API call whose answer was lost
RETRY_DELAY = 1.0  # seconds before the second try, doubled before each further one
MAX_RETRY_AFTER = 30.0  # the longest wait a server's Retry-After is honoured for
_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
T = TypeVar("T")


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
        failure_detail: Names what failed (``task 'x' failed: …``) given the run's namespace
            (:class:`CustomObjects`) and the failed run object.
        cancel_patch: The merge patch that cancels a run.
        ui_setting: The ``--config`` key of the UI base URL.
        ui_env: The environment variable read when the config has no UI base URL.
        default_ui: The UI base URL when none is configured (the engine's port-forward address).
        ui_url: Builds a run's URL from the base, namespace and name.
        injected_env: Name prefixes of env the engine adds to each step container (see
            ``kube_crd.kubelet_change``).
        value_change: Why the engine's own later substitution passes would change a parameter value it
            inserted into a step's args, or None (see ``kube_crd.parameter_value_problems``).
        value_change_fix: The fix named with ``value_change``'s problems.
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
    value_change: Callable[[str], str | None] | None = None
    value_change_fix: str = ""

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
    cluster = connect(config)
    namespace = str(config.get("namespace") or run["metadata"].get("namespace") or cluster.namespace or "default")
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
    objects = CustomObjects(cluster, engine.group, engine.version, namespace)
    for definition in definitions:
        _create_or_replace(objects, engine.definition_kinds[definition["kind"]], definition)
    base = str(config.get(engine.ui_setting) or os.environ.get(engine.ui_env) or engine.default_ui)
    url = engine.ui_url(base, namespace, name)
    create_run_object(run_id, f"{engine.run_kind} {name!r} in namespace {namespace!r}",
                      lambda: objects.create(engine.run_plural, run), lambda: objects.get(engine.run_plural, name),
                      record={"engine_run_id": f"{namespace}/{name}", "url": url})
    return CustomResourceRun(run_id=run_id, target=target.name, engine=engine, objects=objects, name=name, url=url)


def create_run_object(run_id: str, what: str, create: Callable[[], Any], read: Callable[[], dict[str, Any]], *,
                      record: Mapping[str, Any]) -> None:
    """Create the object that is the run, named by pipecast: a submit whose outcome is unknown asks the server.

    A 409 AlreadyExists on a try after a lost answer means an earlier try worked: the object is read back and,
    if its run-id annotation is this run's, adopted. When the server stays silent after a try that may have
    reached it, the engine run id is recorded (``record``: ``engine_run_id``, ``url``, ``metadata``), so
    ``pipecast runs wait`` can ask once the server answers.
    """
    try:
        create()
        return
    except OutcomeUnknown as err:
        from pipecast.runs.store import RunStore

        RunStore.default().set_engine_run(run_id, **record)
        raise SubmitError(f"{err}; whether {what} was created is unknown: `pipecast runs wait {run_id}` asks the "
                          "cluster once it answers") from None
    except KubeError as err:
        if err.status != 409:
            raise
    existing = read()
    owner = ((existing.get("metadata") or {}).get("annotations") or {}).get(kube_crd.RUN_ANNOTATION)
    if owner != run_id:
        belongs = f"run {owner!r}" if owner else "no pipecast run"
        raise SubmitError(f"cannot create {what}: an object of that name exists and belongs to {belongs}; nothing "
                          "was submitted")


def reconnect(target: Target, record: Mapping[str, Any], config: Mapping[str, Any],
              engine: Engine) -> CustomResourceRun:
    """The handle of a recorded run (its engine run id is ``namespace/name``)."""
    from pipecast.targets.registry import require_extra

    require_extra(target)
    _check_config(target, config, engine)
    namespace, _, name = str(record.get("engine_run_id") or "").partition("/")
    if not namespace or not name:
        raise SubmitError(f"run {record.get('id')!r} has no engine run id 'namespace/name' to reconnect to")
    objects = CustomObjects(connect(config), engine.group, engine.version, namespace)
    return CustomResourceRun(run_id=str(record["id"]), target=target.name, engine=engine, objects=objects, name=name,
                             url=record.get("url"))


class CustomResourceRun(RunHandle):
    """A run object in a namespace: status from the object, cancel by a merge patch."""

    def __init__(self, *, run_id: str, target: str, engine: Engine, objects: CustomObjects, name: str,
                 url: str | None) -> None:
        super().__init__(run_id=run_id, target=target, engine_run_id=f"{objects.namespace}/{name}", url=url)
        self.engine = engine
        self.objects = objects
        self.namespace = objects.namespace
        self.name = name

    def fetch_status(self) -> RunStatus:
        """Read the run object and map its state (the failing task goes into ``detail``)."""
        engine = self.engine
        try:
            obj = self.objects.get(engine.run_plural, self.name)
        except KubeError as err:
            if err.status != 404:
                raise
            self.detail = (f"{engine.run_kind} {self.name!r} does not exist in namespace {self.namespace!r}: it was "
                           "deleted, or never created")
            return RunStatus.FAILED
        status, message = engine.read_status(obj)
        self.detail = message
        if status is RunStatus.FAILED:
            self.detail = engine.failure_detail(self.objects, obj) or message
        return status

    def cancel(self) -> None:
        """Ask the engine to stop the run (it stops its tasks and ends the run as cancelled)."""
        self.objects.patch(self.engine.run_plural, self.name, copy.deepcopy(dict(self.engine.cancel_patch)))


@dataclass(frozen=True)
class Cluster:
    """The API server calls go to, for messages that say where: client, address, configuration, namespace."""

    api_client: Any
    host: str
    source: str  # e.g. "kubeconfig '~/.kube/config', context 'prod'"
    namespace: str | None = None


class KubeError(SubmitError):
    """The API server answered a call with an error ``status`` (404, 409, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class OutcomeUnknown(SubmitError):
    """A write got no answer: the server may or may not have done it."""


def request_timeout() -> tuple[float, float]:
    """The client's ``_request_timeout``: a (connect, read) pair, since it ignores a lone float."""
    return (REQUEST_TIMEOUT, REQUEST_TIMEOUT)


def call_api(cluster: Cluster, what: str, send: Callable[[], T], *, write: bool = False) -> T:
    """``send()`` one API call (passing ``_request_timeout=request_timeout()``), retried when its answer was lost.

    A connection error or timeout is tried again up to :data:`ATTEMPTS` times, backing off, and so is a
    429 or 5xx that carries Retry-After (client-go's rule). Writes are retried as well: callers name every
    object they write and read a 409 as "done already" (see :func:`create_run_object`).

    Raises:
        KubeError: the server refused the call (status, its message and a hint).
        OutcomeUnknown: a ``write`` that may have reached the server never got an answer.
        SubmitError: the server could not be reached; says where, with which configuration, and the fix.
    """
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    maybe_sent = False
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return send()
        except ApiException as err:
            if not err.status:  # the client's own failure before any answer, e.g. a TLS handshake
                raise SubmitError(f"cannot {what}: {err.reason}; {_where(cluster)}") from None
            wait = _retry_after(err)
            if wait is None or attempt == ATTEMPTS:
                raise api_error(what, err) from None
        except (OSError, HTTPError) as err:
            maybe_sent = maybe_sent or _maybe_sent(err)
            if attempt == ATTEMPTS:
                reason = f"cannot {what}: no answer from the Kubernetes API server after {ATTEMPTS} tries " \
                         f"({_cause(err)}); {_where(cluster)}"
                raise (OutcomeUnknown if write and maybe_sent else SubmitError)(reason) from None
            wait = RETRY_DELAY * 2 ** (attempt - 1)
        time.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


def _where(cluster: Cluster) -> str:
    return (f"the API server is {cluster.host} ({cluster.source}); check that it is up and reachable from here "
            "(`kubectl cluster-info`), or choose the cluster with --config kubeconfig=PATH and --config context=NAME")


def _cause(err: BaseException) -> str:
    """The underlying reason of a urllib3 error (``MaxRetryError`` wraps the connection error)."""
    reason = getattr(err, "reason", None)
    return str(reason if isinstance(reason, BaseException) else err)


def _maybe_sent(err: BaseException) -> bool:
    """Whether the request may have reached the server (no: the connection was never made)."""
    from urllib3.exceptions import ConnectTimeoutError

    reason = getattr(err, "reason", None)
    cause = reason if isinstance(reason, BaseException) else err
    return not isinstance(cause, (ConnectTimeoutError, ConnectionRefusedError))


def _retry_after(err: Any) -> float | None:
    """Seconds to wait before trying again, when the server said so (429 or 5xx with Retry-After)."""
    if err.status != 429 and err.status < 500:
        return None
    try:
        seconds = float((err.headers or {}).get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def api_error(what: str, err: Any) -> KubeError:
    """The SubmitError for an API server's error answer: what failed, its status and message, and a hint."""
    message = err.reason
    try:
        import json

        message = json.loads(err.body).get("message") or message
    except (TypeError, ValueError, AttributeError):
        pass
    hint = {401: "check your credentials", 403: "your account lacks RBAC rights for this",
            404: "does the namespace exist, and, for Tekton or Argo, the engine's CRD?"}.get(err.status, "")
    return KubeError(err.status, f"cannot {what}: {err.status} {message}" + (f" ({hint})" if hint else ""))


class CustomObjects:
    """Namespaced custom objects of one API group and version, every call through :func:`call_api`."""

    def __init__(self, cluster: Cluster, group: str, version: str, namespace: str) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.api = client.CustomObjectsApi(cluster.api_client)
        self.group, self.version, self.namespace = group, version, namespace

    def _call(self, what: str, method: str, *args: Any, write: bool = False, **kwargs: Any) -> Any:
        function = getattr(self.api, method)
        return call_api(self.cluster, what, lambda: function(self.group, self.version, self.namespace, *args,
                                                             _request_timeout=request_timeout(), **kwargs),
                        write=write)

    @staticmethod
    def _what(body: Mapping[str, Any]) -> str:
        return f"{body['kind']} {body['metadata']['name']!r}"

    def create(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(f"create {self._what(body)}", "create_namespaced_custom_object", plural, body,  # type: ignore[no-any-return]
                          write=True)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self._call(f"read {plural} {name!r}", "get_namespaced_custom_object", plural, name)  # type: ignore[no-any-return]

    def replace(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(f"replace {self._what(body)}", "replace_namespaced_custom_object", plural,  # type: ignore[no-any-return]
                          body["metadata"]["name"], body, write=True)

    def patch(self, plural: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(f"patch {plural} {name!r}", "patch_namespaced_custom_object", plural, name, body,  # type: ignore[no-any-return]
                          write=True)

    def list(self, plural: str, selector: str) -> dict[str, Any]:
        return self._call(f"list {plural}", "list_namespaced_custom_object", plural,  # type: ignore[no-any-return]
                          label_selector=selector)


def describe_source(kubeconfig: str | None, context: str | None, *, in_cluster: bool = False) -> str:
    """Where the client's configuration came from, for messages: the kubeconfig and context, or in-cluster."""
    if in_cluster:
        return "in-cluster service account"
    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if not context:
        try:
            from kubernetes import config as kube_config

            _, active = kube_config.list_kube_config_contexts(config_file=kubeconfig)
            context = (active or {}).get("name")
        except Exception:  # a kubeconfig that cannot be read: only the message loses the context name
            context = None
    return f"kubeconfig {path!r}" + (f", context {context!r}" if context else "")


def connect(config: Mapping[str, Any]) -> Cluster:
    """The cluster of ``--config``: the kubeconfig (``kubeconfig``/``context``) or in-cluster credentials."""
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
            return Cluster(client.ApiClient(configuration), configuration.host,
                           describe_source(None, None, in_cluster=True), namespace)
        path = config.get("kubeconfig")
        context = config.get("context")
        api = kube_config.new_client_from_config(config_file=path, context=context, persist_config=False)
        contexts, active = kube_config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
        return Cluster(api, api.configuration.host, describe_source(path, (chosen or {}).get("name")),
                       (chosen or {}).get("context", {}).get("namespace"))
    except kube_config.ConfigException as err:
        raise SubmitError(f"cannot load the Kubernetes configuration: {err}; pass --config kubeconfig=PATH "
                          f"(and context=NAME), set KUBECONFIG, or --config in_cluster=true inside a pod") from None


def _check_config(target: Target, config: Mapping[str, Any], engine: Engine) -> None:
    known = (*CONFIG_KEYS, engine.ui_setting)
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise SubmitError(f"unknown --config key(s) {unknown!r} for target {target.name!r}; known: {list(known)!r}")


def _check_parameter_values(pipeline: ir.Pipeline, parameters: Mapping[str, Any], engine: Engine) -> None:
    """Refuse values the engine or the kubelet would change, before any request.

    A value equal to the parameter's default is left alone: compile already reported the default
    (as an error, or as a warning the user accepted with ``--on-unsupported=warn``).
    """
    given = {}
    for param in pipeline.parameters:
        if param.name in parameters and (param.required or render_parameter(param.type, parameters[param.name])
                                         != render_parameter(param.type, param.default)):
            given[param.name] = parameters[param.name]
    problems = kube_crd.parameter_value_problems(pipeline, given, "value", prefixes=engine.injected_env,
                                                 engine_change=engine.value_change, engine_fix=engine.value_change_fix)
    if problems:
        fixes = sorted({fix for _, _, fix in problems})
        raise SubmitError("; ".join(message for _, message, _ in problems)
                          + f"; nothing was submitted ({'; '.join(fixes)})")


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


def _create_or_replace(objects: CustomObjects, plural: str, body: dict[str, Any]) -> None:
    """Create ``body``; if it exists, replace it at its current resourceVersion (a few tries on conflict)."""
    try:
        objects.create(plural, body)
        return
    except KubeError as err:
        if err.status != 409:
            raise
    name = body["metadata"]["name"]
    for _ in range(3):
        current = objects.get(plural, name)
        replacement = copy.deepcopy(body)
        replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            objects.replace(plural, replacement)
            return
        except KubeError as err:
            if err.status != 409:
                raise
    raise SubmitError(f"cannot replace {body['kind']} {name!r}: it kept changing while pipecast updated it; try again")
