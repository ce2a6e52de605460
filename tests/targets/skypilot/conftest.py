"""Fixtures of the SkyPilot target tests."""

from __future__ import annotations

import pytest

from tests.helpers.slow import slow_fixture
from tests.targets.skypilot.sky_venv import sky_python


@pytest.fixture(scope="session")
@slow_fixture
def sky_interpreter() -> str:
    """A Python with SkyPilot 0.14.1 (its own venv, made on first use: see sky_venv.py)."""
    return sky_python()
