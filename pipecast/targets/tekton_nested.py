"""Nested maps on Tekton Pipelines (issue 16), emulated: the outer map is a ``matrix``, the inner items processes.

A ``matrix`` cannot hold a matrix (docs/matrix.md: a Pipeline task fans out once, over its own ``matrix.params``;
a TaskRun has no tasks of its own), so the emulation is GitHub's (:mod:`pipecast.targets.github.nested`). A step
inside an inner map, and a step that collects one, is a task whose matrix is the *outermost* map's item indices
(none outside maps), and its command is ``python -m pipecast.runtime.tekton_nested`` with the outer index
``$(params.index)`` and the part of the plan its runtime needs (:mod:`pipecast.runtime.tekton_nested`): that
TaskRun runs outer item ``i``'s instances ``step[i][j]`` as child processes, each with its own retries, cache and
record, at most the inner map's ``parallelism`` at once, and a step that collects them gets lists (per outer
item) or lists of lists (after the outer map) in item order, built from the records in the artifact store.

What the emulation costs: Tekton's UI shows one TaskRun per outer item, not one per inner item, and a failed inner
item fails its outer item's TaskRun. Conditions combine with it as on GitHub: a ``when`` belongs to the whole
matrixed task, so a step in a condition inside a map (between the maps, or inside the inner one), or one that
reads a step such a condition may skip, gets ``--decide``: its TaskRun's runtime decides each outer item's
branch and each inner item's from the records, and an inner map over a list a skipped branch makes has no items
(:mod:`pipecast.runtime.tekton_nested`). A ``OneOf`` on a nested step reads the branch that ran from the records,
and a handler that collects a nested map builds its status from the instances' records
(:class:`pipecast.runtime.github_nested.OuterItemStep`). A step outside the emulation that runs ``.after()`` a
nested step such a condition may skip runs through it too (:func:`after_nested`): Tekton sees that step's TaskRuns
succeed (a skipped instance exits 0, recorded), so only the records say it was skipped, and they are per inner
instance (``step[i][j]``), which the emulation's runtime reads at every depth as ``pipecast run`` does.
"""

from __future__ import annotations

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.runtime.params import encode_constant
from pipecast.targets.github.nested import emulated, is_inner, reads_own_outer
from pipecast.targets.inline_flow import mini_plan, plan_json

MODULE = "pipecast.runtime.tekton_nested"
TASK_STATUS = "--task-status"  # STEP=$(tasks.<name>.status), for a handler's instances without a record

__all__ = ["MODULE", "TASK_STATUS", "after_nested", "decides", "decision_reads", "emulated", "in_item_branch",
           "is_inner", "nested_args", "reads_own_outer"]


def in_item_branch(plan: FlowPlan, step: ir.Step) -> bool:
    """Whether a condition inside a map holds the step (between its maps, or inside the inner one)."""
    condition_seen = False
    for group in plan.ancestors(step.group):  # innermost first
        if group.kind is ir.GroupKind.CONDITION:
            condition_seen = True
        elif group.kind is ir.GroupKind.MAP and condition_seen:
            return True
    return False


def after_nested(plan: FlowPlan, step: ir.Step, checks: dict[str, list[tuple[str, str]]]) -> bool:
    """Whether the step reads (``.after()``) a nested step that a condition inside a map may skip (``checks``).

    Tekton's ``runAfter`` waits for that task and sees it succeed: its runtime records a skipped inner instance
    and exits 0 (a skip is no failure to Tekton: ``pipelinerunstate.go`` counts a TaskRun by its ``Succeeded``
    condition only). So the step's own runtime must tell from the records, one per inner instance, whether it
    runs: it runs through the emulation with ``--decide`` (:func:`decides`), which reads them at every depth.
    """
    return not emulated(plan, step) and any(len(plan.maps[name]) > 1 for name, _ in checks.get(step.name, []))


def decides(plan: FlowPlan, step: ir.Step, checks: dict[str, list[tuple[str, str]]]) -> bool:
    """Whether the step's runtime decides branches and skips from the records (``--decide``).

    It does when a condition inside a map holds it, or it reads a step such a condition may skip (``checks``).
    """
    return in_item_branch(plan, step) or bool(plan.item_conditions(step)) or bool(checks.get(step.name))


def decision_reads(plan: FlowPlan, step: ir.Step) -> list[str]:
    """The steps whose outputs the conditions inside maps around ``step`` read (its runtime decides them)."""
    found: dict[str, None] = {}
    for group in plan.conditions[step.name]:
        if any(g.kind is ir.GroupKind.MAP for g in plan.ancestors(group.parent)):
            for branch in plan.chains[group.chain or group.name]:
                found.update(dict.fromkeys(branch.condition.steps() if branch.condition else ()))
    return list(found)


def nested_args(plan: FlowPlan, step: ir.Step, args: list[str], index: str | None,
                decide: bool) -> tuple[list[str], list[str]]:
    """``args`` (``run ...``) run by :mod:`pipecast.runtime.tekton_nested`, and the parameters its maps read.

    The plan travels percent-encoded (Tekton substitutes ``$(…)`` in every argument, a constant list's text
    included); the parameters as ``--flow-param NAME=TYPE:$(params.NAME)``; the outer item as ``--outer-index``;
    ``--decide`` first when the runtime decides branches and skips (:func:`decides`).
    """
    pipeline = plan.pipeline
    small = mini_plan(pipeline, step)
    head = ["--decide"] if decide else []
    head += ["--outer-index", index] if index is not None else []
    head += ["--flow", encode_constant(plan_json(small))]
    used = {o.parameter for g in small.groups for o in g.all_operands() if o.kind is ir.BindingKind.PARAMETER}
    names = [p.name for p in pipeline.parameters if p.name in used]
    for param in pipeline.parameters:
        if param.name in used:
            head += ["--flow-param", f"{param.name}={param.type.value}:$(params.{param.name})"]
    return [*head, *args], names
