"""An exit handler's status and ``OneOf`` in a nested map on Tekton (issue 16): golden, the v1 CRD schemas, and
replays of Tekton's controller (``flow_replay.py``) equal to ``pipecast run``, green and with a failing inner item.

``pytest --update-goldens`` rewrites ``data/nested_status/<name>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case, read_tree, write_tree
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.tekton import nested_status_pipelines
from tests.targets.tekton.flow_replay import replay_flow
from tests.targets.tekton.support import documents, inlined, schema_errors

GOLDENS = Path(__file__).parent / "data" / "nested_status"
NAME = "tk_nested_status"


def _compiled(settings: dict[str, Any] | None = None) -> dict[str, str]:
    return compile_case("tekton", nested_status_pipelines.tk_nested_status, golden=True, settings=settings).files


def test_golden(request):
    files = _compiled()
    if request.config.getoption("--update-goldens"):
        write_tree(GOLDENS / NAME, files)
    assert read_tree(GOLDENS / NAME) == files, f"{NAME} differs from its golden (pytest --update-goldens)"


@pytest.mark.parametrize("embed", [False, True], ids=["pipeline", "embedded"])
def test_objects_are_schema_valid(embed):
    docs = documents(_compiled({"embed": embed}))
    assert docs and all(schema_errors(doc) == [] for doc in docs)


def test_the_handler_and_the_one_of_reader_run_through_the_nested_runtime():
    tasks = inlined(_compiled())
    for name in ("pick", "summary"):
        assert tasks[name]["taskSpec"]["steps"][0]["command"][2] == "pipecast.runtime.tekton_nested"
    assert "matrix" not in tasks["summary"]  # a finally task outside the maps: it collects lists of lists
    assert not any(a.startswith("--tekton-status") for a in tasks["summary"]["taskSpec"]["steps"][0]["args"])


def _local(values: dict[str, Any], tmp_path: Path):
    return run_pipeline(nested_status_pipelines.tk_nested_status.build(), values,
                        artifact_root=f"file://{tmp_path}/local", cache=False, raise_on_failure=False)


def test_green_replay_equals_pipecast_run(tmp_path):
    """Every instance ``pipecast run`` finished has the replay's outputs, and nothing else ran in the replay."""
    store = tmp_path / "store"
    pipeline = nested_status_pipelines.tk_nested_status.build()
    run = replay_flow(_compiled({"artifact_root": REPLAY_STORE}), "status-1", {}, store=store, work=tmp_path / "w")
    assert run.status == "Completed", {k: (s.status, s.skipped) for k, s in run.tasks.items()}  # Else skipped
    local = _local({}, tmp_path)
    done = sorted(n for n, s in local.steps.items() if s.status == "done" and s.items is None)
    folder = Path(ArtifactStore(f"file://{store}").run_dir(pipeline.name, "status-1"))
    replayed = sorted(p.name for p in folder.iterdir() if (p / "meta.json").exists()
                      and '"succeeded"' in (p / "meta.json").read_text())
    assert replayed == done
    for name in done:
        assert load_outputs(f"file://{store}", pipeline.name, "status-1", name) == local.step_outputs(name), name
    assert local.step_outputs("summary") == {"output": "succeeded::[['2->10', '3->10'], ['4->10'], []]"}


def test_a_failing_inner_item_reads_failed_as_in_pipecast_run(tmp_path):
    """Hand-derived: ``risky[0][1]`` divides by zero, so the handler's status is failed and names it; the picks it
    collects all ran (``count`` waits for them before any ``risky`` starts)."""
    store = tmp_path / "store"
    pipeline = nested_status_pipelines.tk_nested_status.build()
    run = replay_flow(_compiled({"artifact_root": REPLAY_STORE}), "status-2", {"rows": "[[2, 0, 5]]"},
                      store=store, work=tmp_path / "w")
    assert run.status == "Failed" and run.tasks["risky"].status == "Failed"
    assert run.tasks["summary"].status == "Succeeded"  # the finally task runs after the failure
    expected = {"output": "failed:risky[0][1]:[['2->10', '0->10', '5->10']]"}
    assert load_outputs(f"file://{store}", pipeline.name, "status-2", "summary") == expected
    local = _local({"rows": [[2, 0, 5]]}, tmp_path)
    assert local.status == "failed" and local.step_outputs("summary") == expected
    assert local.steps["risky[0][1]"].status == "failed"
