"""Control flow on Azure ML (issue 16): ``parallel_for`` and ``if_else`` nodes, as azure-ai-ml 1.35 defines them.

- **A map** is a ``parallel_for`` node (``ParallelForSchema``: ``body``, ``items``, ``max_concurrency``) whose body
  is the mapped step's command node (or, for several steps, a pipeline component node). Each item is a dict
  whose keys bind the body's inputs
  (``ParallelFor._validate_items_list``: "Items should have same keys with body inputs"): here
  ``{"pipecast_item": i}``, and the runtime takes item ``i`` of the list itself (values keep their exact JSON) and
  runs as instance ``step[i]``. Items are a JSON literal for constant lists, or the string output
  ``pipecast_items_OUTPUT`` that the list's step publishes (:mod:`pipecast.runtime.publish_azureml`), or for a
  parameter, the output of a small node that publishes them from the parameter's value. The map's
  bound is ``max_concurrency``. A step after the map waits for the loop node's aggregated ``pipecast_done``
  output and reads the items' results from pipecast's artifact store, in item order.
- **A condition branch** is an ``if_else`` node (``ConditionNodeSchema``: ``condition``, ``true_block``) whose
  condition is a boolean control output of the step the chain's conditions read, ``pipecast_if_<branch>``: that
  step's runtime evaluates the branch's rule (its own condition true, every earlier branch's false) and publishes
  the result. Azure ML runs the nodes of ``true_block`` only when it is true.

A map of several steps has a pipeline component node as its body, written to a file of its own
(:mod:`pipecast.targets.azureml.body`: azure-ai-ml 1.35 refuses an inline one, "Not supporting non file for
component").

Refused, each with its alternative:

- **A whole-run bound**: Azure ML has none. A pipeline job's ``settings`` are ``default_compute``,
  ``default_datastore``, ``continue_on_step_failure``, ``force_rerun`` (and the preview's ``on_init``/
  ``on_finalize``): ``PipelineJobSettingsSchema`` (``_schema/pipeline/settings.py``); the only concurrency
  field of a pipeline is a ``parallel_for``'s ``max_concurrency`` (``ParallelForSchema``).
- **A step outside a branch reading the branch's output, so ``OneOf`` too**: an ``if_else`` only chooses
  which nodes run (``ConditionNode``: "The list of nodes to execute when the condition is true"); azure-ai-ml
  has no node that passes on the output of the block that ran (the v1 component SDK's
  ``dsl.condition_output`` has no counterpart in ``azure.ai.ml.dsl``) and documents no rule for a node fed
  by a skipped one. Likewise a condition on a step inside another branch.
- **Conditions reading no step or several**: the decision is a control output of the one step they read.
- **Some maps inside a map** (:func:`nesting.nested_problems`): azure-ai-ml 1.35 *accepts* control nodes inside a
  pipeline component (``PipelineComponentSchema.jobs`` is the same ``PipelineJobsField`` as a job's); an inner map
  over a step inside a branch it is not in is refused for the reason above (its loop would be fed by a node an
  ``if_else`` may skip), one two levels deep as pipecast's limit, in one error at the inner map.
  So is a condition inside a map comparing the item but decided by a step that does not take the item (pipecast's).

A map inside a map (one level) is a ``parallel_for`` node of the outer body's pipeline component, whose body is the
inner step's command node, or for several steps (or a condition inside) a pipeline component node of its own file
in the outer component (:mod:`pipecast.targets.azureml.body`); inside a branch of the outer body, its loop node is
in that branch's ``true_block``. Its steps, and those reading its results, bind instance ``step[i][j]`` from the plan
(``--azureml-flow``, :func:`map_args`). Its items are constants, a list a step of the outer body returns (that
step's run per outer item publishes them), or else (the outer item, a parameter, a step before the outer map, and a
list of the outer body zipped or multiplied after one of those) counted per outer item by an items node of the outer
body (:data:`Lowering.resolved`), whose runtime resolves them from the same plan (``publish_azureml items-at``).

A condition inside a map is lowered: an ``if_else`` node of the body's pipeline component
(:mod:`pipecast.targets.azureml.body`), on the item's own decision or on a step's outside the map. A condition or a
map inside a branch is lowered too: its ``if_else`` or ``parallel_for`` node is in the branch's ``true_block``
(:func:`block_nodes`; ``ConditionNode`` takes any node binding there), so it runs only when the branch does.

Exit handlers and hooks are refused by the capability table: ``settings.on_finalize`` runs one node that must have
no data connection to any other (``PipelineJob._validate_init_finalize_job``) and gets no status, so it can read
neither a status nor an output; a pipeline component (a map's body) cannot have one at all (``azure.ai.ml.dsl``:
"On_init/on_finalize is not supported for pipeline component").

azure-ai-ml 1.35 accepts ``if_else`` and ``parallel_for`` in a job YAML only with its private-preview switch
(``AZURE_ML_CLI_PRIVATE_FEATURES_ENABLED=true``, read by ``PipelineJobsField``), and its ``dsl`` exports neither:
they are a preview, so pipecast lowers them only when the ``control_flow_preview`` setting says so.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.runtime.params import encode_constant
from pipecast.runtime.publish_azureml import ITEM_INPUT, ITEMS_PREFIX
from pipecast.targets.azureml.nesting import counted_per_item, enclosing_map, nested_problems
from pipecast.targets.base import EmitContext
from pipecast.targets.inline_flow import mini_plan, plan_json

PREVIEW_ENV = "AZURE_ML_CLI_PRIVATE_FEATURES_ENABLED"
DONE_OUTPUT = "pipecast_done"
IF_PREFIX = "pipecast_if_"
OUTER_ITEM_INPUT = "pipecast_outer_item"  # an inner map's body: the outer map's item, bound from its component
NODE_PREFIX = "pipecast_"
_FIX = "run it with the local target (`pipecast run FILE`), or move the loop or decision inside one step"


@dataclass
class Lowering:
    """What the control flow adds to a pipeline's nodes."""

    plan: FlowPlan
    decisions: dict[str, dict[str, ir.Group]] = field(default_factory=dict)  # step -> control output -> branch
    sources: dict[str, str] = field(default_factory=dict)  # chain -> the step that decides it
    lists: dict[str, list[str]] = field(default_factory=dict)  # step -> list outputs whose items it publishes
    bodies: dict[str, ir.Group] = field(default_factory=dict)  # mapped step -> its map
    counted: dict[str, str] = field(default_factory=dict)  # map over a parameter -> its items node
    members: dict[str, list[str]] = field(default_factory=dict)  # map -> its steps, in pipeline order
    inner: dict[str, str] = field(default_factory=dict)  # a branch inside a map's body -> the map
    nested: dict[str, str] = field(default_factory=dict)  # a map inside a map's body -> the outer map
    resolved: dict[str, str] = field(default_factory=dict)  # an inner map counted per outer item -> its step

    def lowered_maps(self) -> list[ir.Group]:
        """The maps lowered to a parallel_for: those of the steps, then an outer map whose body is only inner maps."""
        return list(dict.fromkeys([*self.bodies.values(), *(self.plan.groups[name] for name in self.members)]))

    def list_parameters(self, step: str) -> list[str]:
        """Parameters a map's lists are made of, which a body or a step after the map reads (its inputs)."""
        if self.needs_plan(step):  # every list of the plan's maps, which its runtime resolves
            groups_ = mini_plan(self.plan.pipeline, self.plan.steps[step]).groups
            return list(dict.fromkeys(o.parameter for g in groups_ for o in g.all_operands()
                                      if o.kind is ir.BindingKind.PARAMETER and o.parameter))
        group = self.bodies.get(step)
        groups = [group] if group and (not self.is_multi(group) or any(
            b.kind is ir.BindingKind.ITEM and b.group == group.name for b in self.plan.steps[step].bindings)) else []
        groups += [self.plan.groups[self.plan.maps[b.step or ""][-1]] for b in self.plan.steps[step].bindings
                   if b.kind is ir.BindingKind.COLLECTED and self.plan.maps.get(b.step or "")]
        return list(dict.fromkeys(o.parameter or "" for g in groups for o in g.items
                                  if o.kind is ir.BindingKind.PARAMETER))

    def is_multi(self, group: ir.Group) -> bool:
        """Whether the map's body is a pipeline component node (several steps, or a condition inside)."""
        return (len(self.members.get(group.name, ())) > 1 or group.name in self.inner.values()
                or group.name in self.nested.values())

    def sinks(self, group: ir.Group, nodes: dict[str, str]) -> list[str]:
        """The body's nodes no other node of the body reads: when their items have ended, every item has.

        An inner map's loop node stands for its step (its aggregated ``pipecast_done`` ends with its last item).
        """
        # A branch's steps may be skipped (and nothing outside a branch reads one): the others' end the item.
        members = [m for m in self.members[group.name] if not self.plan.conditions[m]]
        read = {up for m in members for up in self.plan.steps[m].upstream()}
        return list(dict.fromkeys(self.waited_node(group.name, m, nodes) for m in members if m not in read))

    def waited_node(self, scope: str | None, up: str, nodes: dict[str, str]) -> str:
        """The node a step waits on for step ``up``, seen from inside map ``scope``'s body (None: the job).

        ``up`` itself when it is a node of the same jobs; else the loop node of the outermost map around ``up``
        that ``scope`` is not inside (its aggregated outputs end with its last item).
        """
        around = [g.name for g in reversed(self.plan.ancestors(scope)) if g.kind is ir.GroupKind.MAP] \
            if scope else []
        for name in self.plan.maps.get(up, ()):
            if name not in around and name in self.members:
                return NODE_PREFIX + name
        return nodes[up]

    def done_outputs(self, node: str, nodes: dict[str, str]) -> list[str]:
        """The outputs a step after ``node`` waits on: ``pipecast_done``, or one per sink of a multi-step body."""
        name = node.removeprefix(NODE_PREFIX)
        group = self.plan.groups[name] if node.startswith(NODE_PREFIX) and name in self.members else None
        if group is None or not self.is_multi(group):
            return [DONE_OUTPUT]
        return [output for _, _, output in self.sink_outputs(group, nodes)]

    def sink_outputs(self, group: ir.Group, nodes: dict[str, str]) -> list[tuple[str, str, str]]:
        """Each sink's done output in a multi-step body: (its node, the node's output, the component's output).

        An inner map of several steps is a loop node with one aggregated output per sink of its own body.
        """
        found = []
        for sink in self.sinks(group, nodes):
            for output in self.done_outputs(sink, nodes):
                found.append((sink, output, f"{DONE_OUTPUT}_{sink}{output.removeprefix(DONE_OUTPUT)}"))
        return found

    def needs_plan(self, step: str) -> bool:
        """Whether the step's runtime binds its instance from the plan: inside a nested map, or reading one."""
        def nested(name: str | None) -> bool:
            group = self.bodies.get(name or "")
            return group is not None and group.name in self.nested
        return nested(step) or any(b.kind is ir.BindingKind.COLLECTED and nested(b.step)
                                   for b in self.plan.steps[step].bindings)

    def condition_parameters(self, step: str) -> list[str]:
        """Parameters the conditions a step decides read (its node gets them as inputs)."""
        found: dict[str, None] = {}
        for group in self.decisions.get(step, {}).values():
            for branch in self._chain_until(group):
                found.update(dict.fromkeys(o.parameter for o in branch.all_operands()
                                           if o.kind is ir.BindingKind.PARAMETER and o.parameter))
        return list(found)

    def decision_args(self, step: str) -> list[str]:
        """``--azureml-if NAME=ENCODED`` for each branch the step decides, and ``--azureml-items`` per list."""
        args = []
        for name, group in self.decisions.get(step, {}).items():
            chain = self._chain_until(group)
            spec: dict[str, object] = {
                "earlier": [_compact(b.condition) for b in chain[:-1] if b.condition is not None],
                "own": None if group.condition is None else _compact(group.condition)}
            items = {f"{b.group}:{'-' if b.index is None else b.index}": b.input for b in self.plan.steps[step].bindings
                     if b.kind is ir.BindingKind.ITEM and any(
                         o.kind is ir.BindingKind.ITEM and (o.group, o.index) == (b.group, b.index)
                         for c in chain for o in c.all_operands())}
            if items:  # the map items the conditions compare: this step's inputs that hold them
                spec["items"] = items
            args += ["--azureml-if", f"{name}={ir.canonical_json(spec)}"]
        for output in self.lists.get(step, []):
            args += ["--azureml-items", output]
        return args

    def _chain_until(self, group: ir.Group) -> list[ir.Group]:
        chain = self.plan.chains.get(group.chain or "", [group])
        return chain[:[b.name for b in chain].index(group.name) + 1]


