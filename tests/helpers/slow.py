"""The ``slow`` layer: tests that start a real engine or server, or build a side virtualenv.

``pytest -m "not slow"`` is the fast layer a developer runs while working; CI runs everything (``make test``).
A module whose every test is slow says so with ``pytestmark = pytest.mark.slow``; a fixture that starts
such a thing is decorated with :func:`slow_fixture` (under ``@pytest.fixture``), and ``tests/conftest.py``
marks every test that uses it, directly or through another fixture, so a new test gets the mark by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

SLOW_ATTRIBUTE = "pipecast_slow"


def slow_fixture(function: F) -> F:
    """Mark a fixture function as starting a real engine or server (or building a side virtualenv)."""
    setattr(function, SLOW_ATTRIBUTE, True)
    return function


def uses_slow_fixture(item: Any) -> bool:
    """Whether a collected test uses a :func:`slow_fixture`, directly or through other fixtures."""
    info = getattr(item, "_fixtureinfo", None)  # pytest's record of the test's fixture closure
    if info is None:
        return False
    return any(getattr(definition.func, SLOW_ATTRIBUTE, False)
               for definitions in info.name2fixturedefs.values() for definition in definitions)
