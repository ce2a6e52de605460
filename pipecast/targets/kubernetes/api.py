"""A small dict-in, dict-out layer over the official ``kubernetes`` client (imported lazily).

The driver and the run handle speak to the API server through :class:`Kube`: objects are plain dicts
(exactly the manifests the emitter builds), responses are the server's JSON, and a 404/409 is a
:class:`KubeError` with its status code, so callers never touch the SDK's model classes. Every call goes
through :func:`pipecast.targets.kube.submit.call_api`: bounded, retried when its answer was lost, and
failing with a message that says which server and which configuration were used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from pipecast.errors import SubmitError
from pipecast.targets.kube.submit import Cluster, KubeError, call_api, describe_source, request_timeout

__all__ = ["Kube", "KubeError", "connect", "kubeconfig_namespace"]


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """The cluster: in-cluster credentials inside a pod, else the kubeconfig (``$KUBECONFIG``)."""
    from kubernetes import client, config

    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return Cluster(client.ApiClient(configuration), configuration.host, describe_source(None, None,
                                                                                             in_cluster=True))
    try:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=context, persist_config=False)
    except (config.ConfigException, OSError) as err:
        raise SubmitError(f"cannot load the Kubernetes configuration ({err}); set KUBECONFIG or pass "
                          f"--config kubeconfig=PATH [--config context=NAME]") from err
    return Cluster(api_client, api_client.configuration.host, describe_source(kubeconfig, context))


def kubeconfig_namespace(kubeconfig: str | None = None, context: str | None = None) -> str | None:
    """The namespace of the kubeconfig's current (or given) context, if it names one."""
    try:
        from kubernetes import config

        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception:  # no kubeconfig (e.g. in-cluster): no namespace from it
        return None
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return (chosen or {}).get("context", {}).get("namespace")


# kind -> (API class name, method suffix, namespaced)
_KINDS = {
    "Job": ("BatchV1Api", "namespaced_job"),
    "CronJob": ("BatchV1Api", "namespaced_cron_job"),
    "ConfigMap": ("CoreV1Api", "namespaced_config_map"),
    "ServiceAccount": ("CoreV1Api", "namespaced_service_account"),
    "Role": ("RbacAuthorizationV1Api", "namespaced_role"),
    "RoleBinding": ("RbacAuthorizationV1Api", "namespaced_role_binding"),
}


class Kube:
    """Namespaced create/read/list/patch/replace/delete of the kinds the kubernetes target uses."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self._apis: dict[str, Any] = {}

    def _method(self, kind: str, verb: str) -> Callable[..., Any]:
        from kubernetes import client

        api_name, suffix = _KINDS[kind]
        api = self._apis.get(api_name)
        if api is None:
            api = self._apis[api_name] = getattr(client, api_name)(self.cluster.api_client)
        return getattr(api, f"{verb}_{suffix}")  # type: ignore[no-any-return]

    def _call(self, kind: str, verb: str, *args: Any, name: str = "", **kwargs: Any) -> Any:
        method = self._method(kind, verb)

        def send() -> Any:
            response = method(*args, _preload_content=False, _request_timeout=request_timeout(), **kwargs)
            return response.data  # read here, so a connection lost mid-answer is retried too

        what = f"{verb} {kind}" + (f" {name!r}" if name else "") + f" in namespace {self.namespace!r}"
        data = call_api(self.cluster, what, send, write=verb != "read" and verb != "list")
        return json.loads(data) if data else {}

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(body["kind"], "create", self.namespace, body,  # type: ignore[no-any-return]
                          name=body["metadata"].get("name", ""))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self._call(kind, "read", name, self.namespace, name=name)  # type: ignore[no-any-return]

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return self._call(body["kind"], "replace", name, self.namespace, body, name=name)  # type: ignore[no-any-return]

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(kind, "patch", name, self.namespace, body, name=name)  # type: ignore[no-any-return]

    def list(self, kind: str, selector: str) -> list[dict[str, Any]]:
        return list(self._call(kind, "list", self.namespace, label_selector=selector).get("items", []))

    def delete(self, kind: str, name: str, propagation: str = "Background") -> None:
        self._call(kind, "delete", name, self.namespace, propagation_policy=propagation, name=name)

    def delete_all(self, kind: str, selector: str, propagation: str = "Background") -> None:
        self._call(kind, "delete_collection", self.namespace, label_selector=selector,
                   propagation_policy=propagation)

    def apply(self, body: dict[str, Any]) -> str:
        """Create ``body``, or replace the object of that name if it exists; return "created" or "updated"."""
        try:
            self.create(body)
            return "created"
        except KubeError as err:
            if err.status != 409:
                raise
        for _ in range(3):  # a replace whose answer was lost meets a 409 Conflict on its next try: read again
            current = self.get(body["kind"], body["metadata"]["name"])
            replaced = {**body, "metadata": {**body["metadata"],
                                              "resourceVersion": current["metadata"].get("resourceVersion")}}
            try:
                self.replace(replaced)
                return "updated"
            except KubeError as err:
                if err.status != 409:
                    raise
        raise SubmitError(f"cannot replace {body['kind']} {body['metadata']['name']!r}: it kept changing while "
                          "pipecast updated it; try again")
