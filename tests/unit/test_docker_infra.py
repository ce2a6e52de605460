"""The shared real-Docker fixtures work: dockerd runs containers from the runtime image, Compose v2 runs a
project with a network and ordered services, the registry takes a push and gives the image back by digest,
buildah builds an image the engine can pull, and a leak is found and cleaned."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.helpers.docker_fixtures import unavailable

COMPOSE = """\
name: infra-check
services:
  first:
    image: {image}
    command: ["python", "-c", "open('/shared/first', 'w').write('from first')"]
    volumes: [{{type: bind, source: {shared}, target: /shared}}]
  second:
    image: {image}
    command: ["python", "-c", "import pipecast, sys; print(open('/shared/first').read(), pipecast.__name__)"]
    volumes: [{{type: bind, source: {shared}, target: /shared}}]
    depends_on:
      first: {{condition: service_completed_successfully}}
"""


def test_containers_run_pipecast_from_the_runtime_image(docker_env, runtime_image):
    result = subprocess.run(["docker", "run", "--rm", runtime_image, "python", "-c",
                             "import click, fsspec, jinja2, pipecast, rich, yaml; print(pipecast.__file__)"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/opt/pipecast/lib/python3.11/site-packages/pipecast/__init__.py"


def test_compose_v2_runs_services_in_order_on_their_own_network(docker_env, runtime_image, tmp_path):
    assert docker_env.compose_version.startswith("2.")
    shared = tmp_path / "shared"
    shared.mkdir()
    (tmp_path / "compose.yaml").write_text(COMPOSE.format(image=runtime_image, shared=shared))
    base = ["docker", "compose", "--file", str(tmp_path / "compose.yaml")]
    try:
        up = subprocess.run([*base, "up", "--abort-on-container-failure", "--no-color"], capture_output=True,
                            text=True, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "from first pipecast" in up.stdout
        assert "network infra-check_default" in docker_env.leftovers()
    finally:
        subprocess.run([*base, "down", "--remove-orphans"], capture_output=True, timeout=600, check=True)


def tiny_image(engine, tmp_path, tag: str) -> str:
    """An image holding only Docker's own static init binary (tini), so pushes and pulls stay small."""
    init = Path(os.path.realpath(shutil.which("docker-init") or "/usr/bin/docker-init"))
    with tarfile.open(tmp_path / "tiny.tar", "w") as tar:
        tar.add(init, arcname="init")
    engine.docker("import", "--change", 'ENTRYPOINT ["/init"]', str(tmp_path / "tiny.tar"), tag)
    return tag


def test_an_image_pushed_to_the_registry_is_pulled_by_digest(docker_env, registry, tmp_path):
    name = f"{registry.address}/pipecast/tiny"
    tiny_image(docker_env, tmp_path, f"{name}:check")
    docker_env.docker("push", f"{name}:check")
    digest = docker_env.docker("image", "inspect", "--format", "{{index .RepoDigests 0}}", f"{name}:check").stdout
    assert digest.strip().startswith(f"{name}@sha256:")
    docker_env.docker("image", "rm", f"{name}:check")  # gone here: the pull must fetch it from the registry
    assert docker_env.docker("image", "inspect", digest.strip(), check=False).returncode != 0
    pulled = docker_env.docker("pull", digest.strip())
    assert "Downloaded newer image" in pulled.stdout
    ran = docker_env.docker("run", "--rm", digest.strip(), "--version")
    assert ran.stdout.startswith("tini version")


def test_buildah_builds_an_image_the_engine_pulls_from_the_registry(docker_env, buildah, registry, tmp_path):
    (tmp_path / "hello.txt").write_text("built by buildah\n")
    container = buildah.run("from", "scratch")
    assert container.returncode == 0, container.stderr
    name = container.stdout.strip()
    image = f"{registry.address}/pipecast/buildah:check"
    for args in (("copy", name, str(tmp_path / "hello.txt"), "/hello.txt"), ("commit", name, image),
                 ("push", "--tls-verify=false", image), ("rm", name)):
        result = buildah.run(*args)
        assert result.returncode == 0, f"buildah {args}: {result.stderr}"
    docker_env.docker("pull", image)
    created = docker_env.docker("create", image, "unused").stdout.strip()
    copied = subprocess.run(["docker", "cp", f"{created}:/hello.txt", "-"], capture_output=True, timeout=600)
    docker_env.docker("rm", created)
    assert b"built by buildah\n" in copied.stdout  # docker cp writes a tar stream holding the file


def test_leftovers_are_found_and_cleaned(docker_env, tmp_path):
    docker_env.docker("network", "create", "leaked-net")
    docker_env.docker("create", "--name", "leaked-container", "--network", "none",
                      tiny_image(docker_env, tmp_path, "pipecast-test-tiny:leak"), "--version")
    assert {"network leaked-net", "container leaked-container"} <= set(docker_env.leftovers())
    docker_env.clean()
    assert docker_env.leftovers() == []


@pytest.mark.parametrize(("ci", "outcome"), [("1", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_an_engine_that_cannot_start_fails_on_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="the Docker engine cannot run here: no dockerd"):
        unavailable("the Docker engine", RuntimeError("no dockerd"))