def _compact(condition: ir.Condition) -> object:
    """The condition as JSON without its empty fields (the runtime reads it back with the IR's own decoder)."""
    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None and v != []}
        return [strip(v) for v in value] if isinstance(value, list) else value
    return strip(ir._to_plain(condition))


def lower(pipeline: ir.Pipeline, context: EmitContext, nodes: dict[str, str]) -> Lowering | None:
    """Check the pipeline's groups and plan their nodes (None: no control flow, or refused)."""
    if not pipeline.groups:
        return None
    plan = FlowPlan(pipeline)
    if not context.settings.control_flow_preview:
        kinds = sorted({g.kind.value for g in pipeline.groups if g.kind is not ir.GroupKind.EXIT})
        for kind in kinds:
            group = next(g for g in pipeline.groups if g.kind.value == kind)
            _refuse(plan, context, group, f"needs Azure ML's {'parallel_for' if kind == 'map' else 'if_else'} node, "
                    f"a preview: azure-ai-ml 1.35 (and `az ml job create`) accept it in a job YAML only with "
                    f"{PREVIEW_ENV}=true",
                    fix=f"--set control_flow_preview=true (then create the job with {PREVIEW_ENV}=true; "
                        "pipecast submit sets it), or " + _FIX)
        return None
    lowering = Lowering(plan)
    if pipeline.parallelism is not None:
        # azure-ai-ml 1.35 PipelineJobSettingsSchema (_schema/pipeline/settings.py): no concurrency setting; the
        # only one in a pipeline is ParallelForSchema.max_concurrency (_schema/pipeline/control_flow_job.py).
        context.error(f"pipeline {pipeline.name!r} bounds its running steps to {pipeline.parallelism}; Azure ML "
                      "has no whole-run bound: a pipeline job's settings (default_compute, default_datastore, "
                      "continue_on_step_failure, force_rerun) hold none, only a parallel_for's max_concurrency",
                      location=str(pipeline.location) if pipeline.location else None,
                      fix="bound each map instead (ParallelFor(..., parallelism=N)), or drop the pipeline's bound")
    taken = set(nodes.values())
    for group in pipeline.groups:
        if group.kind is not ir.GroupKind.EXIT and NODE_PREFIX + group.name in taken:
            context.error(f"a step's node is named {NODE_PREFIX + group.name!r}, the name of {group.name!r}'s "
                          "control node", location=str(group.location), fix="rename the step")
        for node, what in ((items_node(group), "items node"), (body_node(group), "body node")):
            if group.kind is ir.GroupKind.MAP and node in taken:
                context.error(f"a step's node is named {node!r}, the name of {group.name!r}'s {what}",
                              location=str(group.location), fix="rename the step")
        if group.kind is ir.GroupKind.MAP:
            _map(lowering, group, context)
    for chain, branches in plan.chains.items():
        _chain(lowering, chain, branches, nodes, context)
    return lowering


