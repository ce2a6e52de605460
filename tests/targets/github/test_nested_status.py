"""An exit handler's status and ``OneOf`` in a nested map on GitHub Actions, and a map over a nested fan-in's list.

``gh_nested_status`` under act: ``report[i][j]`` is a handler in the inner map whose runtime
(:mod:`pipecast.runtime.github_nested`) builds item ``[i][j]``'s status from the instances' records;
``pick[i][j]`` reads the ``OneOf`` branch that ran for its item (a condition inside the inner map),
``pick_2[i][j]`` one outside the maps; ``double_2`` is a matrix over the list ``flatten`` (which collects the
nested map) publishes. Two runs: every item green, and ``gh_nested_status_failing``, where ``risky[0][1]`` fails
(12 // 0) so its handler reads ``failed``. Both compared with ``pipecast run``.
"""

from __future__ import annotations

import json

import pytest

from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.slow import slow_fixture
from tests.targets.github import nested_pipelines
from tests.targets.github.act_dispatch import dispatch
from tests.targets.github.act_runner import ACT_RUN_ID
from tests.targets.github.support import HERE

GREEN = [[2, 3], [4], []]
FAILING = [[2, 0, 5]]  # risky[0][1] divides by zero; the inner map's bound 1 leaves risky[0][2] not started


@pytest.fixture(scope="module", params=["green", "failing"])
@slow_fixture
def act_status(request, tmp_path_factory):
    """act runs of gh_nested_status: (rows, (pipeline, root, exit code, log))."""
    if request.param == "green":
        return GREEN, dispatch(nested_pipelines.gh_nested_status.build(), HERE / "nested_pipelines.py",
                               tmp_path_factory.mktemp("act-status-green"), {"rows": json.dumps(GREEN), "big": "true"})
    # act evaluates the matrix of a job whose needed job failed (GitHub skips it first) and stops the whole run on
    # the empty list, so the failing run is of a pipeline without a map over a list a failed job never published
    return FAILING, dispatch(nested_pipelines.gh_nested_status_failing.build(), HERE / "nested_pipelines.py",
                             tmp_path_factory.mktemp("act-status-failing"), {"rows": json.dumps(FAILING)})


def _recorded(root, pipeline) -> dict[str, str]:
    runs = root / pipeline.name / "runs" / ACT_RUN_ID
    return {p.parent.name: json.loads(p.read_text())["status"] for p in runs.glob("*/meta.json")}


def test_status_and_one_of_in_a_nested_map_equal_pipecast_run(act_status, tmp_path):
    rows, (pipeline, root, code, log) = act_status
    values = {"rows": rows, "big": True} if rows == GREEN else {"rows": rows}
    local = run_pipeline(pipeline, values, artifact_root=f"file://{tmp_path}", cache=False, raise_on_failure=False)
    recorded = _recorded(root, pipeline)
    if rows == GREEN:
        assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
        gathered = json.loads(load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "gather")["output"])
        # hand-derived: q = 12 // x is 6, 4, 3; q > 4 doubles (12), else squares (16, 9); flatten [6, 4, 3] doubled
        assert gathered == [[["2->12", "3->16"], ["4->9"], []],
                            [["succeeded:", "succeeded:"], ["succeeded:"], []],
                            [["2->10", "3->10"], ["4->10"], []], [12, 8, 6]]
        ran = {n for n, s in local.steps.items() if s.status == "done" and not s.items}
        assert {n for n, status in recorded.items() if status == "succeeded"} == ran
        assert {n for n, status in recorded.items() if status == "skipped"} == {
            n for n, s in local.steps.items() if s.status == "skipped" and "[" in n}
        for name in sorted(ran):
            assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, name) == \
                load_outputs(f"file://{tmp_path}", pipeline.name, local.id, name), name
        return
    assert code != 0, "the run with a failing inner item must fail"
    assert local.status == "failed"
    # the failing item's handler reads failed and names it; the others their own item's (succeeded) status
    reports = {f"report[0][{j}]": load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, f"report[0][{j}]")
               for j in range(3)}
    assert reports == {"report[0][0]": {"output": "succeeded:"}, "report[0][1]": {"output": "failed:risky[0][1]"},
                       "report[0][2]": {"output": "succeeded:"}}
    for name, value in reports.items():
        assert load_outputs(f"file://{tmp_path}", pipeline.name, local.id, name) == value, name
    assert {n: recorded[n] for n in ("risky[0][0]", "risky[0][1]", "risky[0][2]")} == {
        "risky[0][0]": "succeeded", "risky[0][1]": "failed", "risky[0][2]": "skipped"}
    assert [local.steps[f"risky[0][{j}]"].status for j in range(3)] == ["done", "failed", "skipped"]
    # risky's job failed, so GitHub skips the jobs after it (no records); pipecast run skips them (fail-fast)
    assert not any(n.startswith(("double", "power", "pick")) and s == "succeeded" for n, s in recorded.items())


@pytest.fixture(scope="module")
@slow_fixture
def act_map_status(tmp_path_factory):
    """The act run of gh_map_status: a handler inside a (single) map, item 1 failing."""
    return dispatch(nested_pipelines.gh_map_status.build(), HERE / "nested_pipelines.py",
                    tmp_path_factory.mktemp("act-map-status"), {"xs": "[2, 0, 3]"})


def test_a_handler_inside_a_map_reads_its_own_items_status_as_in_pipecast_run(act_map_status, tmp_path):
    """Hand-derived: ``risky[1]`` divides by zero; ``report[1]`` reads ``failed:risky[1]``, the others their own
    item's ``succeeded`` (``needs.risky.result`` would have said failure to every item)."""
    pipeline, root, code, log = act_map_status
    assert code != 0, "the run with a failing item must fail"
    reports = {f"report[{i}]": load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, f"report[{i}]")
               for i in range(3)}
    assert reports == {"report[0]": {"output": "succeeded:"}, "report[1]": {"output": "failed:risky[1]"},
                       "report[2]": {"output": "succeeded:"}}, log[-6000:]
    local = run_pipeline(pipeline, {"xs": [2, 0, 3]}, artifact_root=f"file://{tmp_path}", cache=False,
                         raise_on_failure=False)
    assert local.status == "failed"
    assert {name: local.step_outputs(name) for name in reports} == reports
