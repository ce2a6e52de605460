"""Maps on the KFP IR: a ``ParallelFor`` loop DAG per map, as kfp 2.17's compiler writes one.

A map becomes a root task ``for-loop-N`` whose component (``comp-for-loop-N``) is a DAG holding the map's steps,
with a ``parameterIterator`` over the list and ``iteratorPolicy.parallelismLimit`` for the map's bound
(``kfp/compiler/pipeline_spec_builder.py``, ``build_task_spec_for_group``/``_build_dag_outputs``; the names are
kfp's: ``pipelinechannel--<param>``, ``pipelinechannel--<task>-<output>``, ``…-loop-item``,
``pipelinechannel--loop-item-param-N`` for a constant list written ``raw``). The engine expands the map: the KFP
driver makes one iteration per element of the list (``backend/src/v2/driver/resolver/parameters.go``,
``resolveParameterIterator``). A list a step returns is published as a LIST output parameter.

Each task inside the loop passes the runtime the item and the list (:mod:`pipecast.runtime.publish_kfp`), which
names the instance ``step[i]``; a step after the map reads the mapped outputs by the list's length, in item order,
and depends on the loop task. A map nested in a map is a loop task inside the outer loop's DAG, as kfp nests
``dsl.ParallelFor``: its tasks pass the item and list of each level (instance ``step[i][j]``), and a map over the
outer item iterates the outer loop-item input (``<item>-loop-item``; the driver iterates a STRING holding a JSON
list, ``getItems``).

Several lists (``Zip``/``Product``): a ``ParallelFor`` iterates one list (``ParameterIteratorSpec.ItemsSpec``
holds one source), so

- a product of constant lists is one loop over the combinations, written ``raw`` as kfp writes a constant list of
  lists (the item is the combination, the first list varying slowest: index k = i*len(ys)+j, as ``pipecast run``
  names ``step[k]``);
- a zip of constant lists is one loop over its first list; each task also gets the other lists (``--kfp-zip``)
  and the runtime takes item i of each, checking their lengths as ``pipecast run`` does;
- a zip or product with a list known only at run time iterates the output of a task that publishes the
  combinations (:mod:`.combinations`), so the engine loops over exactly ``pipecast run``'s items ``step[k]`` and
  zipped lists of different lengths fail that task, even when the first list is empty.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import combined, zip_mismatch
from pipecast.targets.base import EmitContext

CHANNEL = "pipelinechannel--"
ITEM_INPUT = "pipecast_item"
ITEMS_INPUT = "pipecast_items"
ZIP_INPUT = "pipecast_zip"  # pipecast_zip1, pipecast_zip2...: a zip's other lists
MARK = "[*]"  # an instance index the runtime fills in (pipecast.runtime.publish_kfp.MARK)


def _placeholder(name: str) -> str:
    return "{{$.inputs.parameters['" + name + "']}}"


class MapLowering:
    """The maps of one pipeline: loop names, list sources, and the per-step arguments and inputs they add."""

    def __init__(self, pipeline: ir.Pipeline, context: EmitContext, tasks_by_step: Mapping[str, str],
                 param_types: Mapping[str, str]) -> None:
        self.pipeline = pipeline
        self.tasks_by_step = tasks_by_step
        self.param_types = param_types
        groups = {g.name: g for g in pipeline.groups}
        if pipeline.parallelism is not None:
            context.unsupported(
                f"the KFP IR has no bound on the tasks of a whole run (pipeline parallelism={pipeline.parallelism})",
                location=str(pipeline.location) if pipeline.location else None,
                fix="bound each map instead (ParallelFor(..., parallelism=N) is iteratorPolicy.parallelismLimit)")
        self.loops: dict[str, str] = {}  # map group -> loop task name (for-loop-N, in the order they were opened)
        self.raw_items: dict[str, str] = {}  # map group over a constant list -> its loop-item input
        self.maps: dict[str, ir.Group] = {}
        self.sources: dict[str, ir.Operand] = {}  # map group -> the one list its loop iterates
        numbers = group_numbers(pipeline)
        for group in pipeline.groups:
            if group.kind is not ir.GroupKind.MAP:
                continue
            self.sources[group.name] = _loop_operand(group)  # (the IR gives every map at least one list)
            if self.sources[group.name].kind is ir.BindingKind.CONSTANT:
                self.raw_items[group.name] = f"{CHANNEL}loop-item-param-{numbers[group.name] - 1}"
            self.loops[group.name] = f"for-loop-{numbers[group.name]}"
            self.maps[group.name] = group
            problem = _unsupported(group, groups)
            if problem:
                first = next((s for s in pipeline.steps if s.group == group.name), None)
                context.unsupported(f"map {group.name!r} ({group.location}) {problem[0]}", step=first,
                                    fix=f"{problem[1]}, or run it with the local target (`pipecast run FILE`)")
        self.member: dict[str, str] = {}  # step -> its innermost map group
        self.chain: dict[str, list[str]] = {}  # step -> its map groups, outermost first
        for step in pipeline.steps:
            chain = _maps_around(step.group, groups)
            if chain:
                self.member[step.name], self.chain[step.name] = chain[-1], chain
        for group, operand in ((g, o) for g in self.maps.values() for o in g.items):
            if (operand.kind is ir.BindingKind.OUTPUT and operand.step in self.member
                    and not self._made_inside(group.name, operand)):
                context.unsupported(f"map {group.name!r} ({group.location}) iterates output {operand.output!r} of "
                                    f"step {operand.step!r}, which runs inside a map",
                                    step=pipeline.step(operand.step or ""),
                                    fix="collect the list in a step after that map and iterate its output")

    # --- what a map iterates -------------------------------------------------------------------------------------
    def source(self, group: str) -> ir.Operand:
        """The list map ``group``'s loop iterates (a zip's first list; a constant product's combinations)."""
        return self.sources[group]

    def zipped(self, group: str) -> tuple[ir.Operand, ...]:
        """The other lists of a zip: each task reads them whole (``--kfp-zip``)."""
        found = self.maps[group]
        return found.items[1:] if found.combine is ir.Combine.ZIP else ()

    def iterated_outputs(self) -> dict[str, set[str]]:
        """The list outputs maps iterate, by step: LIST output parameters."""
        result: dict[str, set[str]] = {}
        for group in self.maps.values():
            for operand in group.items:
                if operand.kind is ir.BindingKind.OUTPUT and operand.step and operand.output:
                    result.setdefault(operand.step, set()).add(operand.output)
        return result

    def _channel(self, group: str) -> str:
        operand = self.source(group)
        if operand.kind is ir.BindingKind.PARAMETER:
            return f"{CHANNEL}{operand.parameter}"
        if operand.kind is ir.BindingKind.OUTPUT:
            return f"{CHANNEL}{self.tasks_by_step[operand.step or '']}-{operand.output}"
        if operand.kind is ir.BindingKind.ITEM and operand.group in self.maps and operand.index is None:
            return self.item_channel(operand.group)  # a map over the outer map's item (kfp: <item>-loop-item)
        return self.raw_items.get(group, f"{CHANNEL}{group}")  # refused (a zip's part), named to go on

    def item_channel(self, group: str) -> str:
        """The loop-item input: ``<list channel>-loop-item``; for a constant list kfp's ``loop-item-param-N``."""
        channel = self._channel(group)
        return channel if self.source(group).kind is ir.BindingKind.CONSTANT else f"{channel}-loop-item"

    def list_source(self, group: str) -> dict[str, Any]:
        """Where a root-level task reads the map's list from."""
        return self.operand_source(self.source(group))

    def operand_source(self, operand: ir.Operand) -> dict[str, Any]:
        """Where a root-level task reads a list operand from (an item of an outer map: its loop-item input)."""
        if operand.kind is ir.BindingKind.PARAMETER:
            return {"componentInputParameter": operand.parameter}
        if operand.kind is ir.BindingKind.OUTPUT:
            return {"taskOutputParameter": {"outputParameterKey": operand.output,
                                            "producerTask": self.tasks_by_step[operand.step or ""]}}
        if operand.kind is ir.BindingKind.ITEM and operand.index is None and operand.group in self.maps:
            return {"componentInputParameter": self.item_channel(operand.group)}
        return {"runtimeValue": {"constant": operand.value}}  # a constant (or a zipped item: refused)

    def over_item(self, group: str) -> bool:
        """Whether map ``group`` iterates the item of the map around it."""
        return self.source(group).kind is ir.BindingKind.ITEM

    def made_inside(self, group: str) -> bool:
        """Whether map ``group`` iterates a list made by a step in the same iteration of the maps around it.

        That is a ``ParallelFor`` over a task output in the outer loop's DAG: each outer item has its own list.
        """
        return self._made_inside(group, self.source(group))

    def _made_inside(self, group: str, operand: ir.Operand) -> bool:
        around = _maps_around(self.maps[group].parent, {g.name: g for g in self.pipeline.groups})
        return operand.kind is ir.BindingKind.OUTPUT and bool(around) and self.chain.get(operand.step or "") == around

    # --- per step ----------------------------------------------------------------------------------------------
    def step_args(self, step: ir.Step, args: list[str]) -> list[str]:
        """The step's runtime args with its instance marks and the map options added."""
        chain = self.chain.get(step.name, [])
        marked: list[str] = []
        flag = None
        for arg in args:
            if chain and flag == "--step":
                arg += MARK * len(chain)
            elif chain and flag == "--upstream":
                name, _, ref = arg.partition("=")
                source, _, output = ref.rpartition("/")
                arg = f"{name}={source}{MARK * self._shared(source, step.name)}/{output}"
            marked.append(arg)
            flag = arg
        extra: list[str] = []
        for level in range(len(chain)):
            extra += ["--kfp-item", _placeholder(_level(ITEM_INPUT, level)),
                      "--kfp-items", _placeholder(_level(ITEMS_INPUT, level))]
        for level, group in enumerate(chain):
            for other in range(1, len(self.zipped(group)) + 1):
                extra += ["--kfp-zip", f"{level}={_placeholder(_level(f'{ZIP_INPUT}{other}', level))}"]
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.ITEM:
                kind = next((i.type for i in step.inputs if i.name == binding.input), None)
                # The engine holds every number as a double and writes 1.0 as 1: the runtime gives the item
                # back the number type the step's input is annotated with.
                number = f"={kind.value}" if kind in (ir.TypeName.INT, ir.TypeName.FLOAT) else ""
                level = chain.index(binding.group or "") if binding.group in chain else len(chain) - 1
                element = "" if binding.index is None else f"#{binding.index}"  # a zip's or product's list
                extra += ["--kfp-item-input", binding.input + number + (f"@{level}" if level else "") + element]
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.COLLECTED:
                shared = self._shared(binding.step or "", step.name)
                source = f"{binding.step}{MARK * shared}"
                extra += ["--kfp-collect",
                          f"{binding.input}={source}/{binding.output}={_placeholder(self._items_input(binding))}"]
                inner = self.chain[binding.step or ""][shared + 1:]
                if inner:  # one level more (maps nest one level): each item's own list
                    operand = self.source(inner[0])
                    text = ("*" if self.over_item(inner[0]) else f"@{operand.step}/{operand.output}"
                            if self.made_inside(inner[0]) else _placeholder(self._items_input(binding, 1)))
                    extra += ["--kfp-collect-inner", f"{binding.input}={text}"]
        return marked + extra

    def _shared(self, source: str, step: str) -> int:
        """How many maps around ``step`` are also around ``source`` (its instance's leading indices)."""
        mine, theirs = self.chain.get(step, []), self.chain.get(source, [])
        return next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
                    min(len(mine), len(theirs)))

    @staticmethod
    def _items_input(binding: ir.Binding, level: int = 0) -> str:
        return _level(f"{ITEMS_INPUT}_{binding.input}", level)

    def component_inputs(self, step: ir.Step) -> dict[str, dict[str, str]]:
        """The inputs the map options read, as the step's component declares them."""
        inputs = {}
        for level, group in enumerate(self.chain.get(step.name, [])):
            inputs[_level(ITEM_INPUT, level)] = {"parameterType": "STRING"}  # any item: the engine turns it into text
            inputs[_level(ITEMS_INPUT, level)] = {"parameterType": self._list_type(group)}
            for number, operand in enumerate(self.zipped(group), 1):
                kind = "STRING" if operand.kind is ir.BindingKind.ITEM else "LIST"  # an outer item: its JSON text
                inputs[_level(f"{ZIP_INPUT}{number}", level)] = {"parameterType": kind}
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.COLLECTED:
                for level, group in self._collected_lists(binding, step):
                    inputs[self._items_input(binding, level)] = {"parameterType": self._list_type(group)}
        return inputs

    def _list_type(self, group: str) -> str:
        # A map over the outer item reads that item: a STRING input (the engine's text of the list, as JSON).
        return "STRING" if self.over_item(group) else "LIST"

    def _collected_lists(self, binding: ir.Binding, step: ir.Step) -> list[tuple[int, str]]:
        """The maps whose lists a collected input reads, as (level, map).

        The first map not around the reader, and the one inside it unless that map iterates the outer item
        (then each outer item is its list) or a list made inside the outer map (the runtime reads each).
        """
        shared = self._shared(binding.step or "", step.name)
        maps = self.chain[binding.step or ""][shared:]
        return [(level, group) for level, group in enumerate(maps)
                if level == 0 or not (self.over_item(group) or self.made_inside(group))]

    def task_inputs(self, step: ir.Step) -> dict[str, dict[str, Any]]:
        """Where the step's task reads those inputs, in the DAG it is in."""
        inputs: dict[str, dict[str, Any]] = {}
        for level, group in enumerate(self.chain.get(step.name, [])):
            inputs[_level(ITEM_INPUT, level)] = {"componentInputParameter": self.item_channel(group)}
            inputs[_level(ITEMS_INPUT, level)] = self.list_source(group)  # read through the groups around it
            for number, operand in enumerate(self.zipped(group), 1):
                inputs[_level(f"{ZIP_INPUT}{number}", level)] = self.operand_source(operand)
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.COLLECTED:
                for level, group in self._collected_lists(binding, step):
                    inputs[self._items_input(binding, level)] = self.list_source(group)
        return inputs

    def list_producers(self, step: ir.Step) -> set[str]:
        """Steps whose list output the step's collected inputs read (so it depends on them)."""
        result = set()
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.COLLECTED:
                for _, group in self._collected_lists(binding, step):
                    operand = self.source(group)
                    if operand.kind is ir.BindingKind.OUTPUT and operand.step:
                        result.add(operand.step)
        return result

    # --- the loop task ------------------------------------------------------------------------------------------
    def iterator(self, group: str) -> tuple[dict[str, Any] | None, dict[str, Any], str]:
        """The loop task's ``iteratorPolicy`` (or None), its ``parameterIterator`` and its item input."""
        operand = self.source(group)
        iterator: dict[str, Any] = {"itemInput": self.item_channel(group)}
        if operand.kind is ir.BindingKind.CONSTANT:
            iterator["items"] = {"raw": json.dumps(operand.value)}  # as kfp writes it (json.dumps, default spacing)
        else:
            iterator["items"] = {"inputParameter": self._channel(group)}
        parallelism = self.maps[group].parallelism
        policy = {"parallelismLimit": parallelism} if parallelism is not None else None
        return policy, iterator, self.item_channel(group)


