"""The code a local-mode DAG ships beside itself: the Python files of its steps' import root.

``<dag_id>.code/`` holds every importable ``.py`` file under the import root of each step's module (the
``sys.path`` entry it was imported from), so a DAG file copied with that folder into any DAGs folder runs with
no ``pythonpath`` setting: the DAG puts the folder first on each task's ``PYTHONPATH``.

What is shipped, so the folder is the same on every machine and never grows by itself:

* only files and folders Python can import (identifier names): ``.venv``, ``site-packages``, a compiled
  ``<dag_id>.code`` folder and ``<dag_id>.dag.py`` file are never importable, so never shipped;
* nothing a ``.gitignore`` or ``.pipecastignore`` in a shipped folder names (simple patterns: ``name``, ``*.py``,
  ``dir/``, ``/anchored``; ``!`` negations are not supported and say so);
* not pipecast itself (the worker's installed pipecast runs the step) nor ``__pycache__``;
* files sorted by path, text as it is; more than :data:`MAX_BYTES` is an error naming the fix.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import sys
from dataclasses import dataclass

from pipecast.compiler import ir
from pipecast.compiler.user_code import is_user_file
from pipecast.targets.base import EmitContext

MAX_BYTES = 10 * 1024 * 1024
IGNORE_FILES = (".gitignore", ".pipecastignore")
# Airflow must not parse the shipped modules as DAG files. Each line is valid as a glob and as a regexp
# (Airflow 3 reads .airflowignore as globs, Airflow 2 as regexps): as globs they match every name, as
# regexps every path. Airflow strips the comment.
AIRFLOWIGNORE = ("# written by pipecast: this folder holds a pipeline's code, not DAG files\n"
                 "[!.]*\n"
                 ".*\n")


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: str
    anchored: bool  # relative to the ignore file's folder, not any name below it
    folders_only: bool


def import_roots(pipeline: ir.Pipeline, context: EmitContext) -> list[str]:
    """The import roots of the steps' modules that hold the user's code (not installed packages), sorted."""
    roots: set[str] = set()
    for module in sorted({step.function.module for step in pipeline.steps}):
        path = _module_file(module)
        if path is None:
            context.error(f"cannot find the file of module {module!r} to ship with the DAG",
                          location=str(pipeline.location) if pipeline.location else None,
                          fix="compile where the module is importable, or --set ship_code=false with the code "
                              "installed on the workers (--set pythonpath=DIR)")
            continue
        if is_user_file(path):
            roots.add(_root_of(path, module))
    return sorted(roots)


def _module_file(module: str) -> str | None:
    loaded = sys.modules.get(module)
    path = getattr(loaded, "__file__", None)
    if path:
        return str(path)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec and spec.origin and os.path.isfile(spec.origin) else None


def _root_of(path: str, module: str) -> str:
    root = os.path.dirname(os.path.abspath(path))
    for _ in range(module.count(".") + (1 if os.path.basename(path) == "__init__.py" else 0)):
        root = os.path.dirname(root)
    return root


def code_files(pipeline: ir.Pipeline, context: EmitContext) -> list[tuple[str, str]]:
    """``(path relative to the import root, text)`` of every file to ship, sorted by path."""
    files: dict[str, tuple[str, str]] = {}  # relative path → (root, text)
    for root in import_roots(pipeline, context):
        for relative, text in _walk(root, context):
            seen = files.get(relative)
            if seen and seen[1] != text:
                context.error(f"{relative!r} is in two import roots with different content ({seen[0]!r} and "
                              f"{root!r}): one folder beside the DAG cannot hold both",
                              fix="give the modules different names, or --set ship_code=false")
            files[relative] = (root, text)
    total = sum(len(text.encode("utf-8")) for _, text in files.values())
    if total > MAX_BYTES:
        context.error(f"the code to ship with the DAG is {total / 1e6:.1f} MB of Python files under "
                      f"{sorted({root for root, _ in files.values()})!r}, more than {MAX_BYTES // 2**20} MiB",
                      fix="name what is not the pipeline's code in a .pipecastignore at the import root, or "
                          "--set ship_code=false with the code installed on the workers")
    return [(relative, text) for relative, (_, text) in sorted(files.items())]


def _walk(root: str, context: EmitContext) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    pending: list[tuple[str, list[tuple[str, _Rule]]]] = [("", [])]
    while pending:
        relative, inherited = pending.pop()
        folder = os.path.join(root, relative)
        rules = inherited + [(relative, rule) for rule in _read_rules(folder, context)]
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            shipped = f"{relative}{name}"
            is_dir = os.path.isdir(path)
            stem = name if is_dir else name.removesuffix(".py")
            if name == "__pycache__" or (not relative and stem == "pipecast") or _ignored(shipped, is_dir, rules):
                continue
            if is_dir and name.isidentifier() and not os.path.islink(path):  # a linked folder could loop
                pending.append((f"{shipped}/", rules))
            elif not is_dir and name.endswith(".py") and stem.isidentifier():
                found.append((shipped, _read(path, context)))
    return found


def _read(path: str, context: EmitContext) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as err:
        context.error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}), so it cannot be shipped with "
                      "the DAG", fix="save the file as UTF-8 (PEP 3120), or name it in a .pipecastignore")
        return ""


def _read_rules(folder: str, context: EmitContext) -> list[_Rule]:
    rules = []
    for name in IGNORE_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle]
        for line in lines:
            if not line or line.startswith("#"):
                continue
            if line.startswith("!"):
                context.error(f"{path}: negated pattern {line!r} is not supported in the code shipped with a DAG",
                              fix="name what to leave out without '!' patterns")
                continue
            folders_only = line.endswith("/")
            pattern = line.rstrip("/")
            rules.append(_Rule(pattern.lstrip("/"), "/" in pattern, folders_only))
    return rules


def _ignored(shipped: str, is_dir: bool, rules: list[tuple[str, _Rule]]) -> bool:
    """Whether a path (relative to the import root) is named by a rule of an ignore file above it."""
    for base, rule in rules:
        if rule.folders_only and not is_dir:
            continue
        below = shipped[len(base):]
        target = below if rule.anchored else below.rsplit("/", 1)[-1]
        if fnmatch.fnmatchcase(target, rule.pattern):
            return True
    return False
