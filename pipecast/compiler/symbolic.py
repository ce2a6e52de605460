"""The symbolic values a pipeline function sees while it is traced: parameters, step results, step outputs.

Their values exist only when the pipeline runs, so every Python operation that would need one (``if``,
``==``, ``for``, ``len()``, f-strings, arithmetic, ``.items()``...) raises :class:`SymbolicValueError`
naming the operation and the value. The tracer turns it into a problem at the user's ``file:line``
(:mod:`pipecast.compiler.user_code` says what the user wrote there).
"""

from __future__ import annotations

import dis
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from pipecast.compiler import ir
from pipecast.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from pipecast.compiler.tracing import _Node


class SymbolicValueError(PipelineDefinitionError):
    """Python needed the value of a parameter or step output while the pipeline was traced.

    Attributes:
        operation: What Python tried, as the user would write it (``"=="``, ``"len()"``, ``".items"``).
        kind: ``"truth"``, ``"compare"``, ``"iterate"`` or ``"compute"``: which ones may be control flow.
        subject: The value, e.g. ``"pipeline parameter 'n'"``.
        name: The value's short name for a fix, e.g. ``"'n'"``.
        detail: A sentence that replaces the generic explanation, when the operation has a better one.
    """

    def __init__(self, operation: str, kind: str, value: Symbolic, detail: str = "") -> None:
        self.operation = operation
        self.kind = kind
        self.subject = value._describe()
        self.name = value._short_name()
        self.detail = detail
        super().__init__(f"{operation} on {self.subject}: its value exists only when the pipeline runs")


_CONTAINS_OP = dis.opmap["CONTAINS_OP"]


def _membership_test() -> str | None:
    """``"`in`"`` or ``"`not in`"`` when the code that needs a value is running Python's ``in``, else None.

    ``v in [1, 2]`` on a list compares each element with ``v`` (``1 == v`` falls back to ``v.__eq__(1)``, a
    :class:`Cond` on a parameter or output) and then tests that comparison's truth, so without this the error
    would name a ``==`` or a truth test the user never wrote. The frame running the ``in`` is the first one
    outside this module; its current instruction is ``CONTAINS_OP``, whose argument is 1 for ``not in``.
    """
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None or frame.f_lasti < 0:
        return None
    code = frame.f_code.co_code
    if frame.f_lasti + 1 >= len(code) or code[frame.f_lasti] != _CONTAINS_OP:
        return None
    return "`not in`" if code[frame.f_lasti + 1] & 1 else "`in`"


def _identity_hash(self: Symbolic) -> int:
    """The identity hash, refused when it is asked for to run Python's ``in`` on a set or dict.

    A set, frozenset, dict or keys view finds ``v`` by hash, and an identity hash matches no constant, so
    ``v in {1, 2}`` would quietly be False and take the other branch. C calls ``__hash__`` with no frame of its
    own, so the frame that called it is the one running the ``in`` when its current instruction is
    ``CONTAINS_OP``; building a set or dict of symbolic values, or reading one by key, runs other instructions.
    """
    frame = sys._getframe(1)
    if frame.f_lasti >= 0 and frame.f_code.co_code[frame.f_lasti] == _CONTAINS_OP:
        raise SymbolicValueError("`not in`" if frame.f_code.co_code[frame.f_lasti + 1] & 1 else "`in`",
                                 "compare", self)
    return object.__hash__(self)


def _refuse(value: Symbolic, operation: str, kind: str = "compute") -> NoReturn:
    if kind in ("truth", "compare"):
        membership = _membership_test()
        if membership is not None:
            # Name the value the user tested, not the `v == 1` Python built from it on the way.
            operation, kind = membership, "compare"
            value = value.subject if isinstance(value, Cond) else value
    raise SymbolicValueError(operation, kind, value)


def _binary(symbol: str) -> Any:
    def operator(self: Symbolic, other: Any) -> NoReturn:
        _refuse(self, f"`{symbol}`")

    return operator


def _compare(symbol: str) -> Any:
    def operator(self: Symbolic, other: Any) -> NoReturn:
        _refuse(self, f"`{symbol}`", "compare")

    return operator


