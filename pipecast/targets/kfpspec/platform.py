"""The Kubernetes platform spec of a KFP IR file: what Kubeflow Pipelines reads besides the PipelineSpec.

Per executor, a ``KubernetesExecutorConfig`` as ``kfp-kubernetes`` writes it (keys in its JSON order, int64
fields as strings): the pod deadline, image pull secrets, the node selector (with the GPU model's node label),
secrets as env, tolerations. Vertex AI reads none of it.
"""

from __future__ import annotations

import math
from typing import Any

from pipecast.compiler import ir
from pipecast.targets import kube, lowering
from pipecast.targets.base import EmitContext
from pipecast.targets.kfpspec.settings import KubeflowSettings
from pipecast.targets.kube.patches import plain
from pipecast.targets.kube.settings import Toleration


def kubernetes_config(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext,
                      plan: lowering.RetryPlan) -> dict[str, Any]:
    """The step's KubernetesExecutorConfig; empty when the step needs none."""
    settings: KubeflowSettings = context.settings_for(step)
    _check_service_account(step, context)
    config: dict[str, Any] = {}
    deadline = pod_deadline(step, plan)
    if deadline is not None:
        config["activeDeadlineSeconds"] = str(deadline)  # int64: a string in protobuf JSON
    if settings.image_pull_secrets:
        config["imagePullSecret"] = [_secret_name(name) for name in settings.image_pull_secrets]
    selector = kube.with_gpu_selector(dict(settings.node_selector), pipeline, step, context)
    if selector:
        config["nodeSelector"] = {"labels": selector}
    by_secret: dict[str, list[dict[str, str]]] = {}
    for secret in lowering.secrets_in_effect(pipeline, step):
        by_secret.setdefault(secret.name, []).append({"envVar": secret.env, "secretKey": secret.key or secret.env})
    if by_secret:
        config["secretAsEnv"] = [{"keyToEnv": pairs, "optional": False, **_secret_name(name)}
                                 for name, pairs in sorted(by_secret.items())]
    if settings.tolerations:
        config["tolerations"] = [_toleration(item) for item in settings.tolerations]
    config.update(_escape_hatch(settings, step, context))
    return config


# The pod security context fields kfp-kubernetes 2.17 can set (set_security_context), int64 ones as strings.
_KFP_SECURITY_CONTEXT = {"runAsUser": str, "runAsGroup": str, "runAsNonRoot": bool}
_UNSUPPORTED_FIX = ("use the kubernetes or argo target for this pod field, or set it with a Kubernetes admission "
                    "policy (e.g. a mutating webhook) on the Kubeflow cluster")


def _escape_hatch(settings: KubeflowSettings, step: ir.Step, context: EmitContext) -> dict[str, Any]:
    """The pod settings KFP's platform spec can carry, as kfp-kubernetes writes them; the others reported.

    ``podMetadata`` (add_pod_label/add_pod_annotation), ``nodeAffinity`` (add_node_affinity_json) and the
    three ``securityContext`` fields set_security_context writes; KFP has no pod spec or container patch.
    """
    config: dict[str, Any] = {}
    for name in ("pod_spec_patch", "container_patch"):
        if getattr(settings, name):
            context.unsupported(f"{name} is set, but Kubeflow Pipelines' platform spec has no way to patch the pod "
                                "or container it builds", step=step, fix=_UNSUPPORTED_FIX)
    other = sorted(set(settings.affinity) - {"nodeAffinity"})
    if other:
        context.unsupported(f"affinity sets {other!r}; kfp-kubernetes this target writes for supports nodeAffinity "
                            "only", step=step, fix=_UNSUPPORTED_FIX)
    if "nodeAffinity" in settings.affinity:
        config["nodeAffinity"] = [{"nodeAffinityJson": {"runtimeValue": {
            "constant": plain(settings.affinity["nodeAffinity"])}}}]
    metadata = settings.pod_metadata()
    if metadata:
        config["podMetadata"] = {key: metadata[key] for key in ("annotations", "labels") if key in metadata}
    other = sorted(set(settings.security_context) - set(_KFP_SECURITY_CONTEXT))
    if other:
        context.unsupported(f"security_context sets {other!r}; Kubeflow Pipelines sets only "
                            f"{sorted(_KFP_SECURITY_CONTEXT)!r} (and enforces its own defaults for the rest)",
                            step=step, fix=_UNSUPPORTED_FIX)
    chosen = {key: kind(settings.security_context[key]) for key, kind in _KFP_SECURITY_CONTEXT.items()
              if key in settings.security_context}
    if chosen:
        config["securityContext"] = {key: chosen[key] for key in sorted(chosen)}
    return config


def pod_deadline(step: ir.Step, plan: lowering.RetryPlan) -> int | None:
    """``activeDeadlineSeconds`` of the step's pod; None without a timeout.

    One try's timeout when KFP retries (each try is a pod of its own), every try and delay when the runtime
    retries inside one pod.
    """
    if not step.timeout_seconds:
        return None
    if plan.runtime:
        return lowering.worst_case_whole_seconds(step)
    return math.ceil(step.timeout_seconds)


def _secret_name(name: str) -> dict[str, Any]:
    # Both fields, as kfp-kubernetes 2.17 writes them: secretName for older backends, the parameter for newer.
    return {"secretName": name, "secretNameParameter": {"runtimeValue": {"constant": name}}}


def _toleration(toleration: Toleration) -> dict[str, Any]:
    """A toleration as kfp-kubernetes writes it: keys sorted, ``tolerationSeconds`` an int64 string."""
    fields = toleration.as_kubernetes()
    return {key: str(value) if key == "tolerationSeconds" else value for key, value in sorted(fields.items())}


def _check_service_account(step: ir.Step, context: EmitContext) -> None:
    own = context.settings_for(step).service_account
    if own != context.settings.service_account:
        context.unsupported(
            f"step {step.name!r} sets service_account {own!r}, but Kubeflow Pipelines runs every pod of a run as "
            "the run's one service account", step=step,
            fix="set service_account for the whole pipeline (@pipeline(settings=...), --set, or -c at submit)")
