"""Argo schedules: the ``CronWorkflow`` the argo target emits, through the Kubernetes API or Argo Server.

The CronWorkflow is named after the pipeline and labelled ``app.kubernetes.io/managed-by=pipecast``, so
applying it again updates the one schedule in place. With ``-c argo_server=URL`` the calls go to Argo Server's
``CronWorkflowService`` (``GET /api/v1/cron-workflows/{namespace}?listOptions.labelSelector=…``,
``DELETE /api/v1/cron-workflows/{namespace}/{name}``) with the bearer token in ``$ARGO_TOKEN``; without it, to
the Kubernetes API (``cronworkflows.argoproj.io``). Deleting a CronWorkflow leaves the Workflows it started.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import naming
from pipecast.errors import SubmitError
from pipecast.schedules import Schedule
from pipecast.schedules.kube import SELECTOR, cron_text, namespaced
from pipecast.targets.base import Target
from pipecast.targets.kube.client import KubeError, check_config
from pipecast.targets.kube.crd import MANAGED_BY, PIPELINE_LABEL
from pipecast.targets.kube.objects import CustomKind

KIND = "CronWorkflow"
CRON_WORKFLOWS = {KIND: CustomKind("argoproj.io", "v1alpha1", "cronworkflows")}


def _server(config: Mapping[str, Any]) -> Any:
    from pipecast.targets.argo_server import ArgoServer

    return ArgoServer(str(config["argo_server"]))


def _namespace_of_server(config: Mapping[str, Any]) -> str:
    return str(config.get("namespace") or "default")


def _ui(config: Mapping[str, Any], namespace: str, name: str) -> str:
    from pipecast.targets.argo import DEFAULT_ARGO_UI

    base = str(config.get("argo_url") or os.environ.get("PIPECAST_ARGO_URL") or config.get("argo_server")
               or DEFAULT_ARGO_UI)
    return f"{base.rstrip('/')}/cron-workflows/{namespace}/{name}"


def _row(target: Target, config: Mapping[str, Any], namespace: str, cron: Mapping[str, Any]) -> Schedule:
    meta, spec = cron["metadata"], cron.get("spec") or {}
    # spec.schedules (Argo >= 3.6) or the older single spec.schedule
    schedules = list(spec.get("schedules") or ([spec["schedule"]] if spec.get("schedule") else []))
    status = cron.get("status") or {}
    state = "suspended" if spec.get("suspend") else str(status.get("phase") or "active").lower()
    return Schedule(pipeline=(meta.get("labels") or {}).get(PIPELINE_LABEL, meta["name"]), target=target.name,
                    schedule=cron_text("; ".join(schedules), spec.get("timezone")), id=f"{namespace}/{meta['name']}",
                    state=state, url=_ui(config, namespace, meta["name"]))


def list_schedules(target: Target, config: Mapping[str, Any]) -> list[Schedule]:
    """The namespace's CronWorkflows pipecast emitted."""
    if config.get("argo_server"):
        check_config(target.name, config, target.connection_keys())
        namespace = _namespace_of_server(config)
        query = urllib.parse.urlencode({"listOptions.labelSelector": SELECTOR})
        answer = _server(config).call("GET", f"/api/v1/cron-workflows/{namespace}?{query}",
                                      f"list CronWorkflows in namespace {namespace!r}")
        items = (answer.body.get("items") if isinstance(answer.body, dict) else None) or []
        return [_row(target, config, namespace, cron) for cron in items]
    api = namespaced(target, config, CRON_WORKFLOWS)
    return [_row(target, config, api.namespace, cron) for cron in api.list(KIND, SELECTOR)]


def delete_schedule(target: Target, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Delete the pipeline's CronWorkflow (the Workflows it started are left alone)."""
    name = naming.pipeline_resource_name(pipeline)
    if config.get("argo_server"):
        check_config(target.name, config, target.connection_keys())
        namespace = _namespace_of_server(config)
        server, path = _server(config), f"/api/v1/cron-workflows/{namespace}/{name}"
        found = server.call("GET", path, f"read CronWorkflow {name!r} in namespace {namespace!r}", ok=(200, 404))
        if found.status == 404:
            return []
        _check_ours(found.body, name, namespace)
        server.call("DELETE", path, f"delete CronWorkflow {name!r} in namespace {namespace!r}", ok=(200, 404),
                    repeatable=True)
    else:
        api = namespaced(target, config, CRON_WORKFLOWS)
        namespace = api.namespace
        try:
            _check_ours(api.get(KIND, name), name, namespace)
            api.delete(KIND, name, propagation="Orphan")
        except KubeError as err:
            if err.status == 404:
                return []
            raise
    return [f"deleted CronWorkflow {namespace}/{name} (the Workflows it started are left alone)"]


def _check_ours(cron: Any, name: str, namespace: str) -> None:
    labels = ((cron or {}).get("metadata") or {}).get("labels") or {}
    if any(labels.get(key) != value for key, value in MANAGED_BY.items()):
        raise SubmitError(f"CronWorkflow {name!r} in namespace {namespace!r} was not made by pipecast (it has no "
                          f"{SELECTOR} label); nothing was deleted")
