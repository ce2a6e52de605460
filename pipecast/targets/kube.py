"""Kubernetes pieces shared by every target that runs containers on Kubernetes
(Airflow's KubernetesPodOperator, KFP, Tekton, Argo, the kubernetes target)."""

from __future__ import annotations

from typing import Any

from pipecast.compiler import ir

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


def node_selector_for_gpu(resources: ir.Resources) -> dict[str, str]:
    """A node selector that asks for the GPU type, using the GKE/NVIDIA GPU-feature-discovery label."""
    if resources.gpu and resources.gpu_type:
        return {"cloud.google.com/gke-accelerator": resources.gpu_type}
    return {}
