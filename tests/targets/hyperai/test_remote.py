"""hyperai over a real OpenSSH server on 127.0.0.1 (started by the session; see sshd.py): the SSH half.

What is real here: sshd, SSH authentication and host-key checks (paramiko), the SFTP upload, the remote shell.
These tests need no Docker engine: the SSH user's plain ``docker`` on this machine has no Compose plugin (or
there is no docker at all), so submit stops at its Compose check, which is what they assert. The runs
themselves (Compose, containers, cron, cancel) are proven against a real Docker engine in test_docker.py.
HyperAI's own API is not reachable and not used.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipecast.errors import SubmitError
from pipecast.flow import submit_pipeline
from pipecast.runs.store import RunStore
from tests.helpers.cases import ROOT, case, compile_case
from tests.targets.hyperai import sshd

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0"}


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


def test_an_unknown_host_key_is_refused_unless_the_user_accepts_it(server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    base = {**server.config, "known_hosts": str(empty), "remote_dir": str(tmp_path / "r")}
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS, base)
    assert "is not in" in str(err.value) and "insecure_accept_host_key=true" in str(err.value)
    with pytest.warns(UserWarning, match="Unknown ssh-ed25519 host key"), pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS, {**base, "insecure_accept_host_key": True})
    # Past the host key, the upload and into the remote shell: stopped by the host's docker, not by SSH.
    assert "'127.0.0.1'" in str(err.value) and "Docker" in str(err.value)
    assert (tmp_path / "r" / "run.sh").exists()
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
        ({**server.config, "docker": "date +%s; docker"}, "docker='date +%s; docker' cannot hold a newline or %"),
    ):
        with pytest.raises(SubmitError) as err:
            submit_pipeline(case("quickstart").build(), "hyperai", {}, SETTINGS, config)
        assert expected in str(err.value)


def test_importing_the_target_does_not_import_paramiko():
    code = "import sys, pipecast.targets.hyperai as t; t.HyperAITarget(); print('paramiko' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"
