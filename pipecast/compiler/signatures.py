"""Reading a step function's inputs and outputs from its signature and annotations."""

from __future__ import annotations

import hashlib
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pipecast.compiler.ir import InputSpec, OutputSpec, TypeName, canonical_json
from pipecast.typed_artifacts import output_argument, schema_of

_SIMPLE = {str: TypeName.STR, int: TypeName.INT, float: TypeName.FLOAT, bool: TypeName.BOOL,
           dict: TypeName.DICT, list: TypeName.LIST}
_ORIGINS = {dict: TypeName.DICT, list: TypeName.LIST, Mapping: TypeName.DICT, Sequence: TypeName.LIST}


def type_name(annotation: Any) -> TypeName:
    """Map a Python annotation to the IR's value type (``ANY`` for objects passed only as artifacts)."""
    if annotation is inspect.Parameter.empty or annotation is None:
        return TypeName.ANY
    if typing.get_origin(annotation) is Annotated:
        return type_name(typing.get_args(annotation)[0])
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    origin = typing.get_origin(annotation)
    if origin in _ORIGINS:
        return _ORIGINS[origin]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return type_name(args[0]) if len(args) == 1 else TypeName.ANY
    return TypeName.ANY


def type_label(annotation: Any) -> str:
    """The annotation as a short string, e.g. ``"dict[str, int]"`` or ``"mypkg.Model"``."""
    if annotation is inspect.Parameter.empty:
        return ""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and not typing.get_args(annotation):
        module = annotation.__module__
        return annotation.__qualname__ if module == "builtins" else f"{module}.{annotation.__qualname__}"
    return str(annotation).replace("typing.", "")


class SignatureError(Exception):
    """A step function's signature cannot be used (``*args``, bad output names)."""


def argument_outputs(fn: Callable[..., Any], hints: Mapping[str, Any]) -> dict[str, str]:
    """The parameters that are outputs (``OutputPath``, ``Output[Model]``), with their artifact type names."""
    found = {}
    for param in inspect.signature(fn).parameters.values():
        kind = output_argument(hints.get(param.name, param.annotation))
        if kind is False:
            continue
        if param.default is not param.empty:
            raise SignatureError(f"step function {fn.__qualname__!r}: output parameter {param.name!r} has a "
                                 "default; the runtime gives it a path to write, so remove the default")
        found[param.name] = "Artifact" if isinstance(kind, bool) else kind.schema
    return found


def read_inputs(fn: Callable[..., Any], hints: Mapping[str, Any]) -> tuple[InputSpec, ...]:
    """Return the inputs a step function declares, in signature order (output parameters are not inputs)."""
    specs = []
    outputs = argument_outputs(fn, hints)
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise SignatureError(
                f"step function {fn.__qualname__!r} takes {param}; steps need named inputs "
                "so every engine can pass them"
            )
        if param.name in outputs:
            continue
        annotation = hints.get(param.name, param.annotation)
        default_json = None
        if param.default is not param.empty:
            try:
                default_json = canonical_json(param.default)
            except (TypeError, ValueError):
                default_json = None
        specs.append(
            InputSpec(
                name=param.name,
                type=type_name(annotation),
                type_label=type_label(annotation),
                required=param.default is param.empty,
                default_json=default_json,
            )
        )
    return tuple(specs)


def read_outputs(
    fn: Callable[..., Any], hints: Mapping[str, Any], names: Sequence[str] | None
) -> tuple[OutputSpec, ...]:
    """Return a step's outputs from its return annotation and the ``outputs=`` option.

    ``-> None`` means no output; ``-> tuple[A, B]`` means two outputs, named ``output_0``/``output_1``
    unless each element is ``Annotated[A, "name"]`` or ``outputs=("a", "b")`` names them. Output parameters
    (``model: OutputPath``, ``model: Output[Model]``) come after them, named after the parameter; with some, a
    step without a return annotation returns nothing.
    """
    arguments = argument_outputs(fn, hints)
    returned = _returned_outputs(fn, hints, names, bool(arguments))
    specs = (*returned, *(OutputSpec(name=name, type=TypeName.ANY, type_label=type_label(hints.get(name, "")),
                                     artifact=schema) for name, schema in arguments.items()))
    if len({s.name for s in specs}) != len(specs):
        raise SignatureError(f"step {fn.__qualname__!r} has duplicate output names {[s.name for s in specs]!r}")
    return specs


def _returned_outputs(fn: Callable[..., Any], hints: Mapping[str, Any], names: Sequence[str] | None,
                      has_arguments: bool) -> tuple[OutputSpec, ...]:
    annotation = hints.get("return", inspect.Parameter.empty)
    if annotation is inspect.Parameter.empty and has_arguments and not names:
        annotation = None
    if annotation is None or annotation is type(None):
        if names:
            raise SignatureError(f"step {fn.__qualname__!r} returns None but names outputs {list(names)!r}")
        return ()
    elements = _tuple_elements(annotation)
    if elements is None:
        if names is not None and len(names) > 1:
            elements = [inspect.Parameter.empty] * len(names)
        else:
            label = (names or ["output"])[0]
            return (OutputSpec(name=label, type=type_name(annotation), type_label=type_label(annotation),
                               artifact=schema_of(annotation)),)
    if names is not None and len(names) != len(elements):
        raise SignatureError(
            f"step {fn.__qualname__!r} returns {len(elements)} values but outputs= names {len(names)}"
        )
    specs = []
    for index, element in enumerate(elements):
        name = names[index] if names is not None else _annotated_name(element) or f"output_{index}"
        specs.append(OutputSpec(name=name, type=type_name(element), type_label=type_label(element),
                                artifact=schema_of(element)))
    return tuple(specs)


def _tuple_elements(annotation: Any) -> list[Any] | None:
    if typing.get_origin(annotation) is Annotated:
        return None
    if typing.get_origin(annotation) is not tuple:
        return None
    args = list(typing.get_args(annotation))
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        return None
    return args


def _annotated_name(annotation: Any) -> str | None:
    if typing.get_origin(annotation) is Annotated:
        for extra in typing.get_args(annotation)[1:]:
            if isinstance(extra, str):
                return extra
    return None


def resolve_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Return the function's type hints with ``Annotated`` kept; raw annotations if they don't resolve."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return dict(getattr(fn, "__annotations__", {}))


_SOURCE_HASHES: dict[Any, str] = {}


def source_hash(fn: Callable[..., Any]) -> str:
    """A sha256 of the function's source (its bytecode when the source is unavailable), cached."""
    code = getattr(fn, "__code__", None)
    key = code if code is not None else fn
    cached = _SOURCE_HASHES.get(key)
    if cached is None:
        try:
            text = inspect.getsource(fn).encode()
        except (OSError, TypeError):
            text = code.co_code if code is not None else repr(fn).encode()
        cached = _SOURCE_HASHES[key] = hashlib.sha256(text).hexdigest()[:16]
    return cached
