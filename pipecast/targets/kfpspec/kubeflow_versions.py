"""Uploading a pipeline and a pipeline version to Kubeflow Pipelines, so runs start from a version.

The pipeline is named after pipecast's pipeline (``CreatePipeline``, no version); each distinct IR becomes one
version named by its content hash (``UploadPipelineVersion``), so submitting the same IR again reuses its
version and the UI lists one version per change. Both are found again by display name before they are
created, and after a create whose answer was lost or that met a 409 (the name is taken: someone created it).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.kfpspec.retrying import Creation, call, create_once


@dataclass(frozen=True)
class VersionRef:
    """The pipeline and version a run starts from."""

    pipeline_id: str
    version_id: str
    version_name: str


def version_name(ir_text: str) -> str:
    """The version's display name: the IR's content hash (the same IR, the same version)."""
    return "pipecast-" + hashlib.sha256(ir_text.encode("utf-8")).hexdigest()[:16]


def _named(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def upload(client: Any, pipeline: ir.Pipeline, ir_text: str, package: str, namespace: str | None,
           verdict: Any, quiet: Any, refusal: Any) -> VersionRef:
    """The pipeline version for this IR, uploaded unless the pipeline already has it."""
    import kfp_server_api

    pipelines = client._pipelines_api
    name = pipeline.name

    def find_pipeline() -> Any:
        with quiet():
            found = pipelines.pipeline_service_list_pipelines(filter=_named(name), namespace=namespace,
                                                              page_size=2).pipelines or []
        return found[0] if found else None

    def create_pipeline() -> Any:
        body = kfp_server_api.V2beta1Pipeline(display_name=name, namespace=namespace,
                                              description=f"pipecast pipeline {name}")
        with quiet():
            return pipelines.pipeline_service_create_pipeline(body)

    found = call(find_pipeline, verdict)
    made = found or create_once(create_pipeline, find_pipeline, verdict,
                                Creation("Kubeflow Pipelines", "pipeline", name, "",
                                         lambda err: str(refusal("create the pipeline", err))))
    pipeline_id = str(made.pipeline_id)
    wanted = version_name(ir_text)

    def find_version() -> Any:
        with quiet():
            found = pipelines.pipeline_service_list_pipeline_versions(pipeline_id, filter=_named(wanted),
                                                                      page_size=2).pipeline_versions or []
        return found[0] if found else None

    create_version = functools.partial(_upload_version, client, quiet, package, wanted, pipeline_id)
    version = call(find_version, verdict) or create_once(
        create_version, find_version, verdict,
        Creation("Kubeflow Pipelines", "pipeline version", wanted, f" of pipeline {name!r}",
                 lambda err: str(refusal("upload the pipeline version", err))))
    return VersionRef(pipeline_id, str(version.pipeline_version_id), wanted)


def _upload_version(client: Any, quiet: Any, package: str, wanted: str, pipeline_id: str) -> Any:
    with quiet():
        return client.upload_pipeline_version(package, pipeline_version_name=wanted, pipeline_id=pipeline_id,
                                              description="uploaded by pipecast; named by the IR's sha256")
