"""Lowering control flow for engines that run a fixed graph of containers: the step's runtime runs it.

Docker Compose (``local_docker``, ``hyperai``) starts every service once, after its upstream services exited 0, and
has no map, condition or skip of its own. A step of a pipeline with control flow therefore runs
``python -m pipecast.runtime.inline_flow`` (:mod:`pipecast.runtime.inline_flow`): it skips itself when its trigger
or condition says so (recording why, exiting 0 so the steps after it start and skip too), and runs a mapped
step's items itself, each ``step[i]`` with its own retries and record, at most the map's ``parallelism`` at once.

Exit handlers and hooks run after a failed step: on Compose every ``depends_on`` of such a pipeline is
``required: false`` (:func:`pipecast.targets.compose.compose_project`; see :data:`COMPOSE_EXIT`), and SkyPilot's run
script runs every step's command in order (the script goes on after a failed step; see :data:`SEQUENTIAL_EXIT`).
What cannot be emulated honestly is refused (see :data:`PIPELINE_BOUND`).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields, is_dataclass
from enum import Enum
from typing import Any

from pipecast.compiler import ir
from pipecast.runtime.command import EngineSyntax
from pipecast.targets.base import Capability, EmitContext, Feature, emulated

MODULE = "pipecast.runtime.inline_flow"
COMPOSE_EXIT = ("in a pipeline with exit handlers or hooks every depends_on is `required: false`: a service starts "
                "once its upstream services exited, whatever their exit code; once a step failed, every later "
                "ordinary step records itself skipped (fail-fast, from the records), the handler runs and reads its "
                "group's status from the steps' records")
COMPOSE_HOOKS = ("services after every other step (depends_on, `required: false`); the hook's runtime runs it only "
                 "on its event, read from the steps' records")
_FROM_COMMAND = (ir.BindingKind.PARAMETER, ir.BindingKind.CONSTANT)
PIPELINE_BOUND = ("Compose starts every service whose dependencies are done at once and cannot bound how many "
                  "run; a map's own bound (ParallelFor(..., parallelism=N)) is kept by the step's runtime")
SEQUENTIAL_EXIT = ("the run script goes on after a failed step: later steps record themselves skipped (fail-fast), "
                   "the handler runs and reads its group's status from the steps' records, and the script then "
                   "exits with the failure; the group and its handler must run in one task")
SEQUENTIAL_HOOKS = ("run last in the run script, after every other step whatever happened; the hook's runtime runs "
                    "it only on its event (from the steps' records); every step must run in one task")


def capabilities(exit_handler: str, hooks: str, bound: str) -> dict[Feature, Capability]:
    """The control-flow rows of the capability table of a target whose steps run through this emulation.

    ``exit_handler`` and ``hooks`` say how the engine starts them after a failed step (the step's runtime runs
    them), ``bound`` how the pipeline's bound is kept.
    """
    return {
        Feature.MAP: emulated("the mapped step's runtime runs each item (step[i]) as a child process, with its own "
                              "retries and record; later steps read the items from the artifact store"),
        Feature.CONDITION: emulated("each step's runtime evaluates its condition from the artifact store and, when "
                                    "false, records itself skipped and exits 0 (the steps after it skip too)"),
        Feature.EXIT_HANDLER: emulated(exit_handler),
        Feature.HOOKS: emulated(hooks),
        Feature.PARALLELISM: emulated(bound),
    }


# The control-flow rows of a Compose target's capability table.
CAPABILITIES = capabilities(COMPOSE_EXIT, COMPOSE_HOOKS, "a map's bound: its step's runtime runs at most N items at "
                                                        "once; a pipeline-wide bound is refused (Compose starts "
                                                        "every ready service)")
# SkyPilot runs one step at a time (in order inside a task, tasks one after the other): a mapped step's items are
# the only steps that run at once, so the pipeline's bound is kept by bounding them too.
SEQUENTIAL_CAPABILITIES = capabilities(SEQUENTIAL_EXIT, SEQUENTIAL_HOOKS, "steps run one at a time; a mapped "
                                                                          "step's runtime runs at most min(map "
                                                                          "bound, pipeline bound) items at once")


def check(pipeline: ir.Pipeline, context: EmitContext) -> None:
    """What the inline emulation does not express, reported once: the pipeline-wide bound."""
    if pipeline.parallelism is not None:
        context.error(f"pipeline {pipeline.name!r} bounds its running steps to {pipeline.parallelism}; "
                      f"{PIPELINE_BOUND}", location=str(pipeline.location) if pipeline.location else None,
                      fix="bound each map instead (ParallelFor(..., parallelism=N)), or drop the pipeline's bound")


def flow_command(pipeline: ir.Pipeline, step: ir.Step, command: list[str], syntax: EngineSyntax) -> list[str]:
    """``command`` (``python -m pipecast.runtime run ...``) made to run through the inline emulation.

    Unchanged for a pipeline without control flow, so its files stay as they were.
    """
    if not pipeline.uses_control_flow:
        return command
    plan = mini_plan(pipeline, step)
    args = ["--flow", plan_json(plan)]
    used = {o.parameter for g in plan.groups for o in g.all_operands() if o.kind is ir.BindingKind.PARAMETER}
    for param in pipeline.parameters:
        if param.name in used:
            args += ["--flow-param", f"{param.name}={param.type.value}:{syntax.parameter(param)}"]
    return [command[0], "-m", MODULE, *args, *command[3:]]


def mini_plan(pipeline: ir.Pipeline, step: ir.Step) -> ir.Pipeline:
    """The part of the IR the step's runtime needs: the step, the steps it reads, the groups around them.

    Steps other than ``step`` keep only their name, function, location and group (what instance names need);
    ``step`` loses what its ordinary command already carries (parameters, constants, env, resources).
    """
    groups = {g.name: g for g in pipeline.groups}
    steps = {s.name: s for s in pipeline.steps}
    wanted_steps: dict[str, None] = {step.name: None}
    wanted_groups: dict[str, None] = {}
    todo = [step.name, *step.upstream()]
    while todo:
        name = todo.pop()
        wanted_steps.setdefault(name)
        group_name = steps[name].group
        while group_name is not None:
            group = groups[group_name]
            if group_name not in wanted_groups:
                wanted_groups[group_name] = None
                siblings = [g for g in pipeline.groups if group.chain and g.chain == group.chain]
                for other in [group, *siblings]:
                    wanted_groups.setdefault(other.name)
                    todo += [o.step for o in other.all_operands() if o.step and o.step not in wanted_steps]
                    parent = other.parent
                    while parent is not None and parent not in wanted_groups:
                        todo += [o.step for o in groups[parent].all_operands() if o.step]
                        wanted_groups[parent] = None
                        parent = groups[parent].parent
            group_name = group.parent
    own = ir.Step(name=step.name, function=step.function, location=step.location, after=step.after,
                  bindings=tuple(b for b in step.bindings if b.kind not in _FROM_COMMAND),
                  group=step.group, trigger=step.trigger)
    kept = [own if s.name == step.name else ir.Step(name=s.name, function=s.function, location=s.location,
                                                    group=s.group)
            for s in pipeline.steps if s.name in wanted_steps]
    return ir.Pipeline(name=pipeline.name, steps=tuple(kept), parallelism=pipeline.parallelism,
                       groups=tuple(g for g in pipeline.groups if g.name in wanted_groups))


def plan_json(plan: ir.Pipeline) -> str:
    """The plan as compact JSON: fields that hold their default are left out (``from_json`` restores them)."""
    return json.dumps(_plain(plan), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        data = {}
        for f in fields(value):
            item = getattr(value, f.name)
            default = f.default if f.default is not MISSING else \
                f.default_factory() if f.default_factory is not MISSING else MISSING
            if isinstance(value, ir.Pipeline) and f.name == "ir_version":  # control flow: 2, or 3 with a gather
                data[f.name] = value.written_version(least="2")
            elif item != default:
                data[f.name] = _plain(item)
        return data
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value

