"""A step's inputs and outputs by their annotations: typed artifacts, path inputs, output parameters.

Inputs are located first (their records and sha256, from the upstream steps' ``meta.json``), which is all the
cache key needs; they are fetched (downloaded, read, checked) only when the step really runs, so a cache hit
downloads nothing. An input annotated with an artifact type (``Dataset``...) gets the artifact, one annotated
``InputPath`` gets a local path (to the stored file of a plain value too), any other gets the bare value.

Outputs: a value returned for an output annotated with an artifact type is wrapped in it; output parameters
(``model: OutputPath``, ``model: Output[Model]``) get a fresh local path per try, uploaded after the step.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipecast.errors import ArtifactError, PipecastError
from pipecast.runtime import materializers, paths
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.typed_artifacts import ARTIFACT_TYPES, Artifact, Metrics, artifact_class, output_argument


@dataclass(frozen=True, slots=True)
class Located:
    """One upstream output: the folder of the step that wrote it, its record, and how to name it in errors."""

    folder: str
    record: Mapping[str, Any]
    what: str


Found = Located | list[Any]  # a mapped step's outputs: a (nested) list of them, in item order


def locate(store: ArtifactStore, pipeline: str, run_id: str, step: str, source: Any) -> Found:
    """The record of an upstream output (or of each of a tuple of them); nothing is downloaded."""
    if isinstance(source, tuple):
        return [locate(store, pipeline, run_id, step, item) for item in source]
    folder = store.step_dir(pipeline, run_id, source.step)
    try:
        meta = store.read_json(f"{folder}/meta.json")
    except ArtifactError:
        raise ArtifactError(
            f"step {step!r} needs output {source.output!r} of step {source.step!r}, but that step has no "
            f"record in run {run_id!r} under {store.uri!r}; did it run, with the same run id and artifact root?"
        ) from None
    record = meta.get("outputs", {}).get(source.output)
    if meta.get("status") != "succeeded" or record is None:
        raise ArtifactError(f"step {source.step!r} has no output {source.output!r} in run {run_id!r}")
    return Located(folder, record, f"output {source.output!r} of step {source.step!r} in run {run_id!r}")


def digests(found: Found) -> Any:
    """The sha256 of a located output, or the (nested) list of them: what the cache key uses."""
    return [digests(item) for item in found] if isinstance(found, list) else found.record["sha256"]


def fetch(store: ArtifactStore, found: Found, hint: Any, into: Path) -> Any:
    """The input value for a step parameter annotated ``hint``: downloaded, read and checked."""
    if isinstance(found, list):
        args = typing.get_args(hint) if typing.get_origin(hint) in (list, typing.List) else ()  # noqa: UP006
        return [fetch(store, item, args[0] if args else None, into / str(index)) for index, item in enumerate(found)]
    record = found.record
    is_path = record["materializer"] == paths.MATERIALIZER
    if is_path:
        value: Any = paths.download(store, found.folder, record, into, found.what)
    elif _is_input_path(hint):  # a plain value's stored file, as a local path
        return paths.download_file(store, store.file_in(found.folder, record["file"]), record["sha256"],
                                   into / record["file"].rsplit("/", 1)[-1], found.what)
    else:
        value = read(store, found.folder, record, found.what)
    cls = artifact_class(hint)
    return value if cls is None else as_artifact(store, found.folder, record, value, cls)


def as_artifact(store: ArtifactStore, folder: str, record: Mapping[str, Any], value: Any,
                cls: type[Artifact] | None = None) -> Artifact:
    """A stored output as an artifact of ``cls`` (default: the type it was stored as) with its metadata and URI."""
    if cls is None:
        cls = ARTIFACT_TYPES.get(record.get("artifact") or "", Artifact)
    artifact = cls(dict(value)) if issubclass(cls, Metrics) else cls(value)
    artifact.metadata.update(record.get("metadata") or {})
    artifact.uri = store.url(store.file_in(folder, record["file"]))
    artifact.sha256 = record["sha256"]
    return artifact


def read(store: ArtifactStore, folder: str, record: Mapping[str, Any], what: str) -> Any:
    """A plain (materialized) output's value, checked against its sha256."""
    data = read_verified(store, folder, record)
    if data is None:
        raise ArtifactError(
            f"{what} no longer matches the sha256 recorded when it was written: something changed it since "
            "(another run with the same run id?); run the pipeline again with a run id of its own"
        )
    return materializers.by_name(record["materializer"]).loads(data)