def _refuse(plan: FlowPlan, context: EmitContext, group: ir.Group, what: str, fix: str = _FIX) -> None:
    """One error for the group, named at its first step."""
    first = next((s for s in plan.pipeline.steps if s.name in plan.members[group.name]), None)
    context.error(f"{group.kind.value} {group.name!r} {what}", step=first, location=str(group.location), fix=fix)


def _map(lowering: Lowering, group: ir.Group, context: EmitContext) -> None:
    plan = lowering.plan
    members = [s.name for s in plan.pipeline.steps if s.name in plan.members[group.name]]
    problems = _map_problems(plan, group, members)
    for what, fix in problems:
        _refuse(plan, context, group, what, fix)
    held = [g for g in plan.pipeline.groups if g.kind is ir.GroupKind.MAP and enclosing_map(plan, g.parent) is group]
    if problems or any(_map_problems(plan, g, [s.name for s in plan.pipeline.steps if s.name in plan.members[g.name]])
                       for g in held):
        return  # a map holding a map that cannot be lowered is not lowered: the inner map's one error says why
    outer = enclosing_map(plan, group.parent)
    first = group.items[0]
    if outer is not None and counted_per_item(plan, group, outer):
        lowering.resolved[group.name] = members[0]
    elif first.kind is ir.BindingKind.PARAMETER:
        lowering.counted[group.name] = first.parameter or ""
    elif first.kind is ir.BindingKind.OUTPUT and first.step and first.output:
        lowering.lists.setdefault(first.step, [])
        if first.output not in lowering.lists[first.step]:
            lowering.lists[first.step].append(first.output)
    lowering.members[group.name] = members
    for member in members:
        lowering.bodies[member] = group
    if outer is not None:
        lowering.nested[group.name] = outer.name


