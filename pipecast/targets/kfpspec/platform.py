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
