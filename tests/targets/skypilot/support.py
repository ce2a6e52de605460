"""Helpers shared by the SkyPilot target tests: settings per cloud, reading the emitted YAML back."""

from __future__ import annotations

from typing import Any

import yaml

CLOUDS = {"vm_aws": "aws", "vm_gcp": "gcp", "vm_azure": "azure"}
ROOTS = {"vm_aws": "s3://bucket/pipecast", "vm_gcp": "gs://bucket/pipecast", "vm_azure": "az://box/pipecast"}
SETTINGS = {target: {"artifact_root": root} for target, root in ROOTS.items()}  # schedules compile as a crontab


def task_documents(text: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The pipeline header (None for a single task) and the task documents, in their chain order."""
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(documents) > 1 and set(documents[0]) == {"name"}:
        return documents[0], documents[1:]
    return None, documents
