"""Golden cases: every example in examples/ and every case in tests/golden/cases/, found by glob."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


CASES = [Case(p.stem, p) for p in CASE_FILES]
CASE_IDS = [c.name for c in CASES]


def case(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def golden_settings(target: str) -> dict[str, Any]:
    """Settings every golden compile of ``target`` uses (tests/golden/settings/<target>.json), if any."""
    path = GOLDEN / "settings" / f"{target}.json"
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
