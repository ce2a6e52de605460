"""What ``pipecast runs show`` adds from the artifact store: each step's outputs and logged metadata.

A step's ``meta.json`` (written by :mod:`pipecast.runtime.executor`) records every output's materializer, file,
size and sha256, and the metadata the step logged with ``pipecast.log_metadata``. This module reads those records
for a run whose artifact root the run store knows (local runs record it) and adds them to the run's record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.errors import ArtifactError
from pipecast.runtime.artifacts import ArtifactStore


def with_artifacts(record: Mapping[str, Any], graph: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``record`` (from the run store) with each step's ``outputs`` and ``metadata``, and ``logged_metadata``.

    ``logged_metadata`` holds what the steps logged with ``run=True``, in step order (a later step's value for
    the same key wins). Without a known artifact root, ``artifacts`` says why nothing is listed, and
    ``artifact_types`` gives each step's typed outputs' types from the run's ``graph`` in the run store.
    """
    result = dict(record)
    root = (record.get("metadata") or {}).get("artifact_root")
    if not root:
        result["artifacts"] = ("not listed: the run store does not know this run's artifact root (runs made "
                               "here record it; on an engine see the engine's UI)")
        typed = {s["name"]: s["artifacts"] for s in (graph or {}).get("steps", []) if s.get("artifacts")}
        if typed:  # what the IR says each step makes, by step and output: the engine's UI has the rest
            result["artifact_types"] = typed
        return result
    store = ArtifactStore(root)
    logged: dict[str, Any] = {}
    steps = []
    for row in record.get("steps", []):
        step = dict(row)
        meta = _step_meta(store, record["pipeline"], record["id"], step["step"])
        if meta is not None:
            folder = store.step_dir(record["pipeline"], record["id"], step["step"])
            step["outputs"] = {name: _describe(store, folder, output)
                               for name, output in sorted((meta.get("outputs") or {}).items())}
            step["metadata"] = meta.get("metadata", {})
            logged.update(meta.get("run_metadata", {}))
        steps.append(step)
    result["steps"] = steps
    result["logged_metadata"] = logged
    return result


def _step_meta(store: ArtifactStore, pipeline: str, run_id: str, step: str) -> dict[str, Any] | None:
    """A step's ``meta.json``, or None when it has none (it did not run, or the store is out of reach)."""
    try:
        meta = store.read_json(f"{store.step_dir(pipeline, run_id, step)}/meta.json")
    except (ArtifactError, ValueError, OSError):
        return None
    return meta if isinstance(meta, dict) else None


def _describe(store: ArtifactStore, folder: str, output: Mapping[str, Any]) -> dict[str, Any]:
    """One output as listed: type, materializer, URI, size, sha256, artifact type, metadata, metrics, warning."""
    described = {"type": output.get("type"), "materializer": output.get("materializer"),
                 "uri": store.url(store.file_in(folder, output["file"])) if output.get("file") else None,
                 "size": output.get("size"), "sha256": output.get("sha256")}
    for key in ("artifact", "metadata", "metrics", "warning"):  # a typed artifact's type name, metadata, metrics
        if output.get(key):
            described[key] = output[key]
    return described
