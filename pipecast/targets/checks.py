"""The framework's checks before a target's ``emit``: settings at every level, parameters no engine can carry.

Each check reports into the :class:`~pipecast.targets.base.EmitContext`, so the user sees every problem at
once, at the ``file:line`` where it was written.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext, Target
from pipecast.targets.settings import pipeline_layers, step_layer


def parse_settings(pipeline: ir.Pipeline, target: Target, overrides: Mapping[str, Any],
                   context: EmitContext) -> None:
    """Check and parse every setting for ``target``: ``--set``, the pipeline's and each step's ``settings=``.

    The result goes to ``context.settings`` (and ``context.step_settings`` for steps with settings of their
    own). The settings class reports unknown keys (with did-you-mean) and wrong types; this adds connection keys given
    with ``--set`` and settings for a misspelt target name.
    """
    cls = target.settings_class
    # Connection keys that are not also compile settings (a namespace can be both: -c overrides it for one run).
    connection = set(target.connection_keys()) - set(cls.spec())
    _check_keys(pipeline, target, overrides, connection, context)
    given = {k: v for k, v in overrides.items() if k not in connection}
    if not target.connection_in_settings:
        connection = set()  # reported as unknown settings where they are written
    layers = [replace(layer, values={k: v for k, v in layer.values.items() if k not in connection})
              for layer in pipeline_layers(pipeline, target.name, given)]
    context.settings = cls.parse(layers, target=target.name, report=context.errors.append)
    for step in pipeline.steps:
        layer = step_layer(step, target.name)
        if layer is not None:
            own = replace(layer, values={k: v for k, v in layer.values.items() if k not in connection})
            context.step_settings[step.name] = context.settings.replace_layer(own, target=target.name,
                                                                              report=context.errors.append)


def _check_keys(pipeline: ir.Pipeline, target: Target, overrides: Mapping[str, Any], connection: set[str],
                context: EmitContext) -> None:
    """Report connection settings given with ``--set`` and settings for a target name that is a near miss."""
    from pipecast.targets.registry import target_paths

    for key in overrides:
        if key in connection:
            context.error(f"setting {key!r} given with --set is a connection setting of {target.name!r}",
                          fix=f"pass it to submit with -c {key}=...")
    registered = list(target_paths())
    misspelt: set[str] = set()
    pipeline_location = str(pipeline.location) if pipeline.location else None
    for step, settings in [(None, pipeline.settings), *((s, s.settings) for s in pipeline.steps)]:
        origin = "the step's settings=" if step else "the pipeline's settings="
        location = None if step else pipeline_location
        for item in settings:
            if item.target not in registered and item.target not in misspelt:
                # A name like no target's may belong to a target installed elsewhere; a near miss is a typo.
                close = difflib.get_close_matches(item.target, registered, n=1)
                if close:
                    misspelt.add(item.target)
                    context.error(f"{origin} names target {item.target!r}, which does not exist; did you mean "
                                  f"{close[0]!r}?", step=step, location=location,
                                  fix=f"write settings={{{close[0]!r}: {{...}}}}")


def null_parameter_reason(target: Target) -> str:
    """Why ``target`` refuses a parameter whose value is None: the one explanation compile and submit give."""
    return (f"{target.name} passes parameters as typed text, and engines have no common 'no value' (None would "
            "arrive as 'null' or 'false', or be refused)")


_TYPED_DEFAULTS = {ir.TypeName.STR: "''", ir.TypeName.INT: "0", ir.TypeName.FLOAT: "0.0",
                   ir.TypeName.BOOL: "False", ir.TypeName.LIST: "[]", ir.TypeName.DICT: "{}"}


def check_null_parameters(pipeline: ir.Pipeline, target: Target, context: EmitContext) -> None:
    """Refuse parameters that default to None on a target that cannot carry None (most engines)."""
    if target.carries_null_parameters:
        return
    for param in pipeline.parameters:
        if param.default_json == "null":
            example = _TYPED_DEFAULTS.get(param.type, "0, '', [] or {}")
            context.error(
                f"pipeline parameter {param.name!r} defaults to None: {null_parameter_reason(target)}",
                location=str(param.location) if param.location else None,
                fix=f"give it a real default of its type (e.g. {param.name}: {param.type.value} = {example}) and "
                    "treat that value as 'not set' in the step; `pipecast run` (the local target) accepts None",
            )


