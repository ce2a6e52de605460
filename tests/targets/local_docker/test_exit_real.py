"""Exit handlers and hooks under a real Docker engine and Compose v2 (``pipecast run --target local_docker``).

``compose_hooks``: an exit handler reading its group's status, an on_failure and an on_success hook. A run where a
step of the group fails (the handler names it, on_failure runs, on_success does not, the step after it does not
run, the run fails) and a green run, started side by side; every step's result equals ``pipecast run``'s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipecast.runs.store import RunStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.inline_flow import STOPPED
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.processes import finish, wait_until
from tests.targets.local_docker.flow_pipelines import compose_cancel, compose_fail_fast, compose_hooks
from tests.targets.local_docker.test_flow import _results
from tests.targets.local_docker.test_real_engine import ROOT, WAIT, env_with_cases, run_id_of, start_run, step_log


def local_results(pipeline: Any, parameters: dict[str, Any], root: Path) -> tuple[str, dict[str, Any]]:
    """``pipecast run``'s status and each step's (status, outputs), the run failing or not."""
    run = run_pipeline(pipeline, parameters, artifact_root=f"file://{root}", cache=False, raise_on_failure=False)
    results = {}
    for name, state in run.steps.items():
        ran = state.status in ("done", "cached")
        outputs = load_outputs(f"file://{root}", pipeline.name, run.id, name) if ran else None
        results[name] = ("succeeded" if ran else state.status, outputs)
    return run.status, results


def test_exit_handler_and_hooks_run_after_a_failed_step_and_in_a_green_run(docker_env, case_image, tmp_path):
    runs = {}
    for label, x in (("failing", 2), ("green", 1)):
        root = tmp_path / label
        root.mkdir()
        runs[label] = (root, x, start_run("tests/targets/local_docker/flow_pipelines.py:compose_hooks", "-p",
                                          f"x={x}", "--set", f"image={case_image}", "--artifact-root", str(root)))
    for label, (root, x, process) in runs.items():
        stdout, stderr = finish(process, timeout=WAIT)
        pipeline = compose_hooks.build()
        status, expected = local_results(pipeline, {"x": x, "limit": 4}, tmp_path / f"local-{label}")
        record = RunStore.default().get(run_id_of(stdout))
        assert _results(pipeline, root, record["id"], list(expected)) == expected, label
        rows = {s["step"]: s["status"] for s in record["steps"]}
        assert rows == {n: "done" if s == "succeeded" else s for n, (s, _) in expected.items()}
        if label == "failing":
            assert process.returncode == 1 and record["status"] == status == "failed", stdout + stderr
            assert "step 'check_below' failed" in record["detail"]
            assert expected["halve"][0] == "skipped" and expected["celebrate"][0] == "skipped"
            assert expected["failed_steps"][1] == {"output": "failed check_below"}
            assert expected["alert"][1] == {"output": "alert failed ['check_below']: step 'check_below' failed "
                                                      "after 1 try: ValueError: 4 is not below 4"}
            # Compose started the step after the failed one (an optional dependency), which skipped itself
            assert "optional dependency \\\"check_below\\\" didn't complete successfully: exit 1" in stderr, stderr
            assert f"pipecast: step 'halve' skipped: {STOPPED}" in step_log(record, "halve")  # pipecast run's reason
        else:
            assert process.returncode == 0 and record["status"] == status == "succeeded", stdout + stderr
            assert expected["alert"][0] == "skipped"
            assert expected["failed_steps"][1] == {"output": "succeeded "}
            assert expected["celebrate"][1] == {"output": "all good"}


def test_a_step_not_downstream_of_a_failure_is_not_started_after_it(docker_env, case_image, tmp_path):
    """Fail-fast: ``halve`` becomes ready only after ``check_below`` failed (its upstream waits for the record)."""
    root = tmp_path / "docker"
    root.mkdir()
    process = start_run("tests/targets/local_docker/flow_pipelines.py:compose_fail_fast", "--set",
                        f"image={case_image}", "--artifact-root", str(root))
    stdout, stderr = finish(process, timeout=WAIT)
    pipeline = compose_fail_fast.build()
    status, expected = local_results(pipeline, {"x": 5, "limit": 4}, tmp_path / "local")
    record = RunStore.default().get(run_id_of(stdout))
    assert process.returncode == 1 and record["status"] == status == "failed", stdout + stderr
    found = _results(pipeline, root, record["id"], list(expected))
    # halve is compared by hand: on Compose its runtime reads check_below's record, which exists before
    # wait_for_record returns, so it is always skipped; pipecast run's runner notices the failure when it collects
    # check_below's thread, which a loaded machine may delay past wait_for_record's end (then halve may start).
    assert found.pop("halve") == ("skipped", None)
    expected.pop("halve")
    assert found == expected
    assert expected["wait_for_record"][0] == "succeeded" and expected["alert"][0] == "succeeded"
    assert f"pipecast: step 'halve' skipped: {STOPPED}" in step_log(record, "halve")


def _cancelled_run(process: subprocess.Popen[str], root: Path) -> str:
    """SIGTERM ``pipecast run`` of compose_cancel once its blocking step runs; the run id."""
    started = list(root.glob("compose_cancel/runs/*/block_until_stopped/started"))
    try:
        wait_until(lambda: started or started.extend(root.glob("compose_cancel/runs/*/block_until_stopped/started"))
                   or process.poll() is not None, "the blocking step to start or the run to end", timeout=WAIT)
    except AssertionError:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: pipecast stops and removes its containers
        finish(process, timeout=WAIT)
        raise
    if not started:
        stdout, stderr = finish(process, timeout=WAIT)
        raise AssertionError(f"the run ended before its blocking step started: {stdout}{stderr}")
    os.kill(process.pid, signal.SIGTERM)
    stdout, stderr = finish(process, timeout=WAIT)
    assert process.returncode == 143, stdout + stderr
    return started[0].parent.parent.name  # the run's folder: its id (safe characters only)


def test_a_cancelled_run_runs_its_exit_handler_and_on_failure_hook_with_status_cancelled(
        docker_env, case_image, tmp_path):
    """SIGTERM: the steps stop, then the handler (status ``cancelled``) and on_failure run, as under pipecast run."""
    pipeline = compose_cancel.build()
    reference = "tests/targets/local_docker/flow_pipelines.py:compose_cancel"
    seen = {}
    for label in ("docker", "local"):
        root = tmp_path / label
        root.mkdir()
        args = [reference, "--artifact-root", str(root)]
        process = start_run(*args, "--set", f"image={case_image}") if label == "docker" else subprocess.Popen(
            [sys.executable, "-m", "pipecast.cli", "run", *args], cwd=ROOT, env=env_with_cases(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        run_id = _cancelled_run(process, root)
        record = RunStore.default().get(run_id)
        assert record["status"] == "cancelled", record
        rows = {s["step"]: s["status"] for s in record["steps"]}
        outputs = {name: load_outputs(f"file://{root}", pipeline.name, run_id, name)
                   for name in ("failed_steps", "alert") if rows.get(name) == "done"}
        seen[label] = (rows, outputs)
    assert seen["docker"] == seen["local"]
    rows, outputs = seen["docker"]
    assert rows == {"block_until_stopped": "cancelled", "halve": "cancelled", "failed_steps": "done",
                    "alert": "done", "celebrate": "skipped"}
    assert outputs == {"failed_steps": {"output": "cancelled "}, "alert": {"output": "alert cancelled []: None"}}