def read_verified(store: ArtifactStore, folder: str, record: Mapping[str, Any]) -> bytes | None:
    """The bytes of an output file, or None when they do not match the sha256 recorded for them.

    A file or directory output is checked in chunks and gives ``b""`` (its content stays where it is).
    """
    import hashlib

    if record.get("materializer") == paths.MATERIALIZER:
        return b"" if paths.verify(store, folder, record) else None
    data = store.read_bytes(store.file_in(folder, record["file"]))
    return data if hashlib.sha256(data).hexdigest() == record["sha256"] else None


def _is_input_path(hint: Any) -> bool:
    from pipecast.runtime.paths import InputPath

    return hint is InputPath or hint is Path


_HINTS: dict[Callable[..., Any], dict[str, Any]] = {}


def input_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The step function's annotations (empty when they cannot be evaluated here), read once per function."""
    cached = _HINTS.get(fn)
    if cached is None:
        try:
            cached = typing.get_type_hints(fn)
        except Exception:  # an annotation that does not resolve in this process: go by the values alone
            cached = {}
        _HINTS[fn] = cached
    return cached


def output_parameters(hints: Mapping[str, Any]) -> dict[str, type[Artifact] | None]:
    """The step's output parameters: name -> artifact class (``Output[Model]``) or None (``OutputPath``)."""
    if not hints:
        return {}
    found: dict[str, type[Artifact] | None] = {}
    for name, hint in hints.items():
        if name == "return":  # ``-> OutputPath`` is a returned path, not a parameter
            continue
        kind = output_argument(hint)
        if kind is True:
            found[name] = None
        elif not isinstance(kind, bool):
            found[name] = kind
    return found


def prepare_outputs(parameters: Mapping[str, type[Artifact] | None], folder: Path) -> dict[str, Any]:
    """A fresh value for each output parameter: a path to write (in ``folder``), or an artifact holding one."""
    given: dict[str, Any] = {}
    for name, cls in parameters.items():
        where = folder / name
        where.mkdir(parents=True)
        target = where / name  # not created: the step writes a file or makes a directory there
        if cls is None:
            given[name] = target
        else:
            given[name] = cls() if issubclass(cls, Metrics) else cls(target)
    return given


def collect_outputs(step: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """What the step left in its output parameters, as output values; PipecastError for a path left unwritten."""
    collected = {}
    for name, value in given.items():
        target = value if isinstance(value, Path) else None
        if isinstance(value, Artifact) and not isinstance(value, Metrics):
            target = value.path
        if target is not None and not target.exists():
            raise PipecastError(f"step {step!r} did not write its output {name!r}: write a file or make a "
                                f"directory at the path it was given ({target})")
        collected[name] = Artifact(value) if isinstance(value, Path) else value  # as the IR says: an Artifact
    return collected


def wrap_output(step: str, name: str, value: Any, hint: Any) -> Any:
    """A returned value for an output annotated with an artifact type, wrapped in it (checked)."""
    cls = artifact_class(hint)
    if cls is None or isinstance(value, cls):
        return value
    if isinstance(value, Artifact):
        raise PipecastError(f"step {step!r} output {name!r} is annotated {cls.schema} but the step returned a "
                            f"{value.schema}; return a {cls.schema} (or change the annotation)")
    if issubclass(cls, Metrics):
        if not isinstance(value, Mapping):
            raise PipecastError(f"step {step!r} output {name!r} is annotated Metrics but the step returned "
                                f"{type(value).__name__}; return Metrics(name=number, ...) or a dict of numbers")
        try:
            return Metrics(value)
        except ArtifactError as err:
            raise PipecastError(f"step {step!r} output {name!r}: {err}") from None
    return cls(value)
