"""Airflow 3 really runs a DAG with control flow (``airflow dags test``, SQLite): the ML example's map (dynamic
task mapping over a parameter, chained item by item, collected; each item a model directory and its Metrics), its
if/else (``@task.branch``, the other branch skipped, ``OneOf`` after it; the promoted model a copy of the best
item's directory) and its exit handler (a teardown task reading the group's status) — with the same instances,
statuses and outputs as ``pipecast run``. A second run with a failing item proves the
failure path: the item fails (after Airflow retried it), its dependents do not run, the handler still reports the
failed item, and Airflow calls the run failed although the handler succeeded (a teardown is left out of the run's
state). The first run also proves issue 17's typed outputs of TaskFlow steps (mapped or in a branch) are Airflow
Assets: one event per instance, whose extra names that instance's step folder. A third run proves Airflow's own
retries of a map item, with a delay and backoff, end in success, each item reading an Airflow variable as a
secret (issue 16: secrets on a mapped step)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import case, compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.flow_pipelines import (
    chained_failing_item,
    failing_item,
    item_conditions,
    item_exit_branches,
    item_one_of,
)
from tests.targets.airflow.retry_pipelines import retried_item
from tests.targets.airflow.support import (
    PROBE_CONNECTIONS,
    PROBE_VARIABLES,
    VENV_BIN,
    airflow,
    airflow_env,
    fresh_home,
    secrets_backend,
)


@pytest.fixture
@slow_fixture
def home(migrated_db, tmp_path_factory):
    """This test's AIRFLOW_HOME: a copy of the session's migrated SQLite database and an empty DAGs folder."""
    return fresh_home(tmp_path_factory.mktemp("airflow-home"), migrated_db())


def instances(root: Path, pipeline: str, run_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every step instance that ran (``train_model[1]``...): its status and its outputs' files, as stored (a
    directory as its manifest: each file's sha256 and size)."""
    found = {}
    for meta_file in sorted((root / pipeline / "runs" / run_id).glob("*/meta.json")):
        meta = json.loads(meta_file.read_text())
        outputs = {name: json.dumps(record["manifest"], sort_keys=True) if record.get("kind") == "directory"
                   else (meta_file.parent / record["file"]).read_bytes().decode()
                   for name, record in meta.get("outputs", {}).items()} if meta["status"] == "succeeded" else {}
        found[meta_file.parent.name] = (meta["status"], outputs)
    return found


def run_both(home: Path, tmp_path: Path, params: dict[str, Any]) -> tuple[Any, Any, str]:
    """Run the example under Airflow and locally; return both instance tables and Airflow's output."""
    pipeline = case("ml_pipeline").build()
    root = tmp_path / "airflow-artifacts"
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}", "executor": "local"}).bundle
    bundle.write(str(home / "dags"))
    result = airflow(["dags", "test", pipeline.name, "-c", json.dumps(params)], airflow_env(home), timeout=600)
    (run,) = (root / pipeline.name / "runs").iterdir()
    defaults = {p.name: p.default for p in pipeline.parameters}
    local = run_pipeline(pipeline, {**defaults, **params}, artifact_root=f"file://{tmp_path / 'local'}", cache=False)
    return (instances(root, pipeline.name, run.name), instances(tmp_path / "local", pipeline.name, local.id),
            result.stdout)


