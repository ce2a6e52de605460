"""Gathers: a literal list or dict of several values passed as one step input (``total([a, b])``).

The compiler turns the literal into a template plus one hidden input per symbolic element (``values__0``,
``values__1``...), each bound as any input is (a parameter, an upstream output), so every target wires the elements
as it wires several inputs and only the runtime knows they form one value. The template is tagged JSON, so no
constant can be mistaken for a hole::

    {"list": [T, ...]}            a list (a tuple is passed as a list, as JSON holds it)
    {"dict": [[KEY, T], ...]}     a dict with str keys, in the order written
    {"input": NAME}               a hole: the value of hidden input NAME
    {"value": JSON}               a constant part

:func:`assemble` fills a template in; :func:`element_hint` is the annotation each element is read with.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pipecast.compiler import ir


def hidden_name(input_name: str, index: int) -> str:
    """The hidden input holding element ``index`` (depth first) of the literal given to ``input_name``."""
    return f"{input_name}__{index}"


def holes(template: Any) -> Iterator[str]:
    """The hidden input names of a template, depth first (the order they were numbered in)."""
    if "input" in template:
        yield template["input"]
    elif "list" in template:
        for item in template["list"]:
            yield from holes(item)
    elif "dict" in template:
        for _, item in template["dict"]:
            yield from holes(item)


def assemble(template: Any, values: Mapping[str, Any]) -> Any:
    """The value a template stands for, its holes filled from ``values``."""
    if "input" in template:
        return values[template["input"]]
    if "list" in template:
        return [assemble(item, values) for item in template["list"]]
    if "dict" in template:
        return {key: assemble(item, values) for key, item in template["dict"]}
    return template["value"]


def build(value: Any, input_name: str, is_symbolic: Callable[[Any], bool],
          bind: Callable[[str, Any], ir.Binding]) -> tuple[Any, list[ir.Binding]] | str:
    """The template of literal ``value`` and the bindings of its hidden inputs; or why it cannot be gathered.

    ``bind(name, element)`` binds one symbolic element to hidden input ``name`` as the tracer binds any input.
    """
    bindings: list[ir.Binding] = []

    def walk(part: Any) -> Any:
        if is_symbolic(part):
            name = hidden_name(input_name, len(bindings))
            bindings.append(bind(name, part))
            return {"input": name}
        if isinstance(part, (list, tuple)):
            return {"list": [walk(item) for item in part]}
        if isinstance(part, dict):
            keys = [key for key in part if not isinstance(key, str)]
            if keys:
                raise _NotGathered(f"its dict key {keys[0]!r} is not a str (JSON keys are strings)")
            return {"dict": [[key, walk(item)] for key, item in part.items()]}
        if isinstance(part, (set, frozenset)):
            raise _NotGathered("a set has no order; pass a list")
        try:
            ir.canonical_json(part)  # raises for what JSON cannot hold
        except (TypeError, ValueError) as err:
            raise _NotGathered(f"{type(part).__name__} {part!r} cannot be serialised to JSON") from err
        return {"value": part}

    try:
        template = walk(value)
    except _NotGathered as err:
        return str(err)
    return template, bindings


class _NotGathered(Exception):
    """A part of a literal that cannot be passed (a set, a non-str key, an object JSON cannot hold)."""


_PLAIN = {str: ir.TypeName.STR, int: ir.TypeName.INT, float: ir.TypeName.FLOAT, bool: ir.TypeName.BOOL,
          dict: ir.TypeName.DICT, list: ir.TypeName.LIST}


def element_hint(hint: Any) -> Any:
    """The annotation one element of an input annotated ``hint`` has: X of list[X], tuple[X, ...], dict[str, X]."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, typing.List) and args:  # noqa: UP006
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    if origin in (dict, typing.Dict) and len(args) == 2:  # noqa: UP006
        return args[1]
    return None


def element_type(label: str) -> ir.TypeName | None:
    """The IR type of one element of an input annotated ``label`` (``list[int]``: int); None when not plain."""
    text = label.replace(" ", "")
    for opening, closing in (("list[", "]"), ("List[", "]"), ("tuple[", ",...]"), ("Tuple[", ",...]")):
        if text.startswith(opening) and text.endswith(closing):
            return _named(text[len(opening):-len(closing)])
    for opening in ("dict[str,", "Dict[str,"):
        if text.startswith(opening) and text.endswith("]"):
            return _named(text[len(opening):-1])
    return None


def _named(text: str) -> ir.TypeName | None:
    return next((kind for cls, kind in _PLAIN.items() if cls.__name__ == text), None)


def element_hints(hints: Mapping[str, Any], gathers: Mapping[str, Any]) -> dict[str, Any]:
    """``hints`` (a function's input annotations) plus each hidden input's: one element of its literal's input."""
    merged = dict(hints)
    for name, template in gathers.items():
        for hole in holes(template):
            merged[hole] = element_hint(hints.get(name))
    return merged


def fill(kwargs: Mapping[str, Any], gathers: Mapping[str, Any]) -> dict[str, Any]:
    """The step's arguments: each literal assembled from its hidden inputs, which are not passed themselves."""
    if not gathers:
        return dict(kwargs)
    hidden = {hole for template in gathers.values() for hole in holes(template)}
    filled = {name: value for name, value in kwargs.items() if name not in hidden}
    for name, template in gathers.items():
        filled[name] = assemble(template, kwargs)
    return filled