def _unary(operation: str, kind: str = "compute") -> Any:
    def operator(self: Symbolic, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self, operation, kind)

    return operator


class Symbolic:
    """Base of the symbolic values: every operation that needs a real value refuses with a clear error.

    Symbolic values stay hashable by identity (pipecast and users may keep them in sets and dict keys),
    but ``==`` refuses like ``<``: it would otherwise answer ``False`` silently and take a branch; for the
    same reason ``in`` on a set or dict (found by hash) refuses (:func:`_identity_hash`).
    """

    __slots__ = ()

    def _describe(self) -> str:
        raise NotImplementedError

    def _short_name(self) -> str:
        raise NotImplementedError

    __hash__ = _identity_hash
    __bool__ = _unary("truth test", "truth")
    __iter__ = _unary("iteration", "iterate")
    __contains__ = _unary("`in`", "compare")
    __len__ = _unary("`len()`")
    __format__ = _unary("an f-string or format()")
    __str__ = _unary("`str()`")
    __int__ = _unary("`int()`")
    __float__ = _unary("`float()`")
    __complex__ = _unary("`complex()`")
    __index__ = _unary("`range()` or indexing with it")
    __round__ = _unary("`round()`")
    __neg__ = _unary("`-`")
    __pos__ = _unary("`+`")
    __abs__ = _unary("`abs()`")
    __invert__ = _unary("`~`")
    __call__ = _unary("calling it")
    __setitem__ = _unary("item assignment `[...] =`")
    __eq__ = _compare("==")
    __ne__ = _compare("!=")
    __lt__ = _compare("<")
    __le__ = _compare("<=")
    __gt__ = _compare(">")
    __ge__ = _compare(">=")
    __add__ = __radd__ = _binary("+")
    __sub__ = __rsub__ = _binary("-")
    __mul__ = __rmul__ = _binary("*")
    __matmul__ = __rmatmul__ = _binary("@")
    __truediv__ = __rtruediv__ = _binary("/")
    __floordiv__ = __rfloordiv__ = _binary("//")
    __mod__ = __rmod__ = _binary("%")
    __pow__ = __rpow__ = _binary("**")
    __lshift__ = __rlshift__ = _binary("<<")
    __rshift__ = __rrshift__ = _binary(">>")
    __and__ = __rand__ = _binary("&")
    __or__ = __ror__ = _binary("|")
    __xor__ = __rxor__ = _binary("^")

    def __getattr__(self, name: str) -> Any:
        # Protocols (copy, pickle, IPython...) probe underscored names and expect AttributeError; a slot read
        # before it is set lands here too.
        if name.startswith("_") or any(name in getattr(c, "__slots__", ()) for c in type(self).__mro__):
            raise AttributeError(name)
        _refuse(self, f"`.{name}`")

    def __repr__(self) -> str:
        return f"<{self._describe()}>"


def _condition(op: ir.Comparison) -> Any:
    def operator(self: Symbolic, other: Any) -> Cond:
        return Cond(ir.Condition(op=op, operands=(operand_of(self), operand_of(other))), self)

    return operator


class Comparable(Symbolic):
    """A value a condition may read: comparing it builds a :class:`Cond` for ``pipecast.If``."""

    __slots__ = ()
    __hash__ = _identity_hash
    __eq__ = _condition(ir.Comparison.EQ)
    __ne__ = _condition(ir.Comparison.NE)
    __lt__ = _condition(ir.Comparison.LT)
    __le__ = _condition(ir.Comparison.LE)
    __gt__ = _condition(ir.Comparison.GT)
    __ge__ = _condition(ir.Comparison.GE)


