"""Tekton leftovers of issue 16: goldens, the v1 CRD schemas, and replays of Tekton's controller
(``flow_replay.py``) equal to ``pipecast run``.

- A step that runs ``.after()`` a nested step a condition inside a map may skip (refused before): Tekton's
  ``runAfter`` sees that task succeed (a skipped instance exits 0), so the step runs through the nested emulation
  with ``--decide`` and its runtime reads the inner instances' records (``step[i][j]``), as ``pipecast run`` does.
- An exit handler inside a map over a constant list: a finally task matrixed over a literal array.

``pytest --update-goldens`` rewrites ``data/rest/<name>/``.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case, read_tree, write_tree
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.tekton import rest_pipelines
from tests.targets.tekton.flow_replay import Cancel, FlowReplay, replay_flow
from tests.targets.tekton.support import documents, inlined, schema_errors

GOLDENS = Path(__file__).parent / "data" / "rest"
NAMES = ["tk_after_nested", "tk_finally_const", "tk_cancel_map"]


def _compiled(name: str, settings: dict[str, Any] | None = None) -> dict[str, str]:
    return compile_case("tekton", getattr(rest_pipelines, name), golden=True, settings=settings).files


@pytest.mark.parametrize("name", NAMES)
def test_golden(name, request):
    files = _compiled(name)
    if request.config.getoption("--update-goldens"):
        write_tree(GOLDENS / name, files)
    assert read_tree(GOLDENS / name) == files, f"{name} differs from {GOLDENS / name} (pytest --update-goldens)"


@pytest.mark.parametrize("embed", [False, True], ids=["pipeline", "embedded"])
def test_objects_are_schema_valid(embed):
    for name in NAMES:
        docs = documents(_compiled(name, {"embed": embed}))
        assert docs and all(schema_errors(doc) == [] for doc in docs), name


def _compare(name: str, run_id: str, values: dict[str, Any], tmp_path: Path) -> tuple[FlowReplay, Any, dict[str, str]]:
    """Replay and ``pipecast run`` the pipeline: every instance ``pipecast run`` finished has the replay's outputs,
    and no other succeeded in the replay. Also the replay's records by name."""
    store = tmp_path / "store"
    pipeline = getattr(rest_pipelines, name).build()
    replay = replay_flow(_compiled(name, {"artifact_root": REPLAY_STORE}), run_id,
                         {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()},
                         store=store, work=tmp_path / "w")
    local = run_pipeline(pipeline, values, artifact_root=f"file://{tmp_path}/local", cache=False,
                         raise_on_failure=False)
    done = sorted(n for n, s in local.steps.items() if s.status == "done" and s.items is None)
    folder = Path(ArtifactStore(f"file://{store}").run_dir(pipeline.name, run_id))
    records = {p.parent.name: json.loads(p.read_text())["status"] for p in folder.glob("*/meta.json")}
    assert sorted(n for n, status in records.items() if status == "succeeded") == done
    for step in done:
        assert load_outputs(f"file://{store}", pipeline.name, run_id, step) == local.step_outputs(step), step
    return replay, local, records


def test_steps_after_a_nested_step_run_through_the_emulation():
    tasks = inlined(_compiled("tk_after_nested"))
    for name in ("celebrate", "celebrate-2"):  # the one in the outer map, the one outside the maps
        step = tasks[name]["taskSpec"]["steps"][0]
        assert step["command"][2] == "pipecast.runtime.tekton_nested" and step["args"][0] == "--decide"
        assert "square" in tasks[name]["runAfter"]
    assert tasks["celebrate"]["matrix"] == tasks["square"]["matrix"] and "matrix" not in tasks["celebrate-2"]
    assert "--tekton-check" in tasks["shout"]["taskSpec"]["steps"][0]["args"]  # reads the emulated step's record


