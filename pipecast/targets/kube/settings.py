"""Pod settings every Kubernetes-based target shares, typed once.

The targets are kubeflow, tekton, argo, kubernetes, and Airflow's pod mode; the settings say where pods may
run, with which identity, pulling images with which secrets. Also the checks of Kubernetes names that
settings of these targets use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pipecast.compiler import ir
from pipecast.compiler.units import parse_quantity
from pipecast.targets.base import EmitContext
from pipecast.targets.kube.patches import (
    affinity_problem,
    annotations_problem,
    container_patch_problem,
    labels_problem,
    pod_spec_patch_problem,
    security_context_problem,
    strategic_merge,
)
from pipecast.targets.kube.pod import (
    GPU_NODE_LABEL_HELP,
    GPU_NODE_LABELS,
    TOLERATION_FIELDS,
    TOLERATIONS_HELP,
    container_resources,
    gpu_node_label_key,
    is_dns_subdomain,
    is_label_key,
    is_label_value,
    toleration_problem,
    with_gpu_selector,
)
from pipecast.targets.settings import Json, Settings, setting

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def dns_label_problem(name: str) -> str | None:
    """Why ``name`` cannot be a DNS-1123 label (namespaces and most names pipecast writes), or None."""
    if _DNS1123_LABEL.fullmatch(name):
        return None
    return ("must be a DNS-1123 name (at most 63 lowercase letters, digits and '-', starting and ending with a "
            "letter or digit)")


def dns_subdomain_problem(name: str) -> str | None:
    """Why ``name`` cannot name a ServiceAccount, Secret or PersistentVolumeClaim (a DNS-1123 subdomain), or None."""
    if is_dns_subdomain(name):
        return None
    return ("must be a DNS-1123 subdomain (at most 253 lowercase letters, digits, '-' and '.', starting and ending "
            "with a letter or digit)")


def _subdomains_problem(names: tuple[str, ...]) -> str | None:
    bad = [name for name in names if not is_dns_subdomain(name)]
    return f"has name(s) {bad!r} that are not DNS-1123 subdomains, as Secret names are" if bad else None


@dataclass(frozen=True, kw_only=True)
class Toleration:
    """One Kubernetes toleration; keys may be written as Kubernetes does (``tolerationSeconds``)."""

    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute", ""] = ""
    toleration_seconds: int | None = None
    aliases: ClassVar[Mapping[str, str]] = {"tolerationSeconds": "toleration_seconds"}

    def as_kubernetes(self) -> dict[str, Any]:
        """The toleration as a pod spec holds it, fields in Kubernetes' order, empty ones left out."""
        values = {"key": self.key, "operator": self.operator, "value": self.value, "effect": self.effect,
                  "tolerationSeconds": self.toleration_seconds}
        return {name: values[name] for name in TOLERATION_FIELDS if values[name] not in ("", None)}

    def problem(self) -> str | None:
        """Why the API server would refuse this toleration, or None."""
        return toleration_problem(self.as_kubernetes() | {"operator": self.operator})


def _node_selector_problem(selector: Mapping[str, str]) -> str | None:
    bad = [key for key in selector if not is_label_key(key)]
    if bad:
        return f"has key(s) {bad!r} that are not label keys"
    values = [value for value in selector.values() if not is_label_value(value)]
    return f"has value(s) {values!r} that are not label values" if values else None


def _quantity_problem(value: str) -> str | None:
    parsed = parse_quantity(value)
    return None if parsed else "is not a positive Kubernetes quantity (e.g. 2, 500m, 8Gi)"


def _gpu_label_problem(scheme: str) -> str | None:
    if gpu_node_label_key(scheme)[1] is None:
        return None
    return f"is neither a known scheme {sorted(GPU_NODE_LABELS)!r} nor a Kubernetes label key"


