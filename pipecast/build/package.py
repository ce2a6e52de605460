"""The ``package`` code delivery mode: the import root archived reproducibly, stored under its sha256.

The archive is a gzipped tar of the import root's files, sorted by path, with fixed metadata (mtime, uid/gid
0, no user or group names, mode 0644 or 0755), so the same files give the same bytes and the same sha256 on
any machine. Left out: what ``.gitignore`` and ``.pipecastignore`` files say (gitignore rules, each file for
its own folder and below), version-control and cache folders (:data:`ALWAYS_IGNORED`), and symlinked
folders; a symlinked file is stored with its content. Past ``limit`` bytes of files it is one clear error
naming the biggest files.

At submit the archive is uploaded to the artifact root under ``.pipecast/code/<sha256>.tar.gz`` (once: the
name is its content); each task's runtime downloads, verifies and extracts it (see
:mod:`pipecast.runtime.code_package`).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from pipecast.errors import PipecastError
from pipecast.runtime.code_package import PACKAGE_FOLDER  # the runtime reads where this writes

ALWAYS_IGNORED = (".git/", ".hg/", ".svn/", "__pycache__/", "*.py[cod]", ".venv/", ".tox/", ".nox/",
                  ".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".ipynb_checkpoints/")
IGNORE_FILES = (".gitignore", ".pipecastignore")
DEFAULT_LIMIT = 100 * 1024 * 1024  # bytes of files before compression
FIXED_MTIME = 946684800  # 2000-01-01: some tools mistrust an mtime of 0


class CodePackageError(PipecastError):
    """The import root cannot be packaged (missing, or too big)."""


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
    """The files of ``import_root`` that go in its package, as sorted POSIX paths relative to it."""
    root = os.path.abspath(import_root)
    if not os.path.isdir(root):
        raise CodePackageError(f"import root {import_root!r} is not a folder; nothing to package")
    rules: list[tuple[str, Callable[[str], bool]]] = [("", _always_ignored)]
    found = []
    for folder, dirs, files in os.walk(root):
        relative = os.path.relpath(folder, root).replace(os.sep, "/")
        prefix = "" if relative == "." else relative + "/"
        rules = [(base, rule) for base, rule in rules if prefix.startswith(base)]  # leave sibling folders' rules
        for name in IGNORE_FILES:
            if name in files:
                rules.append((prefix, _ignore_file(os.path.join(folder, name))))

        def ignored(path: str, rules: list[tuple[str, Callable[[str], bool]]] = rules) -> bool:
            return any(rule(path[len(base):]) for base, rule in rules)

        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)) and not ignored(
            f"{prefix}{d}/"))
        found += [f"{prefix}{f}" for f in files if os.path.isfile(os.path.join(folder, f)) and not ignored(
            f"{prefix}{f}")]
    return sorted(found)


def _always_ignored(path: str) -> bool:
    """:data:`ALWAYS_IGNORED` without pathspec (imported only when an ignore file asks for it: it is slow to load)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if path.endswith("/"):
        return f"{name}/" in ALWAYS_IGNORED
    return fnmatch.fnmatchcase(name, "*.py[cod]")


def _ignore_file(path: str) -> Callable[[str], bool]:
    """The gitignore rules of one ``.gitignore``/``.pipecastignore`` file, as a test of a relative path."""
    import pathspec

    with open(path, encoding="utf-8", errors="replace") as handle:
        spec = pathspec.GitIgnoreSpec.from_lines(handle.read().splitlines())
    return spec.match_file


def build_package(import_root: str, *, limit: int = DEFAULT_LIMIT) -> CodePackage:
    """Archive ``import_root`` reproducibly; CodePackageError past ``limit`` bytes of files."""
    root = os.path.abspath(import_root)
    files = package_files(root)
    sizes = {path: os.path.getsize(os.path.join(root, path)) for path in files}
    total = sum(sizes.values())
    if total > limit:
        biggest = sorted(sizes, key=lambda p: (-sizes[p], p))[:3]
        listed = ", ".join(f"{p} ({_mb(sizes[p])})" for p in biggest)
        raise CodePackageError(
            f"the import root {root!r} holds {_mb(total)} of files to ship as the code package, over the limit of "
            f"{_mb(limit)} (the biggest: {listed}); fix: list data and build output in .pipecastignore (or "
            ".gitignore) and keep data in the artifact store, or bake the code into the image (--code image)")
    buffer = io.BytesIO()
    # gzip's own header holds an mtime and a file name: both fixed here, so the bytes depend on the files only.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            full = os.path.join(root, path)
            with open(full, "rb") as handle:
                content = handle.read()
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


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"
