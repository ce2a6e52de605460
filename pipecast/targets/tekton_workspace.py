"""The ``tekton`` target's artifact workspace: a PVC mounted at a ``file:///PATH`` artifact root in every task.

Every Tekton task runs in a pod of its own, so a path on one node's disk loses a step's inputs: a local root is
refused unless the user asks for a workspace. Then the Pipeline declares the workspace ``artifacts``, each task
mounts it at the root's path (``taskSpec.workspaces[].mountPath``), and the PipelineRun binds it to an existing
claim (``artifact_pvc``) or to a claim Tekton creates for the run from a ``volumeClaimTemplate``
(``artifact_volume_size``) and deletes with it. See https://tekton.dev/docs/pipelines/workspaces/.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext
from pipecast.targets.lowering import MISSING_ARTIFACT_ROOT, artifact_root, is_node_local

WORKSPACE = "artifacts"
# Kubernetes resource.Quantity (k8s.io/apimachinery/pkg/api/resource/quantity.go), the forms a size takes.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def size_problem(size: str) -> str | None:
    """Why ``size`` is no storage request Kubernetes accepts (e.g. ``10Gi``), or None."""
    return None if _QUANTITY.match(size) else "must be a Kubernetes quantity such as '10Gi' or '500Mi'"


@dataclass(frozen=True)
class Workspace:
    """Where the artifact workspace is mounted, and what the PipelineRun binds it to."""

    path: str
    binding: dict[str, Any]

    def task_binding(self) -> dict[str, str]:
        """A pipeline task's ``workspaces`` entry."""
        return {"name": WORKSPACE, "workspace": WORKSPACE}

    def task_declaration(self) -> dict[str, Any]:
        """A ``taskSpec.workspaces`` entry: mounted at the artifact root's path."""
        return {"name": WORKSPACE, "mountPath": self.path}

    def run_binding(self) -> dict[str, Any]:
        """The PipelineRun's ``workspaces`` entry."""
        return {"name": WORKSPACE, **self.binding}


def artifacts(pipeline: ir.Pipeline, context: EmitContext) -> tuple[str, Workspace | None]:
    """The artifact root, and the workspace holding it when the settings ask for one."""
    settings = context.settings
    pvc, size = settings.artifact_pvc, settings.artifact_volume_size
    wanted = bool(pvc or size)
    root = artifact_root(pipeline, context, remote=True, mounted=wanted)
    if not wanted or root == MISSING_ARTIFACT_ROOT:
        return root, None
    given = "artifact_pvc" if pvc else "artifact_volume_size"
    if pvc and size:
        context.error("artifact_pvc and artifact_volume_size are both set; the artifact workspace is one volume",
                      fix="keep artifact_pvc (an existing claim) or artifact_volume_size (a claim for each run)")
        return root, None
    if not is_node_local(root):
        context.error(f"{given} is set, but the artifact root {root!r} is not a local path, so no task would use "
                      "the volume", fix=f"drop {given}, or use artifact_root=file:///PATH to keep artifacts on it")
        return root, None
    path = root[len("file://"):]
    clean = posixpath.normpath(path) if path.startswith("/") else ""
    if clean != path.rstrip("/") or clean in ("/", "/tekton") or clean.startswith("/tekton/"):
        context.error(f"artifact root {root!r} cannot be the workspace's mount path (it must be a plain absolute "
                      "path, without '.' or '..' parts, outside Tekton's own /tekton)",
                      fix="use an absolute path outside /tekton, e.g. artifact_root=file:///artifacts")
        return root, None
    if pvc:
        binding: dict[str, Any] = {"persistentVolumeClaim": {"claimName": pvc}}
    else:
        claim: dict[str, Any] = {"accessModes": [settings.artifact_access_mode],
                                 "resources": {"requests": {"storage": size}}}
        if settings.artifact_storage_class:
            claim["storageClassName"] = settings.artifact_storage_class
        binding = {"volumeClaimTemplate": {"spec": claim}}
    return root, Workspace(clean, binding)