def test_map_branch_and_exit_handler_run_under_airflow_as_pipecast_run_runs_them(home, tmp_path):
    params = {"rates": [0.01, 0.1, 1.0], "threshold": 0.8}
    under_airflow, local, _ = run_both(home, tmp_path, params)
    assert under_airflow == local
    assert {"train_model[2]", "evaluate[2]", "promote", "record_decision", "report"} <= set(under_airflow)
    assert "keep_current" not in under_airflow  # the else branch did not run
    assert json.loads(under_airflow["report"][1]["output"]) == "search succeeded"
    # The best item (lr=1.0) promoted: its model directory copied, file for file, through Airflow's tasks.
    assert json.loads(under_airflow["evaluate[2]"][1]["output"])["lr"] == 1.0
    assert under_airflow["promote"][1]["promoted"] == under_airflow["train_model[2]"][1]["model"]
    assert set(json.loads(under_airflow["promote"][1]["promoted"])) == {"README.md", "weights.json"}
    # Airflow's own view: three mapped instances per step of the map, the other branch skipped by the branch task.
    env = airflow_env(home)
    (run_id,) = [r["run_id"] for r in json.loads(_json_tail(airflow(
        ["dags", "list-runs", "ml_pipeline", "-o", "json"], env).stdout))]
    states = json.loads(_json_tail(airflow(
        ["tasks", "states-for-dag-run", "ml_pipeline", run_id, "-o", "json"], env).stdout))
    by_task: dict[str, list[tuple[int, str]]] = {}
    for ti in states:
        index = int(ti["map_index"]) if ti.get("map_index") not in ("", None) else -1
        by_task.setdefault(ti["task_id"], []).append((index, ti["state"]))
    assert sorted(by_task["train_model"]) == [(0, "success"), (1, "success"), (2, "success")]
    assert by_task["keep_current"] == [(-1, "skipped")]
    assert by_task["condition_1_branch"] == [(-1, "success")]
    assert by_task["report"] == [(-1, "success")]
    # Issue 17: each typed output of a TaskFlow step is an asset; every instance that ran recorded an event whose
    # extra names its own step folder, which holds the output's record of the asset's type.
    root = tmp_path / "airflow-artifacts"
    (run_folder,) = [p.name for p in (root / "ml_pipeline" / "runs").iterdir()]
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        events = db.execute("SELECT a.uri, a.extra, e.extra, e.source_task_id, e.source_map_index FROM asset_event e "
                            "JOIN asset a ON a.id = e.asset_id WHERE e.source_dag_id = 'ml_pipeline'").fetchall()
    found = {}
    for uri, static, extra, task_id, map_index in events:
        static, extra = json.loads(static), json.loads(extra)
        instance = task_id if map_index == -1 else f"{task_id}[{map_index}]"
        assert extra == {"pipecast_run_id": run_id, "pipecast_output": static["pipecast_output"],
                         "pipecast_step_uri": f"file://{root}/ml_pipeline/runs/{run_folder}/{instance}"}, extra
        meta = json.loads((root / "ml_pipeline" / "runs" / run_folder / instance / "meta.json").read_text())
        assert meta["outputs"][static["pipecast_output"]]["artifact"] == static["pipecast_type"]
        assert uri == f"file://{root}/ml_pipeline/assets/{task_id}/{static['pipecast_output']}"
        found[instance] = static["pipecast_type"]
    assert found == {**{f"train_model[{i}]": "Model" for i in range(3)},
                     **{f"evaluate[{i}]": "Metrics" for i in range(3)}, "promote": "Model"}, events


def test_a_failed_item_fails_the_run_while_the_exit_handler_and_the_failure_hook_report_it(home, tmp_path):
    """The failure path as Airflow runs it, against pipecast run's: the failing item is retried once, then fails."""
    pipeline = failing_item.build()
    root = tmp_path / "airflow-artifacts"
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}", "executor": "local",
                                                          "ship_code": False}).bundle
    bundle.write(str(home / "dags"))
    env = airflow_env(home)
    result = subprocess.run([str(VENV_BIN / "airflow"), "dags", "test", pipeline.name], env=env, capture_output=True,
                            text=True, timeout=600)  # exits non-zero: the run failed, as it should
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "DagRun failed" in output, output[-3000:]
    assert output.count("pipecast: step 'invert[1]' failed after 1 try") == 2, output[-3000:]  # retried once
    (run,) = (root / pipeline.name / "runs").iterdir()
    local = run_pipeline(pipeline, {"xs": [1, 0, 2]}, artifact_root=f"file://{tmp_path / 'local'}", cache=False,
                         raise_on_failure=False, fail_fast=False)  # Airflow starts every item
    assert local.status == "failed"
    under_airflow, here = instances(root, pipeline.name, run.name), instances(tmp_path / "local", pipeline.name,
                                                                              local.id)
    ran = {name: value for name, value in here.items() if value[0] != "skipped"}
    assert under_airflow == ran
    assert json.loads(under_airflow["summary"][1]["output"]) == "failed: ['invert[1]']"
    assert json.loads(under_airflow["alert"][1]["output"]) == "failed: ['invert[1]']"
    assert "celebrate" not in under_airflow
    runs = airflow(["dags", "list-runs", pipeline.name, "-o", "json"], env).stdout
    (dag_run,) = json.loads(_json_tail(runs))
    assert dag_run["state"] == "failed"  # the handler and the hook are teardowns: they do not make it a success
    states = json.loads(_json_tail(airflow(
        ["tasks", "states-for-dag-run", pipeline.name, dag_run["run_id"], "-o", "json"], env).stdout))
    by_task = {(t["task_id"], t.get("map_index")): t["state"] for t in states}
    assert by_task[("invert", "1")] == "failed" and by_task[("summary", "")] == "success"
    assert by_task[("celebrate", "")] == "skipped" and by_task[("alert", "")] == "success"


