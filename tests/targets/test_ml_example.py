"""The ML example (examples/ml_pipeline.py: a map writing model directories and Metrics, If/Else with OneOf, an
exit handler) on the engines that lower it natively, beyond its goldens (tests/golden/ml_pipeline/): each file
passes the engine's validator, and the replays that follow only each engine's own rules (the Argo and Tekton
controllers, the KFP 2.17 driver and Vertex; see those targets' pages) store exactly what ``pipecast run``
stores — the same step instances, each output with the same sha256 (a model directory: its manifest's hash) —
with the promote branch taken and keep_current skipped. Airflow 3.3.2 runs it for real in
tests/targets/airflow/test_control_flow_dags_test.py; the refusals of the other targets are its goldens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import case, case_settings, compile_case
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.argo import support as argo
from tests.targets.argo.flow_replay import replay_flow as argo_replay
from tests.targets.github.support import lint
from tests.targets.kfp.engine_model import KFP_2_17, VERTEX
from tests.targets.kfp.support import replay_tasks
from tests.targets.tekton import support as tekton
from tests.targets.tekton.flow_replay import replay_flow as tekton_replay

NAME = "ml_pipeline"


def stored(root: Path, run_id: str) -> dict[str, dict[str, str]]:
    """Every step instance that succeeded in a run's folder: each output's sha256 (content only, no URI)."""
    found = {}
    for meta_file in sorted((root / NAME / "runs" / run_id).glob("*/meta.json")):
        meta = json.loads(meta_file.read_text())
        if meta["status"] == "succeeded":
            found[meta_file.parent.name] = {name: r["sha256"] for name, r in meta["outputs"].items()}
    return found


@pytest.fixture(scope="module")
def pipeline() -> Any:
    return case(NAME).build()


@pytest.fixture(scope="module")
def local(pipeline, tmp_path_factory) -> dict[str, dict[str, str]]:
    """``pipecast run`` of the example with its defaults: the best model (lr=1.0, accuracy 0.84) is promoted."""
    root = tmp_path_factory.mktemp("local")
    run = run_pipeline(pipeline, {}, artifact_root=f"file://{root}", cache=False)
    assert run.steps["keep_current"].status == "skipped" and run.steps["promote"].status == "done"
    found = stored(root, run.id)
    assert found["promote"]["promoted"] == found["train_model[2]"]["model"]  # the best directory, copied
    assert set(found["evaluate[0]"]) == {"output"} and "keep_current" not in found
    return found


def test_the_natively_lowered_files_pass_the_engines_validators(tmp_path):
    for target, check in (("argo", argo), ("tekton", tekton)):
        for doc in check.documents(compile_case(target, NAME, golden=True).files):
            assert check.schema_errors(doc) == [], target
    workflow = compile_case("github", NAME, golden=True, settings=case_settings(NAME, "github")).files
    lint({NAME: workflow[f".github/workflows/{NAME}.yml"]}, tmp_path)  # actionlint and the workflow schema


def test_argo_replay_stores_what_pipecast_run_stores(pipeline, local, tmp_path):
    files = compile_case("argo", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE, "embed": True}).files
    run = argo_replay(files, "ml-1", {}, store=tmp_path / "store", scratch=tmp_path / "pods")
    assert run.phase == "Succeeded"
    phases = {k.removeprefix("ml-1/"): v for k, v in run.phases.items()}
    assert phases["exit-1/keep-current"] == "Skipped" and phases["exit-1.onExit"] == "Succeeded"
    assert stored(tmp_path / "store", "ml-1") == local


def test_tekton_replay_stores_what_pipecast_run_stores(pipeline, local, tmp_path):
    files = compile_case("tekton", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    run = tekton_replay(files, "ml-1", {}, store=tmp_path / "store", work=tmp_path / "pods")
    assert len(run.tasks["train-model"].runs) == 3 and run.tasks["keep-current"].skipped == "WhenExpressionsSkip"
    assert stored(tmp_path / "store", "ml-1") == local


@pytest.mark.parametrize("engine", [KFP_2_17, VERTEX], ids=["kfp-2.17", "vertex"])
def test_kfp_replay_stores_what_pipecast_run_stores(pipeline, local, engine, tmp_path):
    target = "vertex" if engine is VERTEX else "kubeflow"
    compiled = compile_case(target, pipeline, settings={"artifact_root": f"file://{tmp_path}/replay",
                                                        "image": "ghcr.io/acme/p:1"})
    _, _, state = replay_tasks(compiled.main, {}, "ml-1", engine=engine, allow_failures=True, with_states=True)
    assert state == "COMPLETE"
    assert stored(tmp_path / "replay", "ml-1") == local
