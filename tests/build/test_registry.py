"""Registry names, the user's Docker credentials, builders by name, and the CLI's refusals (exit 2, no traceback)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from pipecast.build.builders import BuildahBuilder, DockerBuilder, get_builder
from pipecast.build.registry import DOCKER_HUB, Repository, credentials
from pipecast.errors import BuildError
from tests.helpers.cases import ROOT


@pytest.mark.parametrize(("text", "host", "path", "plain"), [
    ("127.0.0.1:5000/team/app", "127.0.0.1:5000", "team/app", True),
    ("localhost/app", "localhost", "app", True),
    ("ghcr.io/acme/pipelines", "ghcr.io", "acme/pipelines", False),
    ("acme/app", DOCKER_HUB, "acme/app", False),
    ("python", DOCKER_HUB, "library/python", False),
])
def test_repository_names_follow_docker(text, host, path, plain):
    repo = Repository.parse(text)
    assert (repo.host, repo.path, repo.plain_http) == (host, path, plain)


def test_credentials_from_docker_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert credentials("ghcr.io") is None  # no config at all
    auth = base64.b64encode(b"robot:s3cret:with:colons").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"https://ghcr.io": {"auth": auth}}}))
    assert credentials("ghcr.io") == ("robot", "s3cret:with:colons")
    assert credentials("quay.io") is None


def test_credentials_from_a_helper(tmp_path, monkeypatch):
    # A credential helper is a program docker-credential-<name> answering `get` with JSON (docker's protocol).
    helper = tmp_path / "bin" / "docker-credential-pctest"
    helper.parent.mkdir()
    helper.write_text(f"#!{sys.executable}\nimport json, sys\nhost = sys.stdin.read().strip()\n"
                      "if host != 'registry.example':\n    sys.exit(1)\n"
                      "print(json.dumps({'Username': 'u', 'Secret': 'from-helper'}))\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"registry.example": "pctest"}}))
    assert credentials("registry.example") == ("u", "from-helper")


def test_builders_by_name():
    assert isinstance(get_builder("docker"), DockerBuilder)
    assert isinstance(get_builder("buildah"), BuildahBuilder)
    with pytest.raises(BuildError, match=r"unknown builder 'dokcer'; did you mean 'docker'\?\n    fix: known builders: "
                                         r"buildah, docker; others are registered under the entry-point group"):
        get_builder("dokcer")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipecast.cli", *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)


@pytest.mark.parametrize(("args", "message"), [
    (["--push"], "error: pipeline 'quickstart' has no repository to push its image to\n    fix: pass --repository"),
    (["--builder", "kaniko"], "error: unknown builder 'kaniko'"),
    (["--parent-image", "a b"], "setting 'parent_image' (in the command line): must be an image reference"),
    (["--from-dockerfile", "docker/Missing.Dockerfile"], "error: dockerfile 'docker/Missing.Dockerfile' is not a "
                                                         "file (looked at "),
])
def test_cli_refusals(args, message, tmp_path):
    done = cli("build", "examples/quickstart.py", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_own_dockerfile_is_the_parent_in_the_printed_dockerfile():
    done = cli("build", "examples/quickstart.py", "--dockerfile", "--from-dockerfile", "docker/Dockerfile")
    assert done.returncode == 0, done.stderr
    assert "FROM <the image built from docker/Dockerfile> AS base\n" in done.stdout


def test_a_builder_from_another_package_is_found_through_its_entry_point(tmp_path, monkeypatch):
    # An installed distribution, as pip leaves it: a module and a dist-info whose entry_points.txt names the builder.
    (tmp_path / "pc_kaniko.py").write_text(
        "from pipecast.build.builders import Builder\n\nclass KanikoBuilder(Builder):\n    name = 'kaniko'\n")
    info = tmp_path / "pc_kaniko-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pc-kaniko\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pipecast.builders]\nkaniko = pc_kaniko:KanikoBuilder\n"
                                           "broken = pc_kaniko:Builder.__init__\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert type(get_builder("kaniko")).__name__ == "KanikoBuilder"
    with pytest.raises(BuildError, match=r"builder 'broken' .* is not a pipecast.build.builders.Builder subclass"):
        get_builder("broken")
