"""A small dict-in, dict-out layer over the official ``kubernetes`` client (imported lazily).

The driver and the run handle speak to the API server through :class:`Kube`: objects are plain dicts
(exactly the manifests the emitter builds), responses are the server's JSON, and a 404/409 is a
:class:`KubeError` with its status code, so callers never touch the SDK's model classes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from pipecast.errors import SubmitError


class KubeError(SubmitError):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def connect(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ``ApiClient``: in-cluster credentials inside a pod, else the kubeconfig (``$KUBECONFIG``)."""
    from kubernetes import client, config

    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context, persist_config=False)
    except (config.ConfigException, OSError) as err:
        raise SubmitError(f"cannot load the Kubernetes configuration ({err}); set KUBECONFIG or pass "
                          f"--config kubeconfig=PATH [--config context=NAME]") from err


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

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self._apis: dict[str, Any] = {}

    def _method(self, kind: str, verb: str) -> Callable[..., Any]:
        from kubernetes import client

        api_name, suffix = _KINDS[kind]
        api = self._apis.get(api_name)
        if api is None:
            api = self._apis[api_name] = getattr(client, api_name)(self.api_client)
        return getattr(api, f"{verb}_{suffix}")  # type: ignore[no-any-return]

    def _call(self, kind: str, verb: str, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._method(kind, verb)(*args, _preload_content=False, **kwargs)
        except ApiException as err:
            raise KubeError(err.status or 0, f"{verb} {kind}: {err.status} {_reason(err)}") from None
        except OSError as err:  # urllib3 wraps connection failures in OSError subclasses
            raise SubmitError(f"cannot reach the Kubernetes API server: {err}") from err
        data = response.data
        return json.loads(data) if data else {}

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(body["kind"], "create", self.namespace, body)  # type: ignore[no-any-return]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self._call(kind, "read", name, self.namespace)  # type: ignore[no-any-return]

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(body["kind"], "replace", body["metadata"]["name"], self.namespace,  # type: ignore[no-any-return]
                          body)

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(kind, "patch", name, self.namespace, body)  # type: ignore[no-any-return]

    def list(self, kind: str, selector: str) -> list[dict[str, Any]]:
        return list(self._call(kind, "list", self.namespace, label_selector=selector).get("items", []))

    def delete(self, kind: str, name: str, propagation: str = "Background") -> None:
        self._call(kind, "delete", name, self.namespace, propagation_policy=propagation)

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
        current = self.get(body["kind"], body["metadata"]["name"])
        replaced = {**body, "metadata": {**body["metadata"],
                                          "resourceVersion": current["metadata"].get("resourceVersion")}}
        self.replace(replaced)
        return "updated"


def _reason(err: Any) -> str:
    try:
        return str(json.loads(err.body).get("message") or err.reason)
    except (TypeError, ValueError, AttributeError):
        return str(err.reason)
