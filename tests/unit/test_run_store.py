"""The run store: SQLite, safe with several processes writing at once."""

from __future__ import annotations

import multiprocessing

import pytest

from pipecast import Client
from pipecast.errors import RunNotFoundError
from pipecast.runs.store import RunStore


def _writer(path: str, worker: int, count: int) -> None:
    store = RunStore(path)
    for i in range(count):
        run_id = f"w{worker}-{i}"
        store.create_run(run_id, pipeline=f"p{worker}", target="local", parameters={"i": i}, status="running")
        store.record_step(run_id, "s", status="done", attempts=1)
        store.update_status(run_id, "succeeded")


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "runs.db")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w, 40)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    store = RunStore(path)
    runs = store.list(limit=1000)
    assert len(runs) == 160
    assert {r["status"] for r in runs} == {"succeeded"}
    assert all(r["ended_at"] for r in runs)
    assert store.get("w3-39")["steps"][0]["status"] == "done"


def test_client_finds_runs_by_id_or_newest_of_a_pipeline(tmp_path):
    store = RunStore(str(tmp_path / "runs.db"))
    store.create_run("a-1", pipeline="a", target="airflow", parameters={}, status="pending")
    store.create_run("a-2", pipeline="a", target="airflow", parameters={"x": 1}, status="pending")
    store.set_engine_run("a-2", engine_run_id="manual__1", url="http://airflow/dags/a/runs/manual__1")
    client = Client(str(tmp_path / "runs.db"))
    newest = client.get_pipeline_run("a")
    assert newest.id == "a-2" and newest.parameters == {"x": 1}
    assert newest.run_metadata["orchestrator_url"] == "http://airflow/dags/a/runs/manual__1"
    assert client.get_pipeline_run("a-1").engine_run_id is None
    with pytest.raises(RunNotFoundError, match="'nope'"):
        client.get_pipeline_run("nope")
