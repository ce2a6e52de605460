"""Session fixtures for the real-Docker tests (registered in ``tests/conftest.py``; any test module can use them).

- ``docker_engine``: one dockerd for the whole session (:class:`~tests.helpers.docker_engine.DockerEngine`).
- ``docker_env``: per test, points ``docker`` (and ``docker compose``) at that engine through the environment;
  afterwards it removes any container or network the test left behind and fails that test (only that one).
- ``parent_image``: the Debian bookworm image with python3 (tag of the imported image).
- ``runtime_image``: the parent + pipecast from this checkout + its dependencies (tag).
- ``registry``: a docker-registry on 127.0.0.1 (``registry.address``).
- ``buildah``: buildah with storage of its own (``buildah.command(...)``).

With ``CI`` set, an engine that cannot start fails the tests that need it; elsewhere they skip, saying why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests.helpers.docker_engine import (
    Buildah,
    DockerEngine,
    EngineUnavailable,
    Registry,
    buildah_ready,
    start_engine,
    start_registry,
)
from tests.helpers.docker_images import build_runtime_image, import_parent
from tests.helpers.slow import slow_fixture


def unavailable(what: str, err: Exception) -> NoReturn:
    """Fail with ``CI`` set (real-engine tests must run there), skip elsewhere; say why either way."""
    message = f"{what} cannot run here: {err}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
@slow_fixture
def docker_engine() -> Iterator[DockerEngine]:
    try:
        engine = start_engine()
    except (EngineUnavailable, OSError) as err:
        unavailable("the Docker engine", err)
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def docker_env(docker_engine: DockerEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[DockerEngine]:
    for name, value in docker_engine.env().items():
        monkeypatch.setenv(name, value)
    docker_engine.clean()  # whatever an earlier test leaked was reported there, not here
    yield docker_engine
    leaked = docker_engine.leftovers()
    if leaked:
        docker_engine.clean()
        pytest.fail(f"the test left these on the Docker engine: {', '.join(leaked)}", pytrace=False)


@pytest.fixture(scope="session")
def parent_image(docker_engine: DockerEngine) -> str:
    try:
        return import_parent(docker_engine)
    except EngineUnavailable as err:
        unavailable("the parent image", err)


@pytest.fixture(scope="session")
def runtime_image(docker_engine: DockerEngine, parent_image: str) -> str:
    try:
        return build_runtime_image(docker_engine, parent_image, "pipecast-test-runtime:session")
    except EngineUnavailable as err:
        unavailable("the pipecast runtime image", err)


@pytest.fixture(scope="session")
@slow_fixture
def registry() -> Iterator[Registry]:
    try:
        server = start_registry()
    except (EngineUnavailable, OSError) as err:
        unavailable("docker-registry", err)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
@slow_fixture
def buildah() -> Iterator[Buildah]:
    try:
        tool = buildah_ready()
    except (EngineUnavailable, OSError) as err:
        unavailable("buildah", err)
    try:
        yield tool
    finally:
        tool.remove()