def group_numbers(pipeline: ir.Pipeline) -> dict[str, int]:
    """Kfp's id of each group's DAG (``for-loop-N``, ``condition-N``, ``exit-handler-N``, ``condition-branches-N``).

    A chain of several branches has its own id, under ``<If group>#branches``. kfp numbers groups in the order
    they are opened; a chain's wrapper takes its id before its first branch, and a loop over a constant list
    gives its loop argument an id before the loop's own.
    """
    chains: dict[str, int] = {}
    for group in pipeline.groups:
        if group.kind is ir.GroupKind.CONDITION:
            chains[group.chain or group.name] = chains.get(group.chain or group.name, 0) + 1
    numbers: dict[str, int] = {}
    counter = 0
    for group in pipeline.groups:
        if group.kind is ir.GroupKind.MAP and group.items and _loop_operand(group).kind is ir.BindingKind.CONSTANT:
            counter += 1
        if group.kind is ir.GroupKind.CONDITION and chains[group.chain or group.name] > 1 and group.branch == 0:
            counter += 1
            numbers[f"{group.name}#branches"] = counter
        counter += 1
        numbers[group.name] = counter
    return numbers


def _level(name: str, level: int) -> str:
    """An input of map level ``level`` (0: the outermost map): ``name``, then ``name_1``."""
    return f"{name}_{level}" if level else name


