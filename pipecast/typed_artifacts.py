"""Typed artifacts: ``Dataset``, ``Model``, ``Metrics`` and the generic ``Artifact``, each with metadata.

Designed after KFP's ``Input[Dataset]``/``Output[Model]``/``Metrics.log_metric`` and ZenML's artifact types, in
plain Python. A step returns one (``-> Model``) or takes one (``model: Model``); the value inside is stored with
the materializer its type picks (a ``pathlib.Path`` as a file or directory), and the artifact's type and metadata
are kept in the output's record, where ``pipecast runs show`` lists them and targets can show them.

A step annotated ``-> Dataset`` may also return the bare value (a DataFrame, a path): it is wrapped. A step
whose input is annotated with an artifact type receives the artifact (``.value`` or ``.path``, ``.metadata``,
``.uri``, ``.sha256``); one annotated with a plain type receives the bare value.

``Output[Model]`` as a *parameter* (KFP's way) gives the step an artifact whose ``.path`` it writes a file or
directory to (or, for ``Output[Metrics]``, whose ``log_metric`` it calls); the step does not return it.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, NewType, TypeVar

from pipecast.errors import ArtifactError

_EMPTY: Any = object()


class Artifact:
    """A step output with a type engines can show (KFP ``system.Artifact``) and JSON metadata.

    Args:
        value: What the artifact holds: any value a materializer stores, or a ``pathlib.Path`` to a file or
            directory the step wrote (then ``.path`` is it).
        metadata: JSON key/values kept with the artifact (``runs show``, the engines' UIs).
    """

    schema: ClassVar[str] = "Artifact"  # the type name engines show (KFP's system.<schema>)

    def __init__(self, value: Any = _EMPTY, *, metadata: Mapping[str, Any] | None = None) -> None:
        self._value = value
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.uri: str | None = None  # where it is stored, once it is (an input's, or after the step)
        self.sha256: str | None = None

    @property
    def value(self) -> Any:
        """The value the artifact holds (for a file or directory, its local ``Path``)."""
        if self._value is _EMPTY:
            raise ArtifactError(f"this {self.schema} holds no value yet; give it one: {self.schema}(value) "
                                "or write to its .path")
        return self._value

    @property
    def path(self) -> Path:
        """The local file or directory of an artifact that is one."""
        if not isinstance(self._value, Path):
            raise ArtifactError(f"this {self.schema} holds a {type(self._value).__name__} value, not a file or "
                                "directory: read .value")
        return self._value

    @property
    def has_value(self) -> bool:
        """Whether a value (or path) was given."""
        return self._value is not _EMPTY

    def __repr__(self) -> str:
        shown = "" if self._value is _EMPTY else repr(self._value) if isinstance(self._value, Path) else \
            type(self._value).__name__
        return f"{type(self).__name__}({shown}{', uri=' + repr(self.uri) if self.uri else ''})"


class Dataset(Artifact):
    """Data a step made or reads (KFP ``system.Dataset``): a DataFrame, an array, a file or a directory."""

    schema = "Dataset"


class Model(Artifact):
    """A trained model (KFP ``system.Model``): usually a directory or file the step wrote."""

    schema = "Model"


class Metrics(Artifact):
    """Scalar metrics by name (KFP ``system.Metrics``), stored as JSON.

    ``Metrics(accuracy=0.93, loss=0.2)``, ``Metrics({"accuracy": 0.93})`` or ``m.log_metric("accuracy", 0.93)``.
    Values are finite numbers (bools are not numbers here).
    """

    schema = "Metrics"

    def __init__(self, values: Mapping[str, Any] | None = None, *, metadata: Mapping[str, Any] | None = None,
                 **named: Any) -> None:
        super().__init__({}, metadata=metadata)
        for name, number in {**dict(values or {}), **named}.items():
            self.log_metric(name, number)

    def log_metric(self, name: str, value: float) -> None:
        """Record one metric (a later value for the same name replaces the earlier one)."""
        if not isinstance(name, str) or not name:
            raise ArtifactError(f"a metric name must be non-empty text, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ArtifactError(f"metric {name!r} is {value!r}; metrics are finite numbers (int or float): "
                                "put other values in metadata")
        self._value[name] = value

    def __getitem__(self, name: str) -> float:
        return typing.cast(float, self._value[name])

    @property
    def metrics(self) -> dict[str, float]:
        """The metrics by name."""
        return dict(self._value)


A = TypeVar("A", bound=Artifact)


class Output(Generic[A]):
    """``model: Output[Model]`` as a step parameter: the runtime passes a ``Model`` whose ``.path`` the step writes.

    Not passed at the call: it is an output of the step, named after the parameter.
    """


class Input(Generic[A]):
    """``data: Input[Dataset]`` is the same as ``data: Dataset`` (KFP's spelling)."""


IncludeFile = NewType("IncludeFile", str)
"""A pipeline parameter naming a file, directory or URI, stored in the artifact store when the run starts
(Metaflow's ``IncludeFile``); steps that take it get a local ``pathlib.Path`` (see pipecast.runtime.include)."""


ARTIFACT_TYPES: dict[str, type[Artifact]] = {cls.schema: cls for cls in (Artifact, Dataset, Model, Metrics)}


def artifact_class(annotation: Any) -> type[Artifact] | None:
    """The artifact class an annotation names (``Model``, ``Input[Model]``, ``Annotated[Model, ...]``), or None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return artifact_class(typing.get_args(annotation)[0])
    if origin is Input:
        return artifact_class(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, Artifact):
        return annotation
    return None


def output_argument(annotation: Any) -> type[Artifact] | bool:
    """For a parameter annotation: the class of ``Output[X]``, ``True`` for ``OutputPath``, else ``False``."""
    from pipecast.runtime.paths import OutputPath

    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if annotation is OutputPath:
        return True
    if typing.get_origin(annotation) is Output:
        (inner,) = typing.get_args(annotation)
        return artifact_class(inner) or Artifact
    return False


def schema_of(annotation: Any) -> str | None:
    """The artifact type name (``"Model"``) an output annotation names, or None for a plain type."""
    cls = artifact_class(annotation)
    return cls.schema if cls is not None else None


def check_metadata(owner: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` as JSON, or ArtifactError naming ``owner`` and the key that is not JSON."""
    for key, value in metadata.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ArtifactError(f"{owner}: metadata {key!r} is not JSON ({err}); use numbers, text, booleans, "
                                "None, or lists and dicts of them") from None
    return dict(metadata)
