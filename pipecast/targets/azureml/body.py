"""A map of several steps on Azure ML (issue 16): the ``parallel_for`` body is a pipeline component node.

A ``parallel_for`` runs one node per item, and that node may be a pipeline component (``ParallelFor``'s
``body``: "Pipeline job for the parallel for loop body"; mldesigner's ``parallel_for`` example gives it a
``@pipeline`` body). azure-ai-ml 1.35 takes a ``type: pipeline`` node's component only as a file or a
registered component (``PipelineSchema.component``: ``PipelineComponentFileRefField``; an inline mapping
fails "Not supporting non file for component"), so the body's steps go to a pipeline component file of their
own, ``<pipeline>.<map>.component.yml``, written next to the job file and referenced as ``./<file>``
(resolved from the job file's folder, as ``az ml job create --file`` and ``load_job`` resolve it).

- The component's inputs are what its steps read from outside: the pipeline's parameters and run id (same
  names), ``pipecast_item`` (bound by each parallel_for item, then passed to every step), and one
  ``pipecast_after_<node>`` folder per node outside the body that a step waits for.
- Inside, a step waits for the body's steps before it as at the top level; item ``i`` of a chained step reads
  item ``i`` of the step before it (``step[i]`` in the artifact store).
- A condition inside the map is an ``if_else`` node of the component (``PipelineComponentSchema.jobs`` is the
  job's own ``PipelineJobsField``, control nodes included), on the control output item ``i``'s deciding step
  publishes: each item decides for itself. A condition on a step outside the map reads that step's control
  output through a boolean input of the component (``ConditionNode`` takes a pipeline input as condition).
- A map inside the map is a ``parallel_for`` node of the component, its body the inner step's command node
  (which gets the outer item as ``pipecast_outer_item``; the loop binds its ``pipecast_item``). Its items are
  published by a step of the body that returns the inner list, or else by an items node of the component that
  counts them for the outer item (the outer item itself, a parameter, a step before the outer map). An inner loop no
  step of the body reads is a sink: it gives its aggregated ``pipecast_done`` (``mltable``) to the component.
- An inner map of several steps (or holding a condition) has a body of its own, built first: a pipeline component
  node in the outer component, its file beside the others (azure-ai-ml resolves a component's file references
  from its own folder). Its inputs are both items (``pipecast_item`` from the inner loop, ``pipecast_outer_item``
  bound by the outer component to its item), and each of its sinks' ``pipecast_done`` is an aggregated output of
  the inner loop, which the outer component passes on (:meth:`flow.Lowering.sink_outputs`).
- Each *sink* (a body step outside a branch that no other such step reads) gives its ``pipecast_done`` to a
  component output ``pipecast_done_<node>``; a step after the map waits for every one of them on the loop node,
  whose outputs are its body's, aggregated (``ParallelFor._convert_output_meta``) and so complete only when
  every item is.
"""

from __future__ import annotations

import re
from typing import Any

from pipecast.compiler import ir
from pipecast.runtime.publish_azureml import ITEM_INPUT
from pipecast.targets.azureml import flow

COMPONENT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json"
# The two bindings pipecast writes on a node's inputs (a pipeline input, another node's output).
PARENT_INPUT = re.compile(r"\$\{\{parent\.inputs\.[A-Za-z0-9_]+\}\}")
PARENT_JOB = re.compile(r"\$\{\{parent\.jobs\.([A-Za-z0-9_]+)\.outputs\.[A-Za-z0-9_]+\}\}")


def component_file(pipeline: ir.Pipeline, group: ir.Group) -> str:
    """The pipeline component file of a map's body (next to the job file)."""
    return f"{pipeline.name}.{group.name}.component.yml"


