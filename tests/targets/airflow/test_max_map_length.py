"""Airflow's map size as the deployment configures it: ``[core] max_map_length`` (default 1024).

Airflow refuses to expand a mapped task over an XCom longer than that (Airflow 3.3: the execution API,
``api_fastapi/execution_api/routes/xcoms.py``, ``conf.getint("core", "max_map_length", fallback=1024)``;
Airflow 2: ``TaskInstance._record_task_map_for_downstreams``). The DAG's publisher task reads the configured value
from Airflow's configuration and the runtime refuses a longer list with that number, so a real ``airflow dags
test`` with ``AIRFLOW__CORE__MAX_MAP_LENGTH=2`` fails the publisher saying 2, not pipecast's default, and records
the map's step failed with that error (what an exit handler or hook reads).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from pipecast.runtime import publish_airflow
from tests.helpers.cases import compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.flow_pipelines import flow_constructs
from tests.targets.airflow.support import VENV_BIN, airflow_env, fresh_home
from tests.unit.map_limit_pipelines import short_default


@pytest.fixture
@slow_fixture
def home(migrated_db, tmp_path_factory):
    """This test's AIRFLOW_HOME: a copy of the session's migrated SQLite database and an empty DAGs folder."""
    return fresh_home(tmp_path_factory.mktemp("airflow-home"), migrated_db())


def test_the_publisher_refuses_a_list_over_the_configured_max_map_length_under_airflow(home, tmp_path):
    pipeline = short_default.build()  # a map over a parameter whose default has 3 items
    root = tmp_path / "airflow-artifacts"
    compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}", "executor": "local"}
                 ).bundle.write(str(home / "dags"))
    env = airflow_env(home, AIRFLOW__CORE__MAX_MAP_LENGTH="2")
    result = subprocess.run([str(VENV_BIN / "airflow"), "dags", "test", pipeline.name], env=env, capture_output=True,
                            text=True, timeout=600)  # exits non-zero: the publisher refused the list
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "DagRun failed" in output, output[-3000:]
    assert ("map 'map_1' (tests/unit/map_limit_pipelines.py:27) has 3 items; Airflow expands at most 2 (this "
            "deployment's [core] max_map_length)") in output, output[-3000:]
    (run,) = (root / pipeline.name / "runs").iterdir()
    assert not any(run.glob("square[[]*"))  # no item ran; the step is recorded failed, saying why (issue 16)
    record = json.loads((run / "square" / "meta.json").read_text())
    assert record["status"] == "failed" and "Airflow expands at most 2" in record["error"]


def test_the_publisher_takes_the_payloads_limit_and_defaults_to_airflows():
    spec = json.loads(_entry("map_2_items"))["spec"]
    payload = {"params": {"sizes": [1, 2]}, "run_id": "r", "max_map_length": 3}
    with pytest.raises(SystemExit, match=r"has 4 items; Airflow expands at most 3 \(this deployment's "):
        publish_airflow.map_items(spec, payload)
    assert len(publish_airflow.map_items(spec, {**payload, "max_map_length": 4})) == 4
    assert publish_airflow.MAX_MAP_LENGTH == 1024  # a payload without it (a DAG compiled before): Airflow's default


def _entry(task_id: str) -> str:
    text = compile_case("airflow", flow_constructs.build(), settings={"ship_code": False}).bundle.files[0][1]
    table = json.loads(text[text.index('r"""') + 4:text.index('""")')])
    return json.dumps(table[task_id])
