"""Maps on Argo Workflows (issue 16): a loop template running a per-item body DAG.

This is how Argo's own examples loop over several steps and nest loops (argo-workflows v4.1.2
``examples/loops-arbitrary-sequential-steps.yaml``: a template with ``parallelism`` and ``failFast`` whose looped
task passes ``{{item}}`` as arguments to a per-item template; ``examples/parallelism-nested.yaml``: the per-item
template loops again).

- **The loop** ``pipecast-map-N`` is a DAG template with one task, ``item``, that carries ``withItems`` (the
  indices of a constant list) or ``withParam: "{{inputs.parameters.items}}"`` (the indices a ``map-N-items``
  publisher outputs) and calls the body with the index as its input ``iD`` (D: how many maps enclose this one).
  ``expandTask`` (workflow/controller/dag.go) substitutes ``{{item}}`` into that task only, so the body gets it as
  an input. The loop holds the map's ``parallelism`` and ``failFast``: the item bodies are its children
  (operator.go ``checkParallelism`` counts the active and failed children of the boundary, node_counters.go).
- **The body** ``pipecast-map-N-item`` is a DAG of the map's steps, chain publishers, branches and inner maps, with
  inputs ``i0`` (and ``i1`` inside a nested map). A step runs as instance ``step[{{inputs.parameters.i0}}]``;
  inside a body a ``when`` reads ``{{tasks.<publisher>.outputs.parameters.x}}`` of this item (a DAG's
  ``{{tasks.*}}`` see only its own tasks: validate.go ``validateDAG``, dag.go ``buildLocalScopeFromTask``).
- **Items and fan-in** are resolved by the runtime from the map's part of the IR (``--argo-flow``, the
  percent-encoded mini plan of :func:`pipecast.targets.inline_flow.mini_plan`), by the rules ``pipecast run``
  follows: item ``i`` of the lists (zip, product), item ``i`` of a chained step, and fan-ins of the items that ran
  in item order (a list per outer item of a nested map). Argo's own aggregation of a looped task's outputs
  (``processAggregateNodeOutputs``: a JSON list of the succeeded children's values, in loop order) is not used:
  it holds text only, in the Workflow's status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipecast.compiler import ir
from pipecast.runtime.params import encode_constant
from pipecast.targets.inline_flow import mini_plan, plan_json

if TYPE_CHECKING:
    from pipecast.targets.argo_flow import FlowLowering


def plan_args(pipeline: ir.Pipeline, near: ir.Step) -> list[str]:
    """``--argo-flow``: the part of the IR ``near``'s maps and conditions need (and the parameters they read).

    The runtime resolves items, chained items and fan-ins from it by the rules ``pipecast run`` follows.
    Percent-encoded, so no ``{{`` of a constant reaches Argo's templating.
    """
    plan = mini_plan(pipeline, near)
    args = ["--argo-flow", encode_constant(plan_json(plan))]
    used = {o.parameter for g in plan.groups for o in _group_operands(g) if o.kind is ir.BindingKind.PARAMETER}
    for param in pipeline.parameters:
        if param.name in used:
            value = f"{{{{workflow.parameters.{param.name}}}}}"
            args += ["--argo-flow-param", f"{param.name}={param.type.value}:{value}"]
    return args


def map_templates(lowering: FlowLowering, group: ir.Group, scope: str | None, task: dict[str, Any],
                  loop: dict[str, Any]) -> None:
    """Fill ``loop`` (the map's template, which ``task`` calls) and add the body template it runs per item."""
    depth = lowering.plan.depth(group.name)
    body: dict[str, Any] = {"name": lowering._template_name(f"{loop['name']}-item")}
    lowering.templates.append(body)
    outer = [{"name": f"i{k}", "value": path_input(k)} for k in range(depth)]
    inputs = [{"name": f"i{k}"} for k in range(depth)]
    iterate: dict[str, Any] = {"name": "item", "template": body["name"]}
    items = constant_items(group)
    if items is not None:
        iterate["withItems"] = items
    else:
        inputs.insert(0, {"name": "items"})
        source = lowering.task_of[(scope, f"{group.name}#items")]
        outer.insert(0, {"name": "items", "value": f"{{{{tasks.{source}.outputs.parameters.items}}}}"})
        iterate["withParam"] = "{{inputs.parameters.items}}"
    iterate["arguments"] = {"parameters": [*({"name": f"i{k}", "value": path_input(k)} for k in range(depth)),
                                           {"name": f"i{depth}", "value": "{{item}}"}]}
    if inputs:
        loop["inputs"] = {"parameters": inputs}
        task["arguments"] = {"parameters": outer}
    loop["failFast"] = True  # as pipecast run: once an item failed, no new item starts
    if group.parallelism is not None:
        loop["parallelism"] = group.parallelism
    loop["dag"] = {"tasks": [iterate]}
    body["inputs"] = {"parameters": [{"name": f"i{k}"} for k in range(depth + 1)]}
    body["dag"] = {"tasks": lowering._scope_tasks(group.name)}


def map_publisher(lowering: FlowLowering, group: ir.Group, scope: str | None) -> dict[str, Any]:
    """The ``map-N-items`` task: the indices of the map's items (at this body's item path, inside a map)."""
    needs = [lowering._task(u, scope) for o in group.items if o.kind is ir.BindingKind.OUTPUT
             for u in [lowering._unit(o.step or "", scope)] if u is not None]
    near = next(s for s in lowering.pipeline.steps if group.name in lowering.plan.maps[s.name])
    args = [*plan_args(lowering.pipeline, near), "--map", group.name]
    task = lowering._publisher(lowering.task_of[(scope, f"{group.name}#items")], near, args, ["items"],
                               lowering.plan.depth(group.name))
    if needs:
        task["depends"] = " && ".join(f"{n}.Succeeded" for n in dict.fromkeys(needs))
    return task


def constant(group: ir.Group) -> bool:
    """Whether the map iterates constants only (its indices are known at compile time)."""
    return all(o.kind is ir.BindingKind.CONSTANT for o in group.items)


def constant_items(group: ir.Group) -> list[int] | None:
    """The indices of a map over constants (``withItems``); None when the lists are known only at run time."""
    if not constant(group):
        return None
    sizes = [len(o.value) if isinstance(o.value, list) else 0 for o in group.items]
    count = 1
    for size in sizes:
        count *= size
    return list(range(count if group.combine is ir.Combine.PRODUCT else min(sizes, default=0)))


def path_input(level: int) -> str:
    """The item index of the map at ``level`` (0: the outer one) inside a map body: the body's input ``iN``."""
    return f"{{{{inputs.parameters.i{level}}}}}"


def instance(step: str, depth: int) -> str:
    """Instance ``step[i]`` (``step[i][j]``) of the body's item path."""
    return step + "".join(f"[{path_input(k)}]" for k in range(depth))


def _group_operands(group: ir.Group) -> list[ir.Operand]:
    operands = list(group.items)
    conditions = [group.condition] if group.condition else []
    while conditions:
        condition = conditions.pop()
        operands += condition.operands
        conditions += condition.terms
    return operands
