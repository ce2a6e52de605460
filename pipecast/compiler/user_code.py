"""Explaining an exception raised in the user's own code: where (their ``file:line``) and what they wrote.

A traceback runs through pipecast, the standard library and installed packages; the user wants the
innermost line of *their* code. :func:`user_frame` finds it, and :func:`construct_at` reads the
source there to tell an ``if`` from a ``for`` or an ``assert``, so an error can say "`if` on pipeline
parameter 'n'" instead of "truth test".
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
from dataclasses import dataclass
from functools import cache, lru_cache
from types import TracebackType
from typing import TYPE_CHECKING

import pipecast
from pipecast.compiler import ir
from pipecast.compiler.symbolic import SymbolicValueError
from pipecast.errors import PipecastError, Problem

if TYPE_CHECKING:
    from pipecast.dsl import PipelineDef


@cache
def _library_roots() -> tuple[str, ...]:
    """The folders of pipecast itself, the standard library and the installed packages.

    Read on the first error only: sysconfig is slow to import.
    """
    import sysconfig

    paths = sysconfig.get_paths()
    roots = {os.path.dirname(os.path.abspath(pipecast.__file__))}
    roots.update(os.path.abspath(paths[key]) for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths)
    return tuple(root.rstrip(os.sep) + os.sep for root in roots)


def is_user_file(filename: str) -> bool:
    """Whether ``filename`` is the user's code: not pipecast, the standard library or an installed package."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    return not os.path.abspath(filename).startswith(_library_roots())


@dataclass(frozen=True, slots=True)
class UserFrame:
    """The innermost line of the user's code in a traceback, with the column span Python recorded (3.11+)."""

    location: ir.Location
    filename: str
    line: int
    column: int | None = None
    end_line: int | None = None
    end_column: int | None = None


def import_root(module: str) -> str | None:
    """The sys.path entry ``module`` was imported from (a local run's PYTHONPATH, a code package's folder)."""
    loaded = sys.modules.get(module)
    path: str | None = getattr(loaded, "__file__", None)
    if not path:
        return None
    root = os.path.dirname(os.path.abspath(path))
    for _ in range(module.count(".") + (1 if path.endswith("__init__.py") else 0)):
        root = os.path.dirname(root)
    return root


_RELATIVE_FILES: dict[tuple[str, str], str] = {}


def relative_file(filename: str, module: str) -> str:
    """The file's path relative to its import root (``pkg/mod.py``), so the IR is the same on any machine."""
    key = (filename, module)
    cached = _RELATIVE_FILES.get(key)
    if cached is None:
        path = os.path.abspath(filename)
        depth = 1 if module == "__main__" else module.count(".") + 1
        if os.path.basename(path) == "__init__.py":
            depth += 1
        parts = path.split(os.sep)
        cached = _RELATIVE_FILES[key] = "/".join(parts[-depth:])
    return cached


def caller_location(depth: int = 2) -> ir.Location:
    """The ``file:line`` of the code ``depth`` frames up (cheap: no ``inspect.stack()``)."""
    frame = sys._getframe(depth)
    module = frame.f_globals.get("__name__", "__main__")
    return ir.Location(file=relative_file(frame.f_code.co_filename, module), line=frame.f_lineno)


