"""Exit handlers and hooks under a real Docker engine and Compose v2 (``pipecast run --target local_docker``).

``compose_hooks``: an exit handler reading its group's status, an on_failure and an on_success hook. A run where a
step of the group fails (the handler names it, on_failure runs, on_success does not, the step after it does not
run, the run fails) and a green run, started side by side; every step's result equals ``pipecast run``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipecast.runs.store import RunStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.processes import finish
from tests.targets.local_docker.flow_pipelines import compose_hooks
from tests.targets.local_docker.test_flow import _results
from tests.targets.local_docker.test_real_engine import WAIT, run_id_of, start_run, step_log


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
            assert "pipecast: step 'halve' skipped: upstream step 'check_below' failed" in step_log(record, "halve")
        else:
            assert process.returncode == 0 and record["status"] == status == "succeeded", stdout + stderr
            assert expected["alert"][0] == "skipped"
            assert expected["failed_steps"][1] == {"output": "succeeded "}
            assert expected["celebrate"][1] == {"output": "all good"}
