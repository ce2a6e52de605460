"""Kubernetes pieces shared by every target that runs containers on Kubernetes
(Airflow's KubernetesPodOperator, KFP, Tekton, Argo, the kubernetes target)."""

from __future__ import annotations

import re
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext

# GPU resource names by vendor prefix of gpu_type; NVIDIA is the default.
_GPU_RESOURCE = {"amd": "amd.com/gpu", "intel": "gpu.intel.com/i915"}

ETCD_OBJECT_LIMIT = 1024 * 1024  # bytes: the largest object the Kubernetes API server stores


def kubelet_escape(value: str) -> str:
    """Make ``value`` survive the kubelet's ``$(VAR)`` expansion of env values, command and args.

    Kubernetes expands ``$(NAME)`` from the container's env and turns ``$$`` into ``$``; doubling
    every ``$`` makes the expansion give back exactly ``value``.
    """
    return value.replace("$", "$$")


def gpu_resource_name(gpu_type: str | None) -> str:
    """``nvidia.com/gpu`` unless ``gpu_type`` names another vendor (``amd-mi300`` → ``amd.com/gpu``)."""
    if gpu_type:
        for prefix, resource in _GPU_RESOURCE.items():
            if gpu_type.lower().startswith(prefix):
                return resource
    return "nvidia.com/gpu"


def container_resources(resources: ir.Resources) -> dict[str, Any]:
    """``resources`` of a container: requests = limits for cpu/memory (Guaranteed QoS), GPUs as limits."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if resources.cpu:
        requests["cpu"] = limits["cpu"] = resources.cpu
    if resources.memory:
        requests["memory"] = limits["memory"] = resources.memory
    if resources.gpu:
        limits[gpu_resource_name(resources.gpu_type)] = str(resources.gpu)
    result: dict[str, Any] = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


def env_list(pipeline: ir.Pipeline, step: ir.Step) -> list[dict[str, Any]]:
    """Container ``env``: plain values, then secrets as ``secretKeyRef`` (never their values).

    Values are returned as written; pass them through :func:`kubelet_escape` before they reach a pod.
    """
    items: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in pipeline.env_of(step)]
    for secret in pipeline.secrets_of(step):
        items.append({
            "name": secret.env,
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key or secret.env}},
        })
    return items


# The node label each cluster kind puts the GPU model under, for ``--set gpu_node_label=<scheme>``. Nothing is
# chosen by default: a label that does not exist on the cluster keeps every GPU pod pending forever.
GPU_NODE_LABELS: dict[str, str] = {
    "gke": "cloud.google.com/gke-accelerator",  # GKE sets it on GPU node pools (value e.g. nvidia-tesla-t4)
    "eks": "k8s.amazonaws.com/accelerator",  # the cluster-autoscaler's AWS GPU label (eksctl sets it)
    "aks": "kubernetes.azure.com/accelerator",  # AKS sets it on GPU node pools (value: nvidia)
    "nvidia": "nvidia.com/gpu.product",  # NVIDIA GPU feature discovery (value e.g. Tesla-T4)
}
GPU_NODE_LABEL_SETTING = "gpu_node_label"
GPU_NODE_LABEL_HELP = (
    "the node label that holds the GPU model, used to select nodes for a step's gpu_type: gke, eks, aks, "
    "nvidia (GPU feature discovery) or a label key of your own; unset: gpu_type is refused"
)
# A Kubernetes label key: an optional DNS-1123 subdomain prefix and a name of at most 63 characters.
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def gpu_node_label_key(scheme: Any) -> tuple[str | None, str | None]:
    """The label key a ``gpu_node_label`` setting names, and a problem message when it names none."""
    if scheme is None:
        return None, None
    if isinstance(scheme, str) and scheme in GPU_NODE_LABELS:
        return GPU_NODE_LABELS[scheme], None
    if isinstance(scheme, str) and _LABEL_KEY.fullmatch(scheme):
        return scheme, None
    return None, (f"setting {GPU_NODE_LABEL_SETTING!r} is {scheme!r}, which is neither a known scheme "
                  f"{sorted(GPU_NODE_LABELS)!r} nor a Kubernetes label key")


def gpu_node_selector(resources: ir.Resources, label_key: str | None) -> dict[str, str]:
    """``{label_key: gpu_type}`` for a step that names a GPU type; empty when it names none.

    Call :func:`gpu_type_problem` first: a ``gpu_type`` with no label key must be reported, not dropped.
    """
    if resources.gpu and resources.gpu_type and label_key:
        return {label_key: resources.gpu_type}
    return {}


def gpu_type_problem(resources: ir.Resources, label_key: str | None) -> tuple[str, str] | None:
    """``(message, fix)`` when a step names a GPU type but no node label to select it by was chosen."""
    if resources.gpu and resources.gpu_type and not label_key:
        return (f"gpu_type {resources.gpu_type!r} needs to know which node label holds the GPU model on your "
                "cluster; pipecast adds no cloud-specific label you did not choose",
                f"--set {GPU_NODE_LABEL_SETTING}=gke (or eks, aks, nvidia, or your own label key), or drop gpu_type "
                "to take any GPU node")
    return None


def gpu_selector(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> dict[str, str]:
    """The node selector for ``step``'s GPU type under the ``gpu_node_label`` setting; problems are reported."""
    label_key, problem = gpu_node_label_key(context.setting(pipeline, GPU_NODE_LABEL_SETTING, step=step))
    if problem:
        context.error(problem, step=step, fix=f"--set {GPU_NODE_LABEL_SETTING}=gke (or eks, aks, nvidia, or a label "
                                              "key such as example.com/gpu)")
        return {}
    missing = gpu_type_problem(step.resources, label_key)
    if missing:  # the engine can run the step on any GPU node; only the choice of model cannot be expressed
        context.unsupported(missing[0], step=step, fix=missing[1])
    return gpu_node_selector(step.resources, label_key)


def secret_ref_problem(secret: ir.SecretRef) -> tuple[str, str] | None:
    """``(message, fix)`` when ``secret`` cannot name a Kubernetes Secret and key (the rule for every target that
    reads secrets from Kubernetes: kubeflow, tekton, argo, kubernetes, Airflow's pod mode)."""
    key = secret.key or secret.env
    key_text = f"key {secret.key!r}" if secret.key else f"key {key!r} (the env name, since no key was given)"
    if not _DNS1123_SUBDOMAIN.fullmatch(secret.name):
        suggestion = re.sub(r"[^a-z0-9.-]+", "-", secret.name.lower()).strip("-.") or "my-secret"
        return (f"secret {secret.name!r} cannot name a Kubernetes Secret: Secret names are DNS-1123 subdomains "
                "(lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)",
                f"store it in a Secret named e.g. {suggestion!r}: Secret({suggestion!r}, key={key!r}, "
                f"env={secret.env!r})")
    if not _SECRET_KEY.fullmatch(key):
        return (f"secret {secret.name!r}: {key_text} is not a valid key of a Kubernetes Secret (letters, digits, "
                "'-', '_' and '.')", "pass key='...' with the key the Secret holds the value under")
    return None
