"""Control flow for pipelines: maps over lists, if/elif/else branches, exit handlers.

Plain Python, recorded while the pipeline is traced (after KFP's ``ParallelFor``/``If``/``ExitHandler``/``OneOf``
and Airflow's ``.partial()``/``.expand()``)::

    @pipeline(parallelism=8, on_failure=alert)
    def search(rates: list = [0.1, 0.01], threshold: float = 0.9):
        data = load()
        with ParallelFor(rates, parallelism=2) as rate:     # one item at a time per engine task
            score = train(data=data, rate=rate)
        best = pick(scores=score)                           # a mapped output arrives as a list, in item order
        with ExitHandler() as work:
            with If(best > threshold):
                promote(score=best)
            with Else():
                keep()
        report(status=work.status)                          # runs after the group, whatever happened

A step whose input comes from a branch that did not run is skipped; ``OneOf(a, b)`` takes whichever ran.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from pipecast.compiler import ir
from pipecast.compiler.symbolic import (
    Comparable,
    Cond,
    ItemRef,
    OneOfRef,
    OutputRef,
    StatusRef,
    StepCall,
    is_in,
    not_in,
    operand_of,
)
from pipecast.compiler.user_code import caller_location
from pipecast.errors import PipelineDefinitionError, Problem

if TYPE_CHECKING:
    from pipecast.compiler.groups import GroupRecord
    from pipecast.compiler.tracing import Tracer

__all__ = ["Else", "Elif", "ExitHandler", "If", "OneOf", "ParallelFor", "Product", "Zip", "is_in", "not_in"]


def _tracer(construct: str) -> Tracer:
    from pipecast.compiler.tracing import current_tracer

    tracer = current_tracer()
    if tracer is None:
        raise PipelineDefinitionError(f"pipecast.{construct} is used inside a @pipeline function, while it is traced")
    return tracer


class Zip:
    """Map over several lists together: item ``i`` of each (the lists must have one length)."""

    def __init__(self, *lists: Any) -> None:
        self.lists = lists


class Product:
    """Map over every combination of several lists (the first list varies slowest)."""

    def __init__(self, *lists: Any) -> None:
        self.lists = lists


class _Block:
    """A ``with`` block that opens one group while it runs."""

    construct = ""
    record: GroupRecord | None = None

    def _open(self, kind: ir.GroupKind, where: ir.Location, name: str | None, **fields: Any) -> GroupRecord:
        self.tracer = _tracer(self.construct)
        self.record = self.tracer.groups.enter(kind, where, name, **fields)
        return self.record

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.record is not None:
            self.tracer.groups.exit(self.record)


class ParallelFor(_Block):
    """Run the block's steps once per item of a list: a parameter, a constant, or a step's output.

    Args:
        items: The list, or :class:`Zip`/:class:`Product` of several lists.
        parallelism: How many items may run at once (default: no bound but the pipeline's).
        name: The group's name (default ``map_1``, ``map_2``...).

    ``with ParallelFor(Zip(a, b)) as (x, y):`` unpacks the items of several lists.
    """

    construct = "ParallelFor"

    def __init__(self, items: Any, *, parallelism: int | None = None, name: str | None = None) -> None:
        self.items, self.parallelism, self.name = items, parallelism, name

    def __enter__(self) -> Any:
        combine = None
        lists = (self.items,)
        if isinstance(self.items, (Zip, Product)):
            combine = ir.Combine.ZIP if isinstance(self.items, Zip) else ir.Combine.PRODUCT
            lists = self.items.lists
        elif isinstance(self.items, (list, tuple)) and any(isinstance(v, (Comparable, StepCall)) for v in self.items):
            raise PipelineDefinitionError(
                "ParallelFor got a Python list of parameters or step outputs; say how to pair them: "
                "ParallelFor(pipecast.Zip(a, b)) or ParallelFor(pipecast.Product(a, b))")
        operands = tuple(operand_of(v) for v in lists)
        record = self._open(ir.GroupKind.MAP, caller_location(2), self.name, items=operands, combine=combine,
                            parallelism=self.parallelism)
        bad = self.parallelism is not None and (not isinstance(self.parallelism, int) or
                                                isinstance(self.parallelism, bool) or self.parallelism < 1)
        if bad or (combine is not None and len(lists) < 2):
            self.tracer.problems.append(Problem(
                f"parallelism must be a whole number >= 1, got {self.parallelism!r}" if bad else
                f"{type(self.items).__name__} needs two lists or more", location=str(record.location)))
        return ItemRef(record.name, None, len(lists) if combine else 1)


class If(_Block):
    """Run the block's steps only when ``condition`` holds at run time.

    ``condition`` compares parameters, step outputs and map items (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``,
    :func:`is_in`, :func:`not_in`), combined with ``&``, ``|`` and ``~``; a bare bool parameter or output means
    ``value == True``.
    """

    construct = "If"
    label = "if"

    def __init__(self, condition: Any, *, name: str | None = None) -> None:
        self.condition, self.name = condition, name

    def _condition(self) -> ir.Condition:
        if isinstance(self.condition, Cond):
            return self.condition.condition
        if isinstance(self.condition, Comparable):
            return ir.Condition(op=ir.Comparison.EQ, operands=(operand_of(self.condition), operand_of(True)))
        raise PipelineDefinitionError(
            f"pipecast.{self.construct} needs a condition on a parameter, step output or map item (e.g. "
            f"`score > 0.9`), got {type(self.condition).__name__} {self.condition!r:.60}; a plain Python value "
            "is known now: use Python's own `if`")

    def __enter__(self) -> None:
        where = caller_location(2)
        condition = self._condition()
        tracer = _tracer(self.construct)
        if self.label == "if":
            record = self._open(ir.GroupKind.CONDITION, where, self.name, condition=condition, label="if")
            record.chain = record.name
            record.reads = condition.steps()
            return
        self._continue(tracer.groups.continue_chain(self.label), condition, where)

    def _continue(self, previous: GroupRecord, condition: ir.Condition | None, where: ir.Location) -> None:
        # The branch keeps its own condition only (linear in the number of branches); it runs when that holds and
        # no earlier branch of its chain ran, which runners and lowerings read from ``chain`` and ``branch``.
        record = self._open(ir.GroupKind.CONDITION, where, self.name, condition=condition, chain=previous.chain,
                            branch=previous.branch + 1, label=self.label)
        new = [name for name in (condition.steps() if condition is not None else ()) if name not in previous.reads]
        record.reads = previous.reads + tuple(new)


class Elif(If):
    """The next branch of an ``If``: runs when no earlier branch's condition held and this one does."""

    construct = "Elif"
    label = "elif"


class Else(If):
    """The last branch of an ``If``: runs when no earlier branch's condition held."""

    construct = "Else"
    label = "else"

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(None, name=name)

    def __enter__(self) -> None:
        where = caller_location(2)
        self._continue(_tracer(self.construct).groups.continue_chain(self.label), None, where)


class ExitHandler(_Block):
    """Steps whose final status a handler step reads; the handler runs after them whatever their outcome.

    Call the handler after the block with ``status=group.status``: it gets ``{"status": "succeeded" |
    "failed" | "cancelled", "failed_steps": [...], "error": ...}``.
    """

    construct = "ExitHandler"

    def __init__(self, *, name: str | None = None) -> None:
        self.name = name
        self.status: Any = None

    def __enter__(self) -> ExitHandler:
        record = self._open(ir.GroupKind.EXIT, caller_location(2), self.name)
        self.status = StatusRef(record.name)
        return self


def OneOf(*outputs: Any) -> Any:  # noqa: N802 - a value constructor, named as in KFP (dsl.OneOf)
    """The output of whichever branch of an if/elif/else ran: ``OneOf(a, b)`` for ``a`` in the If, ``b`` in the Else."""
    refs = []
    for value in outputs:
        if isinstance(value, StepCall) and len(value.node.spec.outputs) == 1:
            value = OutputRef(value.node, value.node.spec.outputs[0].name)
        if not isinstance(value, OutputRef):
            raise PipelineDefinitionError(f"OneOf takes step outputs made in the branches of one If, got "
                                          f"{type(value).__name__}")
        refs.append(value)
    if len(refs) < 2:
        raise PipelineDefinitionError("OneOf takes two step outputs or more, one per branch")
    return OneOfRef(tuple(refs))
