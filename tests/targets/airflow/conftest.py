"""Fixtures of the Airflow target's tests: Airflow metadata databases migrated once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.slow import slow_fixture
from tests.targets.airflow.support import VENV_BIN, migrate_template


@pytest.fixture(scope="session")
@slow_fixture
def migrated_db(tmp_path_factory) -> Callable[..., Path]:
    """``migrated_db(bin_dir=VENV_BIN)``: the SQLite file of a metadata database that the Airflow of the venv
    ``bin_dir`` migrated, once per session and Airflow; copy it, never write to it (``fresh_home`` copies it)."""
    made: dict[Path, Path] = {}

    def database(bin_dir: Path = VENV_BIN) -> Path:
        if bin_dir not in made:
            made[bin_dir] = migrate_template(tmp_path_factory.mktemp("airflow-db-template"), bin_dir)
        return made[bin_dir]

    return database
