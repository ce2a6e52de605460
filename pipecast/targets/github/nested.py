"""Nested maps on GitHub Actions (issue 16), emulated: the outer map is a matrix, the inner items child processes.

GitHub cannot put a matrix inside a matrix job. It can call a reusable workflow with a matrix of its own from a
matrix job, but that means one more emitted workflow file per inner map, with every value passed as a typed
``with:`` input; this lowering keeps one file. A step inside an inner map (and a step that collects one) runs as a
matrix job over the *outermost* map's indices, like any mapped step, and its command is
``python -m pipecast.runtime.github_nested`` (:mod:`pipecast.runtime.github_nested`): the runtime of outer item
``i`` reads the inner map's list (the outer item, a parameter, a constant, or a list a step of the outer body
made, from the artifact store) and runs each instance ``step[i][j]`` as a child process with its own retries and
record, at most the inner map's ``parallelism`` at once, as :mod:`pipecast.runtime.inline_flow` does for Compose.
A step after the maps collects ``step[i][j]`` from the artifact store as lists of lists, in item order.

What the emulation costs: GitHub's UI shows one job per outer item, not one per inner item, and a failed inner
item fails its outer item's job (the other inner items already running finish; none starts after it).
"""

from __future__ import annotations

from collections.abc import Callable

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.targets.github.flow import item_steps
from pipecast.targets.github.syntax import param_env
from pipecast.targets.inline_flow import mini_plan, plan_json

MODULE = "pipecast.runtime.github_nested"
INDEX_ENV = "PIPECAST_GITHUB_INDEX"
_FIX = "run it with the local target (`pipecast run FILE`), or move the inner loop inside one step"


def emulated(plan: FlowPlan, step: ir.Step) -> bool:
    """Whether the step's runtime runs inner-map items: it is inside a nested map, or collects a step that is."""
    if len(plan.maps[step.name]) > 1:
        return True
    return any(b.kind is ir.BindingKind.COLLECTED and len(plan.maps[b.step or ""]) > 1 for b in step.bindings)


def runs_items(plan: FlowPlan, step: ir.Step) -> bool:
    """Whether the step's job runs :mod:`pipecast.runtime.github_nested`: :func:`emulated`, or a handler in a map.

    A handler inside a map reads its own item's status (``report[i]``: item ``i``'s instances only), which
    ``needs.<job>.result`` cannot give (one result for the whole matrix); the runtime builds it from the records.
    """
    return emulated(plan, step) or (bool(plan.maps[step.name])
                                    and any(b.kind is ir.BindingKind.STATUS for b in step.bindings))


_GROUPS: list[tuple[ir.Pipeline, dict[str, ir.Group]]] = []  # the groups by name of the pipeline being emitted


def is_inner(pipeline: ir.Pipeline, group: ir.Group) -> bool:
    """Whether map ``group`` is inside another map (its items are the runtime's, never a matrix's)."""
    if not _GROUPS or _GROUPS[0][0] is not pipeline:  # asked per group and per job: index the groups once
        _GROUPS[:] = [(pipeline, {g.name: g for g in pipeline.groups})]
    groups = _GROUPS[0][1]
    parent = group.parent
    while parent is not None:
        if groups[parent].kind is ir.GroupKind.MAP:
            return True
        parent = groups[parent].parent
    return False


def reads_own_outer(plan: FlowPlan, group: ir.Group, operand: ir.Operand) -> bool:
    """Whether an inner map's list is an output of a step in the maps around it (made per outer item)."""
    source = plan.maps[operand.step or ""]
    around = tuple(g.name for g in reversed(plan.ancestors(group.parent)) if g.kind is ir.GroupKind.MAP)
    return bool(source) and around[:len(source)] == source


def nested_args(plan: FlowPlan, step: ir.Step, argv: list[str], placeholder: Callable[[str], str],
                env: dict[str, str]) -> list[str]:
    """``argv`` (``python -m pipecast.runtime run ...``) run by :mod:`pipecast.runtime.github_nested`.

    The step's plan travels as ``--flow`` (the parts of the IR its runtime needs), the parameters the maps and
    conditions read as ``--flow-param`` (from the run's inputs, through ``env``), and the outer item as
    ``$PIPECAST_GITHUB_INDEX``. A step in (or after) a condition inside a map gets ``--decide`` first: its runtime
    decides its instances' branches and skips from the records (:func:`pipecast.targets.github.flow.item_steps`).
    """
    pipeline = plan.pipeline
    small = mini_plan(pipeline, step)
    args = [*(["--decide"] if step.name in item_steps(plan) else []), "--flow", plan_json(small)]
    used = {o.parameter for g in small.groups for o in g.all_operands() if o.kind is ir.BindingKind.PARAMETER}
    for param in pipeline.parameters:
        if param.name in used:
            env[param_env(param)] = f"${{{{ inputs.{param.name} }}}}"
            args += ["--flow-param", f"{param.name}={param.type.value}:{placeholder(param_env(param))}"]
    if plan.maps[step.name]:
        env[INDEX_ENV] = "${{ matrix.index }}"
    return [argv[0], "-m", MODULE, *args, *argv[3:]]
