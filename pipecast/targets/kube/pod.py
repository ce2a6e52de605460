"""Kubernetes pieces shared by every target that runs containers on Kubernetes.

Airflow's KubernetesPodOperator, KFP, Tekton, Argo, the kubernetes target.
"""

from __future__ import annotations

import re
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext
from pipecast.targets.lowering import env_in_effect, secrets_in_effect

# GPU resource names by vendor prefix of gpu_type; NVIDIA is the default.
_GPU_RESOURCE = {"amd": "amd.com/gpu", "intel": "gpu.intel.com/i915"}


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


def container_resources(resources: ir.Resources, cpu_limit: str | None = None,
                        memory_limit: str | None = None) -> dict[str, Any]:
    """``resources`` of a container: cpu/memory requests; limits as chosen, GPUs as limits.

    No CPU limit unless ``cpu_limit`` is given: a CPU limit throttles the step even on an idle node, and
    requests alone give Burstable QoS. The memory limit is ``memory_limit``, else the request: memory past
    it is not throttled but kills the pod, so a limit keeps one step from starving the node's others.
    """
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if resources.cpu:
        requests["cpu"] = resources.cpu
    if cpu_limit:
        limits["cpu"] = cpu_limit
    if resources.memory:
        requests["memory"] = resources.memory
    if memory_limit or resources.memory:
        limits["memory"] = memory_limit or resources.memory
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
    items: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env_in_effect(pipeline, step)]
    for secret in secrets_in_effect(pipeline, step):
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
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")


def is_label_key(text: str) -> bool:
    """Whether ``text`` is a Kubernetes label (or annotation) key: an optional DNS prefix and ``/``, then a name."""
    return bool(_LABEL_KEY.fullmatch(text))


def is_label_value(text: str) -> bool:
    """Whether ``text`` is a Kubernetes label value.

    Empty, or at most 63 letters, digits, '-', '_', '.' that start and end with a letter or digit.
    """
    return bool(_LABEL_VALUE.fullmatch(text))


def is_dns_subdomain(text: str) -> bool:
    """Whether ``text`` is a DNS-1123 subdomain, the rule for most object names (Secrets, ServiceAccounts, PVCs)."""
    return bool(_DNS1123_SUBDOMAIN.fullmatch(text))


def gpu_node_label_key(scheme: Any) -> tuple[str | None, str | None]:
    """The label key a ``gpu_node_label`` setting names, and a problem message when it names none."""
    if scheme is None:
        return None, None
    if isinstance(scheme, str) and scheme in GPU_NODE_LABELS:
        return GPU_NODE_LABELS[scheme], None
    if isinstance(scheme, str) and is_label_key(scheme):
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
    label_key, problem = gpu_node_label_key(getattr(context.settings_for(step), GPU_NODE_LABEL_SETTING, None))
    if problem:
        context.error(problem, step=step, fix=f"--set {GPU_NODE_LABEL_SETTING}=gke (or eks, aks, nvidia, or a label "
                                              "key such as example.com/gpu)")
        return {}
    missing = gpu_type_problem(step.resources, label_key)
    if missing:  # the engine can run the step on any GPU node; only the choice of model cannot be expressed
        context.unsupported(missing[0], step=step, fix=missing[1])
    return gpu_node_selector(step.resources, label_key)


def with_gpu_selector(selector: dict[str, str], pipeline: ir.Pipeline, step: ir.Step,
                      context: EmitContext) -> dict[str, str]:
    """``selector`` (the step's node selector) with the node label of its GPU type; a clash is reported."""
    gpu = gpu_selector(pipeline, step, context)
    for key, value in gpu.items():
        if selector.get(key, value) != value:
            context.error(f"step {step.name!r} asks for node label {key}={selector[key]!r} in its node_selector "
                          f"and for {key}={value!r} by its gpu_type", step=step,
                          fix="drop the label from node_selector or change gpu_type")
    return dict(sorted({**selector, **gpu}.items()))


