"""The intermediate representation: frozen, slotted dataclasses of plain values.

The IR is what every target lowers. It holds no live callables: a step's function is an import path
plus a hash of its source. Values of arbitrary JSON shape (constants, parameter defaults, settings) are
kept as canonical JSON text so the IR stays hashable and round-trips exactly through
:func:`to_json` / :func:`from_json`.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any

IR_VERSION = "3"
# Version 2 added control flow (groups, triggers, parallelism), version 3 the GATHER binding (a literal list or dict
# of several values as one input). A pipeline is written with the lowest version that holds what it uses (1, byte
# for byte what it was, when it uses neither), so an older pipecast still reads it; this one reads all three.
READABLE_VERSIONS = ("1", "2", "3")

def canonical_json(value: Any) -> str:
    """Serialise a JSON value canonically (sorted keys, no spaces, UTF-8 kept)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class BindingKind(str, Enum):
    """Where a step input's value comes from."""

    PARAMETER = "parameter"
    OUTPUT = "output"
    CONSTANT = "constant"
    INVALID = "invalid"  # a constant that cannot be serialised; kept so validation can report it
    ITEM = "item"  # the current item of an enclosing map group (``group``; ``index``: its place in a zip/product)
    COLLECTED = "collected"  # every item's value of an output made inside map group ``group``, in item order
    ONE_OF = "one_of"  # the output of whichever branch ran (``sources``)
    STATUS = "status"  # the final status of exit group ``group`` (None: the whole run), for handlers and hooks
    # A literal list or dict of several values (``total([a, b])``): ``value_json`` is its template (see
    # :mod:`pipecast.compiler.gather`), whose holes name the step's hidden element inputs; each element is bound by
    # its own ordinary binding (``values__0``...), so a target wires it as any other input and the runtime assembles.
    GATHER = "gather"


class GroupKind(str, Enum):
    """The kinds of control-flow group."""

    MAP = "map"  # run the group's steps once per item of one list (or of a zip/product of several)
    CONDITION = "condition"  # run the group's steps only when its condition holds (if/elif/else branches)
    EXIT = "exit"  # run handler steps after the group's steps, whatever their outcome


class Trigger(str, Enum):
    """When a step runs, given how its upstream steps ended."""

    ALL_SUCCESS = "all_success"  # the default: every upstream step succeeded (a skipped one skips it)
    ALWAYS = "always"  # once every upstream step has ended, whatever the outcome (exit handlers)
    ON_FAILURE = "on_failure"  # after every other step, only if one failed (pipeline hook)
    ON_SUCCESS = "on_success"  # after every other step, only if none failed (pipeline hook)


class Combine(str, Enum):
    """How a map over several lists pairs their items."""

    ZIP = "zip"  # item i of each list (the lists must have one length)
    PRODUCT = "product"  # every combination, the first list varying slowest


class Comparison(str, Enum):
    """The operators of a condition."""

    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"
    NOT_IN = "not in"
    AND = "and"
    OR = "or"
    NOT = "not"


class TypeName(str, Enum):
    """The value types pipecast knows how to pass between engines."""

    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DICT = "dict"
    LIST = "list"
    ANY = "any"  # a Python object (unannotated or a custom class): passed as an artifact only


