"""Nested maps on GitHub Actions (issue 16), emulated: the outer map a matrix, its jobs' runtime runs the inner items.

Goldens (``pytest --update-goldens`` rewrites ``data/nested/<pipeline>.yml`` or ``.error.txt``), actionlint and
SchemaStore's workflow schema, the compile-time refusals, and one act run of ``gh_nested`` (maps over the outer
item, a parameter and a list a step of the outer body makes, fan-ins inside the outer map and after it) whose
every instance ``step[i][j]`` and output equal ``pipecast run``'s.
"""

from __future__ import annotations

import json

import pytest

from pipecast.errors import ValidationError
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.github import nested_pipelines
from tests.targets.github.act_dispatch import dispatch
from tests.targets.github.act_runner import ACT_RUN_ID
from tests.targets.github.replay import load_workflow
from tests.targets.github.support import HERE, lint

GOLDENS = HERE / "data" / "nested"
REMOTE = {"artifact_root": "s3://bucket/pipecast"}
PIPELINES = ["gh_nested", "gh_nested_constant", "gh_nested_too_many", "gh_nested_failing", "gh_nested_iterated",
             "gh_nested_in_item_branch", "gh_nested_branches", "gh_nested_branch_lists", "gh_nested_status",
             "gh_nested_status_failing", "gh_map_status"]
INPUTS = {"rows": "[[1, 2], [3], []]", "cols": '["a", "b"]'}
PARAMETERS = {"rows": [[1, 2], [3], []], "cols": ["a", "b"]}


def _compiled(name: str) -> dict[str, str]:
    try:
        return {f"{name}.yml": compile_case("github", getattr(nested_pipelines, name), golden=True,
                                            settings=REMOTE).main}
    except ValidationError as err:
        return {f"{name}.error.txt": str(err) + "\n"}


@pytest.mark.parametrize("name", PIPELINES)
def test_golden(name, request):
    files = _compiled(name)
    if request.config.getoption("--update-goldens"):
        for old in [*GOLDENS.glob(f"{name}.yml"), *GOLDENS.glob(f"{name}.error.txt")]:
            old.unlink()
        GOLDENS.mkdir(exist_ok=True)
        for path, text in files.items():
            (GOLDENS / path).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8")
                for p in [*GOLDENS.glob(f"{name}.yml"), *GOLDENS.glob(f"{name}.error.txt")]}
    assert expected == files, f"{name} differs from its golden in {GOLDENS} (pytest --update-goldens)"


def test_workflows_pass_actionlint_and_the_workflow_schema(tmp_path):
    workflows = {name: text for name in PIPELINES for path, text in _compiled(name).items() if path.endswith(".yml")}
    assert set(workflows) == {"gh_nested", "gh_nested_constant", "gh_nested_failing", "gh_nested_in_item_branch",
                              "gh_nested_branches", "gh_nested_branch_lists", "gh_nested_iterated", "gh_nested_status",
                              "gh_nested_status_failing", "gh_map_status"}
    lint(workflows, tmp_path)


def test_goldens_folder_holds_only_known_pipelines():
    assert {p.name.split(".")[0] for p in GOLDENS.iterdir()} == set(PIPELINES)


def test_the_outer_map_is_the_matrix_and_the_inner_items_are_the_runtimes():
    jobs = load_workflow(_compiled("gh_nested")["gh_nested.yml"])["jobs"]
    assert set(jobs) == {"map_1_items", "double", "row_sum", "name_col", "spread", "tag", "gather"}  # no inner counts
    for name in ("double", "row_sum", "name_col", "spread", "tag"):
        assert jobs[name]["strategy"]["matrix"] == {"index": "${{ fromJSON(needs.map_1_items.outputs.index) }}"}
        assert jobs[name]["strategy"]["max-parallel"] == 2  # the outer map's bound
    run = {name: next(s for s in job["steps"] if s.get("name", "").startswith("Run step"))
           for name, job in jobs.items() if name != "map_1_items"}
    for name in ("double", "row_sum", "name_col", "tag", "gather"):
        assert run[name]["run"].startswith("python -m pipecast.runtime.github_nested \\\n  --flow '{")
    assert run["spread"]["run"].startswith("python -m pipecast.runtime run")  # the outer body: a plain matrix job
    assert "outputs" not in jobs["spread"]  # the inner map reads spread[i] from the store: no published indices
    assert "strategy" not in jobs["gather"] and "PIPECAST_GITHUB_INDEX" not in run["gather"]["env"]
    assert run["name_col"]["env"]["PIPECAST_PARAM_COLS"] == "${{ inputs.cols }}"


