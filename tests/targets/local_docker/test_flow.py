"""Control flow on the Compose targets (issue 16): maps and conditions run by each step's runtime
(``pipecast.runtime.inline_flow``), goldens, ``docker compose config``, the refusals, and the services replayed in
``depends_on`` order with every instance's result equal to ``pipecast run``'s.

``pytest --update-goldens`` rewrites ``data/flow/<pipeline>.<target>.yaml`` (``.error.txt`` for a refused one).
The real Docker run of the same pipeline is in ``test_real_engine.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pipecast.errors import ValidationError
from pipecast.flow import _step_rows
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.runtime.params import render_parameter
from pipecast.targets.inline_flow import mini_plan, plan_json
from tests.helpers.cases import ROOT, compile_case, env_with_cases
from tests.helpers.processes import wait_until
from tests.helpers.replay import run_task
from tests.targets.local_docker import flow_pipelines
from tests.targets.local_docker.replay import load, service_argv, service_env, service_order
from tests.targets.local_docker.test_local_docker import SCHEMA, compose_config

HERE = Path(__file__).parent
GOLDENS = HERE / "data" / "flow"
VARIANTS = [(name, target)
            for name in ("compose_flow", "compose_exit", "compose_bound", "compose_fail", "compose_hooks")
            for target in ("local_docker", "hyperai")]


def compiled(name: str, target: str) -> dict[str, str]:
    try:
        files = compile_case(target, getattr(flow_pipelines, name), golden=True).files
    except ValidationError as err:
        return {f"{name}.{target}.error.txt": str(err) + "\n"}
    return {f"{name}.{target}.{path.replace('/', '_')}": text for path, text in files.items()}


@pytest.mark.parametrize(("name", "target"), VARIANTS)
def test_golden(name, target, request):
    files = compiled(name, target)
    if request.config.getoption("--update-goldens"):
        for old in GOLDENS.glob(f"{name}.{target}.*"):
            old.unlink()
        GOLDENS.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            (GOLDENS / path).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in GOLDENS.glob(f"{name}.{target}.*")}
    assert expected == files, f"{name} × {target} differs from its golden in {GOLDENS} (pytest --update-goldens)"


def test_the_pipeline_bound_is_refused_with_the_reason():
    text = compiled("compose_bound", "hyperai")["compose_bound.hyperai.error.txt"]
    assert "bounds its running steps to 2; Compose starts every service whose dependencies are done" in text
    assert "fix: bound each map instead" in text


def test_compose_accepts_the_project_and_keeps_the_plan_verbatim(tmp_path):
    text = compiled("compose_flow", "local_docker")["compose_flow.local_docker.compose.yaml"]
    env = {"PIPECAST_RUN_ID": "run-1", "PIPECAST_ARTIFACT_DIR": str(tmp_path / "art"),
           **{f"PIPECAST_PARAM_{k}": v for k, v in (("xs", "[1,2]"), ("limit", "1.5"), ("n", "2"))}}
    services = compose_config(text, env, tmp_path)["services"]
    pipeline = flow_pipelines.compose_flow.build()
    for step in pipeline.steps:
        command = next(s["command"] for s in services.values()
                       if s["labels"]["dev.pipecast.step"] == step.name)
        assert command[2] == "pipecast.runtime.inline_flow"
        assert command[command.index("--flow") + 1] == plan_json(mini_plan(pipeline, step))
    square = services["square"]["command"]
    assert square[square.index("--flow-param") + 1] == "xs=list:[1,2]"
    # a step that reads a skippable branch still waits for it to exit 0 (a skipped step exits 0)
    assert services["announce"]["depends_on"].keys() == {"promote", "keep"}


def _results(pipeline: Any, root: Path, run_id: str, names: list[str]) -> dict[str, Any]:
    """Each step's and item's status, and the outputs of the instances that ran, from the artifact store."""
    store = ArtifactStore(f"file://{root}")
    results: dict[str, Any] = {}
    for name in names:
        meta = store.read_json(f"{store.step_dir(pipeline.name, run_id, name)}/meta.json")
        status = meta["status"]
        outputs = load_outputs(f"file://{root}", pipeline.name, run_id, name) \
            if status == "succeeded" and "instances" not in meta else None
        results[name] = (status, outputs)
    return results


def _local_results(pipeline: Any, parameters: dict[str, Any], root: Path) -> tuple[dict[str, Any], list[str]]:
    run = run_pipeline(pipeline, parameters, artifact_root=f"file://{root}", cache=False)
    names, results = list(run.steps), {}
    for name, state in run.steps.items():
        ran = state.status in ("done", "cached")
        outputs = load_outputs(f"file://{root}", pipeline.name, run.id, name) if ran and state.items is None else None
        results[name] = ("succeeded" if ran else state.status, outputs)
    return results, names


def replay(pipeline: Any, target: str, parameters: dict[str, Any], root: Path, run_id: str) -> None:
    """Run the project's services here in depends_on order, as Compose starts them (each after the ones it
    depends on exited 0; a failing service fails the test)."""
    text = next(t for p, t in compiled(pipeline.name, target).items() if p.endswith("compose.yaml"))
    values = {p.name: parameters.get(p.name, p.default) for p in pipeline.parameters}
    env = {"PIPECAST_RUN_ID": run_id, "PIPECAST_ARTIFACT_DIR": str(root),
           **{f"PIPECAST_PARAM_{p.name}": render_parameter(p.type, values[p.name]) for p in pipeline.parameters}}
    document = load(text, env)
    for name in service_order(document):
        service = document["services"][name]
        run_task(service_argv(service), env=service_env(service, env), timeout=300)


def test_the_services_replayed_in_order_give_every_instance_pipecast_runs_result(tmp_path):
    pipeline = flow_pipelines.compose_flow.build()
    parameters = {"xs": [1, 2, 3, 4], "limit": 10.0, "n": 2}
    expected, names = _local_results(pipeline, parameters, tmp_path / "local")
    replay(pipeline, "local_docker", parameters, tmp_path / "art", "run-1")
    assert _results(pipeline, tmp_path / "art", "run-1", names) == expected
    # what the run proves: items of a bounded map, item conditions, a fan-in without the skipped items, a branch
    assert expected["describe"][0] == "succeeded" and expected["describe[0]"][0] == "skipped"
    assert expected["labels"][1] == {"output": "big:4.5,big:8.0"}
    assert expected["promote"][1] == {"output": "promoted 15.0"}
    assert expected["keep"][0] == "skipped" and expected["announce"][1] == {"output": "PROMOTED 15.0"}
    assert expected["pair[3]"][1] == {"output": "2" + flow_pipelines.HOSTILE}
    assert expected["square_2[1]"][1] == {"output": 400}


def test_the_plan_names_only_what_the_step_reads():
    pipeline = flow_pipelines.compose_flow.build()
    plan = json.loads(plan_json(mini_plan(pipeline, pipeline.step("announce"))))
    assert [s["name"] for s in plan["steps"]] == ["total", "promote", "keep", "announce"]
    assert [g["name"] for g in plan["groups"]] == ["condition_2", "condition_3"]
    assert yaml.safe_load(json.dumps(plan)) == plan  # plain JSON: no value can become YAML structure


def _service_commands(name: str, parameters: dict[str, Any], root: Path, run_id: str) -> dict[str, Any]:
    pipeline = getattr(flow_pipelines, name).build()
    text = compiled(name, "local_docker")[f"{name}.local_docker.compose.yaml"]
    values = {p.name: parameters.get(p.name, p.default) for p in pipeline.parameters}
    env = {"PIPECAST_RUN_ID": run_id, "PIPECAST_ARTIFACT_DIR": str(root),
           **{f"PIPECAST_PARAM_{p.name}": render_parameter(p.type, values[p.name]) for p in pipeline.parameters}}
    document = load(text, env)
    return {service["labels"]["dev.pipecast.step"]: service_argv(service) for service in document["services"].values()}


def test_a_failed_item_stops_the_items_after_it_and_the_step_names_it(tmp_path):
    commands = _service_commands("compose_fail", {}, tmp_path / "art", "run-1")
    result = subprocess.run(commands["check_below"], env=env_with_cases(), cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    store = ArtifactStore(f"file://{tmp_path / 'art'}")
    meta = {name: store.read_json(f"{store.step_dir('compose_fail', 'run-1', name)}/meta.json")
            for name in ("check_below", "check_below[0]", "check_below[1]", "check_below[2]", "check_below[3]")}
    assert [meta[f"check_below[{i}]"]["status"] for i in range(4)] == ["succeeded", "failed", "skipped", "skipped"]
    assert meta["check_below"]["status"] == "failed"
    assert meta["check_below"]["error"].startswith("item 'check_below[1]': ValueError: 5 is not below 4")
    assert "[check_below[1]] " in result.stdout  # each item's lines, prefixed with its name
    # what `pipecast run --target local_docker` records: the step and each item
    rows = {row["step"]: row["status"] for row in _step_rows(flow_pipelines.compose_fail.build(), store, "run-1")}
    assert rows == {"check_below": "failed", "check_below[0]": "done", "check_below[1]": "failed",
                    "check_below[2]": "skipped", "check_below[3]": "skipped", "total": "skipped"}


def test_sigterm_reaches_every_running_item_and_each_records_itself_cancelled(tmp_path):
    folder = tmp_path / "marks"
    folder.mkdir()
    commands = _service_commands("compose_stop", {"folder": str(folder)}, tmp_path / "art", "run-1")
    process = subprocess.Popen(commands["wait_for_stop"], env=env_with_cases(), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(list(folder.glob("started-*"))) == 2, "both items to start", timeout=300)
        process.send_signal(signal.SIGTERM)  # what docker stop sends (docker-init passes it on)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stdout + stderr
    store = ArtifactStore(f"file://{tmp_path / 'art'}")
    statuses = {name: store.read_json(f"{store.step_dir('compose_stop', 'run-1', name)}/meta.json")["status"]
                for name in ("wait_for_stop", "wait_for_stop[0]", "wait_for_stop[1]")}
    assert statuses == dict.fromkeys(statuses, "cancelled")
    assert "pipecast: step 'wait_for_stop' cancelled: received SIGTERM" in stderr


@pytest.mark.parametrize(("name", "target"), [("compose_flow", "local_docker"), ("compose_flow", "hyperai"),
                                              ("compose_fail", "local_docker")])
def test_the_flow_projects_validate_against_the_compose_schema(name, target):
    text = next(t for p, t in compiled(name, target).items() if p.endswith("compose.yaml"))
    jsonschema.Draft7Validator(SCHEMA).validate(yaml.safe_load(text))


def test_an_item_killed_without_a_record_fails_the_step_saying_so(tmp_path):
    commands = _service_commands("compose_killed", {}, tmp_path / "art", "run-1")
    result = subprocess.run(commands["die"], env=env_with_cases(), cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    store = ArtifactStore(f"file://{tmp_path / 'art'}")
    meta = {name: store.read_json(f"{store.step_dir('compose_killed', 'run-1', name)}/meta.json")
            for name in ("die", "die[0]", "die[1]")}
    assert meta["die[0]"]["status"] == "failed" and meta["die[1]"]["status"] == "skipped"
    assert meta["die"]["error"] == "item 'die[0]': its process was killed by signal 9 (out of memory?)"


@pytest.mark.parametrize("target", ["local_docker", "hyperai"])
def test_a_one_of_inside_a_map_reads_the_branch_that_ran_for_each_item(target, tmp_path):
    pipeline = flow_pipelines.compose_one_of.build()
    expected, names = _local_results(pipeline, {}, tmp_path / "local")
    replay(pipeline, target, {}, tmp_path / "art", "run-1")
    assert _results(pipeline, tmp_path / "art", "run-1", names) == expected
    assert [expected[f"shown[{i}]"][1] for i in range(4)] == [{"output": v} for v in (1, 105, 2, 107)]
    assert expected["total"][1] == {"output": 215.0}


def test_exit_handlers_and_hooks_start_after_any_exit_of_every_upstream_service(tmp_path):
    """Every depends_on of a pipeline with an exit handler or hooks is `required: false` (Compose then starts the
    service whatever its upstream exited with), as the schema and Compose v2 read it; other pipelines keep
    required dependencies."""
    for target in ("local_docker", "hyperai"):
        text = compiled("compose_hooks", target)[f"compose_hooks.{target}.compose.yaml"]
        jsonschema.Draft7Validator(SCHEMA).validate(yaml.safe_load(text))
        env = {"PIPECAST_RUN_ID": "run-1", "PIPECAST_ARTIFACT_DIR": str(tmp_path / "art"), "PIPECAST_PARAM_x": "2",
               "PIPECAST_PARAM_limit": "4"}
        services = compose_config(text, env, tmp_path)["services"]
        edges = {(name, up): dep for name, s in services.items() for up, dep in s.get("depends_on", {}).items()}
        assert ("halve", "check_below") in edges and ("alert", "failed_steps") in edges
        assert all(dep["condition"] == "service_completed_successfully" and dep["required"] is False
                   for dep in edges.values()), edges
    text = compiled("compose_fail", "local_docker")["compose_fail.local_docker.compose.yaml"]
    assert "required" not in text


def test_a_step_that_died_without_a_record_fails_the_handlers_status_on_compose(tmp_path, monkeypatch):
    """On Compose a handler or hook starts only after every step it follows exited: one with no record died (an
    OOM kill of its container) and counts as failed, naming it; on_success skips. Without the Compose variable (a
    GitHub job that never ran has no record either) it does not count."""
    from pipecast.compiler import ir
    from pipecast.runtime.executor import StepInvocation
    from pipecast.runtime.inline_flow import ENDED_ENV, InlineStep
    from pipecast.runtime.process import Cancellation
    from tests.targets.local_docker.flow_pipelines import compose_hooks

    pipeline = compose_hooks.build()
    services = yaml.safe_load(compiled("compose_hooks", "local_docker")["compose_hooks.local_docker.compose.yaml"])
    assert {n for n, s in services["services"].items() if ENDED_ENV in s.get("environment", {})} == \
        {"failed_steps", "alert", "celebrate"}
    store = ArtifactStore(f"file://{tmp_path}")
    for name in ("square", "check_below"):  # halve's container died before its runtime wrote anything
        store.write_json(f"{store.step_dir(pipeline.name, 'r1', name)}/meta.json", {"status": "succeeded"})
    store.write_json(f"{store.step_dir(pipeline.name, 'r1', 'failed_steps')}/meta.json", {"status": "succeeded"})

    def inline(step: str) -> InlineStep:
        base = StepInvocation(function="m:f", pipeline=pipeline.name, step=step, run_id="r1",
                              artifact_root=f"file://{tmp_path}")
        return InlineStep(mini_plan(pipeline, next(s for s in pipeline.steps if s.name == step)), {}, base,
                          Cancellation())

    handler = next(s for s in pipeline.steps if s.trigger is ir.Trigger.ALWAYS)
    monkeypatch.setenv(ENDED_ENV, "1")
    assert inline(handler.name).group_status(pipeline.steps[0].group, ()) == {
        "status": "failed", "failed_steps": ["halve"],
        "error": "step 'halve' ended without a record (its container exited before its runtime wrote one; see "
                 "its log)"}
    assert inline("celebrate").skip_reason() == "on_success hook: step 'halve' failed"
    assert inline("alert").skip_reason() is None
    monkeypatch.delenv(ENDED_ENV)
    assert inline(handler.name).group_status(pipeline.steps[0].group, ())["status"] == "succeeded"
    assert inline("alert").skip_reason() == "on_failure hook: no step failed"
