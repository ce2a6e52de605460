"""Typed target settings: one frozen dataclass per target, parsed and checked once before ``emit``.

A target declares its settings as fields::

    @dataclass(frozen=True, kw_only=True)
    class ArgoSettings(ContainerSettings, PodSettings):
        retry_policy: Literal["Always", "OnFailure"] = setting("Always", "retryStrategy.retryPolicy")
        embed: bool = setting(False, "one self-contained Workflow", step=False)

The framework reads the layers in order — field defaults, the pipeline's ``settings=``, the command line's
``--set``, then a step's own ``settings=`` for that step — converts each value to the field's type and reports
every unknown key (with "did you mean") and every wrong value at once, at the ``file:line`` it was written.
``pipecast targets --settings T`` and the docs' settings tables are generated from the same fields.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Literal, NewType, TypeVar, get_args, get_origin

from pipecast.compiler.units import parse_duration
from pipecast.errors import Problem

Duration = NewType("Duration", float)
"""Seconds, written as ``"90s"``, ``"1h30m"``, ``"2d"`` or a number of seconds."""

Json = NewType("Json", object)
"""Any JSON value, passed through unchecked (escape hatches whose shape the engine defines)."""

Text = NewType("Text", str)
"""Text that must be written as text: a number is refused, since ``--set python_version=3.10`` reads as 3.1."""

S = TypeVar("S", bound="Settings")

_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


class SettingValueError(ValueError):
    """A value that does not fit its setting; the message says what was expected."""


def setting(default: Any, help: str, *, step: bool = True, check: Callable[[Any], str | None] | None = None,
            example: str | None = None) -> Any:
    """Declare a setting field.

    Args:
        default: The value when nobody sets it (lists and dicts are copied per instance).
        help: One line for ``pipecast targets --settings`` and the docs.
        step: Whether a step may set its own value (``@step(settings={...})``); pipeline-only otherwise.
        check: Returns a problem message for a converted value the type alone cannot reject, else None.
        example: A ``--set`` example shown in the fix of an error (default: derived from the type).
    """
    metadata = {"help": help, "step": step, "check": check, "example": example}
    if isinstance(default, (list, set)):
        return field(default=tuple(default), metadata=metadata)
    if isinstance(default, dict):
        copy = dict(default)
        return field(default_factory=lambda: types.MappingProxyType(copy), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One setting as the framework sees it."""

    name: str
    type: Any
    default: Any
    help: str
    step: bool
    check: Callable[[Any], str | None] | None
    example: str | None

    @property
    def type_label(self) -> str:
        """The setting's type as the settings tables show it."""
        return type_label(self.type)


@dataclass(frozen=True, slots=True)
class Layer:
    """One source of setting values, lowest precedence first: pipeline ``settings=``, ``--set``, a step's."""

    source: str  # "pipeline settings", "--set", "step settings"
    values: Mapping[str, Any]
    location: str | None = None
    step: str | None = None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Base of every target's settings class (a frozen, keyword-only dataclass)."""

    renamed: ClassVar[Mapping[str, str]] = {}  # old key -> new key, named in the "unknown setting" error

    @classmethod
    def spec(cls) -> dict[str, FieldSpec]:
        """Every setting of this class by name, in declaration order."""
        found = _SPECS.get(cls)
        if found is None:
            found = _SPECS[cls] = _read_spec(cls)
        return found

    @classmethod
    def parse(cls: type[S], layers: Sequence[Layer], *, target: str,
              report: Callable[[Problem], None]) -> S:
        """Apply ``layers`` over the defaults; every unknown key or bad value goes to ``report``."""
        spec = cls.spec()
        values: dict[str, Any] = {}
        for layer in layers:
            for key, raw in layer.values.items():
                problem = _problem_for(cls, spec, key, raw, layer, values, target)
                if problem is not None:
                    message, fix = problem
                    report(Problem(message, step=layer.step, location=layer.location, fix=fix, target=target))
        return cls(**values)

    def replace_layer(self: S, layer: Layer, *, target: str, report: Callable[[Problem], None]) -> S:
        """A copy with one more layer applied (a step's own settings over the pipeline's)."""
        spec = self.spec()
        values = {name: getattr(self, name) for name in spec}
        for key, raw in layer.values.items():
            problem = _problem_for(type(self), spec, key, raw, layer, values, target)
            if problem is not None:
                report(Problem(problem[0], step=layer.step, location=layer.location, fix=problem[1], target=target))
        return type(self)(**values)


