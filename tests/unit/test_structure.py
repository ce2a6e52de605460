"""The layout's rules (docs/ARCHITECTURE.md): no modules import each other in a cycle, and the target contract is
complete by construction."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipecast.targets.base import Bundle, Feature, Target, native
from pipecast.targets.settings import Settings
from tests.helpers.cases import ROOT


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: top-level ones, also inside top-level ``try``/``if``, but
    not under ``if TYPE_CHECKING:`` (never run) nor inside functions (run when called)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                walk(node.orelse)
                walk(node.finalbody)
                for handler in node.handlers:
                    walk(handler.body)

    walk(tree.body)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module name → the modules of ``package`` it imports at module level.

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``: importing a
    submodule runs its parent package's ``__init__`` first, which is Python's order, not a cycle.
    """
    files = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        home = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..y import z
                    anchor = home.split(".")[:len(home.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                modules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in files]
                imported = modules + ([base] if len(modules) < len(node.names) else [])
            graph[name].update(module for module in imported if module in files and module != name)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import each other (Tarjan's strongly connected components of size > 1),
    written as one cycle through the group: ``a -> b -> a``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [_cycle_through(graph, set(group)) for group in groups]


def _cycle_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """One import path that starts and ends at the group's first module (breadth-first, so the shortest)."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        module = queue.pop(0)
        for imported in sorted(graph[module] & group):
            if imported == start:
                return [*paths[module], start]
            if imported not in paths:
                paths[imported] = [*paths[module], imported]
                queue.append(imported)
    raise AssertionError(f"no cycle through {sorted(group)}")


def test_no_modules_of_pipecast_import_each_other():
    cycles = import_cycles(import_graph(ROOT / "pipecast"))
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle_and_names_it(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.sub import b\n")  # a package importing its module: no cycle
    (package / "a.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from pkg import c\n"
                                  "from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from .. import c\n")
    (package / "c.py").write_text("def later():\n    from pkg import a\n\ntry:\n    from pkg import a\n"
                                  "except ImportError:\n    pass\n")
    graph = import_graph(package)
    assert graph["pkg"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert import_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    (package / "c.py").write_text("def later():\n    from pkg import a\n")  # imported when called: no cycle
    assert import_cycles(import_graph(package)) == []


@dataclass(frozen=True, kw_only=True)
class _NoSettings(Settings):
    """A target that takes no settings."""


def test_a_target_without_a_settings_class_fails_at_class_creation():
    with pytest.raises(TypeError, match="target 'nameless' has no settings class"):
        type("Nameless", (Target,), {"name": "nameless", "capabilities": {f: native() for f in Feature}})
    type("Family", (Target,), {})  # an abstract family base (no name) is checked in its concrete targets


def test_a_target_that_leaves_a_feature_undecided_fails_at_class_creation():
    decided = {f: native() for f in Feature if f is not Feature.GPU}
    with pytest.raises(TypeError, match=r"target 'partial' leaves \['gpu'\] undecided"):
        type("Partial", (Target,), {"name": "partial", "capabilities": decided, "settings_class": _NoSettings})


def test_a_complete_target_is_created():
    target = type("Whole", (Target,), {"name": "whole", "capabilities": {f: native() for f in Feature},
                                       "settings_class": _NoSettings, "emit": lambda self, p, c: Bundle("whole", ())})
    assert not target().can_submit
