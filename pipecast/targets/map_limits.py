"""Map sizes checked before submitting: a list parameter's default at compile, the values given at submit.

Some engines bound how many items one map expands into (GitHub's jobs per matrix, Tekton's
``default-max-matrix-combinations-count``, Airflow's ``[core] max_map_length``). A constant list is counted by the
target's own checks; a list that is a pipeline parameter is known only when the run starts, so without this check
an over-long default or ``-p items=[...]`` would pass the compile and fail in the runtime's publisher (or the
engine) after the run began. Here a map whose lists are all parameters or constants is counted from the
parameters' defaults (compile) or from the run's values (``pipecast submit``), with one clear error.

Sizes too, where the whole list travels in a bounded channel: Azure ML's ``parallel_for`` reads a parameter's item
indices from a run property of 1,000 characters, KFP/Vertex hand the whole list to every item's task as one
argument (pipecast's 65,536 bytes, as for a published list), and Argo, which counts no items, gets it as one
container argument (Linux's 131,072 bytes).

Each target declares its own limit with :meth:`pipecast.targets.base.Target.map_limit` (from a constant it or its
runtime publisher keeps, or a setting); the default is none. A map over a step's output is checked only at run
time, by the runtime's publisher.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.ir import canonical_json
from pipecast.errors import ParameterError, Problem


@dataclass(frozen=True, slots=True)
class MapLimit:
    """The most items an engine expands one map into, and where that number comes from."""

    most: int | None  # items (None: no count limit)
    rule: str  # the engine's rule, with its documentation or setting
    raise_it: str  # how to raise the limit (part of the fix)
    max_bytes: int | None = None  # a list parameter's value as canonical JSON, where the whole list travels
    # Where the list travels as another text than its canonical JSON: its bytes there (parameter name, value), and
    # what those bytes are, for the message.
    size_of: Callable[[str, Any], int] | None = field(default=None, compare=False)
    measured: str = "as JSON"


def map_limit(target: str, settings: Any) -> MapLimit | None:
    """The map-size limit target ``target`` declares with its parsed ``settings`` (None: it has none)."""
    from pipecast.targets.registry import get_target

    return get_target(target).map_limit(settings)


def map_size_problems(pipeline: ir.Pipeline, values: Mapping[str, Any], limit: MapLimit,
                      given: str) -> list[Problem]:
    """The maps over parameters whose ``values`` (``given``: 'default' or 'value') exceed ``limit``."""
    problems = []
    for group in pipeline.groups:
        if group.kind is not ir.GroupKind.MAP or not group.items:
            continue
        kinds = {operand.kind for operand in group.items}
        if ir.BindingKind.PARAMETER not in kinds or kinds - {ir.BindingKind.PARAMETER, ir.BindingKind.CONSTANT}:
            continue  # constants alone: the target counts them; a step's output or an item: only at run time
        lists = [values.get(o.parameter or "") if o.kind is ir.BindingKind.PARAMETER else o.value
                 for o in group.items]
        lengths = [len(value) for value in lists if isinstance(value, list)]
        if len(lengths) < len(lists):
            continue  # no value yet (a required parameter) or not a list: the runtime says so
        # A zip counts its first list (the runtime refuses lists of different lengths).
        count = math.prod(lengths) if group.combine is ir.Combine.PRODUCT else lengths[0]
        names = [o.parameter or "" for o in group.items if o.kind is ir.BindingKind.PARAMETER]
        size_of = limit.size_of or _json_bytes
        sizes = {name: size_of(name, values[name]) for name in names} if limit.max_bytes else {}
        if limit.most is not None and count > limit.most:
            which = ", ".join(f"{name!r} ({len(values[name])} items)" for name in names)
            what = f"would expand into {count} items from the {given} of parameter{'s' * (len(names) > 1)} {which}"
        elif limit.max_bytes is not None and max(sizes.values()) > limit.max_bytes:
            name = max(sizes, key=lambda n: sizes[n])
            what = f"iterates the {given} of parameter {name!r}, {sizes[name]} bytes {limit.measured}"
        else:
            continue
        problems.append(Problem(
            f"map {group.name!r} {what}; {limit.rule}", location=str(group.location) if group.location else None,
            fix=f"{'give it a shorter default' if given == 'default' else f'pass a shorter list (-p {names[0]}=[...])'}"
                f", or batch several items per step; {limit.raise_it}"))
    return problems


def _json_bytes(name: str, value: Any) -> int:
    return len(canonical_json(value).encode("utf-8"))


def check_defaults(pipeline: ir.Pipeline, context: Any) -> None:
    """Report (compile) each map over parameters whose defaults exceed the target's limit."""
    limit = map_limit(context.target, context.settings)
    if limit is None:
        return
    defaults = {p.name: p.default for p in pipeline.parameters if not p.required}
    for problem in map_size_problems(pipeline, defaults, limit, "default"):
        context.error(problem.message, location=problem.location, fix=problem.fix)


def check_values(pipeline: ir.Pipeline, target: Any, settings: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Raise ParameterError (before anything is built or submitted) when a run's values exceed a map's limit."""
    from pipecast.targets.base import EmitContext
    from pipecast.targets.checks import parse_settings

    context = EmitContext(target=target.name, overrides=dict(settings))
    parse_settings(pipeline, target, settings, context)
    if context.errors:
        return  # the compile reports bad settings
    limit = target.map_limit(context.settings)
    problems = map_size_problems(pipeline, values, limit, "value") if limit else []
    if problems:
        raise ParameterError("cannot submit: " + "\n".join(p.render() for p in problems))