class Cond(Symbolic):
    """A condition on parameters and step outputs, for ``with pipecast.If(cond):``.

    Combine with ``&`` (and), ``|`` (or) and ``~`` (not): Python's ``and``/``or``/``not`` need a value now.
    """

    __slots__ = ("condition", "subject")

    def __init__(self, condition: ir.Condition, subject: Symbolic) -> None:
        self.condition = condition
        self.subject = subject  # the value named in messages

    def _describe(self) -> str:
        return f"the condition `{self.condition}`"

    def _short_name(self) -> str:
        return self.subject._short_name()

    def __and__(self, other: Any) -> Cond:
        return Cond(ir.Condition(op=ir.Comparison.AND, terms=(self.condition, _cond_of(other, "&"))), self.subject)

    def __or__(self, other: Any) -> Cond:
        return Cond(ir.Condition(op=ir.Comparison.OR, terms=(self.condition, _cond_of(other, "|"))), self.subject)

    def __invert__(self) -> Cond:
        return Cond(ir.Condition(op=ir.Comparison.NOT, terms=(self.condition,)), self.subject)


def _cond_of(value: Any, symbol: str) -> ir.Condition:
    if isinstance(value, Cond):
        return value.condition
    raise PipelineDefinitionError(
        f"`{symbol}` combines two conditions (comparisons such as `x > 1`), got {type(value).__name__}; "
        "compare the value first, e.g. (score > 0.9) & (loss < 1)")


def operand_of(value: Any) -> ir.Operand:
    """The IR operand for a value a condition or a map reads; raise PipelineDefinitionError if it cannot be one."""
    if isinstance(value, ParamRef):
        return ir.Operand(kind=ir.BindingKind.PARAMETER, parameter=value.name)
    if isinstance(value, StepCall) and len(value.node.spec.outputs) == 1:
        value = OutputRef(value.node, value.node.spec.outputs[0].name)
    if isinstance(value, OutputRef):
        return ir.Operand(kind=ir.BindingKind.OUTPUT, step=value.node.name, output=value.output)
    if isinstance(value, ItemRef):
        return ir.Operand(kind=ir.BindingKind.ITEM, group=value.group, index=value.index)
    if isinstance(value, Symbolic):
        raise PipelineDefinitionError(f"{value._describe()} cannot be compared or iterated by the engine; "
                                      "pass one parameter, step output or map item")
    try:
        return ir.Operand(kind=ir.BindingKind.CONSTANT, value_json=ir.canonical_json(value))
    except (TypeError, ValueError):
        raise PipelineDefinitionError(
            f"{type(value).__name__} value {value!r:.60} cannot be compared by the engine: constants in conditions "
            "and lists to map over must be JSON values (str, int, float, bool, None, lists and dicts of those)"
        ) from None


def is_in(value: Any, options: Any) -> Cond:
    """The condition "``value`` is one of ``options``" (Python's ``in`` needs a value now; this is for ``If``).

    Example:
        >>> from pipecast.compiler.symbolic import ParamRef
        >>> str(is_in(ParamRef("env"), ["prod", "staging"]).condition)
        'env in ["prod","staging"]'
    """
    subject = value if isinstance(value, Symbolic) else options
    if not isinstance(subject, Symbolic):
        raise PipelineDefinitionError("is_in() compares a parameter, step output or map item; both sides are "
                                      "plain values here: use Python's `in`")
    return Cond(ir.Condition(op=ir.Comparison.IN, operands=(operand_of(value), operand_of(options))), subject)


def not_in(value: Any, options: Any) -> Cond:
    """The condition "``value`` is none of ``options``"."""
    found = is_in(value, options)
    return Cond(ir.Condition(op=ir.Comparison.NOT_IN, operands=found.condition.operands), found.subject)


class ParamRef(Comparable):
    """A pipeline parameter during tracing."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _describe(self) -> str:
        return f"pipeline parameter {self.name!r}"

    def _short_name(self) -> str:
        return repr(self.name)

    __getitem__ = _unary("indexing `[...]`")


class OutputRef(Comparable):
    """One output of a traced step call."""

    __slots__ = ("node", "output")

    def __init__(self, node: _Node, output: str) -> None:
        self.node = node
        self.output = output

    def _describe(self) -> str:
        return f"output {self.output!r} of step {self.node.name!r}"

    def _short_name(self) -> str:
        return f"the output of step {self.node.name!r}"

    __getitem__ = _unary("indexing `[...]`")

    def after(self, *others: Any) -> OutputRef:
        """Run this output's step after ``others`` (steps or outputs), with no data passed."""
        self.node.add_after(others)
        return self


