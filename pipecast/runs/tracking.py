"""Rebuilding the run handle of a recorded run, for ``pipecast runs wait|cancel``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.errors import SubmitError
from pipecast.runs.store import RunStore
from pipecast.targets.base import RunHandle
from pipecast.targets.registry import get_target


def handle_for(name_or_id: str, config: Mapping[str, Any]) -> RunHandle:
    """The handle of a submitted run, asking its target to reconnect with ``config``."""
    record = RunStore.default().get(name_or_id)
    if record["target"] == "local":
        raise SubmitError(f"run {record['id']!r} ran locally and is {record['status']}; nothing to wait for")
    return get_target(record["target"]).handle(record, config)
