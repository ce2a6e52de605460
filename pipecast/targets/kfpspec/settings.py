"""Settings of the KFP-IR targets: what each key means, and reading them with their checks.

Compile settings (``--set`` or ``settings={"kubeflow": {...}}``) shape the emitted IR. Connection
settings (``--config``/``-c``, or the same keys in the pipeline's settings) are only read by submit:
they say where and as whom the run starts, never what it runs, so they are not part of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.targets import kube
from pipecast.targets.base import EmitContext

COMMON_SETTINGS: Mapping[str, str] = {
    "image": "Container image for steps that set none (step image → pipeline image → this). It must have "
             "pipecast and the pipeline's code installed.",
    "artifact_root": "Artifact store every task reads and writes, used when the pipeline sets none: an object "
                     "store URI (gs://bucket/path, s3://bucket/path); file:// only on a volume every task mounts.",
    "pipeline_root": "The engine's own pipeline root (defaultPipelineRoot in the IR), e.g. gs://bucket/kfp.",
    "engine_cache": "true: turn on the engine's cache for steps with cache=True. It cannot hit across runs (every "
                    "task reads its run's id, part of the cache key), so it is reported as unsupported; default "
                    "false: pipecast's runtime cache reuses outputs.",
    "python": "Python executable inside the image (default: python).",
}

KUBERNETES_SETTINGS: Mapping[str, str] = {
    "node_selector": "Node labels a task's pod must match, as a JSON object (pipeline or step level).",
    "tolerations": "Kubernetes tolerations, a JSON list of {key, operator, value, effect, toleration_seconds}.",
    kube.GPU_NODE_LABEL_SETTING: kube.GPU_NODE_LABEL_HELP,
}

KUBEFLOW_CONFIG: Mapping[str, str] = {
    "host": "KFP API endpoint, e.g. https://kubeflow.example.com/pipeline (default: $KF_PIPELINES_ENDPOINT).",
    "ui_host": "Base URL of the KFP UI for run links (default: host).",
    "namespace": "Kubernetes namespace (profile) of a multi-user deployment.",
    "multi_user": "true/false: the deployment is multi-user (default: asked from the API's healthz).",
    "experiment": "Experiment the run belongs to (created if missing; default: Default).",
    "service_account": "Kubernetes service account the run's pods use.",
    "pipeline_root": "Pipeline root of this run (overrides the IR's defaultPipelineRoot).",
    "schedule": "true/false: also create a recurring run from the pipeline's schedule (default true).",
    "token_env": "Environment variable holding a bearer token (default KF_PIPELINES_TOKEN); never stored.",
    "ssl_ca_cert": "CA bundle to verify the API's TLS certificate.",
    "verify_ssl": "false to skip TLS verification (test clusters only).",
}

VERTEX_CONFIG: Mapping[str, str] = {
    "project": "Google Cloud project (default: $GOOGLE_CLOUD_PROJECT).",
    "location": "Region (default: $GOOGLE_CLOUD_REGION, else us-central1).",
    "pipeline_root": "gs:// pipeline root of the run (default: the IR's defaultPipelineRoot, else the SDK's bucket).",
    "service_account": "Service account the run executes as.",
    "network": "VPC network to peer, projects/NUMBER/global/networks/NAME.",
    "labels": "Labels of the run, a JSON object (besides the pipeline's tags, which become labels with empty "
              "values).",
    "encryption_spec_key_name": "Cloud KMS key (CMEK) protecting the run, projects/…/cryptoKeys/KEY.",
    "schedule": "true/false: also create a Vertex pipeline schedule from the pipeline's schedule (default true).",
    "api_endpoint": "Vertex AI API endpoint (default: the region's), e.g. for a private endpoint.",
    "api_transport": "grpc or rest (default: the SDK's).",
}

# Schemes whose stores every task can reach; file:// needs a shared mount (Vertex mounts GCS at /gcs).
ARTIFACT_SCHEMES = ("gs", "gcs", "s3", "az", "abfs", "abfss", "file")


@dataclass(frozen=True, slots=True)
class CommonSettings:
    """Pipeline-wide settings every KFP-IR target reads."""

    artifact_root: str
    pipeline_root: str | None
    python: str


def check_keys(pipeline: ir.Pipeline, context: EmitContext, known: frozenset[str]) -> None:
    """Report pipeline or step settings for this target that no one reads (``--set`` keys are checked by base)."""
    for where, settings, step in [("pipeline", pipeline.settings, None)] + [
        (f"step {s.name!r}", s.settings, s) for s in pipeline.steps
    ]:
        for item in settings:
            if item.target == context.target and item.key not in known:
                context.error(
                    f"unknown {context.target!r} setting {item.key!r} on the {where}; known: {sorted(known)!r}",
                    step=step, fix="remove it or correct its spelling",
                )


def read_common(pipeline: ir.Pipeline, context: EmitContext) -> CommonSettings:
    """Read the artifact root, pipeline root and python, reporting each bad or missing value."""
    root = pipeline.artifact_root or context.setting(pipeline, "artifact_root")
    fix = "set @pipeline(artifact_root='gs://bucket/path') or --set artifact_root=s3://bucket/path"
    if not root:
        context.error(f"pipeline {pipeline.name!r} has no artifact root; {context.target} tasks run on other machines "
                      "and exchange data through an object store", fix=fix)
        root = ""
    elif not isinstance(root, str) or root.split("://", 1)[0] not in ARTIFACT_SCHEMES or "://" not in root:
        context.error(
            f"artifact root {root!r} is not a URI every task can reach (schemes: {', '.join(ARTIFACT_SCHEMES)})",
            fix=fix,
        )
        root = str(root)
    pipeline_root = context.setting(pipeline, "pipeline_root")
    if pipeline_root is not None and (not isinstance(pipeline_root, str) or "://" not in pipeline_root):
        context.error(f"pipeline_root {pipeline_root!r} is not a URI", fix="use gs://bucket/path or s3://bucket/path")
        pipeline_root = None
    python = context.setting(pipeline, "python", "python")
    if not isinstance(python, str) or not python:
        context.error(f"python {python!r} is not an executable name", fix="use e.g. --set python=python3")
        python = "python"
    return CommonSettings(artifact_root=root, pipeline_root=pipeline_root, python=python)


def engine_cache(pipeline: ir.Pipeline, context: EmitContext, step: ir.Step) -> bool:
    """Whether the engine may serve ``step`` from its own cache (off unless asked)."""
    value = context.setting(pipeline, "engine_cache", False, step=step)
    if not isinstance(value, bool):
        context.error(f"engine_cache must be true or false, got {value!r}", step=step)
        return False
    return value


def node_selector(pipeline: ir.Pipeline, context: EmitContext, step: ir.Step) -> dict[str, str]:
    """The ``node_selector`` setting for ``step``: a mapping of label to value."""
    value = context.setting(pipeline, "node_selector", step=step)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        context.error(f"node_selector must map label names to string values, got {value!r}", step=step,
                      fix='--set node_selector=\'{"cloud.google.com/gke-nodepool": "gpu-pool"}\'')
        return {}
    return dict(value)


_TOLERATION_KEYS = {"key": "key", "operator": "operator", "value": "value", "effect": "effect",
                    "toleration_seconds": "tolerationSeconds", "tolerationSeconds": "tolerationSeconds"}
_OPERATORS = ("Equal", "Exists")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def tolerations(pipeline: ir.Pipeline, context: EmitContext, step: ir.Step) -> list[dict[str, Any]]:
    """The ``tolerations`` setting for ``step`` as kfp-kubernetes Toleration messages."""
    value = context.setting(pipeline, "tolerations", step=step)
    if value is None:
        return []
    fix = '--set tolerations=\'[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]\''
    if not isinstance(value, list):
        context.error(f"tolerations must be a list of objects, got {value!r}", step=step, fix=fix)
        return []
    result = []
    for item in value:
        if not isinstance(item, dict) or set(item) - set(_TOLERATION_KEYS):
            context.error(f"toleration {item!r} is not an object with keys {sorted(set(_TOLERATION_KEYS))!r}",
                          step=step, fix=fix)
            continue
        converted: dict[str, Any] = {_TOLERATION_KEYS[k]: v for k, v in item.items()}
        problems = []
        if converted.get("operator", "Equal") not in _OPERATORS:
            problems.append(f"operator must be one of {_OPERATORS!r}")
        if converted.get("effect", "") not in (*_EFFECTS, ""):
            problems.append(f"effect must be one of {_EFFECTS!r}")
        seconds = converted.get("tolerationSeconds")
        if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0):
            problems.append("toleration_seconds must be a whole number >= 0")
        for text_key in ("key", "value"):
            if text_key in converted and not isinstance(converted[text_key], str):
                problems.append(f"{text_key} must be a string")
        if problems:
            context.error(f"toleration {item!r}: {'; '.join(problems)}", step=step, fix=fix)
            continue
        if seconds is not None:
            converted["tolerationSeconds"] = str(seconds)  # int64: a string in protobuf JSON
        ordered: dict[str, Any] = {k: converted[k] for k in ("effect", "key", "operator", "tolerationSeconds", "value")
                                   if k in converted}
        result.append(ordered)
    return result


def submit_value(pipeline: ir.Pipeline, target: str, config: Mapping[str, Any], key: str,
                 default: Any = None) -> Any:
    """A connection setting: ``--config`` first, then the pipeline's settings for the target."""
    if key in config and config[key] is not None:
        return config[key]
    return pipeline.settings_for(target).get(key, default)


def as_bool(value: Any, key: str) -> bool:
    """Read a true/false connection setting given as JSON or text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    from pipecast.errors import SubmitError

    raise SubmitError(f"config {key!r} must be true or false, got {value!r}")


def dns_label(text: str, limit: int = 128) -> str:
    """Lower-case ``[a-z0-9-]`` text starting with a letter (engine run ids), cut to ``limit``."""
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"p-{cleaned}".rstrip("-")
    return cleaned[:limit].rstrip("-")