def _maps_around(name: str | None, groups: Mapping[str, ir.Group]) -> list[str]:
    """The map groups around group ``name`` (itself included), outermost first."""
    found = []
    while name is not None:
        if groups[name].kind is ir.GroupKind.MAP:
            found.append(name)
        name = groups[name].parent
    return found[::-1]


def _loop_operand(group: ir.Group) -> ir.Operand:
    """The one list the map's ``ParallelFor`` iterates.

    kfp's dsl.ParallelFor takes one list (kfp/dsl/tasks_group.py, ParallelFor.__init__) and the IR's
    parameterIterator one items source (pipeline_spec.proto, ParameterIteratorSpec.ItemsSpec): a product of
    constants is their combinations (``flow_plan.combined``, the order ``pipecast run`` numbers them), a zip
    its first list (the others are read by index, see :meth:`MapLowering.zipped`).
    """
    if group.combine is ir.Combine.PRODUCT and all(o.kind is ir.BindingKind.CONSTANT for o in group.items):
        value = combined([o.value for o in group.items], ir.Combine.PRODUCT, zip_mismatch(group.name))
        return ir.Operand(kind=ir.BindingKind.CONSTANT, value_json=ir.canonical_json(value))
    return group.items[0]


def _unsupported(group: ir.Group, groups: Mapping[str, ir.Group]) -> tuple[str, str] | None:
    """Why a map cannot be lowered to the KFP IR and what to do instead, or None."""
    for operand in group.items:
        if operand.kind is ir.BindingKind.ITEM and operand.index is not None:
            return ("iterates one list of a zipped item, which no KFP loop item holds alone",
                    "give the map a list of its own")
    return None
