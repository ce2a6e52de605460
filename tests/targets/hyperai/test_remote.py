"""hyperai over a real OpenSSH server on 127.0.0.1 (started by the test; see sshd.py).

What is real here: sshd, SSH authentication and host-key checks (paramiko), the SFTP upload, the remote
shell, ``run.sh``, ``crontab``. What is not: Docker. This machine has the docker CLI but no engine or
Compose plugin, so the real ``docker compose version`` fails and submit must say so clearly. Every other
test points ``-c docker=…`` at ``fake_docker.py``, which logs its calls and runs the services the way
Compose would, so the whole path (SSH → run.sh → "docker compose up" → steps → outputs) is replayed.
HyperAI's own API is not reachable and not used.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipecast import pipeline, step
from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import ROOT, case, compile_case, env_with_cases
from tests.helpers.replay import assert_same_outputs
from tests.helpers.runs import forget_engine_identity
from tests.helpers.slow import slow_fixture
from tests.targets.hyperai import sshd

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0"}


@pytest.fixture(scope="module")
@slow_fixture
def server(tmp_path_factory):
    running = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def root_crontab():
    """The remote user's crontab is root's here: keep what it held and put it back afterwards."""
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    yield
    if before.returncode == 0:
        subprocess.run(["crontab", "-"], input=before.stdout, text=True, check=True)
    else:
        subprocess.run(["crontab", "-r"], capture_output=True)


@pytest.fixture
def fake_docker(tmp_path):
    """A `docker` command for the remote side: a wrapper that runs fake_docker.py with this checkout."""
    state = tmp_path / "docker-state"
    state.mkdir()
    wrapper = tmp_path / "docker"
    env = env_with_cases()
    wrapper.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(env['PYTHONPATH'])}; export PYTHONPATH\n"
        f"FAKE_DOCKER_STATE={shlex.quote(str(state))}; export FAKE_DOCKER_STATE\n"
        f'exec {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).parent / "fake_docker.py"))} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, state


def calls(state: Path) -> list[dict]:
    path = state / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_submit_uploads_then_reports_that_the_host_cannot_run_compose(server, tmp_path):
    remote = tmp_path / "remote"
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS,
                        {**server.config, "remote_dir": str(remote)})
    message = str(err.value)
    # The real docker CLI of this machine has no Compose plugin (or, elsewhere, there is no docker at all).
    assert "'127.0.0.1'" in message
    assert ("Docker Compose v2 is not usable" in message and "docker-compose-plugin" in message) or \
           ("has no Docker" in message and "install Docker" in message), message
    bundle = compile_case("hyperai", "quickstart", settings=SETTINGS).bundle
    assert (remote / "compose.yaml").read_text() == bundle["compose.yaml"]
    assert (remote / "run.sh").read_text() == bundle["run.sh"]
    assert (remote / "run.sh").stat().st_mode & 0o777 == 0o755
    assert RunStore.default().list(limit=1)[0]["status"] == "failed"


def test_a_host_without_docker_is_named_with_the_fix(server, tmp_path):
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS,
                        {**server.config, "remote_dir": str(tmp_path / "r"), "docker": "/nonexistent/docker"})
    assert "remote host '127.0.0.1' has no Docker" in str(err.value)
    assert "No such file or directory" in str(err.value) and "install Docker Engine" in str(err.value)


def test_submit_runs_the_pipeline_through_ssh_and_tracks_it(server, fake_docker, tmp_path, root_crontab):
    docker, state = fake_docker
    remote = tmp_path / "remote"
    built = case("ml_training").build()
    config = {**server.config, "remote_dir": str(remote), "docker": str(docker)}
    handle = submit_pipeline(built, "hyperai", {"epochs": 5, "samples": 80}, {}, config)

    version, up = calls(state)
    assert version["argv"] == ["compose", "version"]
    project = handle.engine_run_id
    assert project.startswith("ml-training-ml_training-")
    assert up["argv"] == ["compose", "--file", "compose.yaml", "--project-name", project, "up", "--detach"]
    assert up["cwd"] == str(remote)
    assert up["env"]["PIPECAST_RUN_ID"] == handle.run_id
    assert up["env"]["PIPECAST_PARAM_epochs"] == "5" and up["env"]["PIPECAST_PARAM_lr_large"] == "1.0"
    assert up["env"]["PIPECAST_ARTIFACT_DIR"] == str(remote / "artifacts")
    # The steps ran on the "host" from the uploaded compose.yaml: same outputs as `pipecast run`.
    assert_same_outputs(built, {"epochs": 5, "samples": 80}, remote / "artifacts", handle.run_id, tmp_path)

    assert handle.status() is RunStatus.SUCCEEDED
    ps = calls(state)[-1]
    assert ps["argv"] == ["compose", "--project-name", project, "ps", "--all", "--format", "json"]
    assert ps["cwd"] == "/"  # away from compose.yaml, which would need the run's variables

    # The schedule: one crontab line that runs run.sh, kept once however often we submit.
    subprocess.run(["crontab", "-"], input="17 2 * * * /bin/true # someone else's line\n", text=True, check=True)
    submit_pipeline(built, "hyperai", {}, {}, config)
    submit_pipeline(built, "hyperai", {}, {}, config)
    crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in crontab.splitlines() if "pipecast-hyperai" in line]
    assert ours == [f"0 4 * * 1 sh {remote}/run.sh >>{remote}/cron.log 2>&1 "
                    f"# pipecast-hyperai ml-training {remote} #"]
    assert "17 2 * * * /bin/true # someone else's line" in crontab

    # Reconnect from the run store (as `pipecast runs cancel` does), cancel, and see it.
    record = RunStore.default().get(handle.run_id)
    assert record["metadata"]["crontab"] == ours[0] and "key_file" not in record["metadata"]
    again = track(handle.run_id, {"key_file": server.config["key_file"],
                                  "known_hosts": server.config["known_hosts"]})
    again.cancel()
    assert calls(state)[-1]["argv"] == ["compose", "--project-name", project, "down", "--remove-orphans"]
    assert again.status() is RunStatus.CANCELLED
    # The cancel is recorded: a later reconnect (a new process) still reads the run as cancelled.
    later = track(handle.run_id, {"key_file": server.config["key_file"], "known_hosts": server.config["known_hosts"]})
    assert later.status() is RunStatus.CANCELLED and RunStore.default().get(handle.run_id)["status"] == "cancelled"


def test_cron_runs_the_uploaded_script_with_the_defaults(server, fake_docker, tmp_path, root_crontab):
    """What cron will run: the crontab line's command, executed here by sh, starts a run with defaults."""
    docker, state = fake_docker
    remote = tmp_path / "remote"
    submit_pipeline(case("ml_training").build(), "hyperai", {"epochs": 5}, {},
                    {**server.config, "remote_dir": str(remote), "docker": str(docker)})
    line = next(x for x in subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout.splitlines()
                if f"pipecast-hyperai ml-training {remote} #" in x)
    command = line.split(" ", 5)[5]
    subprocess.run(["sh", "-c", command], env={"PATH": "/usr/bin:/bin", "PIPECAST_DOCKER": str(docker),
                                               "HOME": str(tmp_path)}, check=True, timeout=300)
    up = calls(state)[-1]
    assert up["env"]["PIPECAST_RUN_ID"].startswith("scheduled-") and up["env"]["PIPECAST_PARAM_epochs"] == "30"


