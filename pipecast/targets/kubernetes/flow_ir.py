"""The part of the IR the control-flow driver needs, written compactly into its plan.

The driver (:mod:`pipecast.targets.kubernetes.flow_driver`) schedules with the local runner's
:class:`~pipecast.runtime.flow_runner.FlowScheduler` and builds each instance's command with
:func:`~pipecast.runtime.command.invocation_for`. Those read a step's name, function, bindings, outputs, upstream
steps (``after``), group, trigger, cache, retry and timeout, and the pipeline's groups and bound; the location is
kept because the IR requires one. The rest is left out: the step's template in the plan already carries its image,
resources, env, secrets and settings, the plan lists the parameters (the driver reads their values from there),
and the inputs' types and the descriptions are for messages at compile time. Fields holding their default are
left out too (:meth:`ir.Pipeline.from_json` restores them), as the inline emulation's plan does.
"""

from __future__ import annotations

import json
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.inline_flow import plan_json


def driver_ir(pipeline: ir.Pipeline) -> dict[str, Any]:
    """The IR the driver runs, as plain data (see the module docstring)."""
    steps = tuple(ir.Step(name=s.name, function=s.function, location=s.location, bindings=s.bindings,
                          outputs=tuple(ir.OutputSpec(name=o.name, type=o.type, artifact=o.artifact)
                                        for o in s.outputs),
                          after=s.after, retry=s.retry, timeout_seconds=s.timeout_seconds, cache=s.cache,
                          group=s.group, trigger=s.trigger)
                  for s in pipeline.steps)
    kept = ir.Pipeline(name=pipeline.name, steps=steps, groups=pipeline.groups, parallelism=pipeline.parallelism)
    plain: dict[str, Any] = json.loads(plan_json(kept))
    return plain
