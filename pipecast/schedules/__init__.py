"""``pipecast schedules list|delete``: the schedules pipecast made, read and removed through each engine's API.

A target that keeps schedules names a module in :attr:`~pipecast.targets.base.Target.schedules_module`
(reached through :meth:`~pipecast.targets.base.Target.schedules`) that defines::

    list_schedules(target, config) -> list[Schedule]
    delete_schedule(target, pipeline, config) -> list[str]   # what was deleted (or paused), one line each

Each engine keeps one schedule per pipeline (submit updates it in place), found again by a name or label made
from the pipeline's name, so ``delete`` needs only that name. Deleting a schedule leaves its runs alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipecast.errors import SubmitError

__all__ = ["Schedule", "delete_schedule", "list_schedules", "render_json", "render_table"]

COLUMNS = (("pipeline", "PIPELINE"), ("target", "TARGET"), ("schedule", "SCHEDULE"), ("next_run", "NEXT RUN"),
           ("state", "STATE"), ("id", "ID"), ("url", "URL"))


@dataclass(frozen=True)
class Schedule:
    """One schedule on an engine, as ``pipecast schedules list`` shows it.

    Attributes:
        pipeline: The pipeline's name (as the engine holds it: a label value on Kubernetes).
        target: The target whose engine holds it.
        schedule: The cron expression as the engine holds it, with its time zone when one is set.
        id: The engine's id of the schedule object (``namespace/name``, a resource name, a recurring run id...).
        next_run: The next start time, when the engine reports it (ISO 8601, UTC).
        state: Enabled, paused... as the engine says it, when it says it.
        url: The schedule's page in the engine's UI, when there is one.
    """

    pipeline: str
    target: str
    schedule: str
    id: str
    next_run: str | None = None
    state: str | None = None
    url: str | None = None


def _api(target_name: str) -> tuple[Any, Any]:
    from pipecast.targets.registry import get_target

    target = get_target(target_name)
    return target, target.schedules()


def list_schedules(target_name: str, config: Mapping[str, Any]) -> list[Schedule]:
    """The schedules pipecast made on ``target_name``'s engine, sorted by pipeline."""
    target, api = _api(target_name)
    found: list[Schedule] = api.list_schedules(target, config)
    return sorted(found, key=lambda s: (s.pipeline, s.id))


def delete_schedule(target_name: str, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Delete the schedule of ``pipeline`` on ``target_name``'s engine; what was done, one line each.

    Raises SubmitError when the engine holds no schedule of that pipeline.
    """
    target, api = _api(target_name)
    done: list[str] = api.delete_schedule(target, pipeline, config)
    if not done:
        raise SubmitError(f"target {target_name!r} holds no schedule of pipeline {pipeline!r}; nothing was deleted "
                          f"(`pipecast schedules list --target {target_name}` shows the schedules it has)")
    return done


def render_table(schedules: Sequence[Schedule]) -> str:
    """The schedules as an aligned text table (empty columns are left out)."""
    if not schedules:
        return "no schedules\n"
    rows = [{key: getattr(s, key) or "" for key, _ in COLUMNS} for s in schedules]
    columns = [(key, head) for key, head in COLUMNS if any(row[key] for row in rows)]
    widths = {key: max(len(head), *(len(row[key]) for row in rows)) for key, head in columns}
    lines = ["  ".join(head.ljust(widths[key]) for key, head in columns).rstrip()]
    lines += ["  ".join(row[key].ljust(widths[key]) for key, _ in columns).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def render_json(schedules: Iterable[Schedule]) -> str:
    """The schedules as a JSON list of objects (every field, null when unknown)."""
    return json.dumps([asdict(s) for s in schedules], indent=2) + "\n"