def pipeline_body(pipeline: ir.Pipeline, group: ir.Group, lowering: flow.Lowering, nodes: dict[str, str],
                  jobs: dict[str, Any], documents: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move the body's nodes out of ``jobs``; return the body's pipeline node and its component.

    ``documents``: the components of the inner maps' bodies of several steps, built before (by body node).
    """
    held = [g for g in lowering.lowered_maps() if lowering.nested.get(g.name) == group.name]
    own = [m for m in lowering.members[group.name] if not any(  # an inner multi-step body holds its own steps
        lowering.is_multi(g) and m in lowering.members[g.name] for g in held)]
    inner = {nodes[m]: jobs.pop(nodes[m]) for m in own}
    inner |= {flow.items_node(g): jobs.pop(flow.items_node(g)) for g in held if g.name in lowering.resolved}
    inner |= {flow.body_node(g): jobs.pop(flow.body_node(g)) for g in held if lowering.is_multi(g)}
    local = set(inner) | {flow.NODE_PREFIX + g.name for g in held}  # inner maps' loop nodes are the body's too
    in_map = group.name in lowering.nested  # an inner map's body: the loop binds its item, the node the outer one
    inputs: dict[str, Any] = {}  # the component's inputs, declared
    bound: dict[str, Any] = {}  # and bound on the pipeline node
    for name, node in inner.items():
        declared = documents[name]["inputs"] if node["type"] == "pipeline" else node["component"]["inputs"]
        for key, value in node["inputs"].items():
            text = value["path"] if isinstance(value, dict) else value
            upstream = PARENT_JOB.fullmatch(text)
            if PARENT_INPUT.fullmatch(text) or (upstream and upstream.group(1) not in local):
                inputs[key], bound[key] = declared[key], value
                if upstream:  # the folder (or, for an inner body, a decision) through the input of the same name
                    through = f"${{{{parent.inputs.{key}}}}}"
                    node["inputs"][key] = {**value, "path": through} if isinstance(value, dict) else through
        if in_map:  # both items are the component's inputs: its own from the loop, the outer from the node
            inputs[ITEM_INPUT] = inputs[flow.OUTER_ITEM_INPUT] = {"type": "integer"}
            node["inputs"][ITEM_INPUT] = f"${{{{parent.inputs.{ITEM_INPUT}}}}}"
            node["inputs"][flow.OUTER_ITEM_INPUT] = f"${{{{parent.inputs.{flow.OUTER_ITEM_INPUT}}}}}"
        elif flow.OUTER_ITEM_INPUT in declared:  # an inner map's body: the outer item here, its own from the loop
            inputs[ITEM_INPUT] = {"type": "integer"}
            node["inputs"][flow.OUTER_ITEM_INPUT] = f"${{{{parent.inputs.{ITEM_INPUT}}}}}"
        elif ITEM_INPUT in declared:
            inputs[ITEM_INPUT] = declared[ITEM_INPUT]
            node["inputs"][ITEM_INPUT] = f"${{{{parent.inputs.{ITEM_INPUT}}}}}"
    for nested in held:
        inner[flow.NODE_PREFIX + nested.name] = flow.loop_node(lowering, nested, nodes)
    outputs: dict[str, Any] = {}
    for name, sink_output, output in lowering.sink_outputs(group, nodes):
        if inner[name]["type"] == "parallel_for":  # an inner map: its items' pipecast_done, aggregated
            outputs[output] = {"type": "mltable"}  # ParallelFor._convert_output_meta: a uri_folder becomes mltable
            inner[name]["outputs"] = {**inner[name].get("outputs", {}),
                                      sink_output: f"${{{{parent.outputs.{output}}}}}"}
            body = inner[flow.node_name(inner[name]["body"])]
            if body["type"] == "pipeline":  # a body of several steps: its component gives every sink's already
                continue
            if flow.DONE_OUTPUT not in (body["component"].get("outputs") or {}):  # each item's, which it aggregates
                done = {flow.DONE_OUTPUT: {"type": "uri_folder"}} | (body["component"].get("outputs") or {})
                body["component"] = _with_outputs(body["component"], done)
            continue
        outputs[output] = {"type": "uri_folder"}
        component = inner[name]["component"]
        done = {flow.DONE_OUTPUT: {"type": "uri_folder"}} | (component.get("outputs") or {})
        inner[name]["component"] = _with_outputs(component, done)
        inner[name] = _with_outputs(inner[name], {flow.DONE_OUTPUT: f"${{{{parent.outputs.{output}}}}}"})
    for source, decided in lowering.decisions.items():  # a condition inside the map: an if_else of the body
        for output, branch in decided.items():
            if lowering.inner.get(branch.name) != group.name:
                continue
            condition = None
            if lowering.bodies.get(source) is not group:  # decided once, outside: a boolean input of the body
                inputs[output] = {"type": "boolean"}
                bound[output] = f"${{{{parent.jobs.{nodes[source]}.outputs.{output}}}}}"
                condition = f"${{{{parent.inputs.{output}}}}}"
            inner[flow.NODE_PREFIX + branch.name] = flow.if_else(lowering, branch, source, output, nodes, condition)
    document = {"$schema": COMPONENT_SCHEMA, "type": "pipeline", "display_name": f"{pipeline.name} {group.name}",
                "description": f"The steps of map {group.name!r}, once per item.", "inputs": inputs,
                "outputs": outputs, "jobs": inner}
    node = {"type": "pipeline", "display_name": group.name, "component": f"./{component_file(pipeline, group)}",
            "inputs": bound}
    return node, document


def _with_outputs(node: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """The node with ``outputs`` right after its ``inputs`` (the order every node is written in)."""
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "outputs":
            continue
        result[key] = value
        if key == "inputs":
            result["outputs"] = outputs
    return result
