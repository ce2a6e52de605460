"""Inputs from outside (Metaflow's ``IncludeFile``): a file or directory parameter stored once at run start.

A pipeline parameter annotated ``pipecast.IncludeFile`` names a local file or directory, or a URI fsspec can
read (``s3://``, ``gs://``, ``https://``...). Where the run starts (``pipecast run``, ``pipecast submit``), it
is copied into the artifact store, content-addressed under ``<pipeline>/inputs/<sha256>/`` (the same content is
stored once, whatever run brings it), and the parameter's value becomes that folder's URI: the steps, wherever
they run, read the store and never the submitting machine's disk. The sha256 is in the value, so it is in the
cache key of every step that takes it. A step receives a local ``pathlib.Path`` to a checked copy, fetched
only when the step really runs (not on a cache hit).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import ArtifactError, ParameterError
from pipecast.runtime import paths
from pipecast.runtime.artifacts import ArtifactStore, safe_segment

NAME = "content"  # the stored copy's output name inside its folder: inputs/<sha256>/outputs/content/...
_SHA = re.compile(r"[0-9a-f]{64}")


def inputs_dir(store: ArtifactStore, pipeline: str) -> str:
    """The folder of a pipeline's included inputs."""
    return store.file_in(store.root, f"{safe_segment(pipeline)}/inputs")


def ingest(pipeline: ir.Pipeline, values: Mapping[str, Any], root: str | None) -> dict[str, Any]:
    """``values`` with each ``IncludeFile`` parameter's file stored under ``root`` and replaced by its URI."""
    included = [p.name for p in pipeline.parameters if p.include_file]
    if not included:
        return dict(values)
    if not root:
        raise ParameterError(f"parameter{'s' if len(included) > 1 else ''} {', '.join(map(repr, included))} "
                             "(IncludeFile) must be stored in the artifact store before the run starts, and "
                             "this run has no artifact root: set the pipeline's or target's artifact_root")
    store = ArtifactStore(root)
    result = dict(values)
    for name in included:
        value = values.get(name)
        if isinstance(value, str) and reference_sha(store, pipeline.name, value):
            continue  # already stored (a run started again with the value an earlier one recorded)
        if not isinstance(value, str) or not value:
            raise ParameterError(f"parameter {name!r} (IncludeFile) is {value!r}; give the path or URI of a file")
        with _local_copy(name, value) as local:
            result[name] = _store(store, pipeline.name, name, local)
    return result


@contextmanager
def _local_copy(name: str, value: str) -> Iterator[Path]:
    """The local file or directory ``value`` names; a URI is fetched (streamed) to a temporary file first."""
    if "://" not in value or value.startswith("file://"):
        local = Path(value.removeprefix("file://")).expanduser()
        if not local.exists():
            raise ParameterError(f"parameter {name!r} (IncludeFile) names {value!r}, which does not exist here "
                                 f"(in {os.getcwd()}); give the path of a file or directory, or a URI")
        yield local
        return
    folder = Path(tempfile.mkdtemp(prefix="pipecast-include-"))
    try:
        yield _download_uri(value, folder, lambda err: ParameterError(
            f"parameter {name!r} (IncludeFile): cannot read {value!r}: {err}"))[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _download_uri(value: str, folder: Path, error: Callable[[Exception], Exception]) -> tuple[Path, str]:
    """Stream the file at URI ``value`` into ``folder`` (keeping its name); return it and its sha256."""
    import fsspec

    target = folder / (value.rstrip("/").rsplit("/", 1)[-1] or "content")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with fsspec.open(value, "rb") as reader, open(target, "wb") as writer:
            digest, _size = paths.stream(reader, writer)
    except (OSError, ValueError, ImportError) as err:
        raise error(err) from None
    return target, digest


def from_outside(store: ArtifactStore, pipeline: str, value: Any, hint: Any) -> bool:
    """Whether a step's value is text naming a path or URI to fetch for an ``InputPath``/``IncludeFile`` input.

    Such a value was not stored at run start: a run the engine started itself (a schedule) passes it as given.
    """
    from pipecast.typed_artifacts import IncludeFile

    return (hint is paths.InputPath or hint is IncludeFile) and isinstance(value, str) and bool(value) \
        and reference_sha(store, pipeline, value) is None


def fetch_outside(value: str, into: Path, what: str) -> tuple[Path, str]:
    """A local copy of the file or directory at path or URI ``value`` (streamed) and its content hash."""
    if "://" in value and not value.startswith("file://"):
        return _download_uri(value, into, lambda err: ArtifactError(f"{what}: cannot read {value!r}: {err}"))
    local = Path(value.removeprefix("file://")).expanduser()
    if not local.exists():
        raise ArtifactError(f"{what}: {value!r} does not exist where the step runs; start the run with pipecast "
                            "run or submit and an IncludeFile parameter (stored in the artifact store), or give "
                            "a URI every task can read")
    target = into / local.name
    if local.is_dir():
        shutil.copytree(local, target)
    else:
        into.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
    return target, content_hash(target)


def _store(store: ArtifactStore, pipeline: str, name: str, local: Path) -> str:
    """Store ``local`` content-addressed (once) and return its folder's URI."""
    digest = content_hash(local)
    folder = store.file_in(inputs_dir(store, pipeline), digest)
    if not store.exists(f"{folder}/meta.json"):
        record = paths.upload(store, folder, NAME, local, f"parameter {name}")
        store.write_json(f"{folder}/meta.json", {"outputs": {NAME: record}})  # written last: the commit record
    return store.url(folder)


def content_hash(local: Path) -> str:
    """A file's sha256, or a directory's manifest hash (as :func:`paths.upload` records it), streamed."""
    if local.is_file():
        return _file_sha(local)
    manifest = {rel: {"sha256": _file_sha(local / rel)} for rel in paths.files(local)}
    return paths.manifest_hash(manifest)


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        for chunk in iter(lambda: reader.read(paths.CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def reference_sha(store: ArtifactStore, pipeline: str, value: Any) -> str | None:
    """The sha256 of an included input's URI in this store (``.../<pipeline>/inputs/<sha256>``), else None."""
    if not isinstance(value, str):
        return None
    prefix = store.url(inputs_dir(store, pipeline)) + "/"
    rest = value[len(prefix):] if value.startswith(prefix) else ""
    return rest if _SHA.fullmatch(rest) else None


def fetch(store: ArtifactStore, pipeline: str, value: str, into: Path, what: str) -> Path:
    """A local, checked copy of an included input (a file or a directory)."""
    folder = store.file_in(inputs_dir(store, pipeline), reference_sha(store, pipeline, value) or "")
    try:
        record = store.read_json(f"{folder}/meta.json")["outputs"][NAME]
    except (ArtifactError, KeyError, TypeError, ValueError):
        raise ArtifactError(f"{what}: {value!r} has no complete record in the artifact store; start the run "
                            "again so the file is stored again") from None
    return paths.download(store, folder, record, into, what)