def _problem_for(cls: type[Settings], spec: Mapping[str, FieldSpec], key: str, raw: Any, layer: Layer,
                 values: dict[str, Any], target: str) -> tuple[str, str] | None:
    where = f"in {layer.source}"
    known = spec.get(key)
    if known is None:
        new = cls.renamed.get(key)
        if new is not None:
            return (f"setting {key!r} ({where}) is now called {new!r}", f"rename it to {new!r}")
        close = difflib.get_close_matches(key, list(spec), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        fix = f"known settings of {target!r}: {', '.join(sorted(spec))}" if spec else \
            f"target {target!r} takes no settings; remove it"
        return (f"unknown setting {key!r} for target {target!r} {where}{hint}", fix)
    if layer.step is not None and not known.step:
        return (f"setting {key!r} applies to the whole pipeline and cannot be set for one step",
                f"set it in @pipeline(settings=...) or with --set {key}=...")
    try:
        value = convert(known.type, raw)
        message = known.check(value) if known.check and value is not None else None
    except SettingValueError as err:
        message = str(err)
    if message:
        return (f"setting {key!r} ({where}): {message}, got {_short(raw)}", f"e.g. --set {example_of(known)}")
    values[key] = value
    return None


_SPECS: dict[type, dict[str, FieldSpec]] = {}


def _read_spec(cls: type[Settings]) -> dict[str, FieldSpec]:
    hints = typing.get_type_hints(cls)
    result = {}
    for item in fields(cls):
        default = _default_of(item)
        meta = item.metadata
        result[item.name] = FieldSpec(item.name, hints[item.name], default, meta.get("help", ""),
                                      meta.get("step", True), meta.get("check"), meta.get("example"))
    return result


def _default_of(item: Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    raise TypeError(f"setting {item.name!r} has no default")


# -- conversion -----------------------------------------------------------------------------------------


def convert(kind: Any, raw: Any) -> Any:
    """``raw`` (JSON from settings or ``--set``) as a value of type ``kind``; SettingValueError if it is not."""
    origin = get_origin(kind)
    if kind is Any or kind is Json:
        return raw
    if origin in (typing.Union, types.UnionType):
        members = get_args(kind)
        if raw is None and type(None) in members:
            return None
        errors = []
        for member in (m for m in members if m is not type(None)):
            try:
                return convert(member, raw)
            except SettingValueError as err:
                errors.append(str(err))
        raise SettingValueError(" or ".join(dict.fromkeys(errors)))
    if origin is Literal:
        choices = get_args(kind)
        if (raw in choices and not isinstance(raw, bool)) or (isinstance(raw, bool) and raw in choices):
            return raw
        raise SettingValueError(f"must be one of {list(choices)!r}")
    if kind is Duration:
        seconds = parse_duration(raw) if isinstance(raw, (str, int, float)) else None
        if seconds is None:
            raise SettingValueError("must be a duration such as '90s', '30m', '6h' or a number of seconds")
        return Duration(seconds)
    if kind is Text:
        if isinstance(raw, str) and raw:
            return Text(raw)
        raise SettingValueError("must be text; quote it as JSON text (unquoted, 3.10 is the number 3.1)")
    if kind is bool:
        return _bool(raw)
    if kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw)
        raise SettingValueError("must be a whole number")
    if kind is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        raise SettingValueError("must be a number")
    if kind is str:
        if isinstance(raw, str) and raw:
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return json.dumps(raw)  # `--set tag=2024` arrives as a number
        raise SettingValueError("must be non-empty text")
    if origin is tuple:
        return _sequence(get_args(kind)[0], raw)
    if origin in (dict, Mapping) or origin is getattr(typing, "Mapping", None):
        return _mapping(get_args(kind)[1], raw)
    if is_dataclass(kind) and isinstance(kind, type):
        return _record(kind, raw)
    raise TypeError(f"settings cannot hold values of type {kind!r}")


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise SettingValueError("must be true or false")


def _sequence(item: Any, raw: Any) -> tuple[Any, ...]:
    if isinstance(raw, (str, dict)) or not isinstance(raw, (list, tuple)):
        raise SettingValueError(f"must be a list of {type_label(item)}")
    return tuple(convert(item, value) for value in raw)


def _mapping(item: Any, raw: Any) -> types.MappingProxyType[str, Any]:
    if not isinstance(raw, Mapping):
        raise SettingValueError(f"must be a mapping of text to {type_label(item)}")
    converted = {}
    for key, value in sorted(raw.items()):
        if not isinstance(key, str) or not key:
            raise SettingValueError("keys must be non-empty text")
        converted[key] = convert(item, value)
    return types.MappingProxyType(converted)


def _record(kind: type, raw: Any) -> Any:
    """A nested record (a toleration...) from a JSON object; keys may use the engine's camelCase aliases."""
    if not isinstance(raw, Mapping):
        raise SettingValueError(f"must be an object with keys {[f.name for f in fields(kind)]!r}")
    aliases: Mapping[str, str] = getattr(kind, "aliases", {})
    names = {f.name for f in fields(kind)}
    hints = typing.get_type_hints(kind)
    values = {}
    for key, value in raw.items():
        name = aliases.get(key, key)
        if name not in names:
            raise SettingValueError(f"has no key {key!r}; its keys are {sorted(names)!r}")
        values[name] = convert(hints[name], value)
    try:
        record = kind(**values)
    except TypeError as err:
        raise SettingValueError(f"is incomplete ({err})") from None
    problem = record.problem() if hasattr(record, "problem") else None
    if problem:
        raise SettingValueError(problem)
    return record


def type_label(kind: Any) -> str:
    """How a setting's type reads in help and errors."""
    origin = get_origin(kind)
    if kind is Duration:
        return "duration"
    if kind is Json or kind is Any:
        return "JSON"
    if kind is Text:
        return "text"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_label(m) for m in get_args(kind) if m is not type(None))
    if origin is Literal:
        return " | ".join(json.dumps(c) for c in get_args(kind))
    if origin is tuple:
        return f"list of {type_label(get_args(kind)[0])}"
    if origin in (dict, Mapping):
        return f"mapping of text to {type_label(get_args(kind)[1])}"
    if isinstance(kind, type):
        return {"str": "text", "int": "integer", "float": "number", "bool": "true/false"}.get(
            kind.__name__, kind.__name__.lower())
    return str(kind)


