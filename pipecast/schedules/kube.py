"""Schedules as Kubernetes CronJobs (targets ``kubernetes`` and ``tekton``), through the Kubernetes API.

Both targets name the CronJob after the pipeline and label it ``app.kubernetes.io/managed-by=pipecast`` and
``pipecast.dev/pipeline=<name>``; applying it again (``kubectl apply``, or the kubernetes target's submit, which
creates or replaces it) updates the one schedule in place. They are told apart by what the CronJob starts: the
kubernetes target's driver Job (``pipecast.dev/role=driver``), or Tekton's ``kubectl create`` of a PipelineRun.
A delete removes the CronJob with ``propagationPolicy=Orphan``, so the runs it started go on; for Tekton it also
removes the objects only the schedule uses (its ServiceAccount, Role, RoleBinding and PipelineRun ConfigMap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.compiler import naming
from pipecast.errors import SubmitError
from pipecast.schedules import Schedule
from pipecast.targets.base import Target
from pipecast.targets.kube.client import KubeError, check_config, connect
from pipecast.targets.kube.crd import MANAGED_BY, PIPELINE_LABEL
from pipecast.targets.kube.objects import CustomKind, Kube

SELECTOR = ",".join(f"{key}={value}" for key, value in MANAGED_BY.items())
TEKTON_CONTAINER = "create-pipelinerun"  # the container of the tekton target's CronJob
ROLE_LABEL = "pipecast.dev/role"


def namespaced(target: Target, config: Mapping[str, Any], custom: Mapping[str, CustomKind] | None = None) -> Kube:
    """The API of the namespace ``-c namespace`` names, else the kubeconfig context's, else ``default``."""
    check_config(target.name, config, target.connection_keys())
    cluster = connect(config)
    return Kube(cluster, str(config.get("namespace") or cluster.namespace or "default"), custom)


def _is_ours(target: str, cronjob: Mapping[str, Any]) -> bool:
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    if target == "kubernetes":
        return ((template.get("metadata") or {}).get("labels") or {}).get(ROLE_LABEL) == "driver"
    containers = (((template.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return any(c.get("name") == TEKTON_CONTAINER for c in containers)


def cron_text(schedule: str, timezone: str | None) -> str:
    """The cron with its time zone, as the table shows it."""
    return f"{schedule} ({timezone})" if timezone else schedule


def _dashboard(config: Mapping[str, Any], namespace: str, name: str) -> str | None:
    base = config.get("dashboard_url")
    return f"{str(base).rstrip('/')}/#/cronjob/{namespace}/{name}?namespace={namespace}" if base else None


def list_schedules(target: Target, config: Mapping[str, Any]) -> list[Schedule]:
    """The namespace's CronJobs that ``target`` emitted."""
    api = namespaced(target, config)
    found = []
    for cronjob in api.list("CronJob", SELECTOR):
        if not _is_ours(target.name, cronjob):
            continue
        meta, spec = cronjob["metadata"], cronjob.get("spec") or {}
        found.append(Schedule(
            pipeline=(meta.get("labels") or {}).get(PIPELINE_LABEL, meta["name"]), target=target.name,
            schedule=cron_text(str(spec.get("schedule", "")), spec.get("timeZone")),
            id=f"{api.namespace}/{meta['name']}", state="suspended" if spec.get("suspend") else "active",
            url=_dashboard(config, api.namespace, meta["name"]) if target.name == "kubernetes" else None))
    return found


def delete_schedule(target: Target, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Delete the pipeline's CronJob (its Jobs are orphaned, not killed) and, for Tekton, its helper objects."""
    api = namespaced(target, config)
    name = cronjob_name(target.name, pipeline)
    try:
        cronjob = api.get("CronJob", name)
    except KubeError as err:
        if err.status == 404:
            return []
        raise
    labels = cronjob["metadata"].get("labels") or {}
    if any(labels.get(key) != value for key, value in MANAGED_BY.items()) or not _is_ours(target.name, cronjob):
        raise SubmitError(f"CronJob {name!r} in namespace {api.namespace!r} was not made by the {target.name} "
                          "target of pipecast; nothing was deleted")
    api.delete("CronJob", name, propagation="Orphan")
    done = [f"deleted CronJob {api.namespace}/{name} (the runs it started are left alone)"]
    if target.name == "tekton":
        for kind, helper in _tekton_helpers(pipeline):
            try:
                api.delete(kind, helper)
                done.append(f"deleted {kind} {api.namespace}/{helper}")
            except KubeError as err:
                if err.status != 404:
                    raise
    return done


def cronjob_name(target: str, pipeline: str) -> str:
    """The CronJob's name, as the target's emitter makes it from the pipeline's name."""
    if target == "kubernetes":
        from pipecast.targets.kubernetes.contract import cronjob_name as kubernetes_name

        return kubernetes_name(pipeline)
    from pipecast.targets.tekton import _CRONJOB_NAME

    return _CRONJOB_NAME.apply(pipeline)


def _tekton_helpers(pipeline: str) -> list[tuple[str, str]]:
    account = naming.pipeline_resource_name(pipeline, "-cron")
    return [("RoleBinding", account), ("Role", account), ("ServiceAccount", account),
            ("ConfigMap", naming.pipeline_resource_name(pipeline, "-pipelinerun"))]
