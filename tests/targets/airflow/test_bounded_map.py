"""Issue 16: a map of chained steps with a ``parallelism`` bound, or with steps in pods, is one mapped task group
on Airflow (item by item), a bound shared out over the group's tasks; Airflow 3 really runs the bounded one
(``airflow dags test``) with the same instances and outputs as ``pipecast run``, and a failed item fails only its
own chain. Pods in the group (KubernetesPodOperator, not expanded: Airflow refuses an expanded operator in an
expanded group) take the group's per-item arguments, which Airflow renders per map index (a real ``dags test``
whose pods cannot reach a cluster: what Airflow rendered for each instance before it tried to start the pod).

Why shares: ``pipecast run`` counts one bound per map, over the running instances of all its steps
(``FlowRunner._next``); Airflow counts ``max_active_tis_per_dagrun`` per task id and run
(``ConcurrencyMap.task_dagrun_concurrency_map``, airflow/jobs/scheduler_job_runner.py; ``TaskConcurrencyDep``,
airflow/ti_deps/deps/task_concurrency_dep.py), every item of a group's task under the one task id, and has no
bound on a task group. Shares that add up to M never run more than M at once. ``dags test`` runs one task
instance at a time, so concurrency itself is not observed here: the loaded bounds are (test_control_flow_emit, in
Airflow 3 and 2)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from pipecast import ParallelFor, pipeline
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.airflow.airflow2_venv import airflow2_python
from tests.targets.airflow.flow_pipelines import bounded_chain, halve, invert
from tests.targets.airflow.flow_pod_pipelines import chained_pods
from tests.targets.airflow.support import (
    VENV_BIN,
    airflow,
    airflow_env,
    fresh_home,
    probe,
    read_dag_file,
    stop_process_group,
)
from tests.targets.airflow.test_control_flow_dags_test import instances
from tests.targets.airflow.test_control_flow_emit import _replay

GOLDEN = Path(__file__).parent / "data" / "golden_flow"
SETTINGS = {"artifact_root": "s3://pipecast-golden/artifacts", "ship_code": False}
BUILDS = {"bounded_chain": bounded_chain.build, "chained_pods": chained_pods.build}


def dag_text(name: str, version: int) -> str:
    bundle = compile_case("airflow", BUILDS[name](), settings={**SETTINGS, "airflow_version": version}).bundle
    return bundle.files[0][1]


@pytest.mark.parametrize("version", [3, 2])
@pytest.mark.parametrize("name", sorted(BUILDS))
def test_goldens(name, version, request):
    text = dag_text(name, version)
    golden = GOLDEN / f"{name}.airflow{version}.py.golden"
    if request.config.getoption("--update-goldens"):
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("version", [3, pytest.param(2, marks=pytest.mark.slow)])
def test_both_airflows_load_the_groups_with_their_bounds_and_pod_arguments(version, tmp_path):
    """Airflow's DagBag (3.3, and 2.10) builds one mapped task group per map, each task with its share of the
    bound; the pods are KubernetesPodOperators of the group whose arguments are the group's MappedArgument."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in BUILDS:
        (dags / f"{name}.dag.py").write_text(dag_text(name, version), encoding="utf-8")
    result = probe(dags, tmp_path / "home") if version == 3 else \
        probe(dags, tmp_path / "home", python=airflow2_python())
    assert result["import_errors"] == {}
    for dag_id, dag in result["dags"].items():
        assert dag["serialization_error"] is None, (dag_id, dag["serialization_error"])
    chain = result["dags"]["bounded_chain"]["tasks"]
    assert {t: (chain[t]["mapped_task_group"]["group_id"], chain[t]["max_active_tis_per_dagrun"])
            for t in ("invert", "halve")} == {"invert": ("map_1_group", 2), "halve": ("map_1_group", 1)}
    pods = result["dags"]["chained_pods"]["tasks"]
    for name in ("shout", "quote"):
        assert pods[name]["type"] == "KubernetesPodOperator" and pods[name]["max_active_tis_per_dagrun"] == 1
        assert pods[name]["mapped_task_group"]["item"] == "MappedArgument", pods[name]
        assert "map_1_items" in pods[name]["mapped_task_group"]["expand_input"]
        env = pods[name]["pod"]["spec"]["containers"][0]["env"]
        assert {"name": "PIPECAST_AIRFLOW_MAP_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.labels['map_index']"}}} in env, env  # the label the operator writes per instance
    assert pods["quote"]["upstream"] == ["map_1_items", "shout"]
    assert "MappedOperator" not in pods["joined"]["type"] and "mapped_task_group" not in pods["joined"]


def _tasks(built) -> dict[str, dict]:
    text = compile_case("airflow", built, settings={"artifact_root": "s3://b/a"}).bundle.files[0][1]
    return {t["task_id"]: t for t in read_dag_file(text)["tasks"]}


