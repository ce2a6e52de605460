"""Exit handlers and pipeline hooks on the vm_* targets (issue 16), emulated in SkyPilot's run script.

The run script goes on after a failed step (``cmd || pipecast_failed "$?"``): the steps after it record themselves
skipped as the local runner's fail-fast does, the exit handler runs and reads its group's status from the steps'
records, a hook runs only on its event, and the script exits with the first failure's status. Proof: the emitted
run script executed by bash here (as SkyPilot's ``run`` runs it on the VM, with ``SKYPILOT_TASK_ID`` set),
every step's and item's status, reason and outputs equal to ``pipecast run``'s, and the run's outcome too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipecast.errors import ValidationError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.runtime.params import render_parameter
from tests.helpers.cases import case, compile_case
from tests.helpers.replay import run_task
from tests.targets.local_docker import flow_pipelines
from tests.targets.skypilot.support import task_documents
from tests.targets.skypilot.test_flow import compiled
from tests.targets.skypilot.test_replay import task_env, task_ids


def _local(pipeline: Any, parameters: dict[str, Any], root: Path) -> tuple[str, dict[str, Any]]:
    """The run's outcome and, per step and item, (status, reason or error, outputs) as ``pipecast run`` ends."""
    run = run_pipeline(pipeline, parameters, artifact_root=f"file://{root}", cache=False, raise_on_failure=False)
    results = {}
    for name, state in run.steps.items():
        ran = state.status in ("done", "cached")
        outputs = load_outputs(f"file://{root}", pipeline.name, run.id, name) if ran and state.items is None else None
        results[name] = ("succeeded" if ran else state.status, state.error, outputs)
    return run.status, results


def _replayed(pipeline: Any, root: Path, run_id: str, names: list[str]) -> dict[str, Any]:
    store = ArtifactStore(f"file://{root}")
    results = {}
    for name in names:
        path = f"{store.step_dir(pipeline.name, run_id, name)}/meta.json"
        if not store.exists(path):
            results[name] = ("without a record", None, None)
            continue
        meta = store.read_json(path)
        ran = meta["status"] == "succeeded"
        outputs = load_outputs(f"file://{root}", pipeline.name, run_id, name) if ran and "instances" not in meta \
            else None
        error = meta.get("error") or meta.get("reason")
        if meta["status"] == "failed" and "attempt" in meta:  # the runtime's record: pipecast run reports it so
            error = f"step {name!r} failed after {meta['attempt']} try: {error}"
        results[name] = (meta["status"], error, outputs)
    return results


def _run_script(name: str, parameters: dict[str, Any], root: Path) -> tuple[int, str]:
    """Run the emitted task's ``run`` script with bash, as SkyPilot runs it; its exit status and run id."""
    pipeline = getattr(flow_pipelines, name).build()
    text = next(t for p, t in compiled(name, "vm_aws").items() if p.endswith(".sky.yaml"))
    header, documents = task_documents(text)
    assert len(documents) == 1
    overrides = {p.name: render_parameter(p.type, parameters[p.name]) for p in pipeline.parameters
                 if p.name in parameters}
    overrides["PIPECAST_ARTIFACT_ROOT"] = f"file://{root}"
    ids = task_ids(header, documents)
    result = run_task(["bash", "-c", documents[0]["run"]], env=task_env(documents[0], ids, 0, overrides),
                      timeout=300, check=False)
    return result.returncode, ids[0]


@pytest.mark.parametrize("x", [5, 1], ids=["group-fails", "group-succeeds"])
def test_the_handler_and_hooks_run_as_pipecast_run_runs_them(x, tmp_path):
    pipeline = flow_pipelines.sky_exit.build()
    outcome, expected = _local(pipeline, {"x": x}, tmp_path / "local")
    code, run_id = _run_script("sky_exit", {"x": x}, tmp_path / "sky")
    assert _replayed(pipeline, tmp_path / "sky", run_id, list(expected)) == expected
    assert (outcome, code) == (("failed", 1) if x == 5 else ("succeeded", 0))
    if x == 5:  # the handler ran after the failure and read it; only the failure hook ran
        assert expected["halve"][:2] == ("skipped", "not started: a step failed and the run stops (fail-fast)")
        assert expected["report"][2] == {"output": "failed"}
        error = "step 'check_below' failed after 1 try: ValueError: 5 is not below 4"
        assert expected["alert"][2] == {"output": f"alert failed ['check_below']: {error}"}
        assert expected["celebrate"][:2] == ("skipped", "on_success hook: step 'check_below' failed")
    else:
        assert expected["report"][2] == {"output": "succeeded"} and expected["celebrate"][0] == "succeeded"
        assert expected["alert"][:2] == ("skipped", "on_failure hook: no step failed")


def test_a_handler_inside_a_map_reads_its_own_items_status(tmp_path):
    pipeline = flow_pipelines.sky_exit_map.build()
    outcome, expected = _local(pipeline, {}, tmp_path / "local")
    code, run_id = _run_script("sky_exit_map", {}, tmp_path / "sky")
    replayed = _replayed(pipeline, tmp_path / "sky", run_id, list(expected))
    # Which items of the chain after the failed item started depends on the local runner's item order; the
    # handlers' items and the group's first step do not.
    for name in ("check_below[0]", "check_below[1]", "report", "report[0]", "report[1]", "report[2]"):
        assert replayed[name] == expected[name], name
    assert [expected[f"report[{i}]"][2] for i in range(3)] == [{"output": s} for s in
                                                                ("succeeded", "failed", "succeeded")]
    assert (outcome, code) == ("failed", 1)


def test_a_handler_in_another_task_than_its_group_is_refused():
    with pytest.raises(ValidationError) as caught:
        compile_case("vm_aws", flow_pipelines.sky_exit_split, golden=True)
    text = str(caught.value)
    assert "exit handler 'report_apart' and step 'square' run in different SkyPilot tasks" in text
    assert "flow_pipelines.py" in text


def _stored(root: Path, name: str, run_id: str) -> dict[str, dict[str, str]]:
    """Every instance that succeeded in a run's folder: each output's sha256 (content only, no URI)."""
    found = {}
    for meta_file in sorted((root / name / "runs" / run_id).glob("*/meta.json")):
        meta = json.loads(meta_file.read_text())
        if meta["status"] == "succeeded" and "instances" not in meta:  # a mapped step's own record: its items
            found[meta_file.parent.name] = {out: r["sha256"] for out, r in meta["outputs"].items()}
    return found


def test_the_ml_example_run_script_stores_what_pipecast_run_stores(tmp_path):
    """The example's map, promote-if-better and always-run report, in one task's run script."""
    pipeline = case("ml_pipeline").build()
    run = run_pipeline(pipeline, {}, artifact_root=f"file://{tmp_path / 'local'}", cache=False)
    text = compile_case("vm_aws", "ml_pipeline", golden=True).files["ml_pipeline.sky.yaml"]
    header, documents = task_documents(text)
    ids = task_ids(header, documents)
    env = task_env(documents[0], ids, 0, {"PIPECAST_ARTIFACT_ROOT": f"file://{tmp_path / 'sky'}"})
    run_task(["bash", "-c", documents[0]["run"]], env=env, timeout=600)
    expected = _stored(tmp_path / "local", "ml_pipeline", run.id)
    assert _stored(tmp_path / "sky", "ml_pipeline", ids[0]) == expected
    assert "report" in expected and "promote" in expected and "keep_current" not in expected
