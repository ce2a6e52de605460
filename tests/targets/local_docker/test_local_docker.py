"""The local_docker target: Compose files valid against the Compose spec, values that stay data, a replay of
the services here that gives ``pipecast run``'s outputs, and the run path's docker commands and errors.

This machine has the docker CLI but no Docker engine (and no Compose plugin), so ``docker compose up`` itself
never runs here: the run path is tested with a stand-in ``docker`` (``compose_replay.main``) that logs its calls
and runs the services the way Compose would, and the "no engine" error with the real CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from pipecast.cli import main as cli
from pipecast.errors import UnsupportedFeatureError
from pipecast.runtime.params import decode_constant, render_parameter
from pipecast.targets.compose import compose_environment
from pipecast.targets.local_docker import DockerUnavailableError, check_docker, compose_commands
from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import CASE_IDS, CASES, ROOT, CompiledCase, case, compile_case, env_with_cases
from tests.helpers.replay import assert_same_outputs
from tests.targets.local_docker import replay as compose_replay

SCHEMA = json.loads((ROOT / "tests" / "schemas" / "compose" / "compose-spec.json").read_text())


def compose_file(compiled: CompiledCase) -> str:
    """The text of the one file a local_docker compile writes: its Compose file."""
    assert list(compiled.files) == ["compose.yaml"]
    return compiled["compose.yaml"]


@pytest.mark.parametrize("golden_case", CASES, ids=CASE_IDS)
def test_compose_files_validate_against_the_compose_specification(golden_case, tmp_path):
    text = compose_file(compile_case("local_docker", golden_case, golden=True, on_unsupported="warn"))
    jsonschema.Draft7Validator(SCHEMA).validate(yaml.safe_load(text))
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_is_strict():
    document = yaml.safe_load(compose_file(compile_case("local_docker", "quickstart", golden=True)))
    document["services"]["split"]["retries"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(document)


def test_services_carry_image_command_environment_mounts_dependencies_and_limits():
    document = yaml.safe_load(compose_file(compile_case("local_docker", "full_options", golden=True,
                                                        settings={"user": "1000:1000"}, on_unsupported="warn")))
    load, train, publish, notify = (document["services"][n] for n in ("load", "train", "publish", "notify"))
    assert document["name"] == "full-options"
    assert load["image"] == "ghcr.io/acme/train:1.0" and train["image"] == "ghcr.io/acme/gpu:2.1"
    assert load["environment"] == {"LOG_LEVEL": "debug", "PROJECT": "acme", "API_TOKEN": None, "DB_PASSWORD": None}
    assert load["deploy"]["resources"] == {"limits": {"cpus": "2", "memory": "4g"}}
    assert train["deploy"]["resources"] == {"limits": {"cpus": "0.5", "memory": "1g"}, "reservations": {
        "devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}
    assert publish["depends_on"] == {"train": {"condition": "service_completed_successfully"}}
    assert notify["depends_on"] == {"publish": {"condition": "service_completed_successfully"}}
    assert {s["restart"] for s in document["services"].values()} == {"no"}
    assert {s["user"] for s in document["services"].values()} == {"1000:1000"}
    # No native retry or timeout in Compose: the runtime does them.
    command = load["command"]
    assert command[command.index("--attempts") + 1] == "3" and command[command.index("--timeout") + 1] == "3600"
    assert command[command.index("--artifact-root") + 1] == "s3://acme-pipelines/artifacts"
    assert "volumes" not in load  # an object-store root needs no mount
    assert document["x-pipecast"]["schedule"] == "0 3 * * *"


def test_gpu_type_cannot_be_chosen_and_says_so():
    with pytest.raises(UnsupportedFeatureError, match="Compose cannot choose a GPU model"):
        compile_case("local_docker", "full_options", golden=True)


def test_a_file_artifact_root_is_mounted_at_a_fixed_container_path():
    document = yaml.safe_load(compose_file(compile_case("local_docker", "quickstart", golden=True,
                                                        settings={"artifact_root": "file:///data/art$x"})))
    split = document["services"]["split"]
    assert split["volumes"] == [{"type": "bind", "source": "/data/art$$x", "target": "/pipecast/artifacts",
                                 "bind": {"create_host_path": True}}]
    assert "file:///pipecast/artifacts" in split["command"]
    with pytest.raises(UnsupportedFeatureError, match="must be an absolute path"):
        compile_case("local_docker", "quickstart", golden=True, settings={"artifact_root": "relative/dir"})
    with pytest.raises(UnsupportedFeatureError, match="step 'make_numbers' has no container image"):
        compile_case("local_docker", "quickstart", golden=True, settings={"image": None})


def test_hostile_values_come_back_verbatim_after_compose_interpolation():
    pipeline = case("hostile").build()
    text = compose_file(compile_case("local_docker", pipeline, golden=True))
    with pytest.raises(compose_replay.TemplateError, match="required variable PIPECAST_RUN_ID"):
        compose_replay.load(text, {})  # run-specific values must be given; nothing falls back silently
    value = f"{EVIL} ${{PIPECAST_RUN_ID}} $$ $(x) $HOME"
    parameters = {"text": value, "data": {"$x": "${y}"}}
    env = compose_environment(pipeline, parameters, "run-1", artifact_dir="/host/art")
    document = compose_replay.load(text, env)  # raises on any stray "$": every literal one is escaped
    echo = document["services"]["echo_text"]
    assert echo["environment"]["EVIL_ENV"] == EVIL
    argv = echo["command"]
    assert f"text=str:{value}" in argv and argv[argv.index("--run-id") + 1] == "run-1"
    constant = next(a for a in argv if a.startswith("extra="))
    assert decode_constant(constant.partition("=")[2]) == EVIL
    data = document["services"]["echo_data_2"]["command"]
    assert f"data=dict:{render_parameter(pipeline.parameter('data').type, parameters['data'])}" in data
    assert document["x-pipecast"]["description"] == EVIL
    assert {k: json.loads(v["default_json"]) for k, v in document["x-pipecast"]["parameters"].items()} == {
        p.name: p.default for p in pipeline.parameters}
    assert document["services"]["echo_text"]["volumes"][0]["source"] == "/host/art"


def test_tags_are_labels_of_every_container_and_kept_in_the_file():
    """Compose has no tags: every service gets the label dev.pipecast.tags (a JSON list), `$` escaped."""
    import dataclasses

    pipeline = dataclasses.replace(case("quickstart").build(), tags=("nightly", "cost $5 ${X}"))
    env = compose_environment(pipeline, {p.name: p.default for p in pipeline.parameters}, "run-1",
                              artifact_dir="/host/art")
    document = compose_replay.load(compose_file(compile_case("local_docker", pipeline, golden=True)), env)
    labels = {name: service["labels"]["dev.pipecast.tags"] for name, service in document["services"].items()}
    assert set(labels.values()) == {json.dumps(["nightly", "cost $5 ${X}"], separators=(",", ":"))}
    assert document["x-pipecast"]["tags"] == ["nightly", "cost $5 ${X}"]


def test_the_replay_leaves_mapping_keys_alone_as_compose_does():
    """compose-go interpolates values only: a key keeps its `$` (and a `$$` stays two)."""
    assert compose_replay.load("labels:\n  a$$b: c$$d\n", {}) == {"labels": {"a$$b": "c$d"}}


REPLAYS = [("quickstart", {"n": 20, "label": "$HOME ${x} $$"}), ("ml_training", {"samples": 60}),
           ("diamond_after", {}), ("hostile", {})]


@pytest.mark.parametrize(("name", "parameters"), REPLAYS, ids=[r[0] for r in REPLAYS])
def test_replaying_the_services_gives_pipecast_runs_outputs(tmp_path, name, parameters):
    from pipecast.runtime.params import resolve_parameters
    from tests.helpers.replay import run_task

    pipeline = case(name).build()
    artifacts = tmp_path / "artifacts"
    env = compose_environment(pipeline, resolve_parameters(pipeline, parameters), "replay-1", str(artifacts))
    document = compose_replay.load(compose_file(compile_case("local_docker", pipeline, golden=True)), env)
    for service_name in compose_replay.service_order(document):
        service = document["services"][service_name]
        run_task(compose_replay.service_argv(service), env=compose_replay.service_env(service, {}))
    assert_same_outputs(pipeline, parameters, artifacts, "replay-1", tmp_path)


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """A ``docker`` on PATH that logs its calls and runs Compose services here (see compose_replay.main)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m tests.targets.local_docker.replay \"$@\"\n")
    script.chmod(0o755)
    log = tmp_path / "docker.log"
    cases_env = env_with_cases()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", cases_env["PYTHONPATH"])
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))

    def calls() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def test_pipecast_run_target_local_docker_runs_the_compose_project(tmp_path, fake_docker):
    from pipecast.runs.store import RunStore

    artifacts = tmp_path / "art"
    result = CliRunner().invoke(cli, ["run", str(case("quickstart").path), "--target", "local_docker",
                                      "-p", "n=20", "--set", "image=ghcr.io/acme/pipecast:1.0",
                                      "--artifact-root", str(artifacts)])
    assert result.exit_code == 0, result.output
    run_id = result.output.strip().splitlines()[-1]
    record = RunStore.default().get(run_id)
    compose_file = record["metadata"]["compose_file"]
    project = run_id.lower().replace("_", "-")
    calls = fake_docker()
    assert compose_commands(compose_file, project) == [
        ["docker", "compose", "--file", compose_file, "--project-name", project, "up",
         "--abort-on-container-failure", "--no-color"],
        ["docker", "compose", "--file", compose_file, "--project-name", project, "down", "--remove-orphans"]]
    assert [c["argv"] for c in calls] == [["info", "--format", "{{.ServerVersion}}"], ["compose", "version"],
                                          *[c[1:] for c in compose_commands(compose_file, project)]]
    up = calls[2]["env"]
    assert up["PIPECAST_RUN_ID"] == run_id and up["PIPECAST_PARAM_n"] == "20" and up["PIPECAST_PARAM_seed"] == "7"
    assert record["target"] == "local_docker" and record["status"] == "succeeded"
    assert record["url"] == f"file://{artifacts}/quickstart/runs/{run_id}"
    steps = case("quickstart").build().steps
    assert {s["step"]: s["status"] for s in record["steps"]} == {s.name: "done" for s in steps}
    assert_same_outputs(case("quickstart").build(), {"n": 20}, artifacts, run_id, tmp_path)
    document = yaml.safe_load(Path(compose_file).read_text())
    assert document["services"]["split"]["volumes"][0]["source"] == str(artifacts)
    assert document["services"]["split"]["user"] == f"{os.getuid()}:{os.getgid()}"


