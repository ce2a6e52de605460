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
- **Items and fan-in** are resolved by the runtime from the Workflow's plan (the parameter ``pipecast-flow``,
  percent-encoded, written once; each task passes ``--argo-flow {{workflow.parameters.pipecast-flow}}``), by the
  rules ``pipecast run``
  follows: item ``i`` of the lists (zip, product), item ``i`` of a chained step, and fan-ins of the items that ran
  in item order (a list per outer item of a nested map). Argo's own aggregation of a looped task's outputs
  (``processAggregateNodeOutputs``: a JSON list of the succeeded children's values, in loop order) is not used:
  it holds text only, in the Workflow's status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipecast.compiler import ir
from pipecast.runtime.params import encode_constant, render_parameter
from pipecast.targets.inline_flow import mini_plan, plan_json
from pipecast.targets.kube.limits import MAX_ARG_STRLEN
from pipecast.targets.map_limits import MapLimit

_FROM_PLAN = (ir.BindingKind.ITEM, ir.BindingKind.COLLECTED)

if TYPE_CHECKING:
    from pipecast.targets.argo_flow import FlowLowering


FLOW_PARAMETER = "pipecast-flow"  # a Workflow parameter; no pipeline parameter (a Python identifier) has a '-'


# One argument of a pod: Linux's execve takes strings of at most 128 KiB (MAX_ARG_STRLEN, 32 pages). A plan past
# this bound is not written once: each task then carries its own step's part of it, as a percent-encoded argument.
PLAN_ARG_BYTES = 100 * 1024


def plan_args(lowering: FlowLowering, near: ir.Step) -> list[str]:
    """``--argo-flow``: a reference to the Workflow's plan parameter (and the pipeline parameters its groups read).

    The runtime resolves ``near``'s items, chained items and fan-ins from the plan by the rules ``pipecast run``
    follows. Every task passes the same words, so the tasks of one function share their container template.
    """
    if lowering.plan_value is None:  # every step whose runtime reads the plan: in a map, or given items or fan-ins
        parts = {s.name: mini_plan(lowering.pipeline, s) for s in lowering.pipeline.steps
                 if lowering.plan.maps[s.name] or any(b.kind in _FROM_PLAN for b in s.bindings)}
        lowering.plan_value = plan_value(lowering.pipeline, parts)
        lowering.plan_groups = {g.name: g for part in parts.values() for g in part.groups}
    if len(lowering.plan_value) > PLAN_ARG_BYTES:
        part = mini_plan(lowering.pipeline, near)
        args = ["--argo-flow", encode_constant(plan_json(part))]
    else:
        args = ["--argo-flow", f"{{{{workflow.parameters.{FLOW_PARAMETER}}}}}"]
    used = {o.parameter for g in lowering.plan_groups.values() for o in g.all_operands()
            if o.kind is ir.BindingKind.PARAMETER}
    for param in lowering.pipeline.parameters:
        if param.name in used:
            value = f"{{{{workflow.parameters.{param.name}}}}}"
            args += ["--argo-flow-param", f"{param.name}={param.type.value}:{value}"]
    return args


# Linux's execve takes one argument of at most MAX_ARG_STRLEN (131,072 bytes) with its terminating NUL.
MAX_ARG_TEXT = MAX_ARG_STRLEN - 1


def flow_param_bytes(name: str, value: Any) -> int:
    """The bytes of ``--argo-flow-param NAME=list:TEXT`` once Argo substitutes the parameter (see plan_args)."""
    return len(f"{name}={ir.TypeName.LIST.value}:{render_parameter(ir.TypeName.LIST, value)}".encode())


def map_limit() -> MapLimit:
    """What bounds a map over a list parameter on Argo: not Argo, which counts no items, but one pod argument.

    Argo's controller expands every item of ``withParam``/``withItems`` (workflow/controller/dag.go ``expandTask``,
    steps.go ``expandStep``: no count, and the CRD leaves ``withItems`` schemaless, with no ``MaxItems``); what
    bounds a map is the Workflow object (1 MiB in etcd, its node status compressed or offloaded past that: Argo's
    "Offloading Large Workflows"). pipecast hands the list to the map's publisher and to each item's task as one
    container argument (``--argo-flow-param``), which Linux takes up to MAX_ARG_STRLEN; Argo 3.7+ would swap a
    longer one for ``@/tmp/argo_arg_N.txt``, which the runtime does not read. A list under that bound has fewer
    than 43,691 items, whose indices (``map-N-items``) stay under the publisher's 256 KiB.
    """
    return MapLimit(None, f"Argo bounds no map's items, but pipecast passes the list to the map's tasks as one "
                    f"container argument, and Linux takes at most {MAX_ARG_TEXT + 1} bytes per argument "
                    "(MAX_ARG_STRLEN, with its NUL)", "pass large data as a step's output, and map over that",
                    max_bytes=MAX_ARG_TEXT, size_of=flow_param_bytes, measured="as its container argument")


def flow_argument(lowering: FlowLowering) -> dict[str, str] | None:
    """The Workflow parameter holding the plan, once per Workflow (None: no task reads it)."""
    if lowering.plan_value is None or len(lowering.plan_value) > PLAN_ARG_BYTES:
        return None
    return {"name": FLOW_PARAMETER, "value": lowering.plan_value}


def plan_value(pipeline: ir.Pipeline, parts: dict[str, ir.Pipeline]) -> str:
    """The union of the steps' ``parts`` of the IR, as compact JSON, percent-encoded.

    Each part is :func:`pipecast.targets.inline_flow.mini_plan`'s: the step with its bindings, the steps it reads
    by name and group, the groups around them. Percent-encoded, so no ``{{``, quote or newline of a constant
    reaches Argo's templating or the YAML.
    """
    own: dict[str, ir.Step] = {}
    others: dict[str, ir.Step] = {}
    groups: set[str] = set()
    for name, part in parts.items():
        own[name] = next(s for s in part.steps if s.name == name)
        others.update((s.name, s) for s in part.steps if s.name != name)
        groups.update(g.name for g in part.groups)
    steps = tuple(own.get(s.name) or others[s.name] for s in pipeline.steps if s.name in own or s.name in others)
    plan = ir.Pipeline(name=pipeline.name, steps=steps, parallelism=pipeline.parallelism,
                       groups=tuple(g for g in pipeline.groups if g.name in groups))
    return encode_constant(plan_json(plan))


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
    args = [*plan_args(lowering, near), "--map", group.name]
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