def test_over_256_outer_items_is_refused_at_compile():
    with pytest.raises(ValidationError) as err:
        compile_case("github", nested_pipelines.gh_nested_too_many, settings=REMOTE)
    (problem,) = err.value.problems
    assert problem.message == "map 'map_1' has 300 items; GitHub runs at most 256 jobs per matrix"
    assert problem.location and problem.location.startswith("tests/targets/github/nested_pipelines.py:")


def test_a_map_over_the_list_of_a_step_the_emulation_runs_reads_the_list_its_job_publishes():
    jobs = load_workflow(_compiled("gh_nested_iterated")["gh_nested_iterated.yml"])["jobs"]
    run = next(s for s in jobs["flatten"]["steps"] if s.get("name", "").startswith("Run step"))
    assert run["run"].startswith("python -m pipecast.runtime.github_nested") and "--github-items output" in run["run"]
    assert jobs["flatten"]["outputs"] == {"items_output": "${{ steps.run.outputs.items_output }}"}
    assert jobs["double"]["strategy"]["matrix"] == {"index": "${{ fromJSON(needs.flatten.outputs.items_output) }}"}


def test_a_nested_map_needs_a_remote_artifact_root():
    with pytest.raises(ValidationError) as err:
        compile_case("github", nested_pipelines.gh_nested_constant)
    assert {p.message.split(":")[0] for p in err.value.problems} == {"map 'map_1'", "map 'map_2'"}


@pytest.fixture(scope="module")
@slow_fixture
def act_nested(tmp_path_factory):
    """The act run of gh_nested with a shared local:// artifact root: (pipeline, root, exit code, log)."""
    return dispatch(nested_pipelines.gh_nested.build(), HERE / "nested_pipelines.py",
                    tmp_path_factory.mktemp("act-nested"), INPUTS)


def test_nested_instances_and_fan_ins_equal_pipecast_run(act_nested, tmp_path):
    pipeline, root, code, log = act_nested
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    local = run_pipeline(pipeline, dict(PARAMETERS), artifact_root=f"file://{tmp_path}", cache=False)
    ran = {name for name, state in local.steps.items() if state.status == "done" and not state.items}
    assert {"double[0][0]", "double[0][1]", "double[1][0]", "tag[1][0]", "name_col[2][1]", "gather"} <= ran
    runs = root / pipeline.name / "runs" / ACT_RUN_ID
    assert {p.parent.name for p in runs.glob("*/meta.json")} == ran
    for name in sorted(ran):
        assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, name) == \
            load_outputs(f"file://{tmp_path}", pipeline.name, local.id, name), name
    gathered = json.loads(load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "gather")["output"])
    assert gathered == [[[2, 4], [6], []], [6, 6, 0], [["a6", "b6"], ["a6", "b6"], ["a0", "b0"]],
                        [["p1:6", "p2:6"], ["p3:6"], []]]