PARAMETER_TYPES = frozenset(
    {TypeName.STR, TypeName.INT, TypeName.FLOAT, TypeName.BOOL, TypeName.DICT, TypeName.LIST}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where something was written: a path relative to its import root, and a line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionRef:
    """A step function by import path (``module:qualname``) and the hash of its source."""

    module: str
    qualname: str
    source_hash: str

    @property
    def path(self) -> str:
        """``module:qualname``, the form the runtime imports the function by."""
        return f"{self.module}:{self.qualname}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """Compute a step asks for. Quantities use Kubernetes notation (``cpu="500m"``, ``memory="4Gi"``)."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0
    gpu_type: str | None = None

    def __bool__(self) -> bool:
        return bool(self.cpu or self.memory or self.gpu or self.gpu_type)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retries of a failed step: ``attempts`` counts every try, the first included."""

    attempts: int = 1
    delay_seconds: float = 0.0
    backoff: float = 1.0
    max_delay_seconds: float | None = None

    @property
    def retries(self) -> int:
        """How many times a failed try is repeated (``attempts - 1``)."""
        return max(self.attempts - 1, 0)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt`` (2 is the first retry)."""
        delay = self.delay_seconds * self.backoff ** max(attempt - 2, 0)
        return min(delay, self.max_delay_seconds) if self.max_delay_seconds is not None else delay


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretRef:
    """A secret held by the engine, exposed to the step as an environment variable.

    Attributes:
        name: The secret's name in the engine's store (a Kubernetes secret, a GitHub secret, ...).
        key: The key inside the secret, for stores that hold several values per secret.
        env: The environment variable the step reads it from.
    """

    name: str
    key: str | None = None
    env: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One per-target setting, e.g. ``target="airflow", key="mode", value_json='"kubernetes"'``."""

    target: str
    key: str
    value_json: str

    @property
    def value(self) -> Any:
        """The setting's value, decoded from its JSON."""
        return json.loads(self.value_json)


@dataclass(frozen=True, slots=True, kw_only=True)
class Parameter:
    """A pipeline parameter, from the pipeline function's signature."""

    name: str
    type: TypeName
    default_json: str | None = None  # None: the parameter is required
    location: Location | None = None
    include_file: bool = False  # pipecast.IncludeFile: a file stored in the artifact store at run start

    @property
    def required(self) -> bool:
        """Whether a run must give this parameter (it has no default)."""
        return self.default_json is None

    @property
    def default(self) -> Any:
        """The default value, decoded from its JSON; None when there is none."""
        return None if self.default_json is None else json.loads(self.default_json)


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSpec:
    """An input a step function declares."""

    name: str
    type: TypeName
    type_label: str = ""  # the annotation as written, for messages and materializer choice
    required: bool = True
    default_json: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSpec:
    """An output a step function returns."""

    name: str
    type: TypeName
    type_label: str = ""
    # A typed artifact's type name ("Dataset", "Model", "Metrics", "Artifact") when the step's annotation names
    # one (pipecast.Dataset..., or an OutputPath/Output[...] argument); None for plain values (left out of JSON).
    artifact: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """The value bound to a step input: a parameter, an upstream output, or a constant."""

    input: str
    kind: BindingKind
    parameter: str | None = None
    step: str | None = None
    output: str | None = None
    value_json: str | None = None
    description: str | None = None  # for INVALID: what the value was
    group: str | None = None  # ITEM, COLLECTED, STATUS: the group it refers to
    index: int | None = None  # ITEM: which list of a zip/product (None: the whole item)
    sources: tuple[Source, ...] = ()  # ONE_OF: the branch outputs, one of which is bound

    @property
    def value(self) -> Any:
        """The bound constant, decoded from its JSON; None when the binding holds no constant."""
        return None if self.value_json is None else json.loads(self.value_json)


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One output of one step (a branch of a ``ONE_OF`` binding)."""

    step: str
    output: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Operand:
    """A value a condition or a map reads: a parameter, a step output, a constant or a map item.

    ``kind`` is PARAMETER, OUTPUT, CONSTANT or ITEM, with the fields of a :class:`Binding` of that kind.
    """

    kind: BindingKind
    parameter: str | None = None
    step: str | None = None
    output: str | None = None
    value_json: str | None = None
    group: str | None = None
    index: int | None = None

    @property
    def value(self) -> Any:
        """The constant, decoded from its JSON; None when the operand is not a constant."""
        return None if self.value_json is None else json.loads(self.value_json)


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """A condition tree: a comparison of two operands, or ``and``/``or``/``not`` of conditions."""

    op: Comparison
    operands: tuple[Operand, ...] = ()  # two, for a comparison
    terms: tuple[Condition, ...] = ()  # for and/or (two or more) and not (one)

    def all_operands(self) -> Iterator[Operand]:
        """Every operand of the tree: this comparison's, then each term's in order (depth first)."""
        yield from self.operands
        for term in self.terms:
            yield from term.all_operands()

    def steps(self) -> tuple[str, ...]:
        """Every step whose output the condition reads, in first-seen order."""
        return tuple(dict.fromkeys(o.step for o in self.all_operands() if o.kind is BindingKind.OUTPUT and o.step))

    def __str__(self) -> str:
        if self.op is Comparison.NOT:
            return f"not ({self.terms[0]})" if self.terms else "not ()"
        if self.op in (Comparison.AND, Comparison.OR):
            return f" {self.op.value} ".join(f"({term})" for term in self.terms)
        return f" {self.op.value} ".join(_operand_text(o) for o in self.operands)


def _operand_text(operand: Operand) -> str:
    if operand.kind is BindingKind.PARAMETER:
        return str(operand.parameter)
    if operand.kind is BindingKind.OUTPUT:
        return f"{operand.step}.{operand.output}"
    if operand.kind is BindingKind.ITEM:
        return f"item of {operand.group}" + ("" if operand.index is None else f"[{operand.index}]")
    return operand.value_json or "null"


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """A control-flow group; a step belongs to the innermost group it was called in (``Step.group``).

    Attributes:
        name: Unique among groups (``map_1``, ``condition_2``, ``exit_1``...).
        kind: Map, condition or exit.
        location: Where the group was opened.
        parent: The enclosing group, if any.
        items: MAP: the lists iterated (one, or several combined by ``combine``).
        combine: MAP over several lists: zip or product.
        parallelism: MAP: how many items may run at once (None: no bound of its own).
        condition: CONDITION: the branch's own condition (None for an ``else``). A branch runs when its condition
            holds and no earlier branch of its chain ran (each keeps only its own, so the IR stays linear).
        chain: CONDITION: the if/elif/else chain the branch belongs to (the ``If`` group's name).
        branch: CONDITION: the branch's place in its chain (0 for the ``If``), the order they are tried in.
        label: CONDITION: ``if``, ``elif`` or ``else``.
    """

    name: str
    kind: GroupKind
    location: Location
    parent: str | None = None
    items: tuple[Operand, ...] = ()
    combine: Combine | None = None
    parallelism: int | None = None
    condition: Condition | None = None
    chain: str | None = None
    branch: int = 0
    label: str | None = None

    def all_operands(self) -> Iterator[Operand]:
        """Every operand the group reads: a map's items, then its own condition's (:meth:`Condition.all_operands`).

        Only this group's: a branch's earlier siblings in its chain, and enclosing groups, are not included.
        """
        yield from self.items
        if self.condition is not None:
            yield from self.condition.all_operands()


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One node of the pipeline graph."""

    name: str
    function: FunctionRef
    location: Location
    inputs: tuple[InputSpec, ...] = ()
    bindings: tuple[Binding, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    after: tuple[str, ...] = ()
    explicit_name: bool = False
    image: str | None = None
    resources: Resources = field(default_factory=Resources)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: float | None = None
    cache: bool = True
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[SecretRef, ...] = ()
    settings: tuple[Setting, ...] = ()
    description: str = ""
    packages: tuple[str, ...] = ()  # requirement specifiers this step needs beyond the pipeline's (its own image)
    group: str | None = None  # the innermost control-flow group the step was called in
    trigger: Trigger = Trigger.ALL_SUCCESS

    def upstream(self) -> tuple[str, ...]:
        """Every step this one depends on, by data or ``.after()``, in first-seen order."""
        seen: dict[str, None] = {}
        for binding in self.bindings:
            if binding.kind in (BindingKind.OUTPUT, BindingKind.COLLECTED) and binding.step:
                seen.setdefault(binding.step)
            for source in binding.sources:
                seen.setdefault(source.step)
        for name in self.after:
            seen.setdefault(name)
        return tuple(seen)


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineOutput:
    """A value the pipeline function returns: an output of one of its steps."""

    name: str
    step: str
    output: str


_CONTROL_FLOW_SEEN: dict[int, tuple[Pipeline, bool]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Pipeline:
    """A whole traced pipeline."""

    ir_version: str = IR_VERSION
    name: str
    description: str = ""
    location: Location | None = None
    parameters: tuple[Parameter, ...] = ()
    steps: tuple[Step, ...] = ()
    outputs: tuple[PipelineOutput, ...] = ()
    image: str | None = None
    schedule: str | None = None
    artifact_root: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[SecretRef, ...] = ()
    settings: tuple[Setting, ...] = ()
    tags: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()  # requirement specifiers every step's image installs (pip's syntax)
    groups: tuple[Group, ...] = ()  # control-flow groups, parents before children
    parallelism: int | None = None  # how many steps (or map items) may run at once in the whole run

    @property
    def uses_control_flow(self) -> bool:
        """Whether the pipeline has groups, triggers or a parallelism bound (IR version 2)."""
        # Targets ask once per step, and the answer walks every step: remembered per (immutable) pipeline, else a
        # 1,000-step emit spends a second here. Keyed by identity, holding the pipeline so its id is not reused.
        known = _CONTROL_FLOW_SEEN.get(id(self))
        if known is not None and known[0] is self:
            return known[1]
        answer = bool(self.groups) or self.parallelism is not None or any(
            s.trigger is not Trigger.ALL_SUCCESS or any(b.kind in _CONTROL_BINDINGS for b in s.bindings)
            for s in self.steps)
        if len(_CONTROL_FLOW_SEEN) >= 16:
            _CONTROL_FLOW_SEEN.clear()
        _CONTROL_FLOW_SEEN[id(self)] = (self, answer)
        return answer

    def group(self, name: str) -> Group:
        """The group called ``name``; KeyError if there is none."""
        for candidate in self.groups:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def step(self, name: str) -> Step:
        """Return the step named ``name`` (a KeyError if none)."""
        for candidate in self.steps:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def parameter(self, name: str) -> Parameter:
        """The parameter called ``name``; KeyError if there is none."""
        for candidate in self.parameters:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def settings_for(self, target: str, step: Step | None = None) -> dict[str, Any]:
        """Per-target settings: the pipeline's, overridden by the step's when a step is given."""
        merged = {s.key: s.value for s in self.settings if s.target == target}
        if step is not None:
            merged.update({s.key: s.value for s in step.settings if s.target == target})
        return merged

    def image_of(self, step: Step) -> str | None:
        """The image ``step`` runs in: its own, else the pipeline's; None when neither is set."""
        return step.image or self.image

    def env_of(self, step: Step) -> tuple[tuple[str, str], ...]:
        """The pipeline's env overridden by the step's, sorted by name."""
        merged = dict(self.env)
        merged.update(step.env)
        return tuple(sorted(merged.items()))

    def secrets_of(self, step: Step) -> tuple[SecretRef, ...]:
        """The pipeline's secrets plus the step's (the step wins on the same env var), sorted by env."""
        merged = {s.env: s for s in self.secrets}
        merged.update({s.env: s for s in step.secrets})
        return tuple(merged[k] for k in sorted(merged))

    def written_version(self, least: str = "1") -> str:
        """The lowest IR version that holds what this pipeline uses (never below ``least``)."""
        if any(b.kind is BindingKind.GATHER for s in self.steps for b in s.bindings):
            return "3"
        return max("2" if self.uses_control_flow else "1", least)

    def to_json(self, indent: int | None = 2) -> str:
        """Serialise the IR to JSON text (stable key order)."""
        plain = _to_plain(self)
        plain["ir_version"] = self.written_version()
        return json.dumps(plain, indent=indent, ensure_ascii=False, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Pipeline:
        """Rebuild an IR from :meth:`to_json` output."""
        data = json.loads(text)
        version = data.get("ir_version")
        if version not in READABLE_VERSIONS:
            from pipecast.errors import LoadError

            raise LoadError(f"IR version {version!r} is not supported (this pipecast reads "
                            f"{' and '.join(map(repr, READABLE_VERSIONS))})")
        result = _from_plain(cls, {**data, "ir_version": IR_VERSION})
        assert isinstance(result, Pipeline)
        return result


# Fields added after IR v1 was published: left out of the JSON while they hold this value, so the IR of a pipeline
# that does not use them is byte-for-byte what it was (``from_json`` gives a missing field its default).
_OMITTED_WHEN: dict[str, Any] = {
    "requirements": (), "packages": (), "groups": (), "parallelism": None, "group": None,
    "trigger": Trigger.ALL_SUCCESS, "index": None, "sources": (), "artifact": None,
    "include_file": False,
}
_ABSENT = object()
_CONTROL_BINDINGS = frozenset({BindingKind.ITEM, BindingKind.COLLECTED, BindingKind.ONE_OF, BindingKind.STATUS})


def _to_plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in fields(value)
                if _OMITTED_WHEN.get(f.name, _ABSENT) != getattr(value, f.name)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _from_plain(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _from_plain(inner, data)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v) for v in data)
        return tuple(_from_plain(a, v) for a, v in zip(args, data))
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    if isinstance(tp, type) and is_dataclass(tp):
        hints = _HINTS.get(tp)
        if hints is None:
            hints = _HINTS[tp] = typing.get_type_hints(tp)
        return tp(**{k: _from_plain(hints[k], v) for k, v in data.items()})
    return data
