"""Control flow run by a real GitHub Actions runner (act, jobs on this host): ``gh_flow`` — a bounded map over a
parameter (a matrix from ``fromJSON(inputs.xs)``), chained, fanned in from the artifact store, an if/else on a
published output with ``OneOf``, an exit handler reading ``needs.*.result`` and an ``on_failure`` hook — gives
the same steps, items, skipped branches and outputs as ``pipecast run``.

act evaluates the expressions, expands the matrix, writes ``$GITHUB_OUTPUT`` into job outputs and skips jobs
by their ``if:``; the stand-in actions are :mod:`tests.targets.github.act_runner`'s. One run, both branches
would need two: the inputs make the ``if`` branch run (the default threshold takes the ``else``; the golden
and ``pipecast run`` cover that one).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.slow import slow_fixture
from tests.targets.github.act_dispatch import dispatch
from tests.targets.github.act_runner import ACT_RUN_ID
from tests.targets.github.flow_pipelines import gh_flow
from tests.targets.github.support import HERE

INPUTS = {"xs": "[0.5, 1.0, 1.5, 2.0]", "threshold": "1.0"}
PARAMETERS = {"xs": [0.5, 1.0, 1.5, 2.0], "threshold": 1.0}


@pytest.fixture(scope="module")
@slow_fixture
def act_flow(tmp_path_factory):
    """The act run of gh_flow with a shared local:// artifact root: (pipeline, root, exit code, log)."""
    return dispatch(gh_flow.build(), HERE / "flow_pipelines.py", tmp_path_factory.mktemp("act-flow"), INPUTS)


def _stored(root: Path, pipeline_name: str) -> set[str]:
    runs = root / pipeline_name / "runs" / ACT_RUN_ID
    return {p.parent.name for p in runs.glob("*/meta.json")}


def test_map_condition_and_exit_handler_equal_pipecast_run(act_flow, tmp_path):
    pipeline, root, code, log = act_flow
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    local = run_pipeline(pipeline, dict(PARAMETERS), artifact_root=f"file://{tmp_path}", cache=False)
    ran = {name for name, state in local.steps.items() if state.status == "done" and not state.items}
    # the items square[0..3] and measure[0..3], total, promote (threshold 1.0), announce, report; not keep
    # (its branch did not run) nor alert (the on_failure hook: nothing failed)
    assert {"square[3]", "measure[3]", "promote", "announce", "report"} <= ran and "keep" not in ran
    assert _stored(root, pipeline.name) == ran
    for name in sorted(ran):
        assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, name) == \
            load_outputs(f"file://{tmp_path}", pipeline.name, local.id, name), name
    status = load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "report")["output"]
    assert status == "succeeded:"


def test_the_matrix_ran_one_job_per_item(act_flow):
    pipeline, root, code, log = act_flow
    assert code == 0, log[-8000:]
    assert sorted(p for p in _stored(root, pipeline.name) if p.startswith("square[")) == [
        f"square[{i}]" for i in range(4)]
