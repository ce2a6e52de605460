"""Control-flow groups while a pipeline is traced: which group each step call is in, and what that implies.

:class:`GroupStack` belongs to one :class:`~pipecast.compiler.tracing.Tracer`. ``with pipecast.ParallelFor(...)``,
``If``/``Elif``/``Else`` and ``ExitHandler`` open and close groups here; each step call is placed in the innermost
open group and gets the edges its groups imply (a branch's steps run after the steps its condition reads, a map's
steps after the step that makes its list). Binding a map item, a status or a ``OneOf`` is checked here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipecast.compiler import ir
from pipecast.compiler.naming import name_problem
from pipecast.compiler.symbolic import ItemRef, OneOfRef, StatusRef
from pipecast.errors import PipelineDefinitionError, Problem

if TYPE_CHECKING:
    from pipecast.compiler.tracing import Tracer, _Node
    from pipecast.dsl import StepDef


@dataclass(slots=True, eq=False)
class GroupRecord:
    """A group being traced (the IR's :class:`~pipecast.compiler.ir.Group` once the trace ends)."""

    name: str
    kind: ir.GroupKind
    location: ir.Location
    parent: GroupRecord | None
    items: tuple[ir.Operand, ...] = ()
    combine: ir.Combine | None = None
    parallelism: int | None = None
    condition: ir.Condition | None = None
    chain: str | None = None
    branch: int = 0
    label: str | None = None
    reads: tuple[str, ...] = ()  # the steps the chain's conditions up to this branch read (an elif/else needs all)

    def ancestors(self) -> list[GroupRecord]:
        """This group and every group around it, innermost first."""
        chain: list[GroupRecord] = []
        current: GroupRecord | None = self
        while current is not None:
            chain.append(current)
            current = current.parent
        return chain

    def dependencies(self) -> list[str]:
        """The steps this group's steps must run after: those its condition or its lists read."""
        if self.kind is ir.GroupKind.CONDITION:  # an elif or else also needs the earlier branches' conditions
            return list(self.reads)
        return [o.step for o in self.items if o.kind is ir.BindingKind.OUTPUT and o.step]

    def to_ir(self) -> ir.Group:
        """The IR group."""
        return ir.Group(name=self.name, kind=self.kind, location=self.location,
                        parent=self.parent.name if self.parent else None, items=self.items, combine=self.combine,
                        parallelism=self.parallelism, condition=self.condition, chain=self.chain,
                        branch=self.branch, label=self.label)


def _maps(group: GroupRecord | None) -> list[GroupRecord]:
    return [g for g in group.ancestors() if g.kind is ir.GroupKind.MAP] if group else []


class GroupStack:
    """The groups of one trace: those open now, every one opened, and the if/elif/else chain open at each level."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.open: list[GroupRecord] = []
        self.every: list[GroupRecord] = []
        self.counts: dict[str, int] = {}
        # The last closed if/elif at each level (keyed by its parent group's name), which an Elif/Else continues.
        self.chains: dict[str | None, GroupRecord] = {}

    @property
    def current(self) -> GroupRecord | None:
        """The innermost open group."""
        return self.open[-1] if self.open else None

    def _level(self) -> str | None:
        return self.current.name if self.current else None

    def enter(self, kind: ir.GroupKind, location: ir.Location, name: str | None, **fields: Any) -> GroupRecord:
        """Open a group of ``kind`` at ``location`` (a new if/map/exit ends the if/elif chain at this level)."""
        if name is None:
            count = self.counts.get(kind.value, 0) + 1
            self.counts[kind.value] = count
            name = f"{kind.value}_{count}"
        elif name_problem("group name", name):
            self.tracer.problems.append(Problem(str(name_problem("group name", name)), location=str(location)))
        elif any(g.name == name for g in self.every):
            self.tracer.problems.append(Problem(f"two groups are named {name!r}; group names must be unique",
                                                location=str(location), fix="give one of them another name"))
        if fields.get("label") in (None, "if"):
            self.chains.pop(self._level(), None)
        record = GroupRecord(name=name, kind=kind, location=location, parent=self.current, **fields)
        if kind is ir.GroupKind.MAP and len(_maps(record)) > 2:
            self.tracer.problems.append(Problem(
                f"map {name!r} is nested in two other maps; maps nest one level deep",
                location=str(location), fix="move the inner loop into a step, or map over a product of the lists "
                                            "(pipecast.Product(a, b))"))
        self.every.append(record)
        self.open.append(record)
        return record

    def exit(self, record: GroupRecord) -> None:
        """Close ``record`` (the innermost open group); an if/elif stays open for an Elif/Else after it."""
        if self.open and self.open[-1] is record:
            self.open.pop()
        if record.kind is ir.GroupKind.CONDITION and record.label != "else":
            self.chains[self._level()] = record
        else:
            self.chains.pop(self._level(), None)

    @contextmanager
    def reopen(self, record: GroupRecord, location: ir.Location) -> Iterator[None]:
        """Place calls in a closed map again (a chained ``expand``: item by item over that map's items)."""
        if record.parent is not self.current:
            raise PipelineDefinitionError(
                f"expand() over the result of map {record.name!r} continues that map item by item, so it must be "
                f"called at the level the map was (at {record.location}); here it is at {location}")
        self.open.append(record)
        try:
            yield
        finally:
            self.open.pop()

    def continue_chain(self, label: str) -> GroupRecord:
        """The if/elif an Elif or Else continues; raise if there is none right before it."""
        previous = self.chains.pop(self._level(), None)
        if previous is None:
            raise PipelineDefinitionError(
                f"`pipecast.{label.capitalize()}` must come right after a `with pipecast.If(...)` or "
                "`pipecast.Elif(...)` block at the same level, with no step call between them")
        return previous

    def place(self, node: _Node) -> None:
        """Give a new step call the edges its groups imply; a call ends the if/elif chain at its level."""
        self.chains.pop(self._level(), None)
        for group in node.group.ancestors() if node.group else ():
            for upstream in group.dependencies():
                if upstream != node.name and upstream not in node.after:
                    node.after.append(upstream)

    def collected_over(self, producer: _Node, consumer: _Node) -> str | None:
        """The outermost map the producer is in and the consumer is not (its output arrives as a list), if any."""
        inside = set(map(id, _maps(consumer.group)))
        outside = [g for g in _maps(producer.group) if id(g) not in inside]
        return outside[-1].name if outside else None

    def bind_control(self, node: _Node, input_name: str, value: ItemRef | StatusRef | OneOfRef) -> ir.Binding:
        """The binding of a map item, a final status or a OneOf to ``node``'s input ``input_name``."""
        if isinstance(value, ItemRef):
            if node.group is None or value.group not in {g.name for g in node.group.ancestors()}:
                self._problem(node, f"input {input_name!r} gets the item of map {value.group!r} outside that "
                                    "map's `with` block", "call the step inside the block")
            return ir.Binding(input=input_name, kind=ir.BindingKind.ITEM, group=value.group, index=value.index)
        if isinstance(value, StatusRef):
            node.trigger = ir.Trigger.ALWAYS
            for other in self.tracer.nodes:
                if value.group is None or (other.group and value.group in {g.name for g in other.group.ancestors()}):
                    if other.name not in node.after:
                        node.after.append(other.name)
            if value.group is None:
                self._problem(node, f"input {input_name!r} gets the run's final status, which only a pipeline hook "
                                    "(@pipeline(on_failure=..., on_success=...)) receives",
                              "wrap the steps in `with pipecast.ExitHandler() as group:` and pass group.status")
            return ir.Binding(input=input_name, kind=ir.BindingKind.STATUS, group=value.group)
        sources = tuple(ir.Source(step=o.node.name, output=o.output) for o in value.outputs)
        return ir.Binding(input=input_name, kind=ir.BindingKind.ONE_OF, sources=sources)

    def _problem(self, node: _Node, message: str, fix: str) -> None:
        self.tracer.problems.append(Problem(message, step=node.name, location=str(node.location), fix=fix))

    def add_hooks(self, hooks: tuple[tuple[ir.Trigger, StepDef[..., Any]], ...]) -> None:
        """Record the pipeline's on_failure/on_success hooks: each runs after every other step."""
        others = [n.name for n in self.tracer.nodes]
        for trigger, hook in hooks:
            spec = hook.read_spec()
            kwargs = {"status": None} if any(i.name == "status" for i in spec.inputs) else {}
            call = self.tracer.add_call(hook, (), kwargs)
            call.node.trigger = trigger
            call.node.location = self.tracer.pipeline.location  # the hook is named in @pipeline(...)
            call.node.after = list(others)
            call.node.bindings = [ir.Binding(input="status", kind=ir.BindingKind.STATUS) if b.input == "status"
                                  else b for b in call.node.bindings]

    def to_ir(self) -> tuple[ir.Group, ...]:
        """Every group, in the order they were opened (parents before children)."""
        return tuple(g.to_ir() for g in self.every)
