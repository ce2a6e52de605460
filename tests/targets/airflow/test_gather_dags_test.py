"""Airflow really runs the golden ``gather`` case (literal lists and dicts of outputs and parameters as one input)
with ``airflow dags test``, and its outputs equal ``pipecast run``'s with the same parameters."""

from __future__ import annotations

import pytest

from tests.helpers.cases import case
from tests.helpers.replay import assert_same_outputs
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.support import airflow, airflow_env
from tests.targets.airflow.test_dags_test import dags_test


@pytest.fixture(scope="module")
@slow_fixture
def home(tmp_path_factory):
    """An AIRFLOW_HOME with a migrated SQLite database and an empty DAGs folder."""
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    airflow(["db", "migrate"], airflow_env(home))
    return home


def test_the_gather_case_runs_under_airflow_and_equals_pipecast_run(home, tmp_path):
    root = tmp_path / "artifacts"
    run_id = dags_test(home, "gather", {"n": 5, "lr": 0.25}, root)
    assert_same_outputs(case("gather").build(), {"n": 5, "lr": 0.25}, root, run_id, tmp_path)
