"""Checks of a map inside a map on Azure ML: which inner maps pipecast lowers into the outer body's component.

Split from :mod:`pipecast.targets.azureml.flow`, which lowers what these checks let through.
"""

from __future__ import annotations

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import FlowPlan

FIX_NESTED = ("run it with a target that nests control flow (`pipecast run FILE`, or argo), or move the inner "
              "loop or decision inside one step")


def enclosing_map(plan: FlowPlan, name: str | None) -> ir.Group | None:
    """The innermost map around group ``name`` (itself included), None when no map encloses it."""
    return next((g for g in plan.ancestors(name) if g.kind is ir.GroupKind.MAP), None)


def nested_problems(plan: FlowPlan, group: ir.Group, outer: ir.Group, members: list[str]) -> list[tuple[str, str]]:
    """Why a map inside map ``outer`` cannot be a parallel_for in the outer body's pipeline component.

    azure-ai-ml accepts one there (``PipelineComponentSchema.jobs`` is a job's ``PipelineJobsField``, control nodes
    included); these are pipecast's limits, not Azure's.
    """
    limit = "(pipecast's limit, not Azure's: azure-ai-ml accepts a parallel_for inside a pipeline component body)"
    if enclosing_map(plan, outer.parent) is not None:
        return [(f"is inside map {outer.name!r}, itself inside a map; pipecast nests maps one level {limit}",
                 FIX_NESTED)]
    # Through a branch of the outer body: its loop (and items) node is in that branch's if_else block, in the outer
    # body's component (block_nodes), so it runs only for the outer items whose decision chose the branch.
    # A condition inside is an if_else of the inner body's component; a map inside is refused at itself (two levels).
    if any(g.parent == group.name and g.kind is ir.GroupKind.EXIT for g in plan.pipeline.groups):
        return [(f"is inside map {outer.name!r} and its body holds an exit handler {limit}", FIX_NESTED)]
    counted = [o for o in group.items if o.kind is not ir.BindingKind.CONSTANT]
    own = [o for o in counted if o.kind is ir.BindingKind.OUTPUT and plan.maps[o.step or ""] == (outer.name,)]
    if own and counted[0] is not own[0]:
        return [(f"is inside map {outer.name!r} and iterates {operand_words(counted[0])} with output "
                 f"{own[0].output!r} of step {own[0].step!r} of the outer body; pipecast publishes such an inner "
                 f"map's items from that step, so its list must come first {limit}",
                 f"put the output of {own[0].step!r} first, or " + FIX_NESTED)]
    around = {g.name for g in plan.ancestors(group.parent)}  # a step in the same branch is in the same block
    branched = [o for o in counted if o.kind is ir.BindingKind.OUTPUT and any(
        c.name not in around for c in plan.conditions[o.step or ""])]
    if branched:
        return [(f"is inside map {outer.name!r} and iterates output {branched[0].output!r} of step "
                 f"{branched[0].step!r}, which is inside branch {plan.conditions[branched[0].step or ''][-1].name!r}; "
                 "its items node would read a node an if_else may skip, for which Azure ML defines nothing",
                 "return the list from a step outside the branch, or " + FIX_NESTED)]
    return []


def counted_per_item(plan: FlowPlan, group: ir.Group, outer: ir.Group) -> bool:
    """Whether inner map ``group``'s items are counted by an items node per outer item (in the outer body).

    An inner map over lists no step of the outer body returns (the outer item, a parameter, a step before the
    outer map, with constants): Azure ML's expressions cannot count a list, so the node's runtime resolves them
    by ``pipecast run``'s rules (``publish_azureml items-at``) and publishes the items.
    """
    counted = [o for o in group.items if o.kind is not ir.BindingKind.CONSTANT]
    return bool(counted) and not any(o.kind is ir.BindingKind.OUTPUT and plan.maps[o.step or ""] == (outer.name,)
                                     for o in counted)


def operand_words(operand: ir.Operand) -> str:
    """How an error names a list a map iterates."""
    if operand.kind is ir.BindingKind.ITEM:
        return f"the item of map {operand.group!r}"
    if operand.kind is ir.BindingKind.PARAMETER:
        return f"parameter {operand.parameter!r}"
    return f"output {operand.output!r} of step {operand.step!r}"