def _map_problems(plan: FlowPlan, group: ir.Group, members: list[str]) -> list[tuple[str, str]]:
    """Why the map cannot be a parallel_for here (each with its fix); empty when it can."""
    found = []
    outer = enclosing_map(plan, group.parent)
    if outer is not None:
        found += nested_problems(plan, group, outer, members)
    params = [plan.pipeline.parameter(o.parameter or "") for o in group.items if o.kind is ir.BindingKind.PARAMETER]
    if plan.pipeline.schedule and params:
        found.append((f"iterates parameter {params[0].name!r}, which a scheduled run has no value for (only the "
                      "trigger time is substituted in a schedule's job)",
                      "map over a step's output that returns the list, or drop the schedule"))
    own = (outer.name,) if outer is not None else ()  # a step of the outer body publishes per outer item
    mapped = [o.step for o in group.items if o.kind is ir.BindingKind.OUTPUT and plan.maps[o.step or ""]
              and plan.maps[o.step or ""] != own]
    if mapped:
        found.append((f"iterates an output of mapped step {mapped[0]!r}, which the parallel_for aggregates (an "
                      "mltable per output, ParallelFor._convert_output_meta), not a list of items", _FIX))
    constants = [o for o in group.items if o.kind is ir.BindingKind.CONSTANT]
    per_item = outer is not None and counted_per_item(plan, group, outer)  # its items node combines the lists
    if group.combine is ir.Combine.PRODUCT and len(constants) != len(group.items) and not per_item:
        found.append(("is a product of lists known only at run time; its items are counted by the step that "
                      "publishes one list", "compute the combinations in a step and map over its output"))
    elif len(constants) == len(group.items) and not literal_items(group):
        found.append(("has no items; Azure ML refuses a parallel_for with an empty items list",
                      "map over a list with items"))
    return found


