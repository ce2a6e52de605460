"""File and directory artifacts: a step returns a ``pathlib.Path``, the next step receives a local path.

A returned path (a file or a directory the step wrote) is uploaded under ``outputs/<name>/`` in the step's folder,
streamed in chunks with a sha256 computed on the way; nothing is read whole into memory. Locally the upload goes
to a temporary folder renamed into place; on object stores each object is one put, and the step's ``meta.json``
(written after every upload) is the commit record, so a reader never follows a half-written output. A directory's
hash is the sha256 of its sorted manifest (relative path and sha256 of every file). Downloads for a downstream
step stream the same way and are checked against the recorded hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NewType

from pipecast.errors import ArtifactError
from pipecast.runtime.artifacts import ArtifactStore

CHUNK = 4 << 20  # 4 MiB: large enough to stream at disk speed, small enough for the memory goal
MATERIALIZER = "path"

InputPath = NewType("InputPath", Path)
"""Annotation for a step input that receives a local path (a file or a directory an upstream step returned)."""
OutputPath = NewType("OutputPath", Path)
"""Annotation for a step's return value that is a path it wrote: ``-> OutputPath`` (``OutputPath(p)`` is ``p``)."""


def is_path(value: Any) -> bool:
    """Whether a step output is a file or directory artifact."""
    return isinstance(value, Path)


def stream(source: IO[bytes], destination: IO[bytes]) -> tuple[str, int]:
    """Copy in chunks; return the sha256 and size of what was copied."""
    digest, size = hashlib.sha256(), 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        count = source.readinto(view)  # type: ignore[attr-defined]
        if not count:
            return digest.hexdigest(), size
        digest.update(view[:count])
        destination.write(view[:count])
        size += count


def files(root: Path) -> list[str]:
    """Every file under a directory, as sorted POSIX relative paths (symlinks are followed to their content)."""
    found = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            found.append(Path(folder, name).relative_to(root).as_posix())
    return sorted(found)


def manifest_hash(manifest: Mapping[str, Mapping[str, Any]]) -> str:
    """A directory's content hash: sha256 of its sorted (relative path, sha256) pairs."""
    pairs = sorted((rel, entry["sha256"]) for rel, entry in manifest.items())
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def upload(store: ArtifactStore, step_dir: str, name: str, path: Path, step: str) -> dict[str, Any]:
    """Store the file or directory ``path`` as output ``name``; return its record for ``meta.json``."""
    if not path.exists():
        raise ArtifactError(f"step {step!r} returned path {str(path)!r} for output {name!r}, but nothing is there; "
                            "return the path of a file or directory the step wrote")
    base = f"outputs/{name}"
    if path.is_dir():
        sources = {rel: path / rel for rel in files(path)}
    else:
        sources = {path.name: path}
    final = store.file_in(step_dir, base)
    target = f"{final}.tmp-{uuid.uuid4().hex[:8]}" if store.local else final
    manifest: dict[str, dict[str, Any]] = {}
    for rel, source in sources.items():
        destination = store.file_in(target, rel)
        with open(source, "rb") as reader:
            if store.local:
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                with open(destination, "wb") as writer:
                    digest, size = stream(reader, writer)
            else:
                with store.fs.open(destination, "wb") as writer:
                    digest, size = stream(reader, writer)
        manifest[rel] = {"sha256": digest, "size": size}
    if store.local:
        if os.path.isdir(final):
            shutil.rmtree(final)  # an earlier try's upload, never committed
        os.makedirs(target, exist_ok=True)  # an empty directory is an output too
        os.replace(target, final)
    total = sum(entry["size"] for entry in manifest.values())
    if path.is_dir():
        return {"materializer": MATERIALIZER, "kind": "directory", "file": base, "manifest": manifest,
                "sha256": manifest_hash(manifest), "size": total, "type": "directory"}
    return {"materializer": MATERIALIZER, "kind": "file", "file": f"{base}/{path.name}", "manifest": manifest,
            "sha256": manifest[path.name]["sha256"], "size": total, "type": "file"}


