"""The ``package`` code delivery mode: the import root archived reproducibly, stored under its sha256.

The archive is a gzipped tar of the import root's code files, the same files an image gets
(:func:`pipecast.build.context.code_files`: ``.gitignore``/``.pipecastignore`` respected, version control,
caches and virtualenvs left out), sorted by path, with fixed metadata (mtime, uid/gid 0, no user or group
names, mode 0644 or 0755), so the same files give the same bytes and the same sha256 on any machine. A
symlinked file is stored with its content; a symlinked folder is left out. Past ``limit`` bytes of files it is
one clear error naming the biggest files (:func:`pipecast.build.context.check_size`).

At submit the archive is uploaded to the artifact root under ``.pipecast/code/<sha256>.tar.gz`` (once: the
name is its content); each task's runtime downloads, verifies and extracts it (see
:mod:`pipecast.runtime.code_package`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass

from pipecast.build.context import DEFAULT_MAX_BYTES, FIXED_MTIME
from pipecast.errors import PipecastError
from pipecast.runtime.code_package import PACKAGE_FOLDER  # the runtime reads where this writes


class CodePackageError(PipecastError):
    """The pipeline's code cannot be shipped as a package (no artifact root, a file that cannot be read)."""


@dataclass(frozen=True, slots=True)
class CodePackage:
    """An archive of an import root: its bytes, sha256 and the files in it (relative POSIX paths, sorted)."""

    data: bytes
    sha256: str
    files: tuple[str, ...]

    @property
    def name(self) -> str:
        """The archive's file name in the artifact store: ``<sha256>.tar.gz``."""
        return f"{self.sha256}.tar.gz"


def package_files(import_root: str) -> list[str]:
    """The files of ``import_root`` that go in its package: the code an image would get (see ``context.py``)."""
    from pipecast.build.context import code_files

    return [path for path in code_files(import_root) if not os.path.isdir(os.path.join(import_root, path))]


def build_package(import_root: str, *, limit: int = DEFAULT_MAX_BYTES) -> CodePackage:
    """Archive ``import_root`` reproducibly; BuildError past ``limit`` bytes of files.

    A symlinked file is stored with its content (the runtime extracts plain files only).
    """
    from pipecast.build.context import check_size

    root = os.path.abspath(import_root)
    files = package_files(root)
    check_size(root, files, limit)
    buffer = io.BytesIO()
    # gzip's own header holds an mtime and a file name: both fixed here, so the bytes depend on the files only.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            full = os.path.join(root, path)
            try:
                with open(full, "rb") as handle:
                    content = handle.read()
            except OSError as err:  # a dangling symlink, a file removed meanwhile
                raise CodePackageError(f"cannot read {path!r} under the import root {root!r} to package it: "
                                       f"{err.strerror}; fix: remove it or list it in .pipecastignore") from None
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mtime = FIXED_MTIME
            info.mode = 0o755 if os.access(full, os.X_OK) else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    return CodePackage(data=data, sha256=hashlib.sha256(data).hexdigest(), files=tuple(files))


def upload_package(package: CodePackage, artifact_root: str) -> str:
    """Store ``package`` in the artifact root under its sha256 (unless it is there already); return its URI."""
    from pipecast.runtime.artifacts import ArtifactStore

    store = ArtifactStore(artifact_root)
    path = f"{store.root}/{PACKAGE_FOLDER}/{package.name}"
    if not store.exists(path):
        store.write_bytes(path, package.data)
    return store.url(path)


def package_uri(package: CodePackage, artifact_root: str) -> str:
    """The URI :func:`upload_package` stores ``package`` at (known before the upload, for the compiled files)."""
    from pipecast.runtime.artifacts import ArtifactStore

    store = ArtifactStore(artifact_root)
    return store.url(f"{store.root}/{PACKAGE_FOLDER}/{package.name}")


