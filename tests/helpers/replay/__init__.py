"""The engine-neutral half of every replay (DESIGN §4): run a task's command here, compare outputs.

Each engine family's replayer (in its own test module) reads the emitted spec, orders the tasks by the
spec's own dependency fields, substitutes the engine's placeholders as the engine documents them, and
hands each resulting argv (and env) to :func:`run_task`. :func:`assert_same_outputs` then checks every
step's outputs equal those of ``pipecast run`` with the same parameters.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import ROOT, env_with_cases


def run_task(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one task's command; ``python`` at argv[0] is this interpreter. Fails the test on a non-zero exit
    unless ``check`` is false (a replay whose engine goes on after a failed task)."""
    command = list(argv)
    if command and Path(command[0]).name in ("python", "python3"):
        command[0] = sys.executable
    full_env = env_with_cases()
    full_env.update(env or {})
    result = subprocess.run(command, env=full_env, cwd=str(cwd or ROOT), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0 or not check, f"task failed ({result.returncode}): {command}\n{result.stderr}"
    return result


def local_outputs(pipeline: Any, parameters: Mapping[str, Any], root: Path) -> dict[str, dict[str, Any]]:
    """Every step's outputs from ``pipecast run`` (the local runner) with these parameters."""
    run = run_pipeline(pipeline, dict(parameters), artifact_root=f"file://{root}", cache=False)
    return {step.name: run.step_outputs(step.name) for step in pipeline.steps}


def replayed_outputs(pipeline: Any, root: Path, run_id: str) -> dict[str, dict[str, Any]]:
    """Every step's outputs as the replayed tasks stored them under ``root`` for ``run_id``."""
    return {step.name: load_outputs(f"file://{root}", pipeline.name, run_id, step.name) for step in pipeline.steps}


def assert_same_outputs(pipeline: Any, parameters: Mapping[str, Any], replay_root: Path, run_id: str,
                        tmp_path: Path) -> None:
    """The replayed run's outputs equal ``pipecast run``'s, step by step."""
    expected = local_outputs(pipeline, parameters, tmp_path / "local-run")
    assert replayed_outputs(pipeline, replay_root, run_id) == expected