class StepCall(Comparable):
    """The result of calling a step inside a pipeline.

    With one output it stands for that output; with several it unpacks into them
    (``a, b = split(x)``) and indexes by position or name (``res["train"]``).
    """

    __slots__ = ("node",)

    def __init__(self, node: _Node) -> None:
        self.node = node

    def _describe(self) -> str:
        return f"the result of step {self.node.name!r}"

    def _short_name(self) -> str:
        return f"the result of step {self.node.name!r}"

    @property
    def name(self) -> str:
        """The node's unique name in the pipeline."""
        return self.node.name

    @property
    def outputs(self) -> dict[str, OutputRef]:
        """A reference to each of the step's outputs, by output name."""
        return {o.name: OutputRef(self.node, o.name) for o in self.node.spec.outputs}

    def __iter__(self) -> Any:
        outputs = self.node.spec.outputs
        if len(outputs) < 2:
            raise SymbolicValueError(
                "iteration", "iterate", self,
                detail=f"step {self.node.name!r} has {len(outputs)} output(s), so its result cannot be unpacked "
                       "or iterated; annotate the step with tuple[...] or pass outputs=(...) to @step to give "
                       "it several outputs",
            )
        return iter([OutputRef(self.node, o.name) for o in outputs])

    def __getitem__(self, key: int | str) -> OutputRef:
        names = [o.name for o in self.node.spec.outputs]
        if not isinstance(key, (int, str)):
            raise PipelineDefinitionError(
                f"step {self.node.name!r} outputs are chosen by a name or position written in the code "
                f"(res['train'], res[0]), not by {key!r}"
            )
        if isinstance(key, int) and not isinstance(key, bool):
            if not -len(names) <= key < len(names):
                raise PipelineDefinitionError(f"step {self.node.name!r} has no output number {key}; "
                                              f"it has {len(names)}: {names!r}")
            return OutputRef(self.node, names[key])
        if key not in names:
            raise PipelineDefinitionError(f"step {self.node.name!r} has no output {key!r}; it has {names!r}")
        return OutputRef(self.node, key)

    def after(self, *others: Any) -> StepCall:
        """Run this step after ``others`` (steps or outputs), with no data passed."""
        self.node.add_after(others)
        return self


class ItemRef(Comparable):
    """The current item of a map group (or one list's item, in a zip or product), while its body is traced."""

    __slots__ = ("group", "index", "width")

    def __init__(self, group: str, index: int | None = None, width: int = 1) -> None:
        self.group = group
        self.index = index
        self.width = width  # how many lists a zip/product has: the item unpacks into that many

    def _describe(self) -> str:
        return f"the item of map {self.group!r}" + ("" if self.index is None else f" (list {self.index})")

    def _short_name(self) -> str:
        return "the map item"

    def __iter__(self) -> Any:
        if self.index is None and self.width > 1:
            return iter([ItemRef(self.group, i) for i in range(self.width)])
        raise SymbolicValueError(
            "iteration", "iterate", self,
            detail="a map item is one value while the pipeline is recorded; map over it with a nested "
                   "`with pipecast.ParallelFor(item) as inner:`, or iterate it inside a step")

    __getitem__ = _unary("indexing `[...]`")


class StatusRef(Symbolic):
    """The final status of an exit group or of the run, for an exit handler or hook step's input."""

    __slots__ = ("group",)

    def __init__(self, group: str | None) -> None:
        self.group = group

    def _describe(self) -> str:
        return "the run's final status" if self.group is None else f"the final status of group {self.group!r}"

    def _short_name(self) -> str:
        return "the status"


def is_symbolic(value: Any) -> bool:
    """Whether ``value`` is a tracing placeholder."""
    return isinstance(value, Symbolic)


class OneOfRef(Symbolic):
    """The output of whichever branch of an if/elif/else ran (``pipecast.OneOf(a, b)``)."""

    __slots__ = ("outputs",)

    def __init__(self, outputs: tuple[OutputRef, ...]) -> None:
        self.outputs = outputs

    def _describe(self) -> str:
        return "one of " + ", ".join(o._describe() for o in self.outputs)

    def _short_name(self) -> str:
        return "the OneOf value"