def _entries(store: ArtifactStore, folder: str, record: Mapping[str, Any]) -> tuple[str, Iterator[tuple[str, str]]]:
    """The stored folder of a path output and (relative path, stored path) of each of its files."""
    base = store.file_in(folder, f"outputs/{record['file'].split('/')[1]}")
    return base, ((rel, store.file_in(base, rel)) for rel in sorted(record["manifest"]))


def _open(store: ArtifactStore, path: str) -> IO[bytes]:
    try:
        return open(path, "rb") if store.local else store.fs.open(path, "rb")
    except FileNotFoundError:
        raise ArtifactError(f"artifact {path!r} does not exist") from None


def verify(store: ArtifactStore, folder: str, record: Mapping[str, Any]) -> bool:
    """Whether every stored file of a path output still has its recorded sha256 (streamed, not loaded)."""
    _base, entries = _entries(store, folder, record)
    for rel, stored in entries:
        digest = hashlib.sha256()
        try:
            with _open(store, stored) as reader:
                for chunk in iter(lambda: reader.read(CHUNK), b""):
                    digest.update(chunk)
        except ArtifactError:
            return False
        if digest.hexdigest() != record["manifest"][rel]["sha256"]:
            return False
    return True


def copy(store: ArtifactStore, source_folder: str, destination_folder: str, record: Mapping[str, Any]) -> None:
    """Copy a stored path output into another step's folder (a cache hit), streamed."""
    _base, entries = _entries(store, source_folder, record)
    target_base, _ = _entries(store, destination_folder, record)
    for rel, stored in entries:
        destination = store.file_in(target_base, rel)
        with _open(store, stored) as reader:
            if store.local:
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                temporary = f"{destination}.tmp-{uuid.uuid4().hex[:8]}"
                with open(temporary, "wb") as writer:
                    stream(reader, writer)
                os.replace(temporary, destination)
            else:
                with store.fs.open(destination, "wb") as writer:
                    stream(reader, writer)


def download(store: ArtifactStore, folder: str, record: Mapping[str, Any], into: Path, what: str) -> Path:
    """Fetch a path output to the local folder ``into``; return the local file or directory path.

    Raises ArtifactError when a file does not match the sha256 recorded when it was written.
    """
    _base, entries = _entries(store, folder, record)
    into.mkdir(parents=True, exist_ok=True)
    for rel, stored in entries:
        local = into / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:  # a recorded name is data: never leave ``into``
            raise ArtifactError(f"{what}: recorded file name {rel!r} leaves its folder; refusing to write it")
        local.parent.mkdir(parents=True, exist_ok=True)
        with _open(store, stored) as reader, open(local, "wb") as writer:
            digest, _size = stream(reader, writer)
        if digest != record["manifest"][rel]["sha256"]:
            raise ArtifactError(f"{what}: file {rel!r} no longer matches the sha256 recorded when it was written; "
                                "something changed it since: run the pipeline again with a run id of its own")
    return into if record["kind"] == "directory" else into / record["file"].split("/", 2)[2]


def download_file(store: ArtifactStore, stored: str, sha256: str, local: Path, what: str) -> Path:
    """Fetch one stored file to ``local`` (streamed), checked against ``sha256``; return ``local``."""
    local.parent.mkdir(parents=True, exist_ok=True)
    with _open(store, stored) as reader, open(local, "wb") as writer:
        digest, _size = stream(reader, writer)
    if digest != sha256:
        raise ArtifactError(f"{what} no longer matches the sha256 recorded when it was written; something "
                            "changed it since: run the pipeline again with a run id of its own")
    return local


def local_or_download(store: ArtifactStore, folder: str, record: Mapping[str, Any], what: str) -> Path:
    """A path output as a local path: where it is stored (checked) on a local store, else a downloaded copy."""
    if store.local:
        if not verify(store, folder, record):
            raise ArtifactError(f"{what} no longer matches the sha256 recorded when it was written")
        return Path(store.file_in(folder, record["file"]))
    return download(store, folder, record, Path(tempfile.mkdtemp(prefix="pipecast-output-")), what)


@contextmanager
def workspace() -> Iterator[Path]:
    """A local folder for a step's downloaded path inputs, removed when the step ends."""
    folder = Path(tempfile.mkdtemp(prefix="pipecast-inputs-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