def user_frame(tb: TracebackType | None) -> UserFrame | None:
    """The innermost frame of ``tb`` that runs the user's own code (None if the traceback never reaches it)."""
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if is_user_file(code.co_filename):
            found = tb
        tb = tb.tb_next
    if found is None:
        return None
    frame = found.tb_frame
    module = frame.f_globals.get("__name__", "__main__")
    line = found.tb_lineno
    column = end_line = end_column = None
    positions = getattr(frame.f_code, "co_positions", None)  # Python 3.11+
    if positions is not None and found.tb_lasti >= 0:
        start, end, column, end_column = list(positions())[found.tb_lasti // 2]
        if start == line:
            end_line = end
        else:
            column = end_column = None
    return UserFrame(ir.Location(file=relative_file(frame.f_code.co_filename, module), line=line),
                     frame.f_code.co_filename, line, column, end_line, end_column)


# What the user wrote around a value Python had to decide: the construct and the part of it that decides.
_DECIDING_PART: dict[type[ast.AST], tuple[str, str]] = {
    ast.If: ("if", "test"),
    ast.While: ("while", "test"),
    ast.IfExp: ("if … else", "test"),
    ast.Assert: ("assert", "test"),
    ast.For: ("for", "iter"),
    ast.AsyncFor: ("for", "iter"),
    ast.Match: ("match", "subject"),
}
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _deciding_parts(node: ast.AST) -> tuple[str, list[ast.AST]] | None:
    """The keyword of a construct and the expressions it decides on (a comprehension's iterables)."""
    if isinstance(node, _COMPREHENSIONS):
        return "for", [generator.iter for generator in node.generators]
    entry = _DECIDING_PART.get(type(node))
    return (entry[0], [getattr(node, entry[1])]) if entry else None


def construct_at(where: UserFrame) -> str | None:
    """The control-flow construct deciding on the failing expression at ``where``, if any.

    One of ``if``, ``while``, ``for``, ``assert``, ``match``; None when it is not one (or the source cannot be
    read).
    """
    tree = _parse(where.filename)
    if tree is None:
        return None
    failing = _Span(where.line, where.column, where.end_line or where.line, where.end_column)
    best: tuple[tuple[int, int], str] | None = None
    for node in ast.walk(tree):
        entry = _deciding_parts(node)
        if entry is None:
            continue
        keyword, parts = entry
        for part in map(_Span.of, parts):
            # The failing instruction computes the deciding part (``n > 2`` in ``if n > 2:``), or is the
            # construct's own (the loop's iteration, the ``while``'s jump), spanning the construct around it.
            if failing.within(part) or (part.within(failing) and failing.within(_Span.of(node))):
                if best is None or part.size < best[0]:
                    best = part.size, keyword
    return best[1] if best else None


@dataclass(frozen=True, slots=True)
class _Span:
    """A source range; without columns (Python 3.10) it compares whole lines."""

    line: int
    column: int | None
    end_line: int
    end_column: int | None

    @classmethod
    def of(cls, node: ast.AST) -> _Span:
        # ast.AST declares no positions; the nodes given here (deciding expressions and their constructs) have them.
        return cls(node.lineno, node.col_offset, node.end_lineno or node.lineno,  # type: ignore[attr-defined]
                   node.end_col_offset)  # type: ignore[attr-defined]

    @property
    def size(self) -> tuple[int, int]:
        return self.end_line - self.line, (self.end_column or 0) - (self.column or 0)

    def within(self, other: _Span) -> bool:
        if self.column is None or self.end_column is None or other.column is None or other.end_column is None:
            return other.line <= self.line and self.end_line <= other.end_line
        return (other.line, other.column) <= (self.line, self.column) and \
            (self.end_line, self.end_column) <= (other.end_line, other.end_column)


@lru_cache(maxsize=8)
def _parse_text(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _parse(filename: str) -> ast.Module | None:
    lines = linecache.getlines(filename)
    return _parse_text("".join(lines)) if lines else None


_CONTROL_FLOW = ("Python's control flow runs once, while pipecast records the pipeline's steps and before any value "
                 "exists, so it cannot decide on a run-time value")
_SYMBOLIC = ("parameters and step outputs are placeholders while pipecast records the pipeline's steps: their "
             "values exist only when the pipeline runs")
_BRANCH = ("branch with `with pipecast.If(<condition>):` (then `pipecast.Elif(...)`/`pipecast.Else()`), comparing "
           "with ==, !=, <, <=, >, >=, pipecast.is_in(...) and combining with &, | and ~")
_LOOP = "map a step over it: `with pipecast.ParallelFor({name}) as item:` or `some_step.expand(arg={name})`"


def problem_from_exception(err: Exception, pipeline: PipelineDef) -> Problem:
    """The problem to report for ``err``, raised by ``pipeline``'s function while it was traced."""
    frame = user_frame(err.__traceback__)
    location = str(frame.location if frame else pipeline.location)
    if isinstance(err, SymbolicValueError):
        return _symbolic_problem(err, frame, location)
    if isinstance(err, PipecastError):
        return Problem(str(err), location=location)
    text = str(err)
    fix = None
    if any(name in text for name in ("ParamRef", "OutputRef", "StepCall")):
        fix = f"{_SYMBOLIC}; compute with them inside a step"
    return Problem(f"the pipeline function raised {type(err).__name__} while pipecast traced it: {text}",
                   location=location, fix=fix)


def _expression(name: str) -> str:
    """A parameter's name as the user writes it (``'xs'`` → ``xs``); other values as a ``<placeholder>``."""
    return name[1:-1] if len(name) > 1 and name[0] == name[-1] == "'" else f"<{name}>"


def _symbolic_problem(err: SymbolicValueError, frame: UserFrame | None, location: str) -> Problem:
    construct = construct_at(frame) if frame else None
    if construct is None and err.detail:
        return Problem(err.detail, location=location)
    if construct == "for":
        what = f"`for` loop over {err.subject}"
    elif construct:
        what = f"`{construct}` on {err.subject}"
    elif err.kind == "iterate":
        what = f"iterating or unpacking {err.subject}"
    elif err.kind == "truth":
        what = f"truth test (`and`, `or`, `not`, `bool()`) of {err.subject}"
    else:
        what = f"{err.operation} on {err.subject}"
    if construct and err.kind == "compare":
        what += f" (compared with {err.operation})"
    elif construct and err.kind == "compute":
        what += f" (through {err.operation})"
    inside = f"or pass {err.name} to a step and {{}} there"
    if construct == "for" or (construct is None and err.kind == "iterate"):
        return Problem(f"{what}: {_CONTROL_FLOW}", location=location,
                       fix=f"{_LOOP.format(name=_expression(err.name))}; {inside.format('write the `for`')}")
    if construct or err.kind in ("truth", "compare"):
        there = f"write the `{construct}`" if construct else "decide"
        branch = _BRANCH if construct != "while" else "pipecast has no loop that repeats until a condition holds"
        if err.operation in ("`in`", "`not in`"):
            function = "not_in" if err.operation == "`not in`" else "is_in"
            branch = (f"test membership with pipecast.{function}({_expression(err.name)}, [...]) inside "
                      "`with pipecast.If(...)`")
        return Problem(f"{what}: {_CONTROL_FLOW}", location=location, fix=f"{branch}; {inside.format(there)}")
    use = f"use {err.operation}"
    return Problem(f"{what}: {_SYMBOLIC}", location=location,
                   fix=f"compute it inside a step: pass {err.name} to a step and {use} there")
