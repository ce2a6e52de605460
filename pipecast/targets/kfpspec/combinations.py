"""Zips and products over run-time lists on the KFP IR: a publisher task and one ``ParallelFor`` over its output.

A ``ParallelFor`` iterates one list (``ParameterIteratorSpec.ItemsSpec`` holds one source), and the engine
computes no combination: the KFP driver substitutes only ``{{$.inputs.parameters[...]}}`` placeholders and the
loop item (``backend/src/v2/driver/resolver/parameters.go``, ``resolveParameterIterator``/``getItems``;
``driver/util.go``, ``resolveContainerArgs``). So a zip or a product with a list known only at run time (a
parameter, a step's output, an outer map's item) gets a task of its own, in the DAG the map is in, that builds
the map's items as ``pipecast run`` does (:func:`pipecast.runtime.publish_kfp.map_items`, which calls
``flow_plan.combined``) and publishes them as a LIST output parameter; the map's loop iterates that output, each
item being the combination (one element per list, read with ``--kfp-item-input NAME#INDEX``). The runtime finds
the item's index k in the published list, so instances, upstream reads, fan-in and exit status are ``step[k]``
exactly as ``pipecast run`` numbers them. Zipped lists of different lengths fail that task, naming the map and
the lengths, as ``pipecast run`` fails the map, however short the first list is.

The publisher is a runtime step added here to the pipeline the KFP target lowers (``pipecast_items_<map>``): it
records itself in the run's folder like any step (a step ``pipecast run`` does not have).
"""

from __future__ import annotations

import dataclasses

from pipecast.compiler import ir
from pipecast.compiler.signatures import source_hash
from pipecast.runtime import publish_kfp

PREFIX = "pipecast_items_"
OUTPUT = "output"


def needs_publisher(group: ir.Group) -> bool:
    """Whether map ``group`` combines several lists one of which is known only at run time."""
    return (group.kind is ir.GroupKind.MAP and group.combine is not None and len(group.items) > 1
            and any(o.kind is not ir.BindingKind.CONSTANT for o in group.items))


def publish(pipeline: ir.Pipeline) -> ir.Pipeline:
    """``pipeline`` with a publisher step before each such map, and the map iterating its output."""
    targets = [g for g in pipeline.groups if needs_publisher(g) and not _zipped_item(g)]
    if not targets:
        return pipeline
    taken = {s.name for s in pipeline.steps}
    steps = list(pipeline.steps)
    groups = []
    for group in pipeline.groups:
        if group in targets:
            name = PREFIX + group.name
            while name in taken:
                name += "_"
            taken.add(name)
            steps.insert(_first_member(pipeline, group), _publisher(pipeline, group, name))
            group = dataclasses.replace(group, combine=None, items=(
                ir.Operand(kind=ir.BindingKind.OUTPUT, step=name, output=OUTPUT),))
        groups.append(group)
    return dataclasses.replace(pipeline, steps=tuple(steps), groups=tuple(groups))


def reported_as(pipeline: ir.Pipeline) -> dict[str, tuple[str, ...]]:
    """Each publisher step's map's first steps (those reading no other step of the map), by publisher.

    ``pipecast run`` fails the steps of a map whose lists do not zip; those that read another step of the map are
    skipped instead. An exit handler's status names them, not the publisher (``--kfp-covered``).
    """
    path = f"{publish_kfp.map_items.__module__}:{publish_kfp.map_items.__qualname__}"
    found: dict[str, tuple[str, ...]] = {}
    for publisher in (s for s in pipeline.steps if s.function.path == path):
        group = next(g for g in pipeline.groups if g.items and g.items[0].step == publisher.name)
        inside = {group.name}
        for other in pipeline.groups:  # groups are listed outer first
            if other.parent in inside:
                inside.add(other.name)
        members = [s for s in pipeline.steps if s.group in inside]
        names = {s.name for s in members}
        found[publisher.name] = tuple(s.name for s in members if not set(s.upstream()) & names)
    return found


def _zipped_item(group: ir.Group) -> bool:
    # One list of an outer zip's item: refused by the maps' check (maps.py), left as it is.
    return any(o.kind is ir.BindingKind.ITEM and o.index is not None for o in group.items)


def _first_member(pipeline: ir.Pipeline, group: ir.Group) -> int:
    """Where the publisher goes in the step list: before the first step inside the map (steps are in call order)."""
    inside = {group.name}
    for other in pipeline.groups:  # groups are listed outer first
        if other.parent in inside:
            inside.add(other.name)
    return next((i for i, s in enumerate(pipeline.steps) if s.group in inside), len(pipeline.steps))


def _publisher(pipeline: ir.Pipeline, group: ir.Group, name: str) -> ir.Step:
    fn = publish_kfp.map_items
    inputs = [ir.InputSpec(name="combine", type=ir.TypeName.STR), ir.InputSpec(name="where", type=ir.TypeName.STR)]
    bindings = [ir.Binding(input="combine", kind=ir.BindingKind.CONSTANT,
                           value_json=ir.canonical_json(str(group.combine.value if group.combine else ""))),
                ir.Binding(input="where", kind=ir.BindingKind.CONSTANT,
                           value_json=ir.canonical_json(f"map {group.name!r} ({group.location})"))]
    for number, operand in enumerate(group.items):
        input_name = f"{publish_kfp.LIST_INPUT}{number}"
        inputs.append(ir.InputSpec(name=input_name, type=_type(pipeline, operand)))
        bindings.append(ir.Binding(input=input_name, kind=operand.kind, parameter=operand.parameter,
                                   step=operand.step, output=operand.output, value_json=operand.value_json,
                                   group=operand.group, index=operand.index))
    return ir.Step(name=name, function=ir.FunctionRef(module=fn.__module__, qualname=fn.__qualname__,
                                                      source_hash=source_hash(fn)),
                   location=group.location, inputs=tuple(inputs), bindings=tuple(bindings),
                   outputs=(ir.OutputSpec(name=OUTPUT, type=ir.TypeName.LIST),), explicit_name=True, cache=False,
                   description=f"the items of map {group.name!r} ({group.combine.value if group.combine else ''})",
                   group=group.parent)


def _type(pipeline: ir.Pipeline, operand: ir.Operand) -> ir.TypeName:
    """The publisher's input type for one list: what the list's source is declared as."""
    if operand.kind is ir.BindingKind.PARAMETER:
        return next(p.type for p in pipeline.parameters if p.name == operand.parameter)
    if operand.kind is ir.BindingKind.OUTPUT:
        producer = pipeline.step(operand.step or "")
        return next((o.type for o in producer.outputs if o.name == operand.output), ir.TypeName.ANY)
    return ir.TypeName.LIST if operand.kind is ir.BindingKind.CONSTANT else ir.TypeName.ANY
