"""The code a local-mode DAG ships beside itself: the Python files of its steps' import root.

``<dag_id>.code/`` holds every importable ``.py`` file under the import root of each step's module (the
``sys.path`` entry it was imported from), so a DAG file copied with that folder into any DAGs folder runs with
no ``pythonpath`` setting: the DAG puts the folder first on each task's ``PYTHONPATH``.

What is shipped, so the folder is the same on every machine and never grows by itself:

* the code ``pipecast build`` ships (:func:`pipecast.build.context.code_files`: ``.gitignore`` and
  ``.pipecastignore`` rules as git reads them, no ``.git``, ``__pycache__`` or virtualenv), and of it only the
  files and folders Python can import (identifier names): a compiled ``<dag_id>.code`` folder and
  ``<dag_id>.dag.py`` file are never importable, so never shipped;
* not pipecast itself (the worker's installed pipecast runs the step);
* files sorted by path, text as it is; more than :data:`MAX_BYTES` is an error naming the fix.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from pipecast.build.context import code_files as listed_code
from pipecast.build.context import module_root
from pipecast.compiler import ir
from pipecast.compiler.user_code import is_user_file
from pipecast.targets.base import EmitContext

MAX_BYTES = 10 * 1024 * 1024
# Airflow must not parse the shipped modules as DAG files. Each line is valid as a glob and as a regexp
# (Airflow 3 reads .airflowignore as globs, Airflow 2 as regexps): as globs they match every name, as
# regexps every path. Airflow strips the comment.
AIRFLOWIGNORE = ("# written by pipecast: this folder holds a pipeline's code, not DAG files\n"
                 "[!.]*\n"
                 ".*\n")


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
            roots.add(str(module_root(module, path)))
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
    """The importable Python files among the code under ``root`` (:func:`pipecast.build.context.code_files`)."""
    found: list[tuple[str, str]] = []
    for relative in listed_code(root):
        *folders, name = relative.split("/")
        stem = name.removesuffix(".py")
        if stem == name or not all(part.isidentifier() for part in [*folders, stem]):
            continue  # not a module Python can import: no .py, or a folder or file name with '.', '-', ...
        if (folders or [stem])[0] == "pipecast":
            continue  # the worker's installed pipecast runs the step
        found.append((relative, _read(os.path.join(root, *relative.split("/")), context)))
    return found


def _read(path: str, context: EmitContext) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as err:
        context.error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}), so it cannot be shipped with "
                      "the DAG", fix="save the file as UTF-8 (PEP 3120), or name it in a .pipecastignore")
        return ""