def _json_tail(text: str) -> str:
    return text[text.index("[{"):]


def test_airflow_retries_a_map_item_with_its_delay_and_backoff_and_the_run_succeeds(home, tmp_path, monkeypatch):
    """``airflow dags test`` comes back after retries: item 1 fails twice, Airflow retries it after the step's
    delay (with backoff), the third try succeeds, and the results equal ``pipecast run``'s. Every item got the
    Airflow variable its step names as a secret (Airflow's LocalFilesystemBackend holds it), as the
    environment variable ``pipecast run`` gives the step. Then conditions inside a map, item by item."""
    pipeline = retried_item.build()
    root, tries = tmp_path / "airflow-artifacts", tmp_path / "airflow-tries"
    tries.mkdir()
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}", "executor": "local",
                                                          "ship_code": False}).bundle
    bundle.write(str(home / "dags"))
    token = PROBE_VARIABLES["api-token"]
    assert token not in bundle.files[0][1]  # a template in the file, rendered by Airflow for each run
    env = airflow_env(home, **secrets_backend(tmp_path / "secrets", PROBE_VARIABLES, PROBE_CONNECTIONS))
    result = airflow(["dags", "test", pipeline.name, "-c", json.dumps({"folder": str(tries)})], env, timeout=600)
    output = result.stdout + result.stderr
    assert output.count("pipecast: step 'fails_twice[1]' failed after 1 try") == 2, output[-3000:]
    assert (tries / "tries-1").read_text() == "3" and (tries / "tries-0").read_text() == "1"
    assert {(tries / f"secret-{x}").read_text() for x in range(3)} == {token}
    (run,) = (root / pipeline.name / "runs").iterdir()
    local_tries = tmp_path / "local-tries"
    local_tries.mkdir()
    monkeypatch.setenv("API_TOKEN", token)
    local = run_pipeline(pipeline, {"folder": str(local_tries)}, artifact_root=f"file://{tmp_path / 'local'}",
                         cache=False)
    assert local.steps["fails_twice[1]"].attempts == 3
    assert instances(root, pipeline.name, run.name) == instances(tmp_path / "local", pipeline.name, local.id)
    assert local.outputs == {"output": 0 + 10 + 20 + 3 * len(token)}
    _conditions_in_a_map_run_per_item(home, tmp_path)  # the same Airflow home: one more `dags test` (~40 s)
    _one_of_in_a_map_reads_each_items_branch(home, tmp_path)  # and one more