def items_waits(lowering: Lowering, group: ir.Group) -> list[str]:
    """The steps whose outputs an inner map's items node reads (before the outer map, or of its body): it waits."""
    return list(dict.fromkeys(o.step for o in group.items if o.kind is ir.BindingKind.OUTPUT and o.step
                              and group.name in lowering.resolved))


def literal_items(group: ir.Group) -> list[dict[str, int]]:
    """The items of a map over constant lists (zip: the shortest's count; product: every combination)."""
    sizes = [len(o.value) if isinstance(o.value, list) else 0 for o in group.items]
    count = math.prod(sizes) if group.combine is ir.Combine.PRODUCT else min(sizes, default=0)
    return [{ITEM_INPUT: i} for i in range(count)]


def _chain(lowering: Lowering, chain: str, branches: list[ir.Group], nodes: dict[str, str],
           context: EmitContext) -> None:
    plan = lowering.plan
    first = branches[0]
    parent = enclosing_map(plan, first.parent)  # the map whose body holds the if_else (None: the job's top level)
    if parent is not None and parent.name not in lowering.members:
        return  # the map is refused (its error says why)
    read: dict[str, None] = {}
    for branch in branches:
        if branch.condition is not None:
            read.update(dict.fromkeys(branch.condition.steps()))
    if len(read) != 1:
        _refuse(plan, context, first, f"reads {'no step' if not read else 'steps ' + ', '.join(read)}; the branch's "
                "decision is published by the one step its conditions read",
                fix="compute the decision in one step (return a bool or a number) and compare its output")
        return
    source = next(iter(read))
    # The item itself: the deciding step of the body has it as an input (its runtime resolves it from there).
    compared = [o for b in branches for o in b.all_operands() if o.kind is ir.BindingKind.ITEM]
    taken = {(b.group, b.index) for b in plan.steps[source].bindings if b.kind is ir.BindingKind.ITEM}
    missing = [o for o in compared if (o.group, o.index) not in taken]
    if parent is not None and missing:
        _refuse(plan, context, first, f"compares the item of map {parent.name!r}, which step {source!r} (whose "
                "runtime publishes the decision) does not take as an input (pipecast's limit, not Azure's)",
                fix="compare an output of a step inside the map that takes the item (or return the decision from it)")
        return
    # In a map's body the if_else reads item i's decision, or one from outside the map (a component input): in an
    # inner map's body, also the outer item's, published by a step of the outer body (a node of the same component).
    around_maps = plan.ancestors(parent.name) if parent is not None else []
    if plan.maps[source] and lowering.bodies.get(source) not in around_maps:
        _refuse(plan, context, first, f"reads mapped step {source!r}; a parallel_for's outputs are its items' "
                "aggregated into one mltable (ParallelFor._convert_output_meta), never a control value",
                fix="compute the decision from the collected list in a step after the map, and compare its output")
        return
    around = {g.name for g in plan.ancestors(first.parent)}
    if any(c.name not in around for c in plan.conditions[source]):
        # ConditionNode reads a control output; azure-ai-ml documents none for a node its if_else skipped. A source
        # inside the branches around this chain is fine: this if_else is in their blocks, so it runs only with it.
        _refuse(plan, context, first, f"reads step {source!r}, which is inside branch "
                f"{plan.conditions[source][-1].name!r}; an Azure ML if_else reads a control output of a node, and "
                "Azure ML defines none for a node its if_else skipped",
                fix="decide it in a step outside the branch, or " + _FIX)
        return
    for branch in branches:
        inside = plan.members[branch.name]
        for step in plan.pipeline.steps:
            if step.name in inside:
                continue
            fed = [up for up in step.upstream() if up in inside]
            if fed:
                # ConditionNode only picks which nodes run; azure.ai.ml.dsl has no condition_output (v1's).
                _refuse(plan, context, branch, f"is read by step {step.name!r} outside it (from {fed[0]!r}); an "
                        "Azure ML if_else only chooses which nodes run: azure-ai-ml has no node passing on the output "
                        "of the block that ran (so no OneOf) and defines no rule for a node fed by a skipped one",
                        fix="use the branch's results inside the branch (call the reading step in each branch), or "
                            + _FIX)
                return
        lowering.decisions.setdefault(source, {})[IF_PREFIX + branch.name] = branch
        if parent is not None:
            lowering.inner[branch.name] = parent.name
    lowering.sources[chain] = source


