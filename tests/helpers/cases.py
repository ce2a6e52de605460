"""Golden cases (every example in examples/ and every case in tests/golden/cases/, found by glob) and the one
way tests compile a case, or any pipeline, for a target: :func:`compile_case`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipecast.compiler import ir

if TYPE_CHECKING:
    from pipecast.errors import Problem
    from pipecast.targets.base import Bundle

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CASE_FILES = sorted(ROOT.glob("examples/*.py")) + sorted((GOLDEN / "cases").glob("*.py"))


@dataclass(frozen=True)
class Case:
    """One golden case: a file holding one pipeline."""

    name: str
    path: Path

    def load(self) -> Any:
        from pipecast.compiler.loader import load_pipeline

        return load_pipeline(str(self.path))

    def build(self) -> Any:
        return self.load().build()


def _uses_control_flow(found: Case) -> bool:
    try:
        return bool(found.build().uses_control_flow)
    except Exception:  # a broken case fails in the tests that build it, not at collection
        return False


ALL_CASES = [Case(p.stem, p) for p in CASE_FILES]
# Cases with control flow (issue 16): only the local target runs them yet, and every other target's golden is its
# refusal (ERROR.txt). Target tests iterate CASES, the cases every target compiles; goldens and the IR all of them.
CONTROL_FLOW_CASES = [c for c in ALL_CASES if _uses_control_flow(c)]
CASES = [c for c in ALL_CASES if c not in CONTROL_FLOW_CASES]
CASE_IDS = [c.name for c in CASES]
ALL_CASE_IDS = [c.name for c in ALL_CASES]


def case(name: str) -> Case:
    return next(c for c in ALL_CASES if c.name == name)


def golden_settings(target: str) -> dict[str, Any]:
    """Settings every golden compile of ``target`` uses (tests/golden/settings/<target>.json), if any."""
    path = GOLDEN / "settings" / f"{target}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def case_settings(case_name: str, target: str) -> dict[str, Any]:
    """Settings the golden of one case needs on ``target`` beyond :func:`golden_settings`
    (tests/golden/settings/cases/<case>.<target>.json), as a user compiling that case must give them: the ML
    example's maps need a remote artifact root on GitHub Actions."""
    path = GOLDEN / "settings" / "cases" / f"{case_name}.{target}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def golden_dir(case_name: str, target: str) -> Path:
    return GOLDEN / case_name / target


def read_tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by POSIX relative path."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def write_tree(folder: Path, files: dict[str, str]) -> None:
    if folder.exists():
        for p in sorted(folder.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    for relative, text in files.items():
        destination = folder / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text, encoding="utf-8", newline="\n")


def env_with_cases() -> dict[str, str]:
    """An environment whose PYTHONPATH lets child processes import every case module."""
    env = dict(os.environ)
    paths = [str(ROOT / "examples"), str(GOLDEN / "cases"), str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


class Buildable(Protocol):
    """What builds into a pipeline IR: a :class:`Case` or a ``@pipeline`` definition."""

    def build(self) -> ir.Pipeline: ...


@dataclass(frozen=True)
class CompiledCase:
    """A pipeline compiled for one target: the IR that was compiled and the target's bundle."""

    pipeline: ir.Pipeline
    bundle: Bundle

    @property
    def files(self) -> dict[str, str]:
        """Every emitted file's text by its relative path."""
        return self.bundle.as_dict()

    @property
    def main(self) -> str:
        """The text of the main file (the one a user deploys)."""
        return self.bundle[self.bundle.main_file]

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """What the target could not express, with ``on_unsupported="warn"``."""
        return self.bundle.warnings

    def __getitem__(self, path: str) -> str:
        return self.bundle[path]


def compile_case(target: str, source: str | Buildable | ir.Pipeline, *, settings: Mapping[str, Any] | None = None,
                 golden: bool = False, on_unsupported: str = "error") -> CompiledCase:
    """Compile ``source`` (a golden case's name, a case or ``@pipeline`` definition, or a built IR) for ``target``
    through :func:`pipecast.flow.compile_pipeline` (what ``pipecast compile`` calls); raises as it does.

    ``settings`` are the ``--set`` values; with ``golden=True`` they override the golden settings of the target
    (:func:`golden_settings`) instead of standing alone.
    """
    from pipecast.flow import EmitOptions, compile_pipeline

    if isinstance(source, str):
        source = case(source)
    pipeline = source if isinstance(source, ir.Pipeline) else source.build()
    chosen = {**(golden_settings(target) if golden else {}), **(settings or {})}
    bundle = compile_pipeline(pipeline, target, EmitOptions(settings=chosen, on_unsupported=on_unsupported))
    return CompiledCase(pipeline, bundle)
