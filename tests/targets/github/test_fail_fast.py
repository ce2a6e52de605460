"""A failed item of a map on GitHub Actions: the other items end as ``pipecast run``'s do (issue 16).

GitHub's default ``strategy.fail-fast`` (true) "will cancel all in-progress and queued jobs in the matrix if any
job in the matrix fails" (docs.github.com, workflow syntax); ``pipecast run`` lets running items finish and skips
those not started. So matrices are emitted with ``fail-fast: false`` and an ordinary step's items with
``PIPECAST_GITHUB_FAIL_FAST`` (:mod:`pipecast.runtime.github_fail_fast`).

What act proves (0.2.89; ``pkg/runner/runner.go`` reads ``fail-fast`` only into the ``strategy`` context and a
debug log, and runs every matrix job through ``NewParallelExecutor(max-parallel, ...)``, in order): with
``max-parallel: 1`` item 1 fails, items 2 and 3 start afterwards and record themselves skipped, item 0 is kept,
the fan-in's job is skipped, the handler reads ``failed`` — the records ``pipecast run`` writes. act never cancels
a matrix job, so that GitHub itself honours ``fail-fast: false`` rests on GitHub's documentation (and the
workflow schema, actionlint: the key is accepted).

``pytest --update-goldens`` rewrites ``data/fail/<pipeline>.yml``.
"""

from __future__ import annotations

import json

import pytest

from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import StepInvocation, load_outputs
from pipecast.runtime.github_fail_fast import FAIL_FAST_ENV, STOPPED, mark_failed, stopped
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.github import fail_pipelines
from tests.targets.github.act_dispatch import dispatch
from tests.targets.github.act_runner import ACT_RUN_ID
from tests.targets.github.replay import load_workflow
from tests.targets.github.support import HERE, lint

GOLDENS = HERE / "data" / "fail"
REMOTE = {"artifact_root": "s3://bucket/pipecast"}
PIPELINES = ["gh_fail_fast"]


def _compiled(name: str) -> str:
    return compile_case("github", getattr(fail_pipelines, name), golden=True, settings=REMOTE).main


@pytest.mark.parametrize("name", PIPELINES)
def test_golden(name, request):
    text = _compiled(name)
    golden = GOLDENS / f"{name}.yml"
    if request.config.getoption("--update-goldens"):
        GOLDENS.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.read_text(encoding="utf-8") == text, f"{name} differs from its golden (pytest --update-goldens)"


def test_workflows_pass_actionlint_and_the_workflow_schema(tmp_path):
    lint({name: _compiled(name) for name in PIPELINES}, tmp_path)


def test_matrices_do_not_fail_fast_and_ordinary_items_carry_the_marker():
    jobs = load_workflow(_compiled("gh_fail_fast"))["jobs"]
    assert jobs["fragile"]["strategy"] == {"max-parallel": 1, "matrix": {"index": jobs["fragile"]["strategy"]
                                                                          ["matrix"]["index"]}, "fail-fast": False}
    run = jobs["fragile"]["steps"][-1]
    assert run["env"][FAIL_FAST_ENV] == "fragile"
    assert not any(FAIL_FAST_ENV in (s.get("env") or {}) for j in ("total", "report") for s in jobs[j]["steps"])


def _item(root, name: str) -> StepInvocation:
    return StepInvocation(function="m:f", pipeline="p", step=name, run_id="1", artifact_root=f"file://{root}")


def test_an_item_after_a_failed_one_records_itself_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_FAST_ENV, "fragile")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "1")
    assert not stopped(_item(tmp_path, "fragile[0]"))  # nothing failed yet: it runs
    mark_failed(_item(tmp_path, "fragile[1]"), "ZeroDivisionError: integer division or modulo by zero")
    assert stopped(_item(tmp_path, "fragile[2]"))
    store = ArtifactStore(f"file://{tmp_path}")
    record = store.read_json(f"{store.step_dir('p', '1', 'fragile[2]')}/meta.json")
    assert (record["status"], record["reason"]) == ("skipped", STOPPED)
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")  # "Re-run failed jobs": attempt 1's failure stops nothing
    assert not stopped(_item(tmp_path, "fragile[1]"))
    monkeypatch.delenv(FAIL_FAST_ENV)  # a job without the variable (a handler, a step outside maps) never stops
    assert not stopped(_item(tmp_path, "fragile[3]"))


@pytest.fixture(scope="module")
@slow_fixture
def act_fail_fast(tmp_path_factory):
    """The act run of gh_fail_fast with a shared local:// artifact root: (pipeline, root, exit code, log)."""
    return dispatch(fail_pipelines.gh_fail_fast.build(), HERE / "fail_pipelines.py",
                    tmp_path_factory.mktemp("act-fail-fast"), {"xs": "[2, 0, 3, 4]"})


def test_a_failed_item_stops_the_items_not_started_as_pipecast_run(act_fail_fast, tmp_path):
    pipeline, root, code, log = act_fail_fast
    assert code != 0, "a run with a failed item fails"
    local = run_pipeline(pipeline, {"xs": [2, 0, 3, 4]}, artifact_root=f"file://{tmp_path}", cache=False,
                         raise_on_failure=False)
    runs = root / pipeline.name / "runs" / ACT_RUN_ID
    recorded = {p.parent.name: json.loads(p.read_text()) for p in runs.glob("fragile*/meta.json")}
    expected = {"fragile[0]": "succeeded", "fragile[1]": "failed", "fragile[2]": "skipped", "fragile[3]": "skipped"}
    assert {n: r["status"] for n, r in recorded.items()} == expected, log[-8000:]
    assert [local.steps[f"fragile[{i}]"].status for i in range(4)] == ["done", "failed", "skipped", "skipped"]
    assert recorded["fragile[2]"]["reason"] == recorded["fragile[3]"]["reason"] == STOPPED
    assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "fragile[0]") == \
        load_outputs(f"file://{tmp_path}", pipeline.name, local.id, "fragile[0]")
    assert not (runs / "total" / "meta.json").exists() and local.steps["total"].status == "skipped"
    assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "report") == \
        load_outputs(f"file://{tmp_path}", pipeline.name, local.id, "report") == {"output": "failed"}