def control_nodes(lowering: Lowering, nodes: dict[str, str]) -> dict[str, dict[str, object]]:
    """The parallel_for and if_else nodes, keyed by node name."""
    built: dict[str, dict[str, object]] = {}
    for group in lowering.lowered_maps():
        if group.name not in lowering.nested:  # those are nodes of their outer map's body
            built[NODE_PREFIX + group.name] = loop_node(lowering, group, nodes)
    for source, decided in lowering.decisions.items():
        for output, branch in decided.items():
            if branch.name not in lowering.inner:  # those are nodes of their map's body
                built[NODE_PREFIX + branch.name] = if_else(lowering, branch, source, output, nodes)
    return built


def loop_node(lowering: Lowering, group: ir.Group, nodes: dict[str, str]) -> dict[str, object]:
    """The parallel_for node of map ``group`` (in the job, or for an inner map in its outer body's component)."""
    step = lowering.members[group.name][0]
    first = group.items[0]
    items: str
    if first.kind is ir.BindingKind.PARAMETER or group.name in lowering.resolved:
        items = f"${{{{parent.jobs.{items_node(group)}.outputs.pipecast_items}}}}"
    elif first.kind is ir.BindingKind.OUTPUT:
        items = f"${{{{parent.jobs.{nodes[first.step or '']}.outputs.{ITEMS_PREFIX}{first.output}}}}}"
    else:
        items = json.dumps(literal_items(group))
    body = body_node(group) if lowering.is_multi(group) else nodes[step]
    node: dict[str, object] = {"type": "parallel_for", "body": f"${{{{parent.jobs.{body}}}}}", "items": items}
    if group.parallelism is not None:
        node["max_concurrency"] = group.parallelism
    return node


def if_else(lowering: Lowering, branch: ir.Group, source: str, output: str, nodes: dict[str, str],
            condition: str | None = None) -> dict[str, object]:
    """The if_else node of ``branch``: its steps run when ``source``'s control output ``output`` is true."""
    block = [f"${{{{parent.jobs.{node}}}}}" for node in block_nodes(lowering, branch, nodes)]
    return {"type": "if_else", "condition": condition or f"${{{{parent.jobs.{nodes[source]}.outputs.{output}}}}}",
            "true_block": block}


