"""Pipelines of typed artifacts (issue 17) for the Airflow target: each typed output is an Airflow Asset.

``typed_assets`` runs under the real Airflow 3 and Airflow 2 (``airflow dags test``) and is a golden of this
folder; ``typed_hostile`` gets a hostile artifact root; ``typed_in_map`` has a typed output inside a map (a
TaskFlow task, with the same outlets).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Annotated

from pipecast import Dataset, Metrics, Model, Output, ParallelFor, pipeline, step
from pipecast.runtime.artifacts import safe_segment


@step
def prepare(rows: int) -> tuple[Annotated[Dataset, "table"], Annotated[int, "count"]]:
    """A Dataset beside a plain output (which is no asset)."""
    return Dataset({"rows": list(range(rows))}, metadata={"rows": rows}), rows


@step
def train(table: Dataset, model: Output[Model]) -> Metrics:
    """A model directory written to an Output[Model], and Metrics returned."""
    model.path.mkdir()
    (model.path / "config.json").write_text(json.dumps({"rows": len(table.value["rows"])}))
    return Metrics(accuracy=0.75)


@step
def report(count: int) -> str:
    """A plain step: its task declares no asset."""
    return f"{count} rows"


@pipeline(name="typed_assets")
def typed_assets(rows: int = 3):
    table, count = prepare(rows)
    train(table)
    report(count)


# The typed outputs of typed_assets: (step, output) -> artifact type. report's plain output is no asset.
TYPED = {("prepare", "table"): "Dataset", ("train", "model"): "Model", ("train", "output"): "Metrics"}


def assert_asset_events(db: Path, root: Path, run_folder: str, version: int) -> None:
    """Airflow's metadata database (SQLite at ``db``) holds one asset (Airflow 2: dataset) per typed output of
    ``typed_assets``, at its static URI under the root, and one event of the run for each, whose extra names the
    run and the step folder where the output's record is."""
    asset, event, key = ("asset", "asset_event", "asset_id") if version >= 3 else ("dataset", "dataset_event",
                                                                                  "dataset_id")
    with closing(sqlite3.connect(db)) as connection:
        rows = connection.execute(
            f"SELECT a.uri, a.extra, e.extra, e.source_task_id, e.source_run_id FROM {event} e "
            f"JOIN {asset} a ON a.id = e.{key} WHERE e.source_dag_id = 'typed_assets'").fetchall()
    found = {}
    for uri, static, extra, task_id, run_id in rows:
        extra, static = json.loads(extra), json.loads(static)
        assert safe_segment(run_id) == run_folder, (run_id, run_folder)  # the run's folder: Airflow's run id
        step_uri = f"file://{root}/typed_assets/runs/{run_folder}/{task_id}"
        assert extra == {"pipecast_run_id": run_id, "pipecast_step_uri": step_uri,
                         "pipecast_output": static["pipecast_output"]}, extra
        # The step folder the event names holds the output's record, with the artifact type the asset says.
        meta = json.loads((root / "typed_assets" / "runs" / run_folder / task_id / "meta.json").read_text())
        assert meta["outputs"][static["pipecast_output"]]["artifact"] == static["pipecast_type"]
        found[(task_id, static["pipecast_output"])] = (uri, static["pipecast_type"])
    assert found == {(step, output): (f"file://{root}/typed_assets/assets/{step}/{output}", kind)
                     for (step, output), kind in TYPED.items()}, rows


@step
def fit(rows: int) -> tuple[Annotated[Model, "model.v1-final"], Annotated[Metrics, "scores"]]:
    """Names hold only letters, digits, '_', '.' and '-' (checked at compile): the root is where hostile text is."""
    return Model({"rows": rows}), Metrics(rows=rows)


@pipeline(name="typed.hostile-1")
def typed_hostile(rows: int = 2):
    fit(rows)


# An artifact root with everything a URI, a template, a shell or a Python literal could misread.
HOSTILE_ROOT = "s3://bucket/a'b\"c {{ x }} $(id) é?q=1#frag%41/\"\"\"/"


@step
def score(rate: float) -> Metrics:
    """A typed output inside a map: its task is a mapped TaskFlow task, which declares the asset too."""
    return Metrics(rate=rate)


@pipeline(name="typed_in_map")
def typed_in_map(rates: list = [0.1, 0.2]):  # noqa: B006 - never mutated
    with ParallelFor(rates) as rate:
        score(rate)



def assert_loaded_outlets(dags: dict, outlet_type: str) -> None:
    """In DAGs a DagBag loaded (``typed_assets`` under ``HOSTILE_ROOT``, ``typed_pods`` under ``s3://b/a``), each
    typed output is an outlet (``Asset``, on Airflow 2 ``Dataset``) of its task at its static URI (the hostile root
    percent-encoded as written in the task table), with the post_execute hook that fills each event's extra; a pod
    task pushes XCom (the operator adds the sidecar and mounts /airflow/xcom in the step's container)."""
    from pipecast.targets.airflow.assets import asset_uri

    for dag_id, root in (("typed_assets", HOSTILE_ROOT), ("typed_pods", "s3://b/a")):
        tasks = dags[dag_id]["tasks"]
        for step_name, outputs in (("prepare", {"table": "Dataset"}),
                                   ("train", {"model": "Model", "output": "Metrics"}), ("report", {})):
            assert sorted(tasks[step_name]["outlets"], key=lambda outlet: outlet["uri"]) == [
                {"type": outlet_type, "uri": asset_uri(root, "typed_assets", step_name, name),
                 "extra": {"pipecast_output": name, "pipecast_type": kind}} for name, kind in sorted(outputs.items())]
            assert tasks[step_name]["post_execute"] is bool(outputs)
    for task in dags["typed_pods"]["tasks"].values():
        assert task["do_xcom_push"] is True
        containers = task["pod"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["base", "airflow-xcom-sidecar"]
        assert {"name": "xcom", "mountPath": "/airflow/xcom"} in containers[0]["volumeMounts"]
        env = {e["name"]: e.get("value") for e in containers[0]["env"]}
        assert env["PIPECAST_AIRFLOW_XCOM_FILE"] == "/airflow/xcom/return.json"
