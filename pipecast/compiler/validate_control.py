"""The rules of control flow (maps, conditions, exit handlers, hooks).

Part of the rule book of :mod:`pipecast.compiler.validate`: each problem names the step or group and its
``file:line``.
"""

from __future__ import annotations

from typing import Any

from pipecast.compiler import ir
from pipecast.errors import Problem

_LISTS = (ir.TypeName.LIST, ir.TypeName.ANY)


class _Groups:
    """The groups of a pipeline, and which maps enclose each step."""

    def __init__(self, pipeline: ir.Pipeline) -> None:
        self.by_name = {g.name: g for g in pipeline.groups}
        self.steps = {s.name: s for s in pipeline.steps}

    def ancestors(self, name: str | None) -> list[ir.Group]:
        chain: list[ir.Group] = []
        seen: set[str] = set()
        while name is not None and name in self.by_name and name not in seen:
            seen.add(name)
            chain.append(self.by_name[name])
            name = self.by_name[name].parent
        return chain

    def maps_of(self, step: str) -> list[str]:
        found = self.steps.get(step)
        return [g.name for g in self.ancestors(found.group if found else None) if g.kind is ir.GroupKind.MAP]


def check_control_flow(pipeline: ir.Pipeline) -> list[Problem]:
    """Every problem with the pipeline's groups, triggers and control-flow bindings."""
    problems: list[Problem] = []
    groups = _Groups(pipeline)
    outputs = {(s.name, o.name): o for s in pipeline.steps for o in s.outputs}
    params = {p.name: p for p in pipeline.parameters}
    where = str(pipeline.location) if pipeline.location else None
    if pipeline.parallelism is not None and pipeline.parallelism < 1:
        problems.append(Problem(f"parallelism must be >= 1, got {pipeline.parallelism!r}", location=where))
    seen: set[str] = set()
    for group in pipeline.groups:
        at = str(group.location)

        def add(message: str, fix: str | None = None, at: str = at, found: list[Problem] = problems) -> None:
            found.append(Problem(message, location=at, fix=fix))

        if group.parent is not None and group.parent not in seen:
            add(f"group {group.name!r} names parent {group.parent!r}, which is not an earlier group")
        seen.add(group.name)
        if group.kind is ir.GroupKind.MAP:
            problems += _check_map(group, groups, params, outputs, add)
        elif group.kind is ir.GroupKind.CONDITION:
            if (group.condition is None) != (group.label == "else"):
                add(f"condition group {group.name!r}: an else branch, and only it, has no condition of its own")
            if group.chain is not None and group.chain not in seen:
                add(f"condition group {group.name!r} continues unknown if-chain {group.chain!r}")
            if group.condition is not None:
                for operand in group.condition.all_operands():
                    _check_operand(operand, group, groups, params, outputs, add, "its condition")
        elif not any(b.kind is ir.BindingKind.STATUS and b.group == group.name
                     for s in pipeline.steps for b in s.bindings):
            add(f"exit handler group {group.name!r} has no handler step",
                fix="after the `with pipecast.ExitHandler() as group:` block, call a step with status=group.status")
    for step in pipeline.steps:
        problems += _check_step(step, groups, outputs)
    return problems


def _check_map(group: ir.Group, groups: _Groups, params: dict[str, ir.Parameter],
               outputs: dict[tuple[str, str], ir.OutputSpec], add: Any) -> list[Problem]:
    if not group.items:
        add(f"map {group.name!r} has no list to iterate")
    if len(group.items) > 1 and group.combine is None:
        add(f"map {group.name!r} iterates {len(group.items)} lists without saying how to pair them",
            fix="use pipecast.Zip(a, b) or pipecast.Product(a, b)")
    if group.parallelism is not None and group.parallelism < 1:
        add(f"map {group.name!r}: parallelism must be >= 1, got {group.parallelism!r}")
    if sum(1 for g in groups.ancestors(group.name) if g.kind is ir.GroupKind.MAP) > 2:
        add(f"map {group.name!r} is nested in two other maps; maps nest one level deep",
            fix="move the inner loop into a step, or map over a product of the lists (pipecast.Product(a, b))")
    for operand in group.items:
        _check_operand(operand, group, groups, params, outputs, add, "the list it iterates")
        if operand.kind is ir.BindingKind.PARAMETER and operand.parameter in params and \
                params[operand.parameter].type not in _LISTS:
            add(f"map {group.name!r} iterates pipeline parameter {operand.parameter!r}, which is "
                f"{params[operand.parameter].type.value}, not a list", fix=f"annotate it: {operand.parameter}: list")
        elif operand.kind is ir.BindingKind.CONSTANT and not isinstance(operand.value, list):
            add(f"map {group.name!r} iterates the constant {operand.value_json}, which is not a list")
        elif operand.kind is ir.BindingKind.OUTPUT:
            spec = outputs.get((operand.step or "", operand.output or ""))
            if spec is not None and spec.type not in _LISTS:
                add(f"map {group.name!r} iterates output {operand.output!r} of step {operand.step!r}, which is "
                    f"{spec.type_label or spec.type.value}, not a list", fix="annotate the step to return list")
    return []


