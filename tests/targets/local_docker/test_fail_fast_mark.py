"""Compose fail-fast reads one mark, not every record: each failing step marks its run failed (``inline_flow``).

The services' own commands run here as their containers would run them (``replay``: the Compose file loaded with
the run's variables, the mounted folder mapped to the host's). Benchmark: ``benchmarks/compose_fail_fast.py``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import StepInvocation
from pipecast.runtime.inline_flow import FAIL_FAST_ENV, FAILED_MARK, STOPPED, InlineStep
from pipecast.runtime.process import Cancellation
from pipecast.targets.inline_flow import mini_plan
from tests.helpers.cases import ROOT, env_with_cases
from tests.targets.local_docker import flow_pipelines
from tests.targets.local_docker.replay import load, service_argv, service_env
from tests.targets.local_docker.test_flow import compiled

RUN = "run-1"


def services(name: str, root: Path, parameters: dict[str, Any] | None = None) -> dict[str, tuple[list[str], dict]]:
    """Each step's container command and environment, by step name."""
    pipeline = getattr(flow_pipelines, name).build()
    values = {p.name: (parameters or {}).get(p.name, p.default) for p in pipeline.parameters}
    env = {"PIPECAST_RUN_ID": RUN, "PIPECAST_ARTIFACT_DIR": str(root),
           **{f"PIPECAST_PARAM_{p.name}": str(values[p.name]) for p in pipeline.parameters}}
    document = load(compiled(name, "local_docker")[f"{name}.local_docker.compose.yaml"], env)
    return {service["labels"]["dev.pipecast.step"]: (service_argv(service), service_env(service, {}))
            for service in document["services"].values()}


def run_service(command: tuple[list[str], dict]) -> subprocess.CompletedProcess[str]:
    argv, env = command
    return subprocess.run(argv, env={**env_with_cases(), **env}, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def mark(store: ArtifactStore, pipeline: str) -> dict[str, Any] | None:
    path = f"{store.run_dir(pipeline, RUN)}/{FAILED_MARK}"
    return dict(store.read_json(path)) if store.exists(path) else None


def test_a_failing_step_marks_the_run_and_a_fail_fast_step_reads_the_mark(tmp_path):
    root = tmp_path / "art"
    store = ArtifactStore(f"file://{root}")
    commands = services("compose_hooks", root, {"x": 2, "limit": 4})  # square(2) = 4 is not below 4
    assert FAIL_FAST_ENV in commands["halve"][1] and FAIL_FAST_ENV not in commands["square"][1]
    assert run_service(commands["square"]).returncode == 0
    assert mark(store, "compose_hooks") is None  # a step that succeeds marks nothing
    failed = run_service(commands["check_below"])
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert mark(store, "compose_hooks")["step"] == "check_below"  # type: ignore[index]
    skipped = run_service(commands["halve"])
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    halve = store.read_json(f"{store.step_dir('compose_hooks', RUN, 'halve')}/meta.json")
    assert (halve["status"], halve["reason"]) == ("skipped", STOPPED)


def test_a_failed_item_marks_the_run(tmp_path):
    root = tmp_path / "art"
    store = ArtifactStore(f"file://{root}")
    result = run_service(services("compose_fail", root)["check_below"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert mark(store, "compose_fail") is not None


def test_the_mark_alone_is_what_fail_fast_reads(tmp_path, monkeypatch):
    """A step's own record of failure is not looked for: only the mark (written with it) is read."""
    pipeline = flow_pipelines.compose_hooks.build()
    store = ArtifactStore(f"file://{tmp_path}")
    base = StepInvocation(function="m:f", pipeline=pipeline.name, step="halve", run_id=RUN,
                          artifact_root=f"file://{tmp_path}")
    monkeypatch.setenv(FAIL_FAST_ENV, "1")

    def halve() -> InlineStep:
        return InlineStep(mini_plan(pipeline, next(s for s in pipeline.steps if s.name == "halve")), {}, base,
                          Cancellation())

    for name in ("square", "check_below"):
        store.write_json(f"{store.step_dir(pipeline.name, RUN, name)}/meta.json", {"status": "succeeded"})
    assert halve().skip_reason() is None
    halve().mark_failed("elsewhere", "boom")
    assert halve().skip_reason() == STOPPED