def _conditions_in_a_map_run_per_item(home: Path, tmp_path: Path) -> None:
    """A condition inside a map (``item_conditions``): each branch step's instance decides its own item and raises
    Airflow's skip when its branch did not run, so only that map index is skipped; the steps after it (the chained
    ``shout``, the fan-ins, ``none_failed``) give ``pipecast run``'s results."""
    pipeline = item_conditions.build()
    root = tmp_path / "conditions-airflow"
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}", "executor": "local",
                                                          "ship_code": False}).bundle
    bundle.write(str(home / "dags"))
    env = airflow_env(home)
    airflow(["dags", "test", pipeline.name], env, timeout=600)
    (run,) = (root / pipeline.name / "runs").iterdir()
    local = run_pipeline(pipeline, {}, artifact_root=f"file://{tmp_path / 'conditions-local'}", cache=False)
    here = instances(tmp_path / "conditions-local", pipeline.name, local.id)
    assert instances(root, pipeline.name, run.name) == {k: v for k, v in here.items() if v[0] != "skipped"}
    assert [json.loads(here[name][1]["output"]) for name in ("joined", "joined_2", "joined_3")] == [
        "BIG12,BIG15", "mid2", "small3"]
    runs = airflow(["dags", "list-runs", pipeline.name, "-o", "json"], env).stdout
    (dag_run,) = json.loads(_json_tail(runs))
    assert dag_run["state"] == "success"
    states = json.loads(_json_tail(airflow(
        ["tasks", "states-for-dag-run", pipeline.name, dag_run["run_id"], "-o", "json"], env).stdout))
    by_task = {(t["task_id"], t.get("map_index")): t["state"] for t in states}
    ran = {"pair": {"1", "3"}, "shout": {"1", "3"}, "pair_2": {"2"}, "pair_3": {"0"}}  # xs = [1, 4, 2, 5]
    for task, items in ran.items():
        assert {i: by_task[(task, str(i))] for i in range(4)} == {
            i: "success" if str(i) in items else "skipped" for i in range(4)}, by_task
    assert {by_task[(name, "")] for name in ("joined", "joined_2", "joined_3")} == {"success"}


def _one_of_in_a_map_reads_each_items_branch(home: Path, tmp_path: Path) -> None:
    """A ``OneOf`` of branches inside a map (``item_one_of``): each instance of its reader reads the instance of the
    branch that ran for its own item, as ``pipecast run`` does."""
    pipeline = item_one_of.build()
    root = tmp_path / "one-of-airflow"
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}", "executor": "local",
                                                          "ship_code": False}).bundle
    bundle.write(str(home / "dags"))
    airflow(["dags", "test", pipeline.name], airflow_env(home), timeout=600)
    (run,) = (root / pipeline.name / "runs").iterdir()
    local = run_pipeline(pipeline, {}, artifact_root=f"file://{tmp_path / 'one-of-local'}", cache=False)
    here = instances(tmp_path / "one-of-local", pipeline.name, local.id)
    assert instances(root, pipeline.name, run.name) == {k: v for k, v in here.items() if v[0] != "skipped"}
    shown = [json.loads(here[f"shout_2[{i}]"][1]["output"]) for i in range(4)]
    assert shown == ["SMALL", "[BIG]", "[BIG]", "[BIG]"]  # score(x) > 3 for 5, 2 and 7


def test_an_exit_handler_inside_a_map_reads_its_own_items_status_as_pipecast_run_does(home, tmp_path):
    """Issue 16: the handler of an exit group inside a map (``item_exit_branches``) is a mapped teardown; instance
    ``i`` reads item ``i``'s status only. Item 1's ``invert`` fails (after Airflow's retry), items 0 and 2 succeed
    (item 2 in the else branch): only ``summary[1]`` reports a failure, naming ``invert[1]``, as in ``pipecast
    run``; Airflow calls the run failed although every handler instance succeeded."""
    pipeline = item_exit_branches.build()
    root = tmp_path / "airflow-artifacts"
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}", "executor": "local",
                                                          "ship_code": False}).bundle
    bundle.write(str(home / "dags"))
    env = airflow_env(home)
    result = subprocess.run([str(VENV_BIN / "airflow"), "dags", "test", pipeline.name], env=env, capture_output=True,
                            text=True, timeout=600)  # exits non-zero: the run failed, as it should
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "DagRun failed" in output, output[-3000:]
    (run,) = (root / pipeline.name / "runs").iterdir()
    local = run_pipeline(pipeline, {}, artifact_root=f"file://{tmp_path / 'local'}", cache=False,
                         raise_on_failure=False, fail_fast=False)  # Airflow starts every item
    assert local.status == "failed"
    here = instances(tmp_path / "local", pipeline.name, local.id)
    assert instances(root, pipeline.name, run.name) == {k: v for k, v in here.items() if v[0] != "skipped"}
    assert [json.loads(here[f"summary[{i}]"][1]["output"]) for i in range(3)] == [
        "succeeded: []", "failed: ['invert[1]']", "succeeded: []"]
    (dag_run,) = json.loads(_json_tail(airflow(["dags", "list-runs", pipeline.name, "-o", "json"], env).stdout))
    assert dag_run["state"] == "failed"  # the handler instances are teardowns: they do not make it a success
    states = json.loads(_json_tail(airflow(
        ["tasks", "states-for-dag-run", pipeline.name, dag_run["run_id"], "-o", "json"], env).stdout))
    by_task = {(t["task_id"], t.get("map_index")): t["state"] for t in states}
    assert {i: by_task[("summary", str(i))] for i in range(3)} == {i: "success" for i in range(3)}
    assert [by_task[("invert", str(i))] for i in range(3)] == ["success", "failed", "skipped"]
    assert [by_task[("shout", str(i))] for i in range(3)] == ["skipped", "skipped", "success"]