def test_one_outer_item_runs_its_inner_items_with_their_own_tries_and_records(tmp_path):
    """The matrix job of outer item 1 (GitHub's ``matrix.index`` 1): its ``run:`` script run here by bash."""
    import os
    import subprocess
    import sys

    from tests.helpers.cases import ROOT

    jobs = load_workflow(_compiled("gh_nested_failing")["gh_nested_failing.yml"])["jobs"]
    run = next(s for s in jobs["flaky_ratio"]["steps"] if s.get("name", "").startswith("Run step"))
    assert run["env"]["PIPECAST_GITHUB_INDEX"] == "${{ matrix.index }}"
    # the values GitHub substitutes into the job's env: its run id, the root, the matrix item
    values = {"PIPECAST_RUN_ID": "run-1", "PIPECAST_ARTIFACT_ROOT": f"file://{tmp_path}", "PIPECAST_GITHUB_INDEX": "1",
              "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", run["run"]], cwd=ROOT, env={**os.environ, **values},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    runs = tmp_path / "gh_nested_failing" / "runs" / "run-1"
    names = ["flaky_ratio[1][0]", "flaky_ratio[1][1]", "flaky_ratio[1][2]"]
    assert sorted(p.parent.name for p in runs.glob("*/meta.json")) == names  # outer item 1's only, no whole step
    meta = {name: json.loads((runs / name / "meta.json").read_text()) for name in names}
    assert [meta[name]["status"] for name in names] == ["succeeded", "failed", "skipped"]  # fail-fast (bound 1)
    assert load_outputs(f"file://{tmp_path}", "gh_nested_failing", "run-1", "flaky_ratio[1][0]") == {"output": 2.0}
    assert (done.stdout + done.stderr).count("ZeroDivisionError") >= 2, done.stdout  # both tries of [1][1]


def test_a_nested_map_inside_a_condition_inside_a_map_runs_through_the_deciding_runtime():
    # the branch between the maps is decided per outer item by the outer item's runtime (github_nested --decide)
    jobs = load_workflow(_compiled("gh_nested_in_item_branch")["gh_nested_in_item_branch.yml"])["jobs"]
    run = next(s for s in jobs["power"]["steps"] if s.get("name", "").startswith("Run step"))
    assert run["run"].startswith("python -m pipecast.runtime.github_nested \\\n  --decide --flow \\\n  '{")
    assert "if" not in jobs["power"] or "matrix" not in jobs["power"]["if"]  # GitHub's if: cannot read the matrix


BRANCH_ROWS = [[1, 2], [3], [], [4, 5, 6]]


@pytest.fixture(scope="module")
@slow_fixture
def act_branches(tmp_path_factory):
    """The act run of gh_nested_branches (conditions and nested maps combined): (pipeline, root, code, log)."""
    return dispatch(nested_pipelines.gh_nested_branches.build(), HERE / "nested_pipelines.py",
                    tmp_path_factory.mktemp("act-branches"), {"rows": json.dumps(BRANCH_ROWS)})


def test_conditions_and_nested_maps_combined_equal_pipecast_run(act_branches, tmp_path):
    """Outer branch ``len(row) >= 2`` holds for rows 0 and 3 only; inner branch ``y != 2`` skips ``double[0][1]``.

    Row 1's inner item is recorded skipped (its outer branch is false), row 2 has none (an empty list), and the
    fan-ins after each level get the items that ran: ``[]`` for a row whose branch was skipped. ``pipecast run``
    runs the same instances with the same outputs.
    """
    pipeline, root, code, log = act_branches
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    local = run_pipeline(pipeline, {"rows": BRANCH_ROWS}, artifact_root=f"file://{tmp_path}", cache=False)
    runs = root / pipeline.name / "runs" / ACT_RUN_ID
    recorded = {p.parent.name: json.loads(p.read_text())["status"] for p in runs.glob("*/meta.json")}
    expected = {"power[1][0]": "skipped", "double[0][1]": "skipped"}  # hand-derived, then pipecast run's
    expected |= {f"measure[{i}]": "succeeded" for i in range(4)} | {f"row_sum{s}[{i}]": "succeeded" for s in ("", "_2")
                                                                    for i in range(4)}
    expected |= {n: "succeeded" for n in ("power[0][0]", "power[0][1]", "power[3][0]", "power[3][1]", "power[3][2]",
                                          "double[0][0]", "double[1][0]", "double[3][0]", "double[3][1]",
                                          "double[3][2]", "gather")}
    assert recorded == expected
    # pipecast run does not expand an inner map under an outer item whose branch did not run: one instance
    # `power[i]` is recorded skipped there (rows 1 and 2), where the matrix job records row 1's inner item
    leaves = {n: s.status for n, s in local.steps.items() if (not s.items and "[" in n) or n == "gather"}
    assert {n for n, status in leaves.items() if status != "skipped"} == {
        n for n, status in expected.items() if status == "succeeded"}
    assert {n for n, status in leaves.items() if status == "skipped"} == {"power[1]", "power[2]", "double[0][1]"}
    for name in sorted(n for n, status in expected.items() if status == "succeeded"):
        assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, name) == \
            load_outputs(f"file://{tmp_path}", pipeline.name, local.id, name), name
    gathered = json.loads(load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "gather")["output"])
    assert gathered == [[[1, 4], [], [], [64, 125, 216]], [2, 6, 0, 30], [5, 0, 0, 405], [[2], [6], [], [8, 10, 12]]]