def test_a_start_whose_answer_never_comes_is_resolved_by_asking_docker(server, fake_docker, tmp_path):
    """`up` did the work but the SSH command timed out: submit asks for the project's containers in a new
    session and tracks the run instead of recording it as failed."""
    import os
    import signal

    docker, state = fake_docker
    (state / "up-hangs").write_text("30")
    config = {**server.config, "remote_dir": str(tmp_path / "r"), "docker": str(docker), "timeout": 5}
    try:
        handle = submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS, config)
    finally:
        if (state / "up.pid").exists():  # the hanging `up` is ours: stop it by its pid
            try:
                os.kill(int((state / "up.pid").read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
    record = RunStore.default().get(handle.run_id)
    assert record["status"] == "pending" and record["engine_run_id"] == handle.engine_run_id
    assert [c["argv"][-4:] for c in calls(state)][-1] == ["ps", "--all", "--format", "json"]
    assert handle.status() is RunStatus.SUCCEEDED


def test_a_start_that_cannot_be_asked_about_is_an_unknown_outcome(server, fake_docker, tmp_path):
    """`up` went unanswered and Docker cannot be asked either: the run is `unknown` (never `failed`: it may be
    running), its project is recorded before the start, and `pipecast runs wait` asks again later."""
    import os
    import signal

    docker, state = fake_docker
    (state / "up-hangs").write_text("30")
    (state / "ps-fails").write_text("")
    config = {**server.config, "remote_dir": str(tmp_path / "r"), "docker": str(docker), "timeout": 5}
    try:
        with pytest.raises(SubmitOutcomeUnknownError, match="asking the host whether the run started failed too"):
            submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS, config)
    finally:
        if (state / "up.pid").exists():
            try:
                os.kill(int((state / "up.pid").read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
    (record,) = RunStore.default().list()
    assert record["status"] == "unknown" and record["engine_run_id"].startswith("quickstart-quickstart-")
    (state / "ps-fails").unlink()
    assert track(record["id"], config).status() is RunStatus.SUCCEEDED


def test_a_run_recorded_without_its_project_is_found_by_the_run_id(server, fake_docker, tmp_path):
    docker, _ = fake_docker
    config = {**server.config, "remote_dir": str(tmp_path / "r"), "docker": str(docker)}
    handle = submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS, config)
    forget_engine_identity(handle.run_id)
    again = track(handle.run_id, config)
    assert again.project == handle.project and again.status() is RunStatus.SUCCEEDED


@step
def one() -> int:
    return 1


@step
def explode(x: int) -> int:
    raise RuntimeError(f"step failed on purpose with {x}")


@pipeline(name="exploding")
def exploding():
    return explode(one())


def test_a_failed_step_is_a_failed_run_with_the_step_named(server, fake_docker, tmp_path):
    docker, _ = fake_docker
    handle = submit_pipeline(exploding.build(), "hyperai", {}, SETTINGS,
                             {**server.config, "remote_dir": str(tmp_path / "r"), "docker": str(docker)})
    assert handle.status() is RunStatus.FAILED
    assert handle.detail == "step service 'explode' exited with 1"


def test_hostile_values_reach_the_steps_verbatim(server, fake_docker, tmp_path):
    docker, state = fake_docker
    remote = tmp_path / "remote"
    built = case("hostile").build()
    submit_pipeline(built, "hyperai", {}, SETTINGS, {**server.config, "remote_dir": str(remote),
                                                        "docker": str(docker)})
    up = calls(state)[-1]
    assert up["env"]["PIPECAST_PARAM_text"] == EVIL
    other = EVIL[::-1]
    handle = submit_pipeline(built, "hyperai", {"text": other}, SETTINGS,
                             {**server.config, "remote_dir": str(remote), "docker": str(docker)})
    assert calls(state)[-1]["env"]["PIPECAST_PARAM_text"] == other
    assert_same_outputs(built, {"text": other}, remote / "artifacts", handle.run_id, tmp_path)


def test_an_unknown_host_key_is_refused_unless_the_user_accepts_it(server, fake_docker, tmp_path):
    docker, _ = fake_docker
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    base = {**server.config, "known_hosts": str(empty), "remote_dir": str(tmp_path / "r"), "docker": str(docker)}
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS, base)
    assert "is not in" in str(err.value) and "insecure_accept_host_key=true" in str(err.value)
    with pytest.warns(UserWarning, match="Unknown ssh-ed25519 host key"):
        handle = submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS,
                                 {**base, "insecure_accept_host_key": True})
        assert handle.status() is RunStatus.SUCCEEDED
    assert empty.read_text() == ""  # accepting it once does not write it down


def test_a_changed_host_key_is_refused(server, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} {kind} {key}\n")
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS,
                        {**server.config, "known_hosts": str(known)})
    assert "does not match" in str(err.value)


def test_a_key_the_host_does_not_know_is_a_refused_login(server, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS,
                        {**server.config, "key_file": str(stranger)})
    assert "SSH login to root@127.0.0.1" in str(err.value) and "authorized_keys" in str(err.value)


def test_an_unreachable_host_and_bad_config_are_submit_errors(server):
    closed = sshd._free_port()
    for config, expected in (
        ({**server.config, "port": closed}, "cannot reach '127.0.0.1' port"),
        ({}, "needs the Docker host"),
        ({**server.config, "hostname": "x"}, "unknown config key(s) ['hostname']"),
        ({**server.config, "port": "ssh"}, "is not a TCP port number"),
        ({**server.config, "remote_dir": "a%b"}, "cannot hold a newline or %"),
    ):
        with pytest.raises(SubmitError) as err:
            submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS, config)
        assert expected in str(err.value)


def test_importing_the_target_does_not_import_paramiko():
    code = "import sys, pipecast.targets.hyperai as t; t.HyperAITarget(); print('paramiko' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"
