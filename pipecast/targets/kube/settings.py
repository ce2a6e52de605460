"""Pod settings every Kubernetes-based target shares, typed once (kubeflow, tekton, argo, kubernetes, and
Airflow's pod mode): where pods may run, with which identity, pulling images with which secrets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pipecast.targets.kube.pod import (
    GPU_NODE_LABEL_HELP,
    GPU_NODE_LABELS,
    TOLERATION_FIELDS,
    TOLERATIONS_HELP,
    gpu_node_label_key,
    is_dns_subdomain,
    is_label_key,
    toleration_problem,
)
from pipecast.targets.settings import Settings, setting


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
    return f"has key(s) {bad!r} that are not label keys" if bad else None


def _gpu_label_problem(scheme: str) -> str | None:
    if gpu_node_label_key(scheme)[1] is None:
        return None
    return f"must be a known scheme {sorted(GPU_NODE_LABELS)!r} or a Kubernetes label key"


def _account_problem(name: str) -> str | None:
    return None if is_dns_subdomain(name) else "must be a Kubernetes name (a DNS-1123 subdomain: lower-case " \
                                                   "letters, digits, '-' and '.')"


def _pull_secrets_problem(names: tuple[str, ...]) -> str | None:
    bad = [name for name in names if not is_dns_subdomain(name)]
    return f"has name(s) {bad!r} that are not Secret names (DNS-1123 subdomains)" if bad else None


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
                                          check=_account_problem)
    image_pull_secrets: tuple[str, ...] = setting([], "names of Secrets used to pull the images",
                                                  check=_pull_secrets_problem,
                                                  example="'image_pull_secrets=[\"regcred\"]'")