def _three_chained(bound: int):
    """A map of three chained steps bounded by ``bound``."""

    @pipeline(name="three_chained")
    def three_chained(xs: list):
        with ParallelFor(xs, parallelism=bound) as x:
            halve(halve(invert(x)))

    return three_chained.build()


@pytest.mark.parametrize(("bound", "shares", "grouped"), [
    (3, [1, 1, 1], True), (5, [2, 2, 1], True), (7, [3, 2, 2], True),  # the first steps take what is left over
    (2, [2, 2, 2], False),  # fewer slots than tasks: separately mapped, each step's instances after the last's
])
def test_a_bound_is_shared_out_over_the_mapped_task_groups_tasks(bound, shares, grouped):
    tasks = _tasks(_three_chained(bound))
    steps = ["invert", "halve", "halve_2"]
    assert [tasks[s]["max_active_tis_per_dagrun"] for s in steps] == shares
    assert all(("group" in tasks[s]) is grouped for s in steps)
    assert sum(shares) <= bound or not grouped


def test_separately_mapped_steps_that_run_at_once_share_the_bound_too():
    """Two steps of one map that do not read each other (no chain: no mapped task group) run at the same time:
    their shares add up to the map's bound as well."""

    @pipeline(name="parallel_body")
    def parallel_body(xs: list):
        with ParallelFor(xs, parallelism=3) as x:
            invert(x)
            halve(x)

    tasks = _tasks(parallel_body.build())
    assert "group" not in tasks["invert"] and "group" not in tasks["halve"]
    assert (tasks["invert"]["max_active_tis_per_dagrun"], tasks["halve"]["max_active_tis_per_dagrun"]) == (2, 1)


def _dags_test(home: Path, dag_id: str, conf: dict) -> subprocess.CompletedProcess[str]:
    """``airflow dags test`` in its own process group, stopped by it whatever happens (no orphaned tasks)."""
    process = subprocess.Popen([str(VENV_BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf)],
                               env=airflow_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=600)
    finally:
        stop_process_group(process)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture
@slow_fixture
def home(migrated_db, tmp_path_factory):
    """This test's AIRFLOW_HOME: a copy of the session's migrated SQLite database and an empty DAGs folder."""
    return fresh_home(tmp_path_factory.mktemp("airflow-home"), migrated_db())


def _run_states(home: Path, dag_id: str) -> dict[tuple[str, str | None], str]:
    """The task instance states of the DAG's one failed run, by task id and map index."""
    env = airflow_env(home)
    runs = json.loads(_json_tail(airflow(["dags", "list-runs", dag_id, "-o", "json"], env).stdout))
    (run_id,) = [r["run_id"] for r in runs if r["state"] == "failed"]
    states = json.loads(_json_tail(airflow(["tasks", "states-for-dag-run", dag_id, run_id, "-o", "json"], env).stdout))
    return {(t["task_id"], t.get("map_index")): t["state"] for t in states}


def _json_tail(text: str) -> str:
    return text[text.index("[{"):]


def test_a_bounded_chained_map_runs_item_by_item_under_airflow_as_pipecast_run_runs_it(home, tmp_path):
    built = bounded_chain.build()
    root = tmp_path / "airflow-artifacts"
    bundle = compile_case("airflow", built, settings={"artifact_root": f"file://{root}", "executor": "local",
                                                      "ship_code": False}).bundle
    tasks = {t["task_id"]: t for t in read_dag_file(bundle.files[0][1])["tasks"]}
    assert (tasks["invert"]["group"], tasks["halve"]["group"]) == ("map_1_group", "map_1_group")
    assert (tasks["invert"]["max_active_tis_per_dagrun"], tasks["halve"]["max_active_tis_per_dagrun"]) == (2, 1)
    bundle.write(str(home / "dags"))

    # Every item succeeds: the same instances and outputs as pipecast run, the fan-in in item order.
    result = _dags_test(home, built.name, {"xs": [1, 2, 4]})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (run,) = (root / built.name / "runs").iterdir()
    local = run_pipeline(built, {"xs": [1, 2, 4]}, artifact_root=f"file://{tmp_path / 'local'}", cache=False)
    under_airflow = instances(root, built.name, run.name)
    assert under_airflow == instances(tmp_path / "local", built.name, local.id)
    assert under_airflow["total"] == ("succeeded", {"output": str(0.5 + 0.25 + 0.125)})

    # Item 1 fails (after Airflow's retry): only its own chain stops, items 0, 2 and 3 run their second step, as
    # pipecast run's item chains do with --continue-on-failure (the fan-in after a failed item is fanin-fail's).
    result = _dags_test(home, built.name, {"xs": [1, 0, 2, 4]})
    assert result.returncode != 0, (result.stdout + result.stderr)[-3000:]
    (run,) = [p for p in (root / built.name / "runs").iterdir() if p.name != run.name]
    local = run_pipeline(built, {"xs": [1, 0, 2, 4]}, artifact_root=f"file://{tmp_path / 'local-2'}", cache=False,
                         raise_on_failure=False, fail_fast=False)
    chains = {k: v for k, v in instances(tmp_path / "local-2", built.name, local.id).items() if k != "total"}
    expected = {"invert[0]": ("succeeded", {"output": "1.0"}), "invert[1]": ("failed", {}),
                "invert[2]": ("succeeded", {"output": "0.5"}), "invert[3]": ("succeeded", {"output": "0.25"}),
                "halve[0]": ("succeeded", {"output": "0.5"}), "halve[2]": ("succeeded", {"output": "0.25"}),
                "halve[3]": ("succeeded", {"output": "0.125"})}
    assert instances(root, built.name, run.name) == chains == expected
    states = _run_states(home, built.name)
    assert [states[("invert", str(i))] for i in range(4)] == ["success", "failed", "success", "success"]
    assert [states[("halve", str(i))] for i in range(4)] == ["success", "upstream_failed", "success", "success"]
    assert states[("total", "")] == "upstream_failed"


