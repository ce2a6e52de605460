"""``--set airflow_version=2``: every case loads in a real Airflow 2.10.5 (DagBag, then its serializer) with the
task ids, dependencies, retries, timeouts and params of its pipeline, and the quickstart really runs under
Airflow 2's ``airflow dags test`` with the same outputs as ``pipecast run``.

Airflow 2 cannot share a virtualenv with Airflow 3, so it runs in one of its own (see ``airflow2_venv.py``).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import CASES, ROOT, case, compile_case, golden_settings
from tests.helpers.replay import assert_same_outputs
from tests.helpers.slow import slow_fixture
from tests.targets.airflow import pipelines
from tests.targets.airflow.airflow2_venv import airflow2_python
from tests.targets.airflow.flow_pipelines import item_exit_branches
from tests.targets.airflow.in_airflow_dagbag import RUN_ID
from tests.targets.airflow.support import airflow, airflow_env, assert_tasks_match, fresh_home, probe
from tests.targets.airflow.test_control_flow_dags_test import instances
from tests.targets.airflow.typed_pipelines import HOSTILE_ROOT, assert_asset_events, assert_loaded_outlets, typed_assets

EVIL = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \\ {% raw %} {{workflow.name}} #x"

# dag id -> (pipeline, settings): every golden case, in pods and on workers, always for Airflow 2.
VARIANTS = {c.name: (c.build, {**golden_settings("airflow"), "airflow_version": 2}) for c in CASES}
VARIANTS.update({
    "hostile_pods": (case("hostile").build, {"mode": "kubernetes", "image": "ghcr.io/acme/hostile:1",
                                             "artifact_root": "s3://b/a", "dag_id": "hostile_pods",
                                             "airflow_version": 2}),
    "mixed_modes": (pipelines.mixed_modes.build, {"airflow_version": 2}),
    "pod_settings": (case("full_options").build, {"airflow_version": 2, "dag_id": "pod_settings",
                                                  "gpu_node_label": "nvidia", "tolerations": [pipelines.SPOT],
                                                  "node_selector": {"pool": "ml"}, "image_pull_secrets": ["regcred"]}),
    "operator_kwargs": (pipelines.operator_kwargs.build, {"airflow_version": 2}),
    "operator_kwargs_sla": (case("quickstart").build, {
        "airflow_version": 2, "dag_id": "operator_kwargs_sla", "artifact_root": "s3://b/a",
        "operator_kwargs": {"sla": 5400, "owner": pipelines.HOSTILE_OWNER, "pool": "ml"}}),
    "typed_assets": (typed_assets.build, {"artifact_root": HOSTILE_ROOT, "airflow_version": 2}),
    "typed_pods": (typed_assets.build, {"artifact_root": "s3://b/a", "mode": "kubernetes", "image": "ghcr.io/a/t:1",
                                        "dag_id": "typed_pods", "airflow_version": 2}),
})


@pytest.fixture(scope="module")
@slow_fixture
def python() -> Path:
    return airflow2_python()


@pytest.fixture(scope="module")
def loaded(python, tmp_path_factory):
    dags = tmp_path_factory.mktemp("dags")
    built = {}
    for dag_id, (build, settings) in VARIANTS.items():
        pipeline = build()
        bundle = compile_case("airflow", pipeline, settings=settings).bundle
        (dags / bundle.main_file).write_text(bundle.files[0][1], encoding="utf-8")
        built[dag_id] = pipeline
    return built, probe(dags, tmp_path_factory.mktemp("airflow2-home"), python=python)


def test_every_dag_loads_in_airflow_2_without_import_or_serialization_errors(loaded):
    result = loaded[1]
    assert result["import_errors"] == {}
    assert sorted(result["dags"]) == sorted(VARIANTS)
    for dag_id, dag in result["dags"].items():
        assert dag["serialization_error"] is None, (dag_id, dag["serialization_error"])
        assert dag["file"].endswith(f"/{dag_id}.dag.py")


@pytest.mark.parametrize("dag_id", sorted(VARIANTS))
def test_tasks_dependencies_retries_timeouts_and_params_in_airflow_2(loaded, dag_id):
    built, result = loaded
    # Airflow 2 only doubles the delay: the runtime retries a step with another factor (mixed_modes' on_worker).
    assert_tasks_match(built[dag_id], result["dags"][dag_id], backoff=lambda factor: factor == 2,
                       airflow_retries=lambda step: step.retry.backoff in (1.0, 2.0))


def test_tolerations_and_gpu_node_label_reach_airflow_2_pods(loaded):
    pods = {name: task["pod"]["spec"] for name, task in loaded[1]["dags"]["pod_settings"]["tasks"].items()}
    assert all(spec["tolerations"] == [pipelines.SPOT] for spec in pods.values())
    assert all(spec["imagePullSecrets"] == [{"name": "regcred"}] for spec in pods.values())
    assert pods["train"]["nodeSelector"] == {"nvidia.com/gpu.product": "nvidia-tesla-t4", "pool": "ml"}


def test_pods_and_worker_tasks_in_airflow_2(loaded):
    tasks = loaded[1]["dags"]["full_options"]["tasks"]
    container = tasks["load"]["pod"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "pipecast.runtime"]
    assert container["resources"]["limits"] == {"memory": "4Gi"}  # no CPU limit by default
    env = {e["name"]: e for e in container["env"]}
    assert env["PIPECAST_RUN_ID"]["value"] == RUN_ID
    assert env["DB_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"key": "password", "name": "db-credentials"}}
    mixed = loaded[1]["dags"]["mixed_modes"]["tasks"]
    assert mixed["emit"]["type"] == "BashOperator" and mixed["in_pod"]["type"] == "KubernetesPodOperator"
    assert mixed["in_pod"]["pod"]["spec"]["tolerations"] == [pipelines.DEDICATED]  # its own, not the pipeline's
    assert loaded[1]["dags"]["full_options"]["tasks"]["train"]["pod"]["spec"]["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    hostile = loaded[1]["dags"]["hostile"]["tasks"]["echo_text"]
    assert hostile["env"]["EVIL_ENV"] == EVIL  # rendered by Airflow 2's own templating, verbatim


@pytest.fixture
def home(python, migrated_db, tmp_path_factory) -> Path:
    """This test's Airflow 2 AIRFLOW_HOME: a copy of the session's database migrated by Airflow 2 and an empty
    DAGs folder."""
    return fresh_home(tmp_path_factory.mktemp("airflow2-run-home"), migrated_db(python.parent))


RUNS = {
    "quickstart": {"n": 17, "label": "airflow 2"},  # at logical date 2021-01-01 (see below)
    "hostile": {"text": EVIL + " $HOME \"$(id)\" '", "data": {"q'\"": "{{ 1 }} $(id) ${{ x }}", "n": [1, None]}},
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_airflow_2_dags_test_runs_the_pipeline_with_the_outputs_of_pipecast_run(python, home, tmp_path, name):
    env, root = airflow_env(home, bin_dir=python.parent), tmp_path / "artifacts"
    pipeline = case(name).build()
    # The task's PYTHONPATH holds pipecast's source tree (not installed in this venv) and nothing of the cases':
    # the pipeline's module comes from the code folder the DAG ships beside itself.
    settings = {"airflow_version": 2, "artifact_root": f"file://{root}", "python": str(python),
                "pythonpath": str(ROOT), "working_directory": str(ROOT)}
    bundle = compile_case("airflow", pipeline, settings=settings).bundle
    bundle.write(str(home / "dags"))
    # Airflow creates no task for a logical date before the DAG's start_date and calls the run a success.
    logical_date = ["2021-01-01"] if name == "quickstart" else []
    result = airflow(["dags", "test", pipeline.name, *logical_date, "-c", json.dumps(RUNS[name])], env, timeout=600,
                     bin_dir=python.parent)
    runs = list((root / pipeline.name / "runs").iterdir())
    assert len(runs) == 1, (runs, result.stdout[-3000:])
    assert "state=failed" not in result.stdout and "Task failed" not in result.stdout, result.stdout[-3000:]
    assert_same_outputs(pipeline, {**{p.name: p.default for p in pipeline.parameters}, **RUNS[name]}, root,
                        runs[0].name, tmp_path)
    if logical_date:  # Airflow 2's logical date reaches every step as pipecast.context().logical_time
        metas = sorted(runs[0].glob("*/meta.json"))
        assert len(metas) == len(pipeline.steps)
        assert {json.loads(meta.read_text()).get("logical_time") for meta in metas} == {"2021-01-01T00:00:00+00:00"}


def test_airflow_2_lists_typed_outputs_as_datasets_with_an_event_per_run(python, home, tmp_path):
    """Issue 17 on Airflow 2.10: each typed output is a Dataset outlet of its task, and the run's dataset events
    (their extra set by the DAG's post_execute hook) name the step folder of the run."""
    env, root = airflow_env(home, bin_dir=python.parent), tmp_path / "artifacts"
    pipeline = typed_assets.build()
    settings = {"airflow_version": 2, "artifact_root": f"file://{root}", "python": str(python),
                "pythonpath": str(ROOT), "working_directory": str(ROOT)}
    compile_case("airflow", pipeline, settings=settings).bundle.write(str(home / "dags"))
    # Airflow 2.10's `dags test` writes no DAG to the database, and records an event only for a dataset that is
    # there ("DatasetModel ... not found" otherwise: datasets/manager.py register_dataset_change): first sync the
    # DAGs folder as the scheduler's DAG processor does (DagBag.sync_to_db, which writes the outlets' datasets).
    airflow(["dags", "reserialize"], env, timeout=600, bin_dir=python.parent)
    result = airflow(["dags", "test", pipeline.name], env, timeout=600, bin_dir=python.parent)
    assert "state=failed" not in result.stdout and "Task failed" not in result.stdout, result.stdout[-3000:]
    (run,) = (root / pipeline.name / "runs").iterdir()
    assert_asset_events(home / "airflow.db", root, run.name, version=2)


def test_operator_kwargs_reach_airflow_2_operators(loaded):
    """The escape hatch in Airflow 2.10: each operator keeps its arguments (the hostile owner verbatim), and
    ``sla``, which only Airflow 2 has, arrives in seconds and becomes a timedelta."""
    dags = loaded[1]["dags"]
    tasks = dags["operator_kwargs"]["tasks"]
    assert tasks["tuned_default"]["attributes"]["owner"] == pipelines.HOSTILE_OWNER
    assert tasks["tuned_pod"]["attributes"]["on_finish_action"] == "keep_pod"
    assert tasks["tuned_pod"]["attributes"]["startup_timeout_seconds"] == 600
    assert tasks["tuned_worker"]["attributes"]["output_encoding"] == "latin-1"
    for task in dags["operator_kwargs_sla"]["tasks"].values():
        assert task["attributes"]["sla"] == 5400.0 and task["attributes"]["pool"] == "ml"
        assert task["attributes"]["owner"] == pipelines.HOSTILE_OWNER


def test_typed_outputs_are_dataset_outlets_and_pods_push_their_xcom_in_airflow_2(loaded):
    """Each typed output is an outlet (Dataset) of its task at its static URI (the hostile root percent-encoded
    as written in the task table), with the post_execute hook that fills each event's extra; a pod task pushes
    XCom (the operator adds the sidecar and mounts /airflow/xcom in the step's container)."""
    assert_loaded_outlets(loaded[1]["dags"], "Dataset")


def test_airflow_2_runs_an_exit_handler_inside_a_map_per_item_as_pipecast_run_does(python, home, tmp_path):
    """Issue 16 on Airflow 2.10: the mapped teardown handler of ``item_exit_branches`` gets ``ti.map_index`` as on
    Airflow 3, so instance ``i`` reads item ``i``'s status; the instances equal ``pipecast run``'s."""
    env, root = airflow_env(home, bin_dir=python.parent), tmp_path / "artifacts"
    pipeline = item_exit_branches.build()
    settings = {"airflow_version": 2, "artifact_root": f"file://{root}", "python": str(python),
                "pythonpath": str(ROOT), "working_directory": str(ROOT)}
    compile_case("airflow", pipeline, settings=settings).bundle.write(str(home / "dags"))
    result = subprocess.run([str(python.parent / "airflow"), "dags", "test", pipeline.name], env=env,
                            capture_output=True, text=True, timeout=600)  # the run fails, as it should
    (run,) = (root / pipeline.name / "runs").iterdir()
    local = run_pipeline(pipeline, {}, artifact_root=f"file://{tmp_path / 'local'}", cache=False,
                         raise_on_failure=False, fail_fast=False)  # Airflow starts every item
    here = instances(tmp_path / "local", pipeline.name, local.id)
    assert instances(root, pipeline.name, run.name) == {k: v for k, v in here.items() if v[0] != "skipped"}, \
        result.stdout[-3000:]
    assert [json.loads(here[f"summary[{i}]"][1]["output"]) for i in range(3)] == [
        "succeeded: []", "failed: ['invert[1]']", "succeeded: []"]
    with closing(sqlite3.connect(home / "airflow.db")) as db:  # Airflow 2.10's own record of the run
        (state,) = db.execute("SELECT state FROM dag_run WHERE dag_id = ?", (pipeline.name,)).fetchone()
        rows = db.execute("SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND task_id IN "
                          "('summary', 'invert')", (pipeline.name,)).fetchall()
    assert state == "failed"  # the handler instances are teardowns: they do not make the run a success
    assert sorted(rows) == [("invert", 0, "success"), ("invert", 1, "failed"), ("invert", 2, "skipped"),
                            ("summary", 0, "success"), ("summary", 1, "success"), ("summary", 2, "success")]
