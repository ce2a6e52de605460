"""Kubernetes objects as plain dicts: create, read, list, patch, replace and delete, applied idempotently.

:class:`Kube` is the one layer over the official client that every target uses: objects are exactly the
manifests the emitters build, answers are the server's JSON, and an error answer is a
:class:`~pipecast.targets.kube.client.KubeError` with its status, so callers never touch the SDK's model
classes. Core kinds go through their typed APIs, custom resources (Tekton, Argo) through
``CustomObjectsApi``; every call goes through :func:`~pipecast.targets.kube.client.call_api`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.targets.kube.client import Cluster, KubeError, call_api, request_timeout

RUN_ANNOTATION = "pipecast.dev/run-id"  # on the object that is a run: whose run it is

# Core kinds pipecast writes: kind -> (API class, method suffix)
_CORE = {
    "Job": ("BatchV1Api", "namespaced_job"),
    "CronJob": ("BatchV1Api", "namespaced_cron_job"),
    "ConfigMap": ("CoreV1Api", "namespaced_config_map"),
    "Pod": ("CoreV1Api", "namespaced_pod"),  # read and listed only (pipecast runs logs)
    "ServiceAccount": ("CoreV1Api", "namespaced_service_account"),
    "Role": ("RbacAuthorizationV1Api", "namespaced_role"),
    "RoleBinding": ("RbacAuthorizationV1Api", "namespaced_role_binding"),
}
_CUSTOM_VERBS = {"create": "create", "read": "get", "replace": "replace", "patch": "patch", "list": "list",
                 "delete": "delete"}


@dataclass(frozen=True)
class CustomKind:
    """Where the API serves a custom resource kind: ``/apis/<group>/<version>/namespaces/<ns>/<plural>``."""

    group: str
    version: str
    plural: str


class Kube:
    """Namespaced create/read/list/patch/replace/delete of core kinds and of the ``custom`` kinds given."""

    def __init__(self, cluster: Cluster, namespace: str, custom: Mapping[str, CustomKind] | None = None) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.custom = dict(custom or {})
        self._apis: dict[str, Any] = {}

    def _api(self, name: str) -> Any:
        from kubernetes import client

        api = self._apis.get(name)
        if api is None:
            api = self._apis[name] = getattr(client, name)(self.cluster.api_client)
        return api

    def _method(self, kind: str, verb: str, name: str | None) -> Callable[..., Any]:
        """The SDK method for ``verb`` on ``kind``, with the path arguments (group, namespace, name) bound."""
        custom = self.custom.get(kind)
        if custom is not None:
            method = getattr(self._api("CustomObjectsApi"), f"{_CUSTOM_VERBS[verb]}_namespaced_custom_object")
            path = [custom.group, custom.version, self.namespace, custom.plural, *([name] if name else [])]
        else:
            api_name, suffix = _CORE[kind]
            method = getattr(self._api(api_name), f"{verb}_{suffix}")
            path = [*([name] if name else []), self.namespace]
        return lambda *args, **kwargs: method(*path, *args, **kwargs)

    def _call(self, kind: str, verb: str, name: str | None, *args: Any, shown: str | None = None,
              **kwargs: Any) -> dict[str, Any]:
        """One call, its JSON answer decoded; ``name`` goes in the path, ``shown`` (default: ``name``) in messages."""
        method = self._method(kind, verb, name)
        shown = shown or name

        def send() -> Any:
            response = method(*args, _preload_content=False, _request_timeout=request_timeout(), **kwargs)
            return response.data  # read here, so a connection lost mid-answer is retried too

        what = f"{verb} {kind}" + (f" {shown!r}" if shown else "") + f" in namespace {self.namespace!r}"
        data = call_api(self.cluster, what, send, write=verb not in ("read", "list"))
        answer: dict[str, Any] = json.loads(data) if data else {}
        return answer

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``body`` (its kind and name say what); KubeError 409 if it exists."""
        return self._call(body["kind"], "create", None, body,
                          shown=body["metadata"].get("name"))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """Read one object."""
        return self._call(kind, "read", name)

    def replace(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the object ``body`` names (its resourceVersion must be the stored one)."""
        return self._call(body["kind"], "replace", body["metadata"]["name"], body)

    def patch(self, kind: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Patch one object (a merge patch)."""
        return self._call(kind, "patch", name, body)

    def list(self, kind: str, selector: str) -> list[dict[str, Any]]:
        """The objects of ``kind`` whose labels match ``selector``."""
        return list(self._call(kind, "list", None, label_selector=selector).get("items", []))

    def delete(self, kind: str, name: str, propagation: str = "Background") -> None:
        """Delete one object (``propagation``: what happens to the objects it owns)."""
        self._call(kind, "delete", name, propagation_policy=propagation)

    def delete_all(self, kind: str, selector: str, propagation: str = "Background") -> None:
        """Delete every object of ``kind`` whose labels match ``selector``."""
        self._call(kind, "delete_collection", None, label_selector=selector, propagation_policy=propagation)


def apply(api: Kube, body: Mapping[str, Any]) -> str:
    """Create ``body``, or replace the object of that name at its current resourceVersion; "created"/"updated".

    A replace whose answer was lost meets 409 Conflict on its next try (the resourceVersion moved on): the
    object is read again, a few times, before giving up.
    """
    try:
        api.create(body)
        return "created"
    except KubeError as err:
        if err.status != 409:
            raise
    name = body["metadata"]["name"]
    for _ in range(3):
        current = api.get(body["kind"], name)
        replacement = copy.deepcopy(dict(body))
        replacement["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
        try:
            api.replace(replacement)
            return "updated"
        except KubeError as err:
            if err.status != 409:
                raise
    raise SubmitError(f"cannot replace {body['kind']} {name!r}: it kept changing while pipecast updated it; try again")


def apply_all(api: Kube, documents: Sequence[Mapping[str, Any]]) -> None:
    """:func:`apply` each of ``documents`` (what a run needs before it starts: definitions, RBAC, the plan).

    No run exists yet, so a write whose answer was lost fails the submit rather than leaving it unknown.
    """
    for document in documents:
        try:
            apply(api, document)
        except SubmitOutcomeUnknownError as err:
            raise SubmitError(f"{err}; no run was started") from None


def create_run_object(api: Kube, body: Mapping[str, Any], run_id: str, *, role: str = "") -> None:
    """Create the object that is the run, named by pipecast: a create whose outcome is unknown asks the server.

    A 409 AlreadyExists on a try after a lost answer means an earlier try worked: the object is read back and,
    if its run-id annotation is this run's, adopted. When the server stays silent after a try that may have
    reached it, SubmitOutcomeUnknownError says so (the caller noted the run's name first, so
    ``pipecast runs wait`` can ask once the server answers). ``role`` names the object in messages ("driver").
    """
    kind, name = body["kind"], body["metadata"]["name"]
    what = f"{f'{role} ' if role else ''}{kind} {name!r} in namespace {api.namespace!r}"
    try:
        api.create(body)
        return
    except SubmitOutcomeUnknownError as err:
        raise SubmitOutcomeUnknownError(f"{err}; whether {what} was created is unknown: `pipecast runs wait "
                                        f"{run_id}` asks the cluster once it answers") from None
    except KubeError as err:
        if err.status != 409:
            raise
    existing = api.get(kind, name)
    owner = ((existing.get("metadata") or {}).get("annotations") or {}).get(RUN_ANNOTATION)
    if owner != run_id:
        belongs = f"run {owner!r}" if owner else "no pipecast run"
        raise SubmitError(f"cannot create {what}: an object of that name exists and belongs to {belongs}; nothing "
                          "was submitted")