def test_pods_of_a_mapped_task_group_get_their_own_items_arguments_and_map_index(home, tmp_path):
    """A real ``dags test`` of the pod group: the publisher runs on the worker, then Airflow renders each pod
    instance's templated fields (stored as its rendered fields) and the operator looks for the instance's pod by
    its labels, before it fails to reach a cluster (none here). Each instance's arguments are its own item's
    (``$`` doubled for the kubelet, Jinja markers left as they are), and each pod carries its own ``map_index``
    label, from which its environment reads its map index."""
    built = chained_pods.build()
    bundle = compile_case("airflow", built, settings={"artifact_root": "s3://b/a"}).bundle
    bundle.write(str(home / "dags"))
    result = _dags_test(home, built.name, {})
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Connection refused" in output, output[-3000:]
    (words,) = [p.default for p in built.parameters if p.name == "words"]
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        rows = db.execute("SELECT map_index, rendered_fields FROM rendered_task_instance_fields "
                          "WHERE dag_id = 'chained_pods' AND task_id = 'shout' ORDER BY map_index").fetchall()
    assert [index for index, _ in rows] == [0, 1, 2]
    for index, fields in rows:
        fields = json.loads(fields)
        assert fields["arguments"] == ["--pod", json.dumps(words[index]).replace("$", "$$")], fields
        (map_index_env,) = [e for e in fields["env_vars"] if e["name"] == "PIPECAST_AIRFLOW_MAP_INDEX"]
        assert map_index_env["value_from"]["field_ref"]["field_path"] == "metadata.labels['map_index']"
        # The operator's per-instance labels (its pod's), as it searched for the pod by them.
        assert f"map_index%3D{index}%2Crun_id" in output and "task_id%3Dshout" in output
    states = _run_states(home, built.name)
    assert [states[("shout", str(i))] for i in range(3)] == ["failed"] * 3
    assert [states[("quote", str(i))] for i in range(3)] == ["upstream_failed"] * 3


@pytest.mark.slow
def test_pods_of_a_mapped_task_group_replayed_as_airflow_runs_them_equal_pipecast_run(tmp_path):
    """``chained_pods`` replayed by ``in_airflow_flow_replay.py``: Airflow 3.3 loads the file and renders each
    instance of the group's pods (its own item's arguments, resolved from the group's MappedArgument; its map index
    from its pod's label through the Downward API); the containers run here. Every instance's status and outputs
    equal ``pipecast run``'s, items a template, a shell or the kubelet could misread included."""
    built = chained_pods.build()
    words = ["$(PIPECAST_RUN_ID) $$ $(HOME)", "{{ run_id }} {% raw %}", "it's \"q\" `id` ${HOME}"]
    replayed = _replay(built, {"words": words}, tmp_path)
    assert replayed["states"] == {"map_1_items": ["success"], "shout": ["success"] * 3, "quote": ["success"] * 3,
                                  "joined": ["success"]}, replayed
    (run_folder,) = (tmp_path / "store" / "chained_pods" / "chained_pods" / "runs").iterdir()
    local = run_pipeline(built, {"words": words}, artifact_root=f"file://{tmp_path / 'local'}", cache=False)
    here = instances(tmp_path / "local", "chained_pods", local.id)
    assert instances(tmp_path / "store" / "chained_pods", "chained_pods", run_folder.name) == here
    assert json.loads(here["quote[1]"][1]["output"]) == f"<{words[1].upper()}>"