def test_a_step_after_a_nested_step_that_ran_runs(tmp_path):
    """Hand-derived: rows ``[[1, 2], [3]]`` have widths 2 and 1; the branch runs at row 0 only, so ``square[0][*]``
    run (1, 4) and row 1's item is recorded skipped: ``square`` ran, so both ``celebrate`` steps
    and ``shout`` run, as in ``pipecast run``."""
    replay, local, records = _compare("tk_after_nested", "an-1", {}, tmp_path)
    assert replay.status == "Succeeded"  # Tekton sees every TaskRun succeed
    assert records["square[1][0]"] == "skipped" and records["square[0][1]"] == "succeeded"
    assert local.step_outputs("shout") == {"output": "done!"}
    assert records["celebrate[0]"] == records["celebrate[1]"] == "succeeded"


def test_a_step_after_a_nested_step_that_never_ran_is_skipped(tmp_path):
    """Hand-derived: rows ``[[3], [2]]`` have width 1 each, so no branch runs and every instance of ``square`` is
    skipped: Tekton still sees ``square`` succeed and starts ``celebrate``, whose runtime reads the records and
    skips it, and ``shout`` after it, as ``pipecast run`` does (refused before: the check read ``square[i]``)."""
    replay, local, records = _compare("tk_after_nested", "an-2", {"rows": [[3.0], [2.0]]}, tmp_path)
    assert replay.status == "Succeeded" and replay.tasks["celebrate-2"].status == "Succeeded"
    assert local.steps["celebrate_2"].status == local.steps["shout"].status == "skipped"
    assert records["celebrate_2"] == records["shout"] == "skipped"
    assert local.steps["celebrate"].status == "skipped"  # whole; each outer item's TaskRun logs its skip
    assert not any(n.startswith("celebrate[") for n in records)


def test_a_handler_in_a_constant_map_lowers_to_a_literal_matrix():
    (pipeline,) = [d for d in documents(_compiled("tk_finally_const")) if d["kind"] == "Pipeline"]
    (task,) = pipeline["spec"]["finally"]
    assert task["matrix"] == {"params": [{"name": "index", "value": ["0", "1", "2"]}]}
    assert "when" not in task  # no items task whose result could be missing: Tekton always resolves the matrix


@pytest.mark.parametrize(("values", "expected"), [
    ({}, ["succeeded:"] * 3), ({"limit": 2.5}, ["succeeded:", "succeeded:", "failed:fail_on[2]"])],
    ids=["green", "failing"])
def test_a_handler_in_a_constant_map_reads_its_own_item(values, expected, tmp_path):
    """Hand-derived: under limit 2.5 item 2 (3.0) fails, the last, so ``pipecast run`` starts it on any worker
    bound; each of the three finally TaskRuns reads its own item's status from the records."""
    replay, local, _ = _compare("tk_finally_const", "fc-1", values, tmp_path)
    assert replay.tasks["report"].status == "Succeeded" and len(replay.tasks["report"].runs) == 3
    assert replay.status == ("Failed" if values else "Succeeded")
    assert local.step_outputs("report") == {"output": expected}


