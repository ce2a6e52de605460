"""Replay (DESIGN §4): run each emitted task's ``run`` script here the way a SkyPilot VM would.

The tasks are taken in the YAML's chain order (SkyPilot runs a pipeline's documents one after the other).
Each ``run`` script gets what SkyPilot gives it: the task's ``envs`` (with ``--env`` overrides for the
run's parameters and the artifact root), ``SKYPILOT_TASK_ID`` and, in a managed-job pipeline,
``SKYPILOT_TASK_IDS`` with every task's id. ``python3`` is this test's interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.runtime.params import render_parameter
from tests.helpers.cases import ROOT, case, compile_case, env_with_cases
from tests.helpers.replay import assert_same_outputs, run_task
from tests.targets.skypilot.support import SETTINGS, task_documents

JOB_ID = 7


def task_ids(header: dict | None, documents: list[dict]) -> list[str]:
    """The ids SkyPilot gives: a managed-job pipeline's per-task ids, or one cluster job's id."""
    if header is None:
        return ["sky-2026-01-01-00-00-00-000001_pipecast-cluster_1"]
    return [f"sky-managed-2026-01-01-00-00-00-000001_{header['name']}_{d['name']}_{JOB_ID}-{i}"
            for i, d in enumerate(documents)]


def task_env(document: dict, ids: list[str], index: int, overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in document["envs"].items() if v is not None}
    env.update(overrides)  # what `--env NAME=VALUE` does
    env["SKYPILOT_TASK_ID"] = ids[index]
    if len(ids) > 1:
        env["SKYPILOT_TASK_IDS"] = "\n".join(ids)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return env


def replay(name: str, parameters: dict, tmp_path: Path) -> None:
    pipeline = case(name).build()
    bundle = compile_case("vm_aws", name, settings=SETTINGS["vm_aws"]).bundle
    header, documents = task_documents(bundle[bundle.main_file])
    root = tmp_path / "replay"
    overrides = {p.name: render_parameter(p.type, parameters[p.name]) for p in pipeline.parameters
                 if p.name in parameters}
    overrides["PIPECAST_ARTIFACT_ROOT"] = f"file://{root}"
    ids = task_ids(header, documents)
    for index, document in enumerate(documents):
        run_task(["bash", "-c", document["run"]], env=task_env(document, ids, index, overrides), timeout=300)
    assert_same_outputs(pipeline, parameters, root, ids[0], tmp_path)


@pytest.mark.parametrize(("name", "parameters"), [
    ("quickstart", {"n": 20, "label": "twenty"}),
    ("ml_training", {"samples": 120, "epochs": 5}),
    ("diamond_after", {}),
    ("hostile", {}),
    ("gather", {"n": 5, "lr": 0.25}),  # literal lists and dicts as one input
])
def test_replay_matches_local_run(name, parameters, tmp_path):
    replay(name, parameters, tmp_path)


@pytest.mark.parametrize("name", ["quickstart", "hostile", "full_options", "ml_training"])
def test_run_script_passes_exactly_the_runtime_command(name):
    """bash hands ``python3`` the argv ``step_command`` builds, with SkyPilot's values substituted."""
    pipeline = case(name).build()
    bundle = compile_case("vm_aws", name, settings=SETTINGS["vm_aws"]).bundle
    header, documents = task_documents(bundle[bundle.main_file])
    ids = task_ids(header, documents)
    # A shell function stands in for python3 and prints the argv it was given, NUL-separated.
    shim = "python3() { printf '%s\\0' \"$@\"; printf 'END\\0'; }\n"
    seen: list[list[str]] = []
    for index, document in enumerate(documents):
        env = {**env_with_cases(), **task_env(document, ids, index, {})}
        env.update({"API_TOKEN": "x", "DB_PASSWORD": "y"})
        result = subprocess.run(["bash", "-c", shim + document["run"]], env=env, capture_output=True,
                                check=True, cwd=str(ROOT))
        words = result.stdout.decode().split("\0")[:-1]
        while words:
            end = words.index("END")
            seen.append(words[:end])
            words = words[end + 1:]
    syntax = EngineSyntax(run_id=ids[0], parameter=lambda p: render_parameter(p.type, p.default),
                          artifact_root=pipeline.artifact_root or "s3://bucket/pipecast", python="python3")
    expected = {step.name: step_command(pipeline, step, syntax, runtime_retry=True, runtime_timeout=True)[1:]
                for step in pipeline.steps}
    assert sorted(seen) == sorted(expected.values())
