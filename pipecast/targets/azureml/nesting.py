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
    included). Two levels are pipecast's limit (for every target); an exit handler in the body and a list from a
    branch the inner map is not in are Azure ML's, each error says why.
    """
    limit = "(pipecast's limit, not Azure's: azure-ai-ml accepts a parallel_for inside a pipeline component body)"
    if enclosing_map(plan, outer.parent) is not None:
        return [(f"is inside map {outer.name!r}, itself inside a map; pipecast nests maps one level {limit}",
                 FIX_NESTED)]
    # Through a branch of the outer body: its loop (and items) node is in that branch's if_else block, in the outer
    # body's component (block_nodes), so it runs only for the outer items whose decision chose the branch.
    # A condition inside is an if_else of the inner body's component; a map inside is refused at itself (two levels).
    # The capability table refuses every exit handler first; this says why one in a map's body cannot be emulated.
    if any(g.parent == group.name and g.kind is ir.GroupKind.EXIT for g in plan.pipeline.groups):
        return [(f"is inside map {outer.name!r} and its body holds an exit handler; Azure ML runs a node after "
                 "others whatever their outcome only as a pipeline job's settings.on_finalize, which a pipeline "
                 "component (a map's body) cannot have (azure.ai.ml.dsl: \"On_init/on_finalize is not supported for "
                 "pipeline component\") (Azure ML's limit)", FIX_NESTED)]
    counted = [o for o in group.items if o.kind is not ir.BindingKind.CONSTANT]
    around = {g.name for g in plan.ancestors(group.parent)}  # a step in the same branch is in the same block
    branched = [o for o in counted if o.kind is ir.BindingKind.OUTPUT and any(
        c.name not in around for c in plan.conditions[o.step or ""])]
    if branched:
        # As a step outside a branch reading it (flow._chain): ConditionNode's blocks only list the nodes that run.
        return [(f"is inside map {outer.name!r} and iterates output {branched[0].output!r} of step "
                 f"{branched[0].step!r}, which is inside branch {plan.conditions[branched[0].step or ''][-1].name!r} "
                 "and the inner map is not; its parallel_for would read a node an if_else may skip, and Azure ML "
                 "defines no rule for a node fed by a skipped one (an if_else only chooses which nodes of its blocks "
                 "run: ConditionNode) (Azure ML's limit, as for any step outside a branch reading it)",
                 "put the inner map inside that branch (its parallel_for is then in the branch's if_else block), or "
                 "return the list from a step outside the branch")]
    return []


def counted_per_item(plan: FlowPlan, group: ir.Group, outer: ir.Group) -> bool:
    """Whether inner map ``group``'s items are counted by an items node per outer item (in the outer body).

    An inner map whose first list no step of the outer body returns (the outer item, a parameter, a step before
    the outer map), zipped or multiplied with any others (constants, or a list a step of the outer body returns
    after it): Azure ML's expressions cannot count a list, so the node's runtime resolves them by ``pipecast
    run``'s rules (``publish_azureml items-at``) and publishes the items. It waits on the steps whose outputs it
    reads (:func:`pipecast.targets.azureml.flow.items_waits`); one of the outer body is a node of the same
    component, so it reads that outer item's run of it.
    """
    counted = [o for o in group.items if o.kind is not ir.BindingKind.CONSTANT]
    return bool(counted) and not _own_list(plan, counted[0], outer)


def _own_list(plan: FlowPlan, operand: ir.Operand, outer: ir.Group) -> bool:
    """Whether ``operand`` is an output of a step of ``outer``'s body (whose run per outer item publishes it)."""
    return operand.kind is ir.BindingKind.OUTPUT and plan.maps[operand.step or ""] == (outer.name,)


def operand_words(operand: ir.Operand) -> str:
    """How an error names a list a map iterates."""
    if operand.kind is ir.BindingKind.ITEM:
        return f"the item of map {operand.group!r}"
    if operand.kind is ir.BindingKind.PARAMETER:
        return f"parameter {operand.parameter!r}"
    return f"output {operand.output!r} of step {operand.step!r}"