def _cancelled_local(tmp_path: Path, home: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """``pipecast run`` of ``tk_cancel_map`` cancelled with SIGTERM once both items run: statuses and outputs."""
    from pipecast.runs.store import RunStore
    from tests.helpers.processes import finish, start_cli, wait_until

    folder = tmp_path / "local-gates"
    folder.mkdir()
    process = start_cli("run", "tests/targets/tekton/rest_pipelines.py:tk_cancel_map", "-p", f"folder={folder}",
                        "-q", "--workers", "2")
    try:
        wait_until(lambda: (folder / "running-1.0").exists() and (folder / "running-2.0").exists(),
                   "both items to run")
        process.send_signal(signal.SIGTERM)
        _, stderr = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
    store = RunStore(str(home / "runs.db"))
    run = store.get(store.list(pipeline="tk_cancel_map")[-1]["id"])
    assert run["status"] == "cancelled"
    statuses = {s["step"]: s["status"] for s in run["steps"]}
    root = run["metadata"]["artifact_root"]
    mapped = {n.split("[", 1)[0] for n in statuses if "[" in n}  # a mapped step's record is its instances'
    outputs = {n: load_outputs(root, "tk_cancel_map", run["id"], n) for n, s in statuses.items()
               if s in ("done", "cached") and n not in mapped}  # report[1]'s inputs equal report[0]'s
    return statuses, outputs


def _cancelled_replay(status: str, tmp_path: Path) -> tuple[FlowReplay, dict[str, str], dict[str, Any]]:
    """The replay of ``tk_cancel_map``, cancelled with ``spec.status: <status>`` while ``gated``'s TaskRuns run."""
    folder = tmp_path / "replay-gates"
    folder.mkdir()
    store = tmp_path / "store"
    files = _compiled("tk_cancel_map", {"artifact_root": REPLAY_STORE})
    running = Cancel(status, "gated", lambda: all((folder / f"running-{x}").exists() for x in ("1.0", "2.0")))
    replay = replay_flow(files, "cx-1", {"folder": str(folder)}, store=store, work=tmp_path / "w", cancel=running)
    run_dir = Path(ArtifactStore(f"file://{store}").run_dir("tk_cancel_map", "cx-1"))
    records = {p.parent.name: json.loads(p.read_text())["status"] for p in run_dir.glob("*/meta.json")}
    outputs = {n: load_outputs(f"file://{store}", "tk_cancel_map", "cx-1", n) for n, s in records.items()
               if s == "succeeded"}
    return replay, records, outputs


def test_a_graceful_cancel_runs_the_finally_tasks_as_pipecast_run_runs_the_handlers(tmp_path, pipecast_home):
    """``CancelledRunFinally`` (``tkn pipelinerun cancel --grace CancelledRunFinally``): the gated items' TaskRuns
    are cancelled (their runtimes record ``cancelled``), ``total`` never starts, and the finally tasks run with
    ``$(tasks.gated.status)`` ``Failed`` and ``$(tasks.status)`` ``Failed``: each handler instance reads its own
    item ``cancelled``, and the failure hook runs, as a cancelled ``pipecast run`` records them."""
    replay, records, outputs = _cancelled_replay("CancelledRunFinally", tmp_path)
    assert replay.status == "Cancelled"
    assert [code for _, code, _ in replay.tasks["gated"].runs] == [143, 143]
    assert replay.tasks["gated"].status == "Failed"
    assert replay.tasks["total"].skipped == "GracefullyCancelledSkip"
    assert len(replay.tasks["report"].runs) == 2 and replay.tasks["failure-note"].status == "Succeeded"
    statuses, local = _cancelled_local(tmp_path, pipecast_home)
    assert {n: s for n, s in records.items() if n.startswith("gated")} == {"gated[0]": "cancelled",
                                                                          "gated[1]": "cancelled"}
    assert statuses["gated[0]"] == statuses["gated[1]"] == "cancelled"
    assert outputs["report[0]"] == outputs["report[1]"] == {"output": "cancelled:"}
    assert local["report[0]"] == local["report[1]"] == {"output": "cancelled:"}
    assert outputs["failure_note"] == local["failure_note"] == {"output": "on_failure: cancelled"}
    assert "total" not in outputs and statuses["total"] in ("cancelled", "skipped")


def test_a_plain_cancel_runs_no_finally_task(tmp_path):
    """``spec.status: Cancelled`` (what ``tkn pipelinerun cancel`` sets): the TaskRuns are cancelled and the run
    ends there; the finally tasks are not scheduled, so no handler or hook records anything (``pipecast run``
    runs them: use the graceful cancel for them)."""
    replay, records, _ = _cancelled_replay("Cancelled", tmp_path)
    assert replay.status == "Cancelled" and set(replay.tasks) == {"gated", "total"}
    assert records == {"gated[0]": "cancelled", "gated[1]": "cancelled"}
