"""Airflow as deployed (issue 14): a real Airflow 3 (api-server, scheduler with its LocalExecutor, dag-processor)
and an ``s3://`` artifact root on moto's S3 server, reached through the real s3fs; the tasks share nothing but
the object store.

Why LocalExecutor on SQLite: Airflow 3 runs it on SQLite (its workers reach the database only through the
api-server's Task Execution API), it is a parallel executor (``parallelism`` 2 here: fan-out siblings may run at
once), and it runs every task in a process of its own, as a Celery worker would. What a second machine would add
(a disk of its own) is made true for every task instead: each runs its step with a Python wrapper (``--set
python=...``) that gives it a fresh HOME, TMPDIR, PIPECAST_HOME and working directory, so no task can read what
another wrote except through S3. Nothing of the user's is on any Airflow component's PYTHONPATH either: the code
comes from the ``<dag_id>.code`` folder ``pipecast submit`` deployed beside the DAG file. The tasks' credentials
for the store are the worker's environment (``AWS_*``, as an instance profile or IRSA would provide them).

CI runs this test (``CI`` set): Airflow, moto and s3fs come with the ``airflow`` and ``test`` extras, so a failure
to start them fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipecast.compiler.loader import load_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runtime.executor import load_outputs
from tests.helpers.cases import ROOT, case
from tests.helpers.replay import local_outputs
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.support import (
    VENV_BIN,
    airflow_env,
    free_port,
    fresh_home,
    running_components,
    server_components,
    server_settings,
    tail_logs,
)
from tests.targets.sagemaker.servers import moto_server

PASSWORD = "pipecast-deployed-password"
BUCKET = "pipecast-deployed"
ROOT_URI = f"s3://{BUCKET}/artifacts"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
# One task's Python: a home, temporary directory, pipecast home and working directory of its own. It notes its
# process id and home (for the test only), then becomes the venv's Python.
WRAPPER = """#!/bin/sh
set -e
home=$(mktemp -d "{homes}/task.XXXXXXXX")
echo "$$ $home" >> "{homes}/tasks.log"
export HOME="$home" TMPDIR="$home" PIPECAST_HOME="$home/.pipecast"
cd "$home"
exec "{python}" "$@"
"""


@pytest.fixture(scope="module")
@slow_fixture
def deployment(migrated_db, tmp_path_factory):
    """moto's S3 server with an empty bucket, and an Airflow 3 whose tasks reach it with the worker's credentials."""
    home = fresh_home(tmp_path_factory.mktemp("airflow-deployed"), migrated_db())
    dags, homes = home / "dags", home / "task-homes"
    homes.mkdir()
    wrapper = home / "task-python"
    wrapper.write_text(WRAPPER.format(homes=homes, python=VENV_BIN / "python"))
    wrapper.chmod(0o755)
    with moto_server(home / "moto.log", timeout=120) as s3_url:
        store = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_url}
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = airflow_env(home, dags, **server_settings(home, port, PASSWORD), **store)
        env.pop("PYTHONPATH")  # no user code on any component's path: it comes with the DAG
        with pytest.MonkeyPatch.context() as patch:  # this process reads the store as the tasks do
            for name, value in store.items():
                patch.setenv(name, value)
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
            s3fs.S3FileSystem().mkdir(BUCKET)
            logs = home / "logs-components"
            with running_components(VENV_BIN / "airflow", server_components(port), env, logs,
                                    f"{base_url}/api/v2/monitor/health", 150):
                yield {"base_url": base_url, "dags": dags, "logs": logs, "homes": homes, "python": str(wrapper)}


def test_quickstart_and_a_fan_out_run_with_nothing_shared_but_s3(deployment, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("AIRFLOW_PASSWORD", PASSWORD)
    runs = {}
    for name, path, params in [("quickstart", ROOT / "examples" / "quickstart.py", {"n": 31, "label": "deployed"}),
                               ("diamond_after", case("diamond_after").path, {})]:
        definition = load_pipeline(str(path))
        handle = definition.submit(target="airflow", parameters=params,
                                   settings={"artifact_root": ROOT_URI, "python": deployment["python"],
                                             "executor": "celery"},
                                   dags_folder=str(deployment["dags"]), base_url=deployment["base_url"],
                                   unpause=True, parse_timeout=240)
        runs[name] = (definition.build(), params, handle)
    for _name, (_pipeline, _params, handle) in runs.items():  # submitted together: they share the executor
        status = handle.wait(timeout=480)
        assert status is RunStatus.SUCCEEDED, (handle.detail, tail_logs(deployment["logs"]))
    for name, (pipeline, params, handle) in runs.items():
        values = {**{p.name: p.default for p in pipeline.parameters}, **params}
        stored = {s.name: load_outputs(ROOT_URI, pipeline.name, handle.engine_run_id, s.name) for s in pipeline.steps}
        assert stored == local_outputs(pipeline, values, tmp_path / name), name
    # Every step ran once, in a process and home of its own, and kept nothing on its disk.
    tasks = [line.split() for line in (deployment["homes"] / "tasks.log").read_text().splitlines()]
    steps = sum(len(pipeline.steps) for pipeline, _, _ in runs.values())
    assert len(tasks) == steps
    assert len({pid for pid, _ in tasks}) == steps and len({home for _, home in tasks}) == steps
    for _, task_home in tasks:
        kept = [str(p) for p in Path(task_home).rglob("*") if p.is_file()]
        assert not [p for p in kept if "artifacts" in p], kept
    shipped = sorted(os.listdir(deployment["dags"]))
    assert shipped == ["diamond_after.code", "diamond_after.dag.py", "quickstart.code", "quickstart.dag.py"]