def test_a_failed_item_fails_only_its_own_chain_in_a_mapped_task_group(home, tmp_path):
    """Issue 16: a map of chained steps is one mapped task group, so Airflow decides each item's chain on its own
    (trigger rules per map index): item 1's first step fails, its second step is upstream_failed, and items 0 and
    2 run their second step; the fan-in after the map is upstream_failed. ``pipecast run`` with fail_fast=False
    (``--continue-on-failure``) runs the item chains the same: each runs to its end or its own failure; and it
    skips the fan-in, since an item skipped because of a failure (not a condition) leaves it without a value.
    (Fail-fast, pipecast run's default, stops starting new instances after a failure, so which other items' second
    steps ran would depend on timing; Airflow has no fail-fast for mapped instances, so that is the shared meaning.)
    Compared against hand-derived instances, not timing."""
    pipeline = chained_failing_item.build()
    root = tmp_path / "airflow-artifacts"
    bundle = compile_case("airflow", pipeline, settings={"artifact_root": f"file://{root}", "executor": "local",
                                                          "ship_code": False}).bundle
    assert '"group": "map_1_group"' in bundle.files[0][1]  # the map is one mapped task group
    bundle.write(str(home / "dags"))
    env = airflow_env(home)
    result = subprocess.run([str(VENV_BIN / "airflow"), "dags", "test", pipeline.name], env=env, capture_output=True,
                            text=True, timeout=600)  # exits non-zero: the run failed, as it should
    assert result.returncode != 0, (result.stdout + result.stderr)[-3000:]
    (run,) = (root / pipeline.name / "runs").iterdir()
    under_airflow = instances(root, pipeline.name, run.name)
    expected = {"invert[0]": ("succeeded", {"output": "1.0"}), "invert[1]": ("failed", {}),
                "invert[2]": ("succeeded", {"output": "0.5"}), "halve[0]": ("succeeded", {"output": "0.5"}),
                "halve[2]": ("succeeded", {"output": "0.25"})}
    assert under_airflow == expected
    local = run_pipeline(pipeline, {"xs": [1, 0, 2]}, artifact_root=f"file://{tmp_path / 'local'}", cache=False,
                         raise_on_failure=False, fail_fast=False)
    assert local.status == "failed"
    here = instances(tmp_path / "local", pipeline.name, local.id)
    # The item chains agree, and so does the fan-in: halve[1] was skipped because invert[1] failed, so total does
    # not run (Airflow: upstream_failed); only an item a condition skipped is left out of a fan-in.
    assert here == expected  # halve[1] and total did not run: no record
    assert (local.steps["halve[1]"].status, local.steps["halve[1]"].error) == ("skipped", "upstream 'invert[1]' failed")
    assert (local.steps["total"].status, local.steps["total"].error) == (
        "skipped", "upstream step 'invert' failed (item 'invert[1]')")
    (dag_run,) = json.loads(_json_tail(airflow(["dags", "list-runs", pipeline.name, "-o", "json"], env).stdout))
    assert dag_run["state"] == "failed"
    states = json.loads(_json_tail(airflow(
        ["tasks", "states-for-dag-run", pipeline.name, dag_run["run_id"], "-o", "json"], env).stdout))
    by_task = {(t["task_id"], t.get("map_index")): t["state"] for t in states}
    assert by_task == {("map_1_items", ""): "success", ("invert", "0"): "success", ("invert", "1"): "failed",
                       ("invert", "2"): "success", ("halve", "0"): "success", ("halve", "1"): "upstream_failed",
                       ("halve", "2"): "success", ("total", ""): "upstream_failed"}, by_task
