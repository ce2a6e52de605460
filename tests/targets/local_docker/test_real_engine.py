"""``pipecast run --target local_docker`` against a real Docker engine and Compose v2 (tests/helpers/docker_engine.py).

One engine and one image for the session; the golden cases and both examples run at once, each as its own
Compose project, and their outputs equal ``pipecast run``'s. Then one run proves retries, a timeout and a failed
step named in the record, and two runs are cancelled (Ctrl-C to the process group, SIGTERM to pipecast alone):
each step's own log says it was cancelled, which it can only say if the SIGTERM reached it (``init: true``)
rather than Docker killing it after the stop timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipecast.compiler.loader import load_pipeline
from pipecast.runs.logs import run_logs
from pipecast.runs.store import RunStore
from tests.helpers.cases import ROOT, case, env_with_cases
from tests.helpers.processes import finish, wait_until
from tests.helpers.replay import assert_same_outputs

HERE = Path(__file__).parent
WAIT = 600.0  # bound on every wait: a loaded 2-core machine is slow, an event is what ends the wait
NON_ROOT = (1000, 1000)


def start_run(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``pipecast run ... --target local_docker`` in a process group of its own, importing the cases."""
    return subprocess.Popen([sys.executable, "-m", "pipecast.cli", "run", *args, "--target", "local_docker"],
                            cwd=ROOT, env={**env_with_cases(), **(env or {})}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def run_id_of(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def compose_services(record: dict[str, Any]) -> dict[str, Any]:
    document = yaml.safe_load(Path(record["metadata"]["compose_file"]).read_text())
    return document["services"]  # type: ignore[no-any-return]


def step_log(record: dict[str, Any], step: str) -> str:
    return (Path(record["metadata"]["logs"]) / f"{step}.log").read_text()


def without_locations(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: without_locations(v) for k, v in data.items() if k != "location"}
    if isinstance(data, list):
        return [without_locations(v) for v in data]
    return data


def test_without_gpu_is_the_golden_full_options_but_for_the_gpu():
    golden = json.loads(case("full_options").build().to_json())
    for step in golden["steps"]:
        step["resources"].update(gpu=0, gpu_type=None)
    built = load_pipeline(str(HERE / "without_gpu.py")).build()
    assert without_locations(json.loads(built.to_json())) == without_locations(golden)


def test_every_golden_case_and_example_runs_under_compose_with_pipecast_runs_outputs(docker_env, case_image,
                                                                                     tmp_path):
    """Six Compose projects at once; `--set image` replaces each pipeline's image; one runs as a non-root user."""
    secrets = {"API_TOKEN": "token-$x", "DB_PASSWORD": "pass'word"}
    runs = {  # name: (REF, parameters, extra arguments)
        "quickstart": (case("quickstart").path, {"n": 20, "label": "$HOME ${x} $$ `id`"}, []),
        "ml_training": (case("ml_training").path, {"samples": 60, "epochs": 5}, []),
        "diamond_after": (case("diamond_after").path, {}, ["--set", f"user={NON_ROOT[0]}:{NON_ROOT[1]}"]),
        "hostile": (case("hostile").path, {}, []),
        "gather": (case("gather").path, {"n": 5, "lr": 0.25}, []),  # literal lists and dicts as one input
        "full_options": (HERE / "without_gpu.py", {"limit": 7, "options": {"optimizer": "adam"}}, []),
    }
    started = {}
    for name, (ref, parameters, extra) in runs.items():
        root = tmp_path / name / "artifacts"
        root.mkdir(parents=True)
        if name == "diamond_after":
            os.chown(root, *NON_ROOT)  # as a user's own folder is theirs
        params = [a for k, v in parameters.items()
                  for a in ("-p", f"{k}={json.dumps(v) if isinstance(v, dict) else v}")]
        started[name] = start_run(str(ref), *params, "--set", f"image={case_image}", "--artifact-root", str(root),
                                  *extra, env=secrets)
    finished = {name: finish(process, timeout=WAIT) for name, process in started.items()}
    store = RunStore.default()
    for name, (stdout, stderr) in finished.items():
        assert started[name].returncode == 0, f"{name}: {stdout}{stderr}"
        run_id = run_id_of(stdout)
        record = store.get(run_id)
        ref, parameters, _ = runs[name]
        pipeline = load_pipeline(str(ref)).build()
        assert record["status"] == "succeeded"
        statuses = {s["step"]: s["status"] for s in record["steps"]}
        cached = {step for step, status in statuses.items() if status == "cached"}
        # diamond_after's two `double` steps take the same input: when one ends before the other checks the cache,
        # the second reuses its outputs; when Compose starts both at once (a busy machine), both run. Nothing else
        # may come from the cache.
        assert cached <= ({"double", "double_right"} if name == "diamond_after" else set())
        assert cached != {"double", "double_right"}  # one of them made the entry the other could read
        assert statuses == {s.name: "cached" if s.name in cached else "done" for s in pipeline.steps}
        assert_same_outputs(pipeline, parameters, tmp_path / name / "artifacts", run_id, tmp_path / name)
        for step in pipeline.steps:
            said = "cached" if step.name in cached else "succeeded"
            assert f"pipecast: step {step.name!r} {said} (run {run_id})" in step_log(record, step.name)
        services = compose_services(record)
        assert all(service["init"] is True for service in services.values())
        if name == "full_options":  # the step's own image wins over --set image; the pipeline's does not
            assert {n: s["image"] for n, s in services.items()} == {
                "load": case_image, "train": "ghcr.io/acme/gpu:2.1", "publish": case_image, "notify": case_image}
        else:  # ml_training's own image (ghcr.io/acme/pipecast-ml:1.0) is replaced: nothing is pulled
            assert {s["image"] for s in services.values()} == {case_image}
    owners = {p.stat().st_uid for p in (tmp_path / "diamond_after" / "artifacts").rglob("*")}
    assert owners == {NON_ROOT[0]}  # every output written by the containers' non-root user


def test_retries_a_timeout_and_the_failed_step_named(docker_env, case_image, tmp_path):
    process = start_run("tests/targets/local_docker/pipelines.py:failing_docker", "--set", f"image={case_image}",
                        "--artifact-root", str(tmp_path / "art"))
    stdout, stderr = finish(process, timeout=WAIT)
    assert process.returncode == 1, stdout + stderr
    record = RunStore.default().get(run_id_of(stdout))
    steps = {s["step"]: s for s in record["steps"]}
    assert record["status"] == "failed"
    assert steps["flaky"]["status"] == "done" and steps["flaky"]["attempts"] == 2  # the retry ran for real
    assert steps["too_slow"]["status"] == "failed" and "timed out after 2s" in steps["too_slow"]["error"]
    assert steps["never"]["status"] == "skipped"
    assert record["detail"] == f"step 'too_slow' failed: {steps['too_slow']['error']}"
    assert "timed out after 2s" in step_log(record, "too_slow"), step_log(record, "too_slow")
    # `pipecast runs logs` on the ended run: its containers are gone, the saved step logs are read in start order.
    lines = list(run_logs(record["id"], {}))
    headers = [line for line in lines if line.startswith("==> ")]
    assert headers[:2] == ["==> flaky <==", "==> too_slow <=="] and "==> never <==" not in headers, lines
    assert any("timed out after 2s" in line for line in run_logs(record["id"], {}, step="too_slow"))


def test_maps_and_conditions_run_by_the_steps_runtime_give_pipecast_runs_results(docker_env, case_image, tmp_path):
    """One Compose run of a pipeline with maps (bounded, chained, over a parameter, an output and a product), item
    conditions, a fan-in and an if/else with OneOf: every step's and item's result equals ``pipecast run``'s."""
    from tests.targets.local_docker.flow_pipelines import compose_flow
    from tests.targets.local_docker.test_flow import _local_results, _results

    root = tmp_path / "art"
    root.mkdir()
    process = start_run("tests/targets/local_docker/flow_pipelines.py:compose_flow", "-p", "limit=100", "-p",
                        "xs=[3, 1, 4]", "--set", f"image={case_image}", "--artifact-root", str(root))
    stdout, stderr = finish(process, timeout=WAIT)
    assert process.returncode == 0, stdout + stderr
    run_id = run_id_of(stdout)
    pipeline = compose_flow.build()
    expected, names = _local_results(pipeline, {"xs": [3, 1, 4], "limit": 100.0}, tmp_path / "local")
    assert _results(pipeline, root, run_id, names) == expected
    assert expected["promote"][0] == "skipped" and expected["announce"][1] == {"output": "KEPT 13.0"}
    record = RunStore.default().get(run_id)
    # items with equal inputs share a cache entry (square(3) runs as square[0] and as square_3[1][0])
    statuses = {s["step"]: "done" if s["status"] == "cached" else s["status"] for s in record["steps"]}
    assert record["status"] == "succeeded"
    assert statuses == {name: "done" if status == "succeeded" else status for name, (status, _) in expected.items()}
    assert "[describe[1]] " not in step_log(record, "describe")  # skipped: never started
    assert "pipecast: step 'describe[1]' skipped: if branch 'condition_1': `halve.output > 4.0` is false" \
        in step_log(record, "describe")
    assert "[square[2]] pipecast: step 'square[2]' succeeded" in step_log(record, "square")


def cancel(how: str, tmp_path: Path, case_image: str) -> tuple[subprocess.Popen[str], dict[str, Any], str]:
    root = tmp_path / "art"
    process = start_run("tests/targets/local_docker/pipelines.py:cancel_docker", "--set", f"image={case_image}",
                        "--artifact-root", str(root))
    wait_until((root / "started").exists, "the step to start in its container", timeout=WAIT)
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    else:
        os.kill(process.pid, signal.SIGTERM)  # `kill`, a service manager: pipecast alone
    stdout, stderr = finish(process, timeout=WAIT)
    return process, RunStore.default().get(run_id_of(stdout)), stderr


def test_ctrl_c_cancels_the_run_and_the_step_records_it(docker_env, case_image, tmp_path):
    process, record, stderr = cancel("ctrl-c", tmp_path, case_image)
    assert process.returncode == 130 and f"interrupted: run {record['id']} cancelled" in stderr
    assert_cancelled(record, "SIGINT")


def test_sigterm_cancels_the_run_and_the_step_records_it(docker_env, case_image, tmp_path):
    process, record, stderr = cancel("sigterm", tmp_path, case_image)
    assert process.returncode == 143 and f"interrupted: run {record['id']} cancelled" in stderr
    assert_cancelled(record, "SIGTERM")


def assert_cancelled(record: dict[str, Any], signal_name: str) -> None:
    assert record["status"] == "cancelled" and record["detail"] == f"interrupted ({signal_name})"
    assert {s["step"]: s["status"] for s in record["steps"]} == {"wait_for_cancel": "cancelled", "never": "skipped"}
    # The step's own words: the runtime in the container got the SIGTERM of `docker stop` (through docker-init).
    assert "pipecast: step 'wait_for_cancel' cancelled: received SIGTERM" in step_log(record, "wait_for_cancel")
    # No container or network is left: the docker_env fixture fails the test otherwise.