def _check_operand(operand: ir.Operand, group: ir.Group, groups: _Groups, params: dict[str, ir.Parameter],
                   outputs: dict[tuple[str, str], ir.OutputSpec], add: Any, what: str) -> None:
    if operand.kind is ir.BindingKind.PARAMETER and operand.parameter not in params:
        add(f"{what} in group {group.name!r} reads unknown pipeline parameter {operand.parameter!r}")
    elif operand.kind is ir.BindingKind.OUTPUT:
        if (operand.step or "", operand.output or "") not in outputs:
            add(f"{what} in group {group.name!r} reads missing output {operand.output!r} of step {operand.step!r}")
        elif group.name in {g.name for g in groups.ancestors(groups.steps[operand.step or ""].group)}:
            add(f"{what} in group {group.name!r} reads step {operand.step!r}, which runs inside that group",
                fix="compute the value before the block and read it there")
        elif set(groups.maps_of(operand.step or "")) - {g.name for g in groups.ancestors(group.parent)}:
            add(f"{what} in group {group.name!r} reads step {operand.step!r}, which runs once per item of a map "
                "the group is not in", fix="pass the mapped output to a step that returns one value, and read that")
    elif operand.kind is ir.BindingKind.ITEM and operand.group not in {
            g.name for g in groups.ancestors(group.name if group.kind is not ir.GroupKind.MAP else group.parent)
            if g.kind is ir.GroupKind.MAP}:
        add(f"{what} in group {group.name!r} reads the item of map {operand.group!r} outside that map")


def _check_step(step: ir.Step, groups: _Groups, outputs: dict[tuple[str, str], ir.OutputSpec]) -> list[Problem]:
    problems: list[Problem] = []
    where = str(step.location)
    inputs = {i.name: i for i in step.inputs}

    def add(message: str, fix: str | None = None) -> None:
        problems.append(Problem(message, step=step.name, location=where, fix=fix))

    if step.group is not None and step.group not in groups.by_name:
        add(f"step {step.name!r} is in unknown group {step.group!r}")
    mine = set(groups.maps_of(step.name))
    enclosing = {g.name for g in groups.ancestors(step.group)}
    for binding in step.bindings:
        spec = inputs.get(binding.input)
        kind = binding.kind
        if kind is ir.BindingKind.OUTPUT and binding.step in groups.steps:
            outside = set(groups.maps_of(binding.step)) - mine
            if outside:
                add(f"input {binding.input!r} reads step {binding.step!r} once per item of map "
                    f"{sorted(outside)[0]!r}, which this step is not in", fix="bind it as a collected list")
        elif kind is ir.BindingKind.ITEM and binding.group not in mine:
            add(f"input {binding.input!r} reads the item of map {binding.group!r}, which this step is not in",
                fix="call the step inside the map's `with` block")
        elif kind is ir.BindingKind.COLLECTED:
            if binding.group not in groups.maps_of(binding.step or "") or binding.group in mine:
                add(f"input {binding.input!r} collects step {binding.step!r} over map {binding.group!r}, but that "
                    "step is not in that map or this step is")
            if spec is not None and spec.type not in _LISTS:
                add(f"input {binding.input!r} gets the outputs of step {binding.step!r} made once per item of map "
                    f"{binding.group!r} (a list, in item order), but it is {spec.type_label or spec.type.value}",
                    fix=f"annotate it as a list: {binding.input}: list")
        elif kind is ir.BindingKind.ONE_OF:
            problems += _check_one_of(step, binding, groups, outputs, spec, add)
        elif kind is ir.BindingKind.STATUS:
            if step.trigger is ir.Trigger.ALL_SUCCESS:
                add(f"input {binding.input!r} gets a final status but the step runs only on success")
            if binding.group is None and step.trigger not in (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS):
                add(f"input {binding.input!r} gets the run's final status, which only pipeline hooks receive")
            elif binding.group is not None and (binding.group not in groups.by_name or
                                                groups.by_name[binding.group].kind is not ir.GroupKind.EXIT):
                add(f"input {binding.input!r} gets the status of {binding.group!r}, which is not an exit group")
            elif binding.group in enclosing:
                add(f"the handler of exit group {binding.group!r} is called inside that group",
                    fix="call it after the `with` block")
            if spec is not None and spec.type not in (ir.TypeName.DICT, ir.TypeName.ANY):
                add(f"input {binding.input!r} gets a status (a dict) but it is {spec.type_label or spec.type.value}",
                    fix=f"annotate it: {binding.input}: dict")
    if step.trigger in (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS):
        users = [s.name for s in groups.steps.values() if step.name in s.upstream()]
        if users:
            add(f"pipeline hook {step.name!r} runs after every other step, but step {users[0]!r} depends on it")
    return problems


def _check_one_of(step: ir.Step, binding: ir.Binding, groups: _Groups, outputs: dict[tuple[str, str], ir.OutputSpec],
                  spec: ir.InputSpec | None, add: Any) -> list[Problem]:
    chains = set()
    for source in binding.sources:
        found = outputs.get((source.step, source.output))
        producer = groups.steps.get(source.step)
        branch = next((g for g in groups.ancestors(producer.group if producer else None)
                       if g.kind is ir.GroupKind.CONDITION), None)
        if found is None or branch is None:
            add(f"input {binding.input!r}: OneOf takes outputs made inside the branches of an If, but "
                f"{source.output!r} of step {source.step!r} is not", fix="pass outputs made under If/Elif/Else")
            continue
        chains.add((branch.chain, branch.branch))
        if spec is not None and found.type is not spec.type and ir.TypeName.ANY not in (found.type, spec.type):
            add(f"input {binding.input!r} is {spec.type_label or spec.type.value} but OneOf source step "
                f"{source.step!r} gives {found.type_label or found.type.value}", fix="make the annotations agree")
    if len(binding.sources) < 2 or len(chains) < len(binding.sources) or len({c for c, _ in chains}) > 1:
        add(f"input {binding.input!r}: OneOf needs one output from each of two or more branches of the same If",
            fix="pass one output made in the If block and one from each Elif/Else block")
    return []