def test_the_run_honours_the_pipelines_own_local_docker_settings(tmp_path, fake_docker):
    """`settings={"local_docker": {...}}` on the pipeline chooses the artifact folder and the user of the run
    (before, the run's own choices silently replaced them)."""
    import dataclasses

    from pipecast.compiler import ir
    from pipecast.flow import run_with_docker

    artifacts = tmp_path / "from-settings"
    own = (ir.Setting(target="local_docker", key="artifact_root", value_json=json.dumps(f"file://{artifacts}")),
           ir.Setting(target="local_docker", key="user", value_json='"4242:4242"'))
    built = dataclasses.replace(case("quickstart").build(), settings=own)
    run = run_with_docker(built, {"n": 4}, settings={"image": "img:1"})
    document = yaml.safe_load(Path(run.commands[0][3]).read_text())
    assert document["services"]["split"]["volumes"][0]["source"] == str(artifacts)
    assert document["services"]["split"]["user"] == "4242:4242"
    assert run.url.startswith(f"file://{artifacts}/quickstart/runs/")


def test_a_failed_container_fails_the_run(tmp_path, fake_docker):
    from pipecast.runs.store import RunStore

    result = CliRunner().invoke(cli, ["run", "tests/targets/local_docker/pipelines.py", "--target", "local_docker",
                                      "--set", "image=img:1", "--artifact-root", str(tmp_path / "art")])
    assert result.exit_code == 1, result.output
    record = RunStore.default().get(result.output.strip().splitlines()[-1])
    assert record["status"] == "failed" and "exited with status 1" in record["detail"]
    assert {s["step"]: s["status"] for s in record["steps"]} == {"fails": "failed", "never": "skipped"}
    assert [c["argv"][-1] for c in fake_docker()][-1] == "--remove-orphans"  # containers removed afterwards


