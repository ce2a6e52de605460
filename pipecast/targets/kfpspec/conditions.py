"""Conditions on the KFP IR: a branch's ``triggerPolicy.condition``, a CEL expression, as kfp 2.17 writes one.

The engine evaluates it on the condition task's resolved inputs (KFP: ``backend/src/v2/driver/dag.go`` calls
``expression.Condition`` on the task's ExecutorInput, ``backend/src/v2/expression/expression.go``; Vertex AI
documents the same CEL over ``inputs.parameter_values``). kfp's own rules are followed
(``kfp/compiler/pipeline_spec_builder.py``, ``_resolve_condition_operands``): an operand is
``inputs.parameter_values['<channel>']``, an integer channel is read through ``int(...)`` (the engine holds every
number as a double), an integer compared with a double becomes ``double(...)``, and a branch of an
if/elif/else chain is ``!(earlier) && ... && own``. Beyond kfp: ``&&``/``||``/``!`` for ``& | ~`` and CEL's
``in`` for ``is_in``/``not_in`` over a constant list. String constants are CEL string literals with every quote,
backslash and control character escaped (kfp writes them between quotes as they are), so a value never changes
the expression's structure. Text may not be compared with numbers or booleans (CEL has no such comparison).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pipecast.compiler import ir

CHANNEL = "pipelinechannel--"
_OPS = {ir.Comparison.EQ: "==", ir.Comparison.NE: "!=", ir.Comparison.LT: "<", ir.Comparison.LE: "<=",
        ir.Comparison.GT: ">", ir.Comparison.GE: ">="}
_SCALAR = {str: "STRING", bool: "BOOLEAN", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}


class Unlowerable(Exception):
    """A condition the KFP IR cannot express (the message says why)."""


def cel_string(text: str) -> str:
    """A CEL string literal holding ``text`` exactly."""
    out = []
    for char in text:
        if char in "\\'\"":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def _literal(value: Any, kind: str) -> str:
    if kind == "STRING":
        return cel_string(value)
    if kind == "BOOLEAN":
        return "true" if value else "false"
    if kind == "NUMBER_DOUBLE":
        if not math.isfinite(float(value)):
            raise Unlowerable(f"the constant {value!r} has no CEL literal")
        text = repr(float(value))
        return text if any(c in text for c in ".e") else text + ".0"
    return str(int(value))


def constant_kind(value: Any) -> str:
    """The parameterType of a scalar constant; Unlowerable for anything else."""
    kind = _SCALAR.get(type(value))
    if kind is None:
        raise Unlowerable(f"the constant {value!r:.60} is not a str, bool, int or float")
    return kind


class CelWriter:
    """Writes conditions as CEL; ``channel`` names (and registers) the input an operand is read from.

    Args:
        channel: ``(operand) -> (input name, parameterType)`` for a parameter or a step output operand.
    """

    def __init__(self, channel: Callable[[ir.Operand], tuple[str, str]]) -> None:
        self.channel = channel

    def chain(self, branches: list[ir.Group], current: ir.Group) -> str:
        """The trigger of ``current``: every earlier branch's condition false, its own true (kfp's form)."""
        terms: list[str] = []
        for group in branches:
            if group.name == current.name:
                if group.condition is not None:
                    terms.append(self.condition(group.condition, nested=len(terms) > 0))
                break
            if group.condition is not None:
                terms.append(f"!({self.condition(group.condition)})")
        return " && ".join(terms)

    def condition(self, cond: ir.Condition, nested: bool = False) -> str:
        """One condition tree as CEL (in parentheses when ``nested`` and it is an ``||``)."""
        if cond.op is ir.Comparison.NOT:
            return f"!({self.condition(cond.terms[0])})"
        if cond.op in (ir.Comparison.AND, ir.Comparison.OR):
            joiner = " && " if cond.op is ir.Comparison.AND else " || "
            text = joiner.join(self.condition(term, nested=True) for term in cond.terms)
            return f"({text})" if nested and cond.op is ir.Comparison.OR else text
        left, right = cond.operands
        if cond.op in (ir.Comparison.IN, ir.Comparison.NOT_IN):
            text = self._membership(left, right)
            return f"!({text})" if cond.op is ir.Comparison.NOT_IN else text
        return self._compare(left, right, _OPS[cond.op])

    def _operand(self, operand: ir.Operand) -> tuple[str, str, bool]:
        """``(expression, parameterType, is_channel)``."""
        if operand.kind in (ir.BindingKind.PARAMETER, ir.BindingKind.OUTPUT):
            name, kind = self.channel(operand)
            if kind not in ("STRING", "BOOLEAN", "NUMBER_INTEGER", "NUMBER_DOUBLE"):
                raise Unlowerable(f"{_describe(operand)} is a {kind} value; KFP compares only str, bool, int and "
                                  "float values (kfp: 'Conditional requires primitive parameter values')")
            text = f"inputs.parameter_values[{cel_string(name)}]"
            return (f"int({text})" if kind == "NUMBER_INTEGER" else text), kind, True
        if operand.kind is ir.BindingKind.CONSTANT:
            kind = constant_kind(operand.value)
            return _literal(operand.value, kind), kind, False
        # kfp 2.17 types a loop item STRING and compiles `dsl.If(item > 3)` as `...['…-loop-item'] > '3'`, a text
        # comparison ('10' > '3' is false): a condition on the item itself would be silently wrong on KFP.
        raise Unlowerable(f"{_describe(operand)} cannot be read by a KFP trigger policy (KFP types a loop item as a "
                          "string, so a comparison on it would compare text)")

    def _compare(self, left: ir.Operand, right: ir.Operand, op: str) -> str:
        (ltext, lkind, _), (rtext, rkind, _) = self._operand(left), self._operand(right)
        kinds = {lkind, rkind}
        if len(kinds) == 2:
            if kinds != {"NUMBER_INTEGER", "NUMBER_DOUBLE"}:
                raise Unlowerable(f"it compares a {lkind} with a {rkind}; CEL compares only values of one type")
            ltext = f"double({ltext})" if lkind == "NUMBER_INTEGER" else ltext
            rtext = f"double({rtext})" if rkind == "NUMBER_INTEGER" else rtext
        return f"{ltext} {op} {rtext}"

    def _membership(self, left: ir.Operand, right: ir.Operand) -> str:
        text, kind, _ = self._operand(left)
        values = right.value if right.kind is ir.BindingKind.CONSTANT else None
        if not isinstance(values, list):
            raise Unlowerable("membership on KFP needs a constant list on the right (is_in(x, [...]))")
        literals = []
        for value in values:
            vkind = constant_kind(value)
            if vkind != kind and {vkind, kind} != {"NUMBER_INTEGER", "NUMBER_DOUBLE"}:
                raise Unlowerable(f"it looks for a {kind} value in a list holding {value!r:.40} ({vkind})")
            literals.append(_literal(value, "NUMBER_DOUBLE" if kind == "NUMBER_DOUBLE" else vkind))
        if kind == "NUMBER_INTEGER" and any(constant_kind(v) == "NUMBER_DOUBLE" for v in values):
            text = f"double({text})"
            literals = [_literal(v, "NUMBER_DOUBLE") for v in values]
        return f"{text} in [{', '.join(literals)}]"


def _describe(operand: ir.Operand) -> str:
    if operand.kind is ir.BindingKind.PARAMETER:
        return f"parameter {operand.parameter!r}"
    if operand.kind is ir.BindingKind.OUTPUT:
        return f"output {operand.output!r} of step {operand.step!r}"
    if operand.kind is ir.BindingKind.ITEM:
        return f"the item of map {operand.group!r}"
    return f"the constant {operand.value_json}"
