"""Shared fixtures: an isolated PIPECAST_HOME per test and the --update-goldens flag."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", help="rewrite tests/golden/<case>/<target>/ files")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--update-goldens") and os.environ.get("CI"):
        raise pytest.UsageError("--update-goldens is refused when CI is set: goldens are reviewed, not regenerated")


@pytest.fixture(autouse=True)
def pipecast_home(tmp_path, monkeypatch):
    """Every test gets its own run store and artifact root."""
    home = tmp_path / "pipecast-home"
    monkeypatch.setenv("PIPECAST_HOME", str(home))
    monkeypatch.delenv("PIPECAST_RUN_STORE", raising=False)
    return home
