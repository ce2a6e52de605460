"""Where a job finds the code and pipecast: the working directory, the install script and pip's cache key.

The repository holds the pipeline's modules; the runtime runs in their import root (relative to the
repository, so ``examples/quickstart.py`` runs in ``examples``). The job installs exactly the compiling
pipecast: the wheel shipped in the repository under :data:`WHEEL_DIR` when it is there (written by
:func:`pipecast.build.wheel.pipecast_wheel`), else that version from the package index; never an
unpinned ``pipecast``. Then, as ``pipecast build`` puts them in a step's image: the pipeline's declared
``requirements=`` (when it declares none, a ``requirements.txt`` at the import root), and the step's own
``packages=``.
"""

from __future__ import annotations

import functools
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import pipecast
from pipecast.compiler import ir
from pipecast.compiler.user_code import import_root

WHEEL_DIR = ".github/pipecast"  # where the shipped wheel of pipecast sits in the repository
REQUIREMENTS = "requirements.txt"


def wheel_path() -> str:
    """The shipped wheel's path in the repository (the name a wheel of this pipecast version has)."""
    return f"{WHEEL_DIR}/pipecast-{pipecast.__version__}-py3-none-any.whl"


def repository_root(folder: str) -> Path | None:
    """The nearest folder at or above ``folder`` that holds ``.git`` (a checkout or a worktree), or None."""
    start = Path(folder).resolve()
    return next((p for p in (start, *start.parents) if (p / ".git").exists()), None)


def step_import_root(step: ir.Step) -> tuple[str, str] | None:
    """The import root of the step's module relative to its repository, and that repository, or None.

    Known only when the module was imported by this process (it is when the pipeline was loaded from a
    file) and sits inside a git repository.
    """
    root = import_root(step.function.module)
    return _in_repository(root) if root else None


@functools.lru_cache(maxsize=64)
def _in_repository(root: str) -> tuple[str, str] | None:
    # Cached because every step of a module asks, and resolving walks the disk (most of a 1,000-step emit);
    # build_workflow clears it, so one emit never sees another's disk.
    repository = repository_root(root)
    if repository is None:
        return None
    return Path(root).resolve().relative_to(repository).as_posix(), str(repository)


def clear_cache() -> None:
    """Forget what the disk looked like: called at the start of every emit."""
    _in_repository.cache_clear()
    _requirements_exists.cache_clear()


def inferred_working_directory(step: ir.Step) -> str | None:
    """The working directory of the step's job: its module's import root, unless that is the repository root."""
    found = step_import_root(step)
    return found[0] if found and found[0] != "." else None


def requirements_file(step: ir.Step) -> str | None:
    """``requirements.txt`` at the step's import root, by its path in the repository, when there is one."""
    found = step_import_root(step)
    if found is None:
        return None
    relative, repository = found
    path = REQUIREMENTS if relative == "." else f"{relative}/{REQUIREMENTS}"
    return path if _requirements_exists(os.path.join(repository, path)) else None


@functools.lru_cache(maxsize=64)
def _requirements_exists(path: str) -> bool:
    return os.path.isfile(path)


def install_script(requirements: str | None, packages: Sequence[str] = ()) -> str:
    """The install step's bash script: the pinned pipecast (shipped wheel first), then the requirements.

    ``requirements`` is a requirements file in the repository; ``packages`` are requirement specifiers (the
    pipeline's ``requirements=`` and the step's ``packages=``).
    """
    wheel = shlex.quote(wheel_path())
    pinned = shlex.quote(f"pipecast=={pipecast.__version__}")
    lines = [
        "# Exactly the compiling pipecast: the wheel shipped in the repository, else that version from the index.",
        f"if [ -f {wheel} ]; then",
        f"  python -m pip install {wheel}",
        "else",
        f"  python -m pip install {pinned}",
        "fi",
    ]
    if requirements:
        lines.append(f"python -m pip install -r {shlex.quote(requirements)}")
    if packages:
        lines.append(" ".join(["python -m pip install", *(shlex.quote(p) for p in packages)]))
    return "\n".join(lines) + "\n"


def declared_packages(pipeline: ir.Pipeline, step: ir.Step) -> tuple[str, ...]:
    """The pipeline's ``requirements=`` then the step's ``packages=``, each once, in that order."""
    return tuple(dict.fromkeys([*pipeline.requirements, *step.packages]))