def block_nodes(lowering: Lowering, branch: ir.Group, nodes: dict[str, str]) -> list[str]:
    """The nodes ``branch``'s if_else runs: its steps, and the control nodes of the groups directly inside it.

    A map inside the branch is its ``parallel_for`` node (with its items node; the body belongs to the loop), a
    condition inside it the ``if_else`` nodes of its chain (whose blocks hold their own steps): an if_else that
    does not run runs none of its blocks, so everything inside the branch is skipped with it.
    """
    plan = lowering.plan
    found: dict[str, None] = {}
    for step in plan.pipeline.steps:
        if step.name not in plan.members[branch.name]:
            continue
        chain = plan.ancestors(step.group)
        child = chain[[g.name for g in chain].index(branch.name) - 1] if step.group != branch.name else None
        if child is None:
            found.setdefault(nodes[step.name])
        elif child.kind is ir.GroupKind.MAP:
            if child.name in lowering.counted or child.name in lowering.resolved:
                found.setdefault(items_node(child))
            found.setdefault(NODE_PREFIX + child.name)
        else:
            found.update(dict.fromkeys(NODE_PREFIX + b.name for b in plan.chains[child.chain or child.name]))
    return list(found)


def node_name(binding: object) -> str:
    """``train`` for the binding ``${{parent.jobs.train}}``."""
    return str(binding).removeprefix("${{parent.jobs.").removesuffix("}}")


def body_node(group: ir.Group) -> str:
    """The pipeline component node that is the body of a map of several steps."""
    return f"{NODE_PREFIX}{group.name}_body"


def items_node(group: ir.Group) -> str:
    """The node that publishes the items of a map over a parameter (or of an inner map, per outer item)."""
    return f"{NODE_PREFIX}{group.name}_items"


def map_args(lowering: Lowering, step: ir.Step, argv: list[str], index_marker: str,
             placeholder: Callable[[str], str]) -> list[str]:
    """The runtime command of a body (instance ``step[i]``, its item) or of a step after a map (its results)."""
    plan = lowering.plan
    argv = list(argv)
    group = lowering.bodies.get(step.name)
    if lowering.needs_plan(step.name):
        # Inside a nested map, or reading one: the runtime binds instance step[i][j] from the plan, as pipecast run.
        if group is not None:
            argv[argv.index("--step") + 1] = f"{step.name}[{index_marker}]"
        argv += ["--azureml-flow", urllib.parse.quote(plan_json(mini_plan(plan.pipeline, step)), safe="")]
        for name in lowering.list_parameters(step.name):
            param = plan.pipeline.parameter(name)
            argv += ["--azureml-flow-param", f"{name}={param.type.value}:{placeholder(name)}"]
        return argv
    if group is not None:
        argv[argv.index("--step") + 1] = f"{step.name}[{index_marker}]"
        argv += ["--azureml-index", index_marker]
        for binding in step.bindings:  # chained in the body: item i reads item i of the step before it
            if binding.kind is ir.BindingKind.OUTPUT and lowering.bodies.get(binding.step or "") is group:
                word = argv.index(f"{binding.input}={binding.step}/{binding.output}")
                argv[word] = f"{binding.input}={binding.step}[{index_marker}]/{binding.output}"
    for binding in step.bindings:
        if binding.kind is ir.BindingKind.ITEM:
            mapped = plan.groups[binding.group or ""]
            which = "-" if binding.index is None else str(binding.index)
            argv += _lists(plan, mapped, binding.input, placeholder)
            argv += ["--azureml-item", f"{binding.input}={_combine(mapped)}:{which}"]
        elif binding.kind is ir.BindingKind.COLLECTED:
            mapped = plan.groups[plan.maps[binding.step or ""][-1]]
            argv += _lists(plan, mapped, binding.input, placeholder)
            argv += ["--azureml-collect", f"{binding.input}={_combine(mapped)}:{binding.step}/{binding.output}"]
    return argv


def _combine(group: ir.Group) -> str:
    return (group.combine or ir.Combine.ZIP).value


def _lists(plan: FlowPlan, group: ir.Group, name: str, placeholder: Callable[[str], str]) -> list[str]:
    """The map's lists bound to ``NAME#k`` (the runtime removes them before the step runs)."""
    args = []
    for k, operand in enumerate(group.items):
        if operand.kind is ir.BindingKind.PARAMETER:
            param = plan.pipeline.parameter(operand.parameter or "")
            args += ["--param", f"{name}#{k}={param.type.value}:{placeholder(param.name)}"]
        elif operand.kind is ir.BindingKind.OUTPUT:
            args += ["--upstream", f"{name}#{k}={operand.step}/{operand.output}"]
        else:
            args += ["--const", f"{name}#{k}={encode_constant(operand.value_json or 'null')}"]
    return args
