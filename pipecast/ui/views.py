"""What ``pipecast ui`` shows, as plain data read from the run store (the JSON endpoints serve it as it is)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from pipecast.errors import PipecastError
from pipecast.runs.store import RunStore

FINISHED = ("succeeded", "failed", "cancelled")
LIST_LIMIT = 200
_ARTIFACT_STEPS = 500  # meta.json files read for one run page at most


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def duration(record: Mapping[str, Any], now: datetime | None = None) -> float | None:
    """Seconds from the run's start to its end (to now while it runs); None when unknown."""
    start = _time(record.get("created_at"))
    end = _time(record.get("ended_at"))
    if start is None:
        return None
    if end is None:
        if record.get("status") in FINISHED:
            end = _time(record.get("updated_at"))
        end = end or now or datetime.now(timezone.utc)
    return max(0.0, (end - start).total_seconds())


def summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the runs list."""
    metadata = record.get("metadata") or {}
    stack = metadata.get("stack")
    return {
        "id": record["id"], "pipeline": record["pipeline"], "target": record["target"],
        "stack": stack if isinstance(stack, str) else None, "status": record["status"],
        "started": record["created_at"], "ended": record.get("ended_at"), "duration": duration(record),
        "url": record.get("url"), "engine_run_id": record.get("engine_run_id"), "detail": record.get("detail"),
        "parameters": record.get("parameters") or {},
    }


def list_runs(store: RunStore, filters: Mapping[str, str | None], limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """The newest runs, filtered by ``pipeline``, ``stack`` and ``status`` (empty values do not filter)."""
    records = store.list(pipeline=filters.get("pipeline") or None, stack=filters.get("stack") or None,
                         status=filters.get("status") or None, limit=limit)
    return [summary(r) for r in records]


def choices(store: RunStore) -> dict[str, list[str]]:
    """The pipelines, stacks and statuses the newest runs have, for the filter menus."""
    rows = [summary(r) for r in store.list(limit=LIST_LIMIT)]
    return {key: sorted({str(row[key]) for row in rows if row[key]}) for key in ("pipeline", "stack", "status")}


def step_statuses(record: Mapping[str, Any]) -> dict[str, str]:
    """Each step's status as recorded (the local runners record them; engines' runs have none yet)."""
    return {str(s["step"]): str(s["status"]) for s in record.get("steps", ())}


def artifacts(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The outputs each step wrote under a local artifact root (its ``meta.json``): step, name, type, URI.

    Only a ``file://`` root is read here (the page must not wait on an object store); other roots list none.
    """
    from pipecast.runtime.artifacts import ArtifactStore

    root = (record.get("metadata") or {}).get("artifact_root")
    if not isinstance(root, str) or not root.startswith(("file://", "/")):
        return []
    try:
        store = ArtifactStore(root)
        run_dir = store.run_dir(str(record["pipeline"]), str(record["id"]))
    except PipecastError:
        return []
    found = []
    steps = sorted(os.listdir(run_dir))[:_ARTIFACT_STEPS] if os.path.isdir(run_dir) else []
    for step in steps:
        try:
            step_dir = store.step_dir(str(record["pipeline"]), str(record["id"]), step)
            meta = store.read_json(f"{step_dir}/meta.json")
        except (PipecastError, ValueError, OSError):
            continue
        outputs = meta.get("outputs") if isinstance(meta, dict) else None
        for name, output in sorted((outputs or {}).items()):
            if not isinstance(output, dict):
                continue
            try:
                uri = store.url(store.file_in(step_dir, str(output.get("file", ""))))
            except PipecastError:
                continue
            found.append({"step": step, "name": str(name), "type": str(output.get("type", "")),
                          "materializer": str(output.get("materializer", "")), "uri": uri,
                          "cached": bool(meta.get("cached"))})
    return found


def detail(store: RunStore, run_id: str) -> dict[str, Any]:
    """Everything the run page shows: the run, its steps, its DAG, its artifacts."""
    record = store.get(run_id)
    graph = store.graph(record["id"])
    if graph is None:  # a run recorded before graphs were kept: its steps, without edges
        graph = {"steps": [{"name": s["step"], "upstream": [], "after": []} for s in record["steps"]]}
    order = {str(s["name"]): index for index, s in enumerate(graph.get("steps", ()))}
    steps = sorted(record["steps"], key=lambda s: order.get(str(s["step"]), len(order)))  # the pipeline's order
    record = {**record, "steps": steps}
    return {**summary(record), "metadata": record.get("metadata") or {}, "steps": steps,
            "graph": graph, "step_statuses": step_statuses(record), "artifacts": artifacts(record)}