def secret_ref_problem(secret: ir.SecretRef) -> tuple[str, str] | None:
    """``(message, fix)`` when ``secret`` cannot name a Kubernetes Secret and key.

    The rule for every target that reads secrets from Kubernetes: kubeflow, tekton, argo, kubernetes,
    Airflow's pod mode.
    The message names only what the user wrote: a key they never gave is called the env name it defaults to.
    """
    if not _DNS1123_SUBDOMAIN.fullmatch(secret.name):
        suggestion = re.sub(r"[^a-z0-9.-]+", "-", secret.name.lower()).strip("-.")[:253] or "my-secret"
        key = f", key={secret.key!r}" if secret.key else ""
        held = f"key {secret.key!r}" if secret.key else f"the key {secret.env!r} (the env name, as no key= is given)"
        return (f"secret {secret.name!r} cannot name a Kubernetes Secret: Secret names are DNS-1123 subdomains "
                "(at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)",
                f"create the Secret under a valid name, e.g. Secret({suggestion!r}{key}, env={secret.env!r}), "
                f"holding the value under {held}")
    if secret.key is not None and not _SECRET_KEY.fullmatch(secret.key):
        return (f"secret {secret.name!r}: key {secret.key!r} cannot be a key of a Kubernetes Secret (at most 253 "
                "letters, digits, '-', '_' and '.')", "pass key= with the key the Secret holds the value under")
    if secret.key is None and not _SECRET_KEY.fullmatch(secret.env):
        return (f"secret {secret.name!r}: no key= is given, so the key is the env name {secret.env!r}, which cannot "
                "be a key of a Kubernetes Secret (at most 253 letters, digits, '-', '_' and '.')",
                "pass key= with the key the Secret holds the value under")
    return None


def check_secret_refs(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> None:
    """Report every secret of ``step`` that no Kubernetes Secret can hold (once per pipeline-wide secret)."""
    for secret in secrets_in_effect(pipeline, step):
        problem = secret_ref_problem(secret)
        if problem and not any(p.message == problem[0] for p in context.errors):
            context.error(problem[0], step=step, fix=problem[1])


# A toleration as Kubernetes validates it (pkg/apis/core/validation ValidateTolerations, k8s 1.35): the key a
# label key (empty only with operator Exists), operator Equal (the default) or Exists, a value that is a label
# value (empty with Exists), effect empty or a taint effect, tolerationSeconds only with effect NoExecute.
TOLERATION_FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")
TOLERATION_OPERATORS = ("Equal", "Exists")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATIONS_HELP = (
    "Kubernetes tolerations of the pods, a JSON list of {key, operator, value, effect, tolerationSeconds}; "
    "pipeline level (every pod) or step level (that step's pods, instead of the pipeline's)"
)


def toleration_problem(toleration: Any) -> str | None:
    """Why the API server would refuse ``toleration`` (one entry of a pod's ``tolerations``), or None."""
    if not isinstance(toleration, dict):
        return "is not a mapping"
    unknown = sorted(set(toleration) - set(TOLERATION_FIELDS))
    if unknown:
        return f"has unknown field(s) {unknown!r}; a toleration has {list(TOLERATION_FIELDS)!r}"
    for field in TOLERATION_FIELDS[:4]:
        if not isinstance(toleration.get(field, ""), str):
            return f"has a {field!r} that is not text"
    seconds = toleration.get("tolerationSeconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
        return "has a 'tolerationSeconds' that is not a whole number"
    key, operator, value, effect = (toleration.get(field, "") for field in TOLERATION_FIELDS[:4])
    if key and not is_label_key(key):
        return f"has key {key!r}, which is not a label key (an optional DNS prefix and '/', then a name)"
    if not key and operator != "Exists":
        return "has no key, which needs operator 'Exists' (it then tolerates every taint)"
    if operator not in ("", *TOLERATION_OPERATORS):
        return f"has operator {operator!r}, not one of {TOLERATION_OPERATORS!r}"
    if operator == "Exists" and value:
        return "has a value, which operator 'Exists' does not take"
    if not _LABEL_VALUE.fullmatch(value):
        return f"has value {value!r}, which is not a label value (at most 63 letters, digits, '-', '_', '.')"
    if effect and effect not in TAINT_EFFECTS:
        return f"has effect {effect!r}, not one of {TAINT_EFFECTS!r}"
    if seconds is not None and effect != "NoExecute":
        return "has 'tolerationSeconds', which only effect 'NoExecute' takes"
    return None
