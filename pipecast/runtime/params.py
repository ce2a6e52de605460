"""Parameter and constant values as the runtime receives them: strings from engine command lines.

Engines substitute a parameter's value into a command argument as text, so the runtime is told the
type and decodes it (``int:3``, ``bool:True``, ``dict:{"a": 1}``). Constants travel as JSON,
percent-encoded so that no engine's template syntax (``{{ }}``, ``${{ }}``, ``$( )``) or quoting can
appear in an argument.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import ParameterError

# Characters that stay readable in encoded constants: none of them is syntax in any engine we target.
_SAFE = ",:[]@+=/"


def encode_constant(value_json: str) -> str:
    """Percent-encode a constant's canonical JSON for a command argument."""
    return urllib.parse.quote(value_json, safe=_SAFE)


def decode_constant(text: str) -> Any:
    """Inverse of :func:`encode_constant`."""
    return json.loads(urllib.parse.unquote(text))


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


def decode_parameter(kind: str, text: str) -> Any:
    """Turn a parameter substituted by an engine back into a typed value."""
    try:
        if kind == "str":
            return text
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(text)
        if kind in ("dict", "list", "json", "any"):
            value = json.loads(text)
            if kind == "dict" and not isinstance(value, dict):
                raise ValueError(text)
            if kind == "list" and not isinstance(value, list):
                raise ValueError(text)
            return value
    except ValueError:
        raise ParameterError(f"cannot read {text!r} as {kind}") from None
    raise ParameterError(f"unknown parameter type {kind!r}")


def parse_cli_value(kind: ir.TypeName, text: str) -> Any:
    """Read a ``-p name=value`` given on the command line as the parameter's type."""
    if kind in (ir.TypeName.DICT, ir.TypeName.LIST):
        return decode_parameter(kind.value, text)
    return decode_parameter(kind.value, text) if kind is not ir.TypeName.ANY else text


def resolve_parameters(pipeline: ir.Pipeline, given: Mapping[str, Any]) -> dict[str, Any]:
    """Merge given values over defaults; check names, required ones and types."""
    declared = {p.name: p for p in pipeline.parameters}
    problems = []
    unknown = sorted(set(given) - set(declared))
    if unknown:
        problems.append(f"unknown parameter(s) {unknown!r}; pipeline {pipeline.name!r} takes {sorted(declared)!r}")
    values: dict[str, Any] = {}
    for name, param in declared.items():
        if name in given:
            value = given[name]
            if isinstance(value, str) and param.type is not ir.TypeName.STR:
                try:
                    value = parse_cli_value(param.type, value)
                except ParameterError as err:
                    problems.append(f"parameter {name!r}: {err}")
                    continue
            if param.type is ir.TypeName.FLOAT and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not _is_type(param.type, value):
                problems.append(f"parameter {name!r} is {param.type.value}, got {type(value).__name__} {value!r}")
                continue
            values[name] = value
        elif param.required:
            problems.append(f"parameter {name!r} is required (it has no default)")
        else:
            values[name] = param.default
    if problems:
        raise ParameterError("; ".join(problems))
    return values


def _is_type(kind: ir.TypeName, value: Any) -> bool:
    checks: dict[ir.TypeName, type | tuple[type, ...]] = {
        ir.TypeName.STR: str, ir.TypeName.INT: int, ir.TypeName.FLOAT: (int, float),
        ir.TypeName.BOOL: bool, ir.TypeName.DICT: dict, ir.TypeName.LIST: list,
    }
    expected = checks.get(kind)
    if expected is None or value is None:
        return True
    if isinstance(value, bool) and kind is not ir.TypeName.BOOL:
        return False
    return isinstance(value, expected)


def render_parameter(kind: ir.TypeName, value: Any) -> str:
    """The text an engine would substitute for ``value`` (used by replays and the CLI)."""
    if kind is ir.TypeName.STR:
        return str(value)
    if kind is ir.TypeName.BOOL:
        return "true" if value else "false"
    return json.dumps(value, sort_keys=True) if kind in (ir.TypeName.DICT, ir.TypeName.LIST) else str(value)
