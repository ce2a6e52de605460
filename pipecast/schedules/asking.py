"""Asking several engines at once: which targets to ask, which ``-c`` keys each gets, one failure each."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from pipecast.errors import PipecastError, SubmitError
from pipecast.schedules import Schedule, list_schedules

STORE_SCAN = 100_000  # runs read from the run store to find the targets in use


def targets_in_use() -> list[str]:
    """The targets the run store has runs on whose engines keep schedules pipecast can list."""
    from pipecast.runs.store import RunStore
    from pipecast.targets.registry import get_target

    names = sorted({str(record["target"]) for record in RunStore.default().list(limit=STORE_SCAN)})
    found = []
    for name in names:
        try:
            if get_target(name).schedules_module:
                found.append(name)
        except PipecastError:
            continue  # a target recorded once and not installed now (a plugin removed)
    return found


def keys_of(target: str) -> set[str]:
    """The ``-c`` keys ``target``'s schedules take: its connection class's, or its schedules module's ``KEYS``."""
    from pipecast.targets.registry import get_target

    found = get_target(target)
    keys = set(found.connection_keys())
    if found.schedules_module:  # these modules import their SDKs only when called
        keys |= set(getattr(importlib.import_module(found.schedules_module), "KEYS", ()))
    return keys


def config_for(target: str, config: Mapping[str, Any], several: bool) -> dict[str, Any]:
    """The ``-c`` keys ``target`` takes; asking one target, every key goes (its module refuses unknown ones)."""
    if not several:
        return dict(config)
    keys = keys_of(target)
    return {key: value for key, value in config.items() if key in keys}


def list_everywhere(targets: Sequence[str], config: Mapping[str, Any]) -> tuple[list[Schedule], list[str]]:
    """The schedules on each target's engine, and one message per target that could not be asked."""
    if not targets:
        targets = targets_in_use()
        if not targets:
            raise SubmitError("the run store has no runs on a target whose engine keeps schedules; name one with "
                              "--target TARGET (and its connection with -c KEY=VALUE)")
    several = len(targets) > 1
    if several:
        known = {key for name in targets for key in keys_of(name)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise SubmitError(f"unknown --config key(s) {unknown!r}: none of the targets {list(targets)!r} takes them")
    found: list[Schedule] = []
    failures: list[str] = []
    for name in targets:
        try:
            found += list_schedules(name, config_for(name, config, several))
        except PipecastError as err:
            failures.append(f"target {name!r}: {err}" if several else str(err))
    return found, failures
