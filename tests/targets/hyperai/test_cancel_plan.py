"""hyperai's cancel of a pipeline with exit handlers or hooks, the parts that need no host: what the run keeps, the
host script (``sh -n``), the status while the handlers run. The cancel itself runs on a real SSH + Docker host in
``test_docker.py`` (``test_a_cancel_runs_the_exit_handler…``)."""

from __future__ import annotations

import subprocess

from pipecast.compiler.loader import load_pipeline
from pipecast.runs.status import RunStatus
from pipecast.targets.hyperai.remote import HostConfig, HostView, HyperAIRun, cancel_plan, reconnect
from tests.targets.hyperai.test_docker import PIPELINES


def load(name: str):
    return load_pipeline(str(PIPELINES / f"{name}.py")).build()


def run_of(plan):
    cfg = HostConfig.from_config({"host": "docker-host"}, "hyperai_cancel")
    return HyperAIRun(run_id="run-1", cfg=cfg, directory="pipecast/hyperai_cancel", project="hyperai-cancel-run-1",
                      services=5, metadata={"on_cancel": plan} if plan else None)


def test_only_a_pipeline_with_exit_handlers_or_hooks_keeps_a_cancel_plan():
    assert cancel_plan(load("hyperai_gated"), "run-1") is None
    assert cancel_plan(load("hyperai_cancel"), "run-1") == {
        "steps": [["block_until_stopped", "block_until_stopped", "hyperai_cancel/runs/run-1/block_until_stopped"],
                  ["halve", "halve", "hyperai_cancel/runs/run-1/halve"]],
        "exits": ["failed_steps_after_gate", "alert", "celebrate"]}


def test_the_cancel_without_handlers_is_unchanged_and_with_them_winds_down_on_the_host():
    plain = run_of(None).cancel_command()
    assert plain.startswith("mkdir -p pipecast/hyperai_cancel/runs/hyperai-cancel-run-1 && : >") and \
        plain.endswith("compose --project-name hyperai-cancel-run-1 down --remove-orphans")
    command = run_of(cancel_plan(load("hyperai_cancel"), "run-1")).cancel_command()
    assert "/cancelling && " in command and "nohup setsid sh -c " in command
    assert subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True).returncode == 0


def test_a_run_whose_handlers_run_after_its_cancel_reads_running_then_cancelled():
    run = run_of(cancel_plan(load("hyperai_cancel"), "run-1"))
    running = [{"Service": "failed-steps-after-gate", "State": "running"}]
    assert run.status_of(HostView(frozenset({"started", "cancelling"}), None, "", running)) is RunStatus.RUNNING
    assert run.detail == "cancelled: the exit handlers and hooks run"
    assert run.status_of(HostView(frozenset({"started", "cancelling", "cancelled"}), None, "", [])) \
        is RunStatus.CANCELLED


def test_reconnecting_keeps_the_plan():
    plan = cancel_plan(load("hyperai_cancel"), "run-1")
    record = {"id": "run-1", "pipeline": "hyperai_cancel", "status": "running", "engine_run_id": "p",
              "metadata": {"host": "docker-host", "remote_dir": "pipecast/hyperai_cancel", "on_cancel": plan}}
    assert reconnect(record, {}).on_cancel == plan
    assert reconnect({**record, "metadata": {"host": "docker-host"}}, {}).on_cancel is None
