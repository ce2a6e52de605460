"""Conditions inside a map run by a real GitHub Actions runner (act, jobs on this host): ``gh_map_branches`` has an
if/elif/else on the item and its own output inside a map, a ``OneOf`` of the item's branch, a lone ``If`` whose
skipped items skip the step after it item by item, and two fan-ins after the map. GitHub cannot test one item in a
job's ``if:`` (it evaluates it before the matrix), so each matrix job's runtime decides its item
(:mod:`pipecast.runtime.publish_github_flow`); the instances that ran, their outputs and the fan-ins equal
``pipecast run``'s.

act evaluates ``fromJSON`` on the counting job's output, expands the matrices and runs the jobs by their ``needs``;
the stand-in actions are :mod:`tests.targets.github.act_runner`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.slow import slow_fixture
from tests.targets.github.act_dispatch import dispatch
from tests.targets.github.act_runner import ACT_RUN_ID
from tests.targets.github.flow_pipelines import gh_map_branches
from tests.targets.github.support import HERE

INPUTS = {"xs": "[0.5, 1.5, 3.0, 0.25]", "threshold": "4.0"}
PARAMETERS = {"xs": [0.5, 1.5, 3.0, 0.25], "threshold": 4.0}


@pytest.fixture(scope="module")
@slow_fixture
def act_map_branches(tmp_path_factory):
    """The act run of gh_map_branches with a shared local:// artifact root: (pipeline, root, exit code, log)."""
    return dispatch(gh_map_branches.build(), HERE / "flow_pipelines.py", tmp_path_factory.mktemp("act-map-branches"),
                    INPUTS)


def _records(root: Path, pipeline_name: str) -> dict[str, str]:
    runs = root / pipeline_name / "runs" / ACT_RUN_ID
    return {p.parent.name: json.loads(p.read_text())["status"] for p in runs.glob("*/meta.json")}


def test_conditions_inside_a_map_equal_pipecast_run(act_map_branches, tmp_path):
    pipeline, root, code, log = act_map_branches
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    local = run_pipeline(pipeline, dict(PARAMETERS), artifact_root=f"file://{tmp_path}", cache=False)
    ran = {name for name, state in local.steps.items() if state.status == "done" and not state.items}
    # x = 0.5, 1.5, 3.0, 0.25: score 1.0, 3.0, 6.0, 0.5 → keep, stage, promote, keep; square only for x < 1
    assert {"keep[0]", "stage[1]", "promote[2]", "keep[3]", "square[0]", "square[3]", "measure[3]"} <= ran
    assert not {"promote[0]", "stage[0]", "keep[2]", "square[1]", "measure[2]"} & ran
    records = _records(root, pipeline.name)
    assert {name for name, status in records.items() if status == "succeeded"} == ran
    assert {name for name, status in records.items() if status != "succeeded"} == {
        "promote[0]", "promote[1]", "promote[3]", "stage[0]", "stage[2]", "stage[3]", "keep[1]", "keep[2]",
        "square[1]", "square[2]", "measure[1]", "measure[2]"}  # recorded skipped by their own runtime
    for name in sorted(ran):
        assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, name) == \
            load_outputs(f"file://{tmp_path}", pipeline.name, local.id, name), name
    assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "joined")["output"] == \
        "KEPT AT 1.0,STAGED AT 3.0,PROMOTED AT 6.0,KEPT AT 0.5"
    assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "total")["output"] == \
        0.225 + 0.0563  # measure rounds 0.9 * x * x to 4 places, for x = 0.5 and 0.25 only
