"""Settings of the KFP-IR targets: typed compile settings, and the connection settings submit reads.

Compile settings (``--set`` or ``settings={"kubeflow": {...}}``) shape the emitted IR; the framework parses
and checks them before ``emit`` (:mod:`pipecast.targets.settings`). Connection settings (``-c``, or the same
keys in the pipeline's settings) are only read by submit: they say where and as whom the run starts, never
what it runs, so they are not part of the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import SubmitError
from pipecast.targets.kube.settings import PodSettings
from pipecast.targets.settings import ContainerSettings, Settings, SettingValueError, convert, setting


def _uri_problem(value: str) -> str | None:
    return None if "://" in value else "must be a URI such as gs://bucket/path or s3://bucket/path"


@dataclass(frozen=True, kw_only=True)
class KfpSettings(ContainerSettings):
    """What every KFP-IR target reads: the image and artifact root, the engine's pipeline root, its cache."""

    pipeline_root: str | None = setting(
        None, "the engine's own pipeline root (defaultPipelineRoot in the IR), e.g. gs://bucket/kfp; submit's "
              "-c pipeline_root=... overrides it for one run", step=False, check=_uri_problem,
        example="pipeline_root=gs://bucket/kfp")
    engine_cache: bool = setting(
        False, "true: turn on the engine's cache for steps with cache=True. It cannot hit across runs (every task "
               "reads its run's id, part of the cache key), so it is reported as unsupported; pipecast's runtime "
               "cache reuses outputs")
    python: str = setting("python", "the Python executable inside the image", step=False,
                          example="python=python3")


@dataclass(frozen=True, kw_only=True)
class KubeflowSettings(PodSettings, KfpSettings):
    """Kubeflow Pipelines: the KFP settings and the pod settings every Kubernetes-based target shares.

    KFP writes node selectors, tolerations and image pull secrets per task into the Kubernetes platform spec;
    the service account is the run's (KFP sets one per run), so a step cannot have its own.
    """


@dataclass(frozen=True, kw_only=True)
class VertexSettings(KfpSettings):
    """Vertex AI: the KFP settings only.

    Vertex picks each task's machine from its resources and accelerator type and schedules no Kubernetes
    pods, so the pod settings (node selectors, tolerations...) are not its.
    """


@dataclass(frozen=True, kw_only=True)
class KubeflowConnection(Settings):
    """Kubeflow's connection settings (``-c KEY=VALUE``, or the same keys in the pipeline's settings)."""

    host: str | None = setting(None, "KFP API endpoint, e.g. https://kubeflow.example.com/pipeline (default: "
                                     "$KF_PIPELINES_ENDPOINT).")
    ui_host: str | None = setting(None, "Base URL of the KFP UI for run links (default: host).")
    namespace: str | None = setting(None, "Kubernetes namespace (profile) of a multi-user deployment.")
    multi_user: bool | None = setting(None, "true/false: the deployment is multi-user (default: asked from the "
                                            "API's healthz).")
    experiment: str | None = setting(None, "Experiment the run belongs to (created if missing; default: Default).")
    schedule: bool | None = setting(None, "true/false: also create a recurring run from the pipeline's schedule, "
                                          "replacing the pipeline's earlier one (default true).")
    upload_pipeline: bool | None = setting(None, "true/false: run from an uploaded pipeline version named by the "
                                                 "IR's hash (default true); false sends the spec inline.")
    token_env: str | None = setting(None, "Environment variable holding a bearer token (default "
                                          "KF_PIPELINES_TOKEN); never stored.")
    ssl_ca_cert: str | None = setting(None, "CA bundle to verify the API's TLS certificate.")
    verify_ssl: bool | None = setting(None, "false to skip TLS verification (test clusters only).")


@dataclass(frozen=True, kw_only=True)
class VertexConnection(Settings):
    """Vertex AI's connection settings (``-c KEY=VALUE``, or the same keys in the pipeline's settings)."""

    project: str | None = setting(None, "Google Cloud project (default: $GOOGLE_CLOUD_PROJECT).")
    location: str | None = setting(None, "Region (default: $GOOGLE_CLOUD_REGION, else us-central1).")
    service_account: str | None = setting(None, "Service account the run executes as.")
    network: str | None = setting(None, "VPC network to peer, projects/NUMBER/global/networks/NAME.")
    labels: Mapping[str, str] | None = setting(None, "Labels of the run, a JSON object (besides the pipeline's "
                                                     "tags, which become labels with empty values).")
    encryption_spec_key_name: str | None = setting(None, "Cloud KMS key (CMEK) protecting the run, "
                                                         "projects/…/cryptoKeys/KEY.")
    schedule: bool | None = setting(None, "true/false: also create a Vertex pipeline schedule from the pipeline's "
                                          "schedule, or update the pipeline's existing one (default true).")
    api_endpoint: str | None = setting(None, "Vertex AI API endpoint (default: the region's), e.g. for a private "
                                             "endpoint.")
    api_transport: str | None = setting(None, "grpc or rest (default: the SDK's).")


def submit_value(pipeline: ir.Pipeline, target: str, config: Mapping[str, Any], key: str,
                 default: Any = None) -> Any:
    """A connection setting: ``-c`` first, then the pipeline's settings for the target."""
    if key in config and config[key] is not None:
        return config[key]
    return pipeline.settings_for(target).get(key, default)


def config_bool(value: Any, key: str) -> bool:
    """A true/false connection setting, read as the typed settings read booleans."""
    try:
        return bool(convert(bool, value))
    except SettingValueError as err:
        raise SubmitError(f"config {key!r} {err}, got {value!r}") from None
