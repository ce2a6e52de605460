"""Shared helpers of the github target's tests: reading the workflow back, and GitHub's own linters on it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from pipecast.compiler import ir
from pipecast.targets.github.syntax import workflow_path
from tests.helpers.cases import ROOT, CompiledCase
from tests.helpers.renamed_ir import renamed

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
ACTIONLINT_CONFIG = HERE / "data" / "actionlint.yaml"


def hostile_names_pipeline() -> ir.Pipeline:
    """``hostile_names`` with its first step and output renamed to hostile names after building (tracing
    refuses them; the target must keep any name an IR carries data)."""
    from pipecast.compiler.loader import load_pipeline
    from tests.targets.github.gh_pipelines import EVIL_OUTPUT, EVIL_STEP

    built = load_pipeline(str(HERE / "gh_pipelines.py") + ":hostile_names").build()
    return renamed(built, {"produce": EVIL_STEP}, {("produce", "output"): EVIL_OUTPUT})


def workflow_file(compiled: CompiledCase) -> str:
    """The text of the workflow file, which sits where GitHub looks for it and is named after the pipeline."""
    pipeline = compiled.pipeline
    assert compiled.bundle.main_file == workflow_path(pipeline) == f".github/workflows/{pipeline.name}.yml"
    return compiled.main


def lint(workflows: Mapping[str, str], folder: Path) -> None:
    """actionlint (no findings) and SchemaStore's workflow schema (check-jsonschema's copy) on every file."""
    target = folder / ".github" / "workflows"
    target.mkdir(parents=True)
    paths = []
    for name, text in workflows.items():
        path = target / f"{name}.yml"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    lint_run = subprocess.run([str(BIN / "actionlint"), "-no-color", "-config-file", str(ACTIONLINT_CONFIG), *paths],
                              capture_output=True, text=True, cwd=folder, timeout=120)
    assert lint_run.returncode == 0, f"actionlint found problems:\n{lint_run.stdout}{lint_run.stderr}"
    schema_run = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                                 *paths], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert schema_run.returncode == 0, f"schema validation failed:\n{schema_run.stdout}{schema_run.stderr}"
