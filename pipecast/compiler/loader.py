"""Loading ``FILE[:PIPELINE]`` or ``module[:PIPELINE]`` into a pipeline definition."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import TYPE_CHECKING

from pipecast.compiler.user_code import user_frame
from pipecast.errors import LoadError

if TYPE_CHECKING:
    from pipecast.dsl import PipelineDef


def split_reference(reference: str) -> tuple[str, str | None]:
    """Split ``path/to/file.py:name`` (or ``pkg.module:name``) into its two parts."""
    head, sep, tail = reference.rpartition(":")
    if sep and tail and not tail.startswith(("/", "\\")) and (os.sep not in tail):
        return head, tail
    return reference, None


def import_file(path: str) -> object:
    """Import a Python file as a module named by its path from the nearest folder without ``__init__.py``.

    That folder is put on ``sys.path``, so engine tasks can import the same module name.
    """
    absolute = os.path.abspath(path)
    if not os.path.isfile(absolute):
        raise LoadError(f"no such file: {path!r}")
    folder, filename = os.path.split(absolute)
    parts = [os.path.splitext(filename)[0]]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return _import(".".join(parts), path)


def _import(module_name: str, shown: str) -> object:
    try:
        return importlib.import_module(module_name)
    except SyntaxError as err:
        raise LoadError(f"{err.filename}:{err.lineno}: syntax error: {err.msg}") from None
    except ImportError as err:
        raise LoadError(f"cannot import {shown!r}: {err}") from None
    except Exception as err:  # the user's module failed while it ran: say where, not how pipecast got there
        frame = user_frame(err.__traceback__)
        where = f"{frame.location}: " if frame else ""
        raise LoadError(f"{where}importing {shown!r} raised {type(err).__name__}: {err}") from None


def load_pipeline(reference: str) -> PipelineDef:
    """Return the pipeline named in ``reference``, or the only pipeline in the file or module."""
    from pipecast.dsl import PipelineDef

    target, name = split_reference(reference)
    if target.endswith(".py") or os.path.sep in target or os.path.isfile(target):
        module = import_file(target)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = _import(target, target)
    found = {k: v for k, v in vars(module).items() if isinstance(v, PipelineDef)}
    if name is not None:
        candidate = getattr(module, name, None)
        if not isinstance(candidate, PipelineDef):
            raise LoadError(f"{target!r} has no pipeline {name!r}; pipelines there: {sorted(found) or 'none'}")
        return candidate
    unique = {id(v): v for v in found.values()}
    if len(unique) == 1:
        return next(iter(unique.values()))
    if not unique:
        raise LoadError(f"{target!r} defines no @pipeline")
    raise LoadError(f"{target!r} defines {len(unique)} pipelines {sorted(found)!r}; "
                    f"pick one with {target}:NAME")