@pytest.mark.parametrize(("mode", "message"), [
    ("no-engine", "no Docker engine: `docker info` failed: Cannot connect to the Docker daemon"),
    ("no-compose", "the Docker Compose plugin is missing: `docker compose` failed: docker: unknown command"),
])
def test_missing_docker_pieces_fail_with_exit_status_2_and_the_fix(fake_docker, monkeypatch, mode, message):
    monkeypatch.setenv("FAKE_DOCKER", mode)
    result = CliRunner().invoke(cli, ["run", str(case("diamond_after").path), "--target", "local_docker",
                                      "--set", "image=img:1"])
    assert result.exit_code == 2
    assert message in result.output and "use --target local" in result.output
    assert not any("up" in c["argv"] for c in fake_docker())


def test_this_machine_has_no_docker_engine_and_the_error_says_so(monkeypatch, tmp_path):
    """The real docker CLI, pointed at a socket nothing listens on (so no engine, whatever the machine)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(DockerUnavailableError) as err:
        check_docker()
    if shutil.which("docker"):
        assert str(err.value).startswith(
            "no Docker engine: `docker info` failed: Cannot connect to the Docker daemon")
        assert str(err.value).endswith("start Docker (or set DOCKER_HOST) or use --target local")
    else:
        assert str(err.value) == "no docker CLI on PATH: install Docker or use --target local"


def test_run_options_that_do_not_apply_are_refused():
    result = CliRunner().invoke(cli, ["run", str(case("diamond_after").path), "--target", "local_docker",
                                      "--no-cache"])
    assert result.exit_code == 2 and "--no-cache applies to --target local only" in result.output
    result = CliRunner().invoke(cli, ["run", str(case("diamond_after").path), "--set", "image=x"])
    assert result.exit_code == 2 and "--set applies to --target local_docker only" in result.output


def test_listed_with_its_real_status():
    listing = json.loads(CliRunner().invoke(cli, ["targets", "--json"]).output)
    row = next(r for r in listing if r["name"] == "local_docker")
    assert row["status"] == "experimental" and "untested here" in row["description"]
    assert row["capabilities"]["retry"]["support"] == "emulated"
    assert row["capabilities"]["status/wait/cancel"]["support"] == "unsupported"


def test_unsupported_features_stop_the_run_unless_warned(tmp_path, fake_docker):
    args = ["run", str(case("full_options").path), "--target", "local_docker", "--artifact-root",
            str(tmp_path / "art")]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "Compose cannot choose a GPU model" in refused.output
    assert fake_docker() == []  # refused before docker was asked anything
    warned = CliRunner().invoke(cli, [*args, "--on-unsupported", "warn"])
    assert warned.exit_code == 0, warned.output
    assert "warning:" in warned.output and "Compose cannot choose a GPU model" in warned.output