@pytest.fixture(scope="module", params=["rows", "empty"])
@slow_fixture
def act_branch_lists(request, tmp_path_factory):
    """act runs of gh_nested_branch_lists, over BRANCH_ROWS and over an empty list: (rows, act's result)."""
    rows = BRANCH_ROWS if request.param == "rows" else []
    return rows, dispatch(nested_pipelines.gh_nested_branch_lists.build(), HERE / "nested_pipelines.py",
                          tmp_path_factory.mktemp(f"act-lists-{request.param}"), {"rows": json.dumps(rows)})


def test_an_inner_map_over_a_list_a_skipped_branch_makes_has_no_items(act_branch_lists, tmp_path):
    """Hand-derived: rows 1 and 2 skip the branch, so ``spread`` makes no list there and ``tag`` has no items.

    ``pipecast run`` gives the same outputs and runs the same instances (it records one skipped ``tag[i]`` for an
    outer item whose branch did not run, where the matrix job records nothing).
    """
    rows, (pipeline, root, code, log) = act_branch_lists
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    runs = root / pipeline.name / "runs" / ACT_RUN_ID
    recorded = {p.parent.name: json.loads(p.read_text())["status"] for p in runs.glob("*/meta.json")}
    gathered = json.loads(load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "gather")["output"])
    if not rows:
        assert recorded == {"gather": "succeeded"} and gathered == [[], [], [], []]
        local = run_pipeline(pipeline, {"rows": rows}, artifact_root=f"file://{tmp_path}", cache=False)
        assert json.loads(load_outputs(f"file://{tmp_path}", pipeline.name, local.id, "gather")["output"]) == gathered
        return
    expected = {f"measure[{i}]": "succeeded" for i in range(4)} | {f"measure_2[{i}]": "succeeded" for i in range(4)}
    expected |= {"spread[0]": "succeeded", "spread[1]": "skipped", "spread[2]": "skipped", "spread[3]": "succeeded"}
    expected |= {f"tag[{i}][{j}]": "succeeded" for i, count in ((0, 2), (3, 3)) for j in range(count)}
    assert recorded == expected | {"gather": "succeeded"}
    assert gathered == [[["p1:2", "p2:2"], [], [], ["p4:3", "p5:3", "p6:3"]], [2, 0, 0, 3],
                        [["p1", "p2"], ["p4", "p5", "p6"]], []]
    local = run_pipeline(pipeline, {"rows": rows}, artifact_root=f"file://{tmp_path}", cache=False)
    assert json.loads(load_outputs(f"file://{tmp_path}", pipeline.name, local.id, "gather")["output"]) == gathered
    local_runs = tmp_path / pipeline.name / "runs" / local.id
    ran = {p.parent.name for p in local_runs.glob("*/meta.json") if json.loads(p.read_text())["status"] == "succeeded"}
    assert ran == {name for name, status in recorded.items() if status == "succeeded"}


