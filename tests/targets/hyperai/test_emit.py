"""What the hyperai target writes: Compose files the Compose spec accepts, a run.sh that keeps values as
data, and how container states read as a run's status."""

from __future__ import annotations

import json
import subprocess
import time

import jsonschema
import pytest
import yaml

from pipecast.runs.status import RunStatus
from pipecast.targets.hyperai.remote import HostConfig, HostView, HyperAIRun, parse_ps
from pipecast.targets.listing import describe_targets
from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import CASE_IDS, ROOT, compile_case

SCHEMA = json.loads((ROOT / "tests" / "schemas" / "compose" / "compose-spec.json").read_text())
SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0"}


@pytest.mark.parametrize("name", CASE_IDS)
def test_compose_file_is_valid_and_run_sh_is_valid_sh(name, tmp_path):
    bundle = compile_case("hyperai", name, settings=SETTINGS, on_unsupported="warn").bundle
    assert [path for path, _ in bundle.files] == ["compose.yaml", "run.sh"]
    jsonschema.Draft7Validator(SCHEMA).validate(yaml.safe_load(bundle["compose.yaml"]))
    subprocess.run(["sh", "-n", "-c", bundle["run.sh"]], check=True)


def test_run_sh_defaults_and_overrides_stay_data(tmp_path):
    """run.sh with a stand-in docker that logs its words: defaults verbatim, given values win, and `up` runs in
    the background (its words land in runs/<project>/ once it ends; the log of its output is there too)."""
    bundle = compile_case("hyperai", "hostile", settings=SETTINGS, on_unsupported="warn").bundle
    (tmp_path / "run.sh").write_text(bundle["run.sh"])
    (tmp_path / "compose.yaml").write_text(bundle["compose.yaml"])
    calls = tmp_path / "calls"
    probe = tmp_path / "probe"
    probe.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" "$PIPECAST_PARAM_text" "$PIPECAST_PARAM_data" '
                     f'"$PIPECAST_RUN_ID" "$PIPECAST_ARTIFACT_DIR" >>{calls}\nprintf "\\n" >>{calls}\n')
    probe.chmod(0o755)

    def run(env: dict[str, str], project: str, *args: str) -> list[list[str]]:
        calls.write_text("")
        subprocess.run(["sh", str(tmp_path / "run.sh"), *args], capture_output=True, check=True,
                       env={"PATH": "/usr/bin:/bin", "PIPECAST_DOCKER": str(probe), **env})
        wait_for(tmp_path / "runs" / project / "exit")
        assert (tmp_path / "runs" / project / "exit").read_text() == "0\n"
        return [call.split("\0") for call in calls.read_text().split("\0\n")[:-1]]

    config, up = run({}, "hostile-run-1", "run-1")
    assert config[:6] == ["compose", "--file", "compose.yaml", "--project-name", "hostile-run-1", "config"]
    assert up[:7] == ["compose", "--file", "compose.yaml", "--project-name", "hostile-run-1", "up", "--detach"]
    assert up[7:] == [EVIL, json.dumps({"k'\"{{x}}": "${{ y }}\n$(z)"}, sort_keys=True), "run-1",
                      str(tmp_path / "artifacts")]
    _, up = run({"PIPECAST_PARAM_text": "", "PIPECAST_PROJECT": "p-1"}, "p-1")
    assert up[4] == "p-1" and up[7] == "" and up[9].startswith("scheduled-")
    # The run's folder is claimed once: the same project never starts twice.
    again = subprocess.run(["sh", str(tmp_path / "run.sh")], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", "PIPECAST_DOCKER": str(probe), "PIPECAST_PROJECT": "p-1"})
    assert again.returncode == 1 and "run p-1 was started or given up before" in again.stderr


def wait_for(path, limit: float = 120.0) -> None:
    """Wait (bounded) for a file the background ``compose up`` writes when it ends."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {limit:g}s"
        time.sleep(0.05)


def test_artifact_root_choices():
    s3 = yaml.safe_load(compile_case("hyperai", "quickstart",
                                     settings={**SETTINGS, "artifact_root": "s3://b/p"}).bundle["compose.yaml"])
    assert all("volumes" not in s for s in s3["services"].values())
    fixed = yaml.safe_load(compile_case("hyperai", "quickstart",
                                        settings={**SETTINGS, "artifact_root": "file:///srv/art"}).bundle["compose.yaml"])
    assert {s["volumes"][0]["source"] for s in fixed["services"].values()} == {"/srv/art"}
    with pytest.raises(Exception, match="absolute folder on the Docker host"):
        compile_case("hyperai", "quickstart", settings={**SETTINGS, "artifact_root": "relative/path"})


def _run(services: int = 3) -> HyperAIRun:
    cfg = HostConfig.from_config({"host": "h"}, "p")
    return HyperAIRun(run_id="r", cfg=cfg, directory="/d", project="p-r", services=services)


@pytest.mark.parametrize(("containers", "status", "detail"), [
    ([], RunStatus.UNKNOWN, "no run 'p-r' on 'h' (/d/runs/p-r is missing)"),
    ([{"Service": "a", "State": "created", "ExitCode": 0}] * 3, RunStatus.PENDING, ""),
    ([{"Service": "a", "State": "running", "ExitCode": 0}, {"Service": "b", "State": "created"}],
     RunStatus.RUNNING, ""),
    ([{"Service": "a", "State": "exited", "ExitCode": 0}, {"Service": "b", "State": "created"}],
     RunStatus.RUNNING, ""),
    ([{"Service": "a", "State": "exited", "ExitCode": 0}, {"Service": "b", "State": "exited", "ExitCode": 2},
      {"Service": "c", "State": "created"}], RunStatus.FAILED, "step service 'b' exited with 2"),
    ([{"Service": s, "State": "exited", "ExitCode": 0} for s in "abc"], RunStatus.SUCCEEDED, ""),
])
def test_container_states_read_as_run_status(containers, status, detail):
    run = _run()
    assert run.status_of(HostView(frozenset(), None, "", containers)) is status and run.detail == detail


@pytest.mark.parametrize(("marks", "exit_code", "containers", "status", "detail"), [
    ({"started"}, None, [], RunStatus.PENDING, ""),  # `compose up` is pulling or creating
    ({"started"}, 1, [], RunStatus.FAILED, "docker compose up failed: pull access denied"),
    ({"started", "cancelled"}, None, [], RunStatus.CANCELLED, ""),
    ({"started", "cancelled"}, None, [{"Service": "a", "State": "running"}], RunStatus.CANCELLED, ""),
    ({"given-up"}, None, [], RunStatus.FAILED, "submit gave this run up before it started"),
    ({"started"}, 1, [{"Service": "a", "State": "exited", "ExitCode": 3}], RunStatus.FAILED,
     "step service 'a' exited with 3"),
    # exit handlers and hooks: a step failed, but a handler runs (or `compose up` is still to start one)
    ({"started"}, None, [{"Service": "a", "State": "exited", "ExitCode": 1}, {"Service": "h", "State": "running"}],
     RunStatus.RUNNING, "step service 'a' exited with 1"),
    ({"started"}, None, [{"Service": "a", "State": "exited", "ExitCode": 1}, {"Service": "h", "State": "created"}],
     RunStatus.RUNNING, "step service 'a' exited with 1"),
    ({"started"}, 1, [{"Service": "a", "State": "exited", "ExitCode": 1}, {"Service": "h", "State": "created"}],
     RunStatus.FAILED, "step service 'a' exited with 1"),
    ({"started"}, 1, [{"Service": "a", "State": "exited", "ExitCode": 1}, {"Service": "h", "State": "exited",
                                                                           "ExitCode": 0}],
     RunStatus.FAILED, "step service 'a' exited with 1"),
])
def test_the_run_folder_on_the_host_reads_as_run_status(marks, exit_code, containers, status, detail):
    run = _run()
    view = HostView(frozenset(marks), exit_code, "pulling\npull access denied", containers)
    assert run.status_of(view) is status and run.detail == detail


def test_both_ps_output_shapes_are_read():
    rows = [{"Service": "a", "State": "exited", "ExitCode": 0}]
    assert parse_ps(json.dumps(rows)) == rows  # Compose before 2.21: one JSON array
    assert parse_ps("\n".join(json.dumps(r) for r in rows) + "\n") == rows  # later: a line each
    assert parse_ps("") == []


def test_listed_with_its_real_status():
    (line,) = [x for x in describe_targets().splitlines() if x.startswith("hyperai ")]
    assert "stable" in line and "pipecast[hyperai]" in line

