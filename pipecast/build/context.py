"""The code that ships: the import root's files, chosen reproducibly, hashed, and copied into a build context.

What counts as code: every file under the import root except what ``.gitignore`` and ``.pipecastignore`` files
exclude (in the root and in sub-folders, git's pattern rules through ``pathspec``), and what is never code:
``.git``, ``__pycache__``, compiled ``*.pyc`` and any folder that is a virtualenv (it holds ``pyvenv.cfg``).
Files are listed sorted by their POSIX path, so the digest and the build context are the same on every machine.

:func:`code_digest` is the one hash of the code that the image tag, the code package and the runtime's check
share.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pipecast.errors import BuildError

if TYPE_CHECKING:
    from pipecast.compiler import ir

IGNORE_FILES = (".gitignore", ".pipecastignore")
ALWAYS_IGNORED = (".git/", ".hg/", ".svn/", "__pycache__/", "*.pyc", "*.pyo", ".pipecast-build/")
FIXED_MTIME = 315532800  # 1980-01-01 00:00 UTC: the earliest time a zip entry can carry
DEFAULT_MAX_BYTES = 200 * 1024 * 1024


def import_root(pipeline: ir.Pipeline) -> Path:
    """The folder the pipeline's step modules are imported from (``examples/ml_pipeline.py`` → ``examples``).

    Each step's module must already be imported (the pipeline was built in this process); a module ``a.b.c``
    in ``/src/a/b/c.py`` has the root ``/src``. Steps from installed packages (site-packages) are not code to
    ship: they come with the requirements. Every other step must share one root.
    """
    from pipecast.compiler.user_code import is_user_file

    roots: dict[Path, str] = {}
    for step in pipeline.steps:
        module = sys.modules.get(step.function.module)
        filename = getattr(module, "__file__", None)
        if not filename or not is_user_file(filename):
            continue
        roots.setdefault(module_root(step.function.module, filename), step.name)
    if len(roots) > 1:
        shown = ", ".join(f"{str(root)!r} (step {name!r})" for root, name in sorted(roots.items()))
        raise BuildError(f"pipeline {pipeline.name!r} imports its steps from several roots: {shown}",
                         fix="keep the step modules under one folder (one import root), or install the others "
                             "as a package and list it in requirements=")
    if not roots:
        raise BuildError(f"pipeline {pipeline.name!r} has no step module to ship: none of its steps' modules is "
                         "imported from a file of your own in this process",
                         fix="build from the pipeline's file or module (pipecast build FILE.py or MODULE)")
    return next(iter(roots))


def module_root(module: str, filename: str) -> Path:
    """The folder a module named ``module`` (defined in ``filename``) is imported from."""
    path = Path(os.path.abspath(filename))
    depth = module.count(".") + 1 + (path.name == "__init__.py")
    return path.parents[depth - 1]


def code_files(root: str | os.PathLike[str]) -> list[str]:
    """Every file of the code under ``root``, as sorted POSIX paths relative to it (ignore files applied)."""
    import pathspec

    base = Path(root)
    if not base.is_dir():
        raise BuildError(f"import root {str(base)!r} is not a folder")
    found: list[str] = []
    # Each spec applies to paths relative to the folder its ignore file is in (git's rule).
    stack: list[tuple[Path, list[tuple[str, pathspec.GitIgnoreSpec]]]] = [
        (base, [("", pathspec.GitIgnoreSpec.from_lines(ALWAYS_IGNORED))])]
    while stack:
        folder, specs = stack.pop()
        relative_folder = folder.relative_to(base).as_posix()
        prefix = "" if relative_folder == "." else relative_folder + "/"
        local = [line for name in IGNORE_FILES if (folder / name).is_file()
                 for line in (folder / name).read_text(encoding="utf-8", errors="replace").splitlines()]
        if local:
            specs = [*specs, (prefix, pathspec.GitIgnoreSpec.from_lines(local))]
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                relative = prefix + entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                if _ignored(relative + ("/" if is_dir else ""), specs):
                    continue
                if is_dir:
                    if not (Path(entry.path) / "pyvenv.cfg").exists():
                        stack.append((Path(entry.path), specs))
                elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
                    found.append(relative)
    return sorted(found)


def _ignored(relative: str, specs: Iterable[tuple[str, object]]) -> bool:
    for prefix, spec in specs:
        if relative.startswith(prefix) and spec.match_file(relative[len(prefix):]):  # type: ignore[attr-defined]
            return True
    return False


def code_digest(import_root: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of the code under ``import_root``: every file's path, executable bit and content.

    Independent of mtimes, owners and the order the file system lists files in.
    """
    total = hashlib.sha256()
    base = Path(import_root)
    for relative in code_files(base):
        path = base / relative
        if path.is_symlink():
            kind, content = b"l", os.readlink(path).encode()
        else:
            kind, content = (b"x" if os.stat(path).st_mode & stat.S_IXUSR else b"f"), path.read_bytes()
        name = relative.encode()
        total.update(b"%s %d %s %s\n" % (kind, len(name), name, hashlib.sha256(content).hexdigest().encode()))
    return total.hexdigest()


def check_size(root: str | os.PathLike[str], files: list[str], max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """The files' total size; BuildError naming the largest when it passes ``max_bytes``."""
    base = Path(root)
    sizes = [(os.lstat(base / f).st_size, f) for f in files]
    total = sum(size for size, _ in sizes)
    if total > max_bytes:
        largest = ", ".join(f"{name!r} ({size / 2**20:.1f} MiB)" for size, name in sorted(sizes, reverse=True)[:5])
        raise BuildError(f"the code under {str(base)!r} is {total / 2**20:.1f} MiB, more than the "
                         f"{max_bytes / 2**20:.0f} MiB limit; the largest files: {largest}",
                         fix="list data, outputs and environments in .pipecastignore (or .gitignore), or raise "
                             "the limit with --set max_context_mb=N in the build settings")
    return total


def copy_code(root: str | os.PathLike[str], dest: str | os.PathLike[str],
              max_bytes: int = DEFAULT_MAX_BYTES) -> list[str]:
    """Copy the code under ``root`` into ``dest`` with fixed mtimes and modes; return the files copied."""
    files = code_files(root)
    check_size(root, files, max_bytes)
    base, target = Path(root), Path(dest)
    for relative in files:
        source, copy = base / relative, target / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), copy)
            continue
        shutil.copyfile(source, copy)
        os.chmod(copy, 0o755 if os.stat(source).st_mode & stat.S_IXUSR else 0o644)
    fix_times(target)
    return files


def fix_times(folder: str | os.PathLike[str]) -> None:
    """Give every file and folder under ``folder`` (itself included) the same fixed mtime."""
    for current, dirs, names in os.walk(folder):
        for name in [*names, *dirs]:
            os.utime(os.path.join(current, name), (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
    os.utime(folder, (FIXED_MTIME, FIXED_MTIME))