@dataclass(frozen=True, kw_only=True)
class PodSettings(Settings):
    """Where a step's pod may run and as whom; a step may set its own."""

    node_selector: Mapping[str, str] = setting(
        {}, "node labels the pods must match, e.g. {\"pool\": \"ml\"}", check=_node_selector_problem,
        example="'node_selector={\"pool\": \"ml\"}'")
    tolerations: tuple[Toleration, ...] = setting(
        [], TOLERATIONS_HELP,
        example="'tolerations=[{\"key\": \"nvidia.com/gpu\", \"operator\": \"Exists\", \"effect\": \"NoSchedule\"}]'")
    gpu_node_label: str | None = setting(None, GPU_NODE_LABEL_HELP, check=_gpu_label_problem,
                                         example="gpu_node_label=gke")
    service_account: str | None = setting(None, "the Kubernetes service account the pods run as",
                                          check=dns_subdomain_problem, example="service_account=pipeline-runner")
    image_pull_secrets: tuple[str, ...] = setting([], "names of Secrets used to pull the images",
                                                  check=_subdomains_problem,
                                                  example="'image_pull_secrets=[\"regcred\"]'")

    cpu_limit: str | None = setting(None, "the containers' CPU limit (a Kubernetes quantity, at least the step's cpu); "
                                          "unset: none, so steps are not throttled (Burstable QoS)",
                                    check=_quantity_problem, example="cpu_limit=2")
    memory_limit: str | None = setting(None, "the containers' memory limit (a Kubernetes quantity, at least the "
                                             "step's memory); unset: the step's memory request",
                                       check=_quantity_problem, example="memory_limit=8Gi")
    affinity: Mapping[str, Json] = setting(
        {}, "the pods' Kubernetes affinity (nodeAffinity, podAffinity, podAntiAffinity)", check=affinity_problem,
        example="'affinity={\"nodeAffinity\": {...}}'")
    security_context: Mapping[str, Json] = setting(
        {}, "the pods' Kubernetes securityContext (runAsNonRoot, runAsUser, fsGroup, seccompProfile...)",
        check=security_context_problem, example="'security_context={\"runAsNonRoot\": true, \"runAsUser\": 1000}'")
    pod_labels: Mapping[str, str] = setting({}, "labels added to the pods (keys under pipecast.dev/ are pipecast's)",
                                            check=labels_problem, example="'pod_labels={\"team\": \"ml\"}'")
    pod_annotations: Mapping[str, str] = setting(
        {}, "annotations added to the pods", check=annotations_problem,
        example="'pod_annotations={\"cluster-autoscaler.kubernetes.io/safe-to-evict\": \"false\"}'")
    pod_spec_patch: Mapping[str, Json] = setting(
        {}, "escape hatch: Kubernetes PodSpec fields merged onto the pod spec pipecast emits (strategic merge: "
            "named list items by name); fields pipecast writes are refused", check=pod_spec_patch_problem,
        example="'pod_spec_patch={\"priorityClassName\": \"high\"}'")
    container_patch: Mapping[str, Json] = setting(
        {}, "escape hatch: Kubernetes Container fields merged onto the step's container (volumeMounts, "
            "securityContext, ports...); command, image, env and resources are pipecast's",
        check=container_patch_problem,
        example="'container_patch={\"securityContext\": {\"readOnlyRootFilesystem\": true}}'")

    def pull_secrets(self) -> list[dict[str, str]]:
        """``imagePullSecrets`` of a pod spec (empty when none are set)."""
        return [{"name": name} for name in self.image_pull_secrets]

    def resources(self, step: ir.Step, context: EmitContext) -> dict[str, Any]:
        """The ``resources`` of ``step``'s container; a limit below the step's request is reported."""
        for name, request, limit in (("cpu", step.resources.cpu, self.cpu_limit),
                                     ("memory", step.resources.memory, self.memory_limit)):
            wanted, most = parse_quantity(request or 0), parse_quantity(limit or 0)
            if request and limit and wanted is not None and most is not None and most < wanted:
                context.error(f"{name}_limit {limit!r} is below the step's {name} request {request!r}, which the "
                              "Kubernetes API server refuses", step=step,
                              fix=f"raise {name}_limit to at least {request!r}, or lower the step's {name}")
        return container_resources(step.resources, self.cpu_limit, self.memory_limit)

    def pod_fields(self) -> dict[str, Any]:
        """The pod spec fields the escape-hatch settings add: affinity, securityContext, then the pod patch."""
        fields: dict[str, Any] = {}
        if self.affinity:
            fields["affinity"] = strategic_merge({}, self.affinity)
        if self.security_context:
            fields["securityContext"] = strategic_merge({}, self.security_context)
        merged: dict[str, Any] = strategic_merge(fields, self.pod_spec_patch)
        return merged

    def patch_pod(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """``pod`` (a pod spec) with :meth:`pod_fields` merged onto it."""
        merged: dict[str, Any] = strategic_merge(pod, self.pod_fields())
        return merged

    def patch_container(self, container: Mapping[str, Any]) -> dict[str, Any]:
        """``container`` with ``container_patch`` merged onto it."""
        merged: dict[str, Any] = strategic_merge(container, self.container_patch)
        return merged

    def pod_metadata(self) -> dict[str, dict[str, str]]:
        """``labels`` and ``annotations`` the pods get from the settings (only those set)."""
        metadata: dict[str, dict[str, str]] = {}
        if self.pod_labels:
            metadata["labels"] = dict(self.pod_labels)
        if self.pod_annotations:
            metadata["annotations"] = dict(self.pod_annotations)
        return metadata


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a pod may run: its nodeSelector and tolerations (empty when unset)."""

    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]


def placement(settings: PodSettings, pipeline: ir.Pipeline, step: ir.Step | None,
              context: EmitContext) -> Placement:
    """The node selector and tolerations of every pod of the run, or of ``step``'s pod.

    With ``step`` None, the placement every pod gets, from the pipeline's ``settings``; else the one
    ``step``'s pod needs, from the settings in effect for it. The node selector holds the node label of the
    step's GPU type (a missing label or a clash is reported).
    """
    selector = dict(settings.node_selector)
    if step is not None:
        selector = with_gpu_selector(selector, pipeline, step, context)
    return Placement(selector, [toleration.as_kubernetes() for toleration in settings.tolerations])


@dataclass(frozen=True, kw_only=True)
class KubeConnection(Settings):
    """Which cluster and namespace a Kubernetes-based submit talks to (``pipecast submit -c KEY=VALUE``)."""

    kubeconfig: str | None = setting(None, "the kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
    context: str | None = setting(None, "the kubeconfig context (default: its current context)")
    in_cluster: bool | None = setting(None, "true: the pod's service account; false: the kubeconfig (default, as "
                                            "kubectl: the kubeconfig when one exists, else, inside a pod, the pod's "
                                            "service account)")
    namespace: str | None = setting(None, "where the run's objects go (default: the namespace setting, else the "
                                          "context's)")
