"""Helpers shared by the SkyPilot target tests: compile a case, read its YAML back."""

from __future__ import annotations

from typing import Any

import yaml

from pipecast.flow import EmitOptions, compile_pipeline
from pipecast.targets.base import Bundle
from tests.helpers.cases import case

CLOUDS = {"vm_aws": "aws", "vm_gcp": "gcp", "vm_azure": "azure"}
ROOTS = {"vm_aws": "s3://bucket/pipecast", "vm_gcp": "gs://bucket/pipecast", "vm_azure": "az://box/pipecast"}


def compile_case(name: str, target: str = "vm_aws", **settings: Any) -> Bundle:
    """The bundle of golden case ``name`` (schedules compile as the emitted crontab)."""
    return compile_pipeline(case(name).build(), target,
                            EmitOptions(settings={"artifact_root": ROOTS[target], **settings}))


def task_documents(text: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The pipeline header (None for a single task) and the task documents, in their chain order."""
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(documents) > 1 and set(documents[0]) == {"name"}:
        return documents[0], documents[1:]
    return None, documents