def example_of(spec: FieldSpec) -> str:
    """A ``key=value`` example for a fix line."""
    if spec.example:
        return spec.example
    kind = spec.type
    origin = get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(m for m in get_args(kind) if m is not type(None))
        origin = get_origin(kind)
    if origin is Literal:
        return f"{spec.name}={get_args(kind)[0]}"
    sample = {bool: "true", int: "3", float: "1.5", Duration: "30m", str: "VALUE", Text: "'\"VALUE\"'"}.get(kind)
    if sample is None:
        sample = "'[...]'" if origin is tuple else "'{...}'" if origin in (dict, Mapping) else "VALUE"
    return f"{spec.name}={sample}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- reading the layers of a pipeline -------------------------------------------------------------------


def pipeline_layers(pipeline: Any, target: str, overrides: Mapping[str, Any]) -> list[Layer]:
    """The pipeline's ``settings=`` for ``target``, then ``--set``."""
    own = {item.key: item.value for item in pipeline.settings if item.target == target}
    where = str(pipeline.location) if pipeline.location else None
    return [Layer("the pipeline's settings=", own, where), Layer("--set", dict(overrides))]


def step_layer(step: Any, target: str) -> Layer | None:
    """A step's own ``settings=`` for ``target``, if it has any."""
    own = {item.key: item.value for item in step.settings if item.target == target}
    if not own:
        return None
    return Layer("the step's settings=", own, str(step.location), step=step.name)


# -- documentation -------------------------------------------------------------------------------------


def settings_table(cls: type[Settings]) -> str:
    """The Markdown table of a settings class: setting, type, default, step-level, description."""
    rows = ["| setting | type | default | per step | what it does |", "|---|---|---|---|---|"]
    for spec in cls.spec().values():
        default = "—" if _empty(spec.default) else f"`{_doc_value(spec.default)}`"
        rows.append(f"| `{spec.name}` | {spec.type_label.replace('|', '&#124;')} | {default} | "
                    f"{'yes' if spec.step else 'no'} | {spec.help} |")
    return "\n".join(rows) + "\n"


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (tuple, Mapping)) and not value)


def _doc_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, types.MappingProxyType):
        return json.dumps(dict(value))
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return str(value) if not isinstance(value, float) or not value.is_integer() else str(int(value))


@dataclass(frozen=True, kw_only=True)
class ContainerSettings(Settings):
    """Settings of every target whose steps run in containers: the default image and the artifact root."""

    image: str | None = setting(None, "container image of steps that name none (it holds pipecast and the "
                                      "pipeline's code)", example="image=ghcr.io/acme/pipeline:1.0")
    artifact_root: str | None = setting(None, "artifact store URI every task can reach, when the pipeline sets "
                                              "none (s3://, gs://, az://)", step=False,
                                        example="artifact_root=s3://bucket/prefix")
