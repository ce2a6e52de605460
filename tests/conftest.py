"""Shared fixtures: an isolated PIPECAST_HOME per test, the --update-goldens flag, the ``slow`` layer."""

from __future__ import annotations

import os

import pytest

from tests.helpers.slow import uses_slow_fixture

# The real-Docker fixtures (docker_engine, docker_env, parent_image, runtime_image, registry, buildah).
pytest_plugins = ["tests.helpers.docker_fixtures", "tests.helpers.moto_s3"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", help="rewrite tests/golden/<case>/<target>/ files")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--update-goldens") and os.environ.get("CI"):
        raise pytest.UsageError("--update-goldens is refused when CI is set: goldens are reviewed, not regenerated")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses a fixture starting a real engine or server is ``slow`` (tests/helpers/slow.py)."""
    for item in items:
        if uses_slow_fixture(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def pipecast_home(tmp_path, monkeypatch):
    """Every test gets its own run store and artifact root, and no stack but the built-in local one."""
    home = tmp_path / "pipecast-home"
    monkeypatch.setenv("PIPECAST_HOME", str(home))
    monkeypatch.delenv("PIPECAST_RUN_STORE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("PIPECAST_STACK", raising=False)
    return home