def test_an_outer_item_whose_branch_is_false_records_its_inner_items_skipped(tmp_path):
    """gh_nested_in_item_branch's ``power`` job for outer item 1 (``x == 1`` false), its ``run:`` script by bash."""
    import os
    import subprocess
    import sys

    from tests.helpers.cases import ROOT

    jobs = load_workflow(_compiled("gh_nested_in_item_branch")["gh_nested_in_item_branch.yml"])["jobs"]
    run = next(s for s in jobs["power"]["steps"] if s.get("name", "").startswith("Run step"))
    summary = tmp_path / "summary.md"
    for index in ("0", "1"):
        values = {"PIPECAST_RUN_ID": "run-1", "PIPECAST_ARTIFACT_ROOT": f"file://{tmp_path}",
                  "PIPECAST_GITHUB_INDEX": index, "GITHUB_STEP_SUMMARY": str(summary),
                  "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-e", "-c", run["run"]], cwd=ROOT, env={**os.environ, **values},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr  # a skipped outer item's job succeeds
    runs = tmp_path / "gh_nested_in_item_branch" / "runs" / "run-1"
    meta = {p.parent.name: json.loads(p.read_text()) for p in runs.glob("*/meta.json")}
    assert {name: m["status"] for name, m in meta.items()} == {
        "power[0][0]": "succeeded", "power[0][1]": "succeeded", "power[1][0]": "skipped", "power[1][1]": "skipped"}
    assert "`item of map_1 == 1` is false" in meta["power[1][0]"]["reason"]
    assert load_outputs(f"file://{tmp_path}", "gh_nested_in_item_branch", "run-1", "power[0][1]") == {"output": 1}
    text = summary.read_text()
    assert "### pipecast step power\\[1\\]\\[0\\]: skipped\\: " in text and "power\\[0\\]\\[0\\]: succeeded" in text


@pytest.fixture(scope="module")
@slow_fixture
def act_branches_all_skipped(tmp_path_factory):
    """The act run of gh_nested_branches where no outer item's branch runs (rows of lengths 1 and 0)."""
    return dispatch(nested_pipelines.gh_nested_branches.build(), HERE / "nested_pipelines.py",
                    tmp_path_factory.mktemp("act-branches-skipped"), {"rows": json.dumps([[3], []])})


def test_when_no_outer_branch_runs_the_steps_after_it_skip_as_in_pipecast_run(act_branches_all_skipped, tmp_path):
    """Every instance of ``power`` skipped makes ``power`` skipped, so its fan-in and ``gather`` skip whole.

    On GitHub their jobs succeed: ``row_sum_2``'s runtime records nothing per item (it skipped whole), ``gather``
    records itself skipped; ``pipecast run`` marks both skipped.
    """
    pipeline, root, code, log = act_branches_all_skipped
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    runs = root / pipeline.name / "runs" / ACT_RUN_ID
    recorded = {p.parent.name: json.loads(p.read_text())["status"] for p in runs.glob("*/meta.json")}
    assert recorded == {"measure[0]": "succeeded", "measure[1]": "succeeded", "power[0][0]": "skipped",
                        "double[0][0]": "succeeded", "row_sum[0]": "succeeded", "row_sum[1]": "succeeded",
                        "gather": "skipped"}
    assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "row_sum[0]") == {"output": 6}
    local = run_pipeline(pipeline, {"rows": [[3], []]}, artifact_root=f"file://{tmp_path}", cache=False)
    assert {n: local.steps[n].status for n in ("power", "power[0]", "power[1]", "row_sum_2", "gather")} == {
        "power": "skipped", "power[0]": "skipped", "power[1]": "skipped", "row_sum_2": "skipped", "gather": "skipped"}
    assert load_outputs(f"file://{tmp_path}", pipeline.name, local.id, "row_sum[0]") == {"output": 6}
