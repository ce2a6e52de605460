"""The runtime of a GitHub matrix job whose step sits in a condition inside a map
(:mod:`pipecast.runtime.publish_github_flow`), without act: after ``pipecast run`` filled an artifact store, the
records of ``promote`` and of the mapped steps are removed (a matrix job writes no record of its step), and the
job's command for item 0 and item 2 and for the fan-in decide as ``pipecast run`` did.
"""

from __future__ import annotations

import json
import shutil

from pipecast.runtime import publish_github_flow
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.targets.inline_flow import mini_plan, plan_json
from tests.targets.github.flow_pipelines import gh_map_branches

PARAMETERS = {"xs": [0.5, 1.5, 3.0], "threshold": 4.0}


def _argv(pipeline, name, root, run_id):
    step = next(s for s in pipeline.steps if s.name == name)
    syntax = EngineSyntax(run_id=run_id, parameter=lambda p: json.dumps(PARAMETERS[p.name]), artifact_root=root)
    return ["--flow", plan_json(mini_plan(pipeline, step)), "--flow-param", "xs=list:[0.5, 1.5, 3.0]",
            "--flow-param", "threshold=float:4.0", *step_command(pipeline, step, syntax)[3:]]


def test_each_item_decides_its_branch_and_the_fan_in_keeps_the_items_that_ran(tmp_path, monkeypatch):
    pipeline = gh_map_branches.build()
    root = f"file://{tmp_path}"
    local = run_pipeline(pipeline, dict(PARAMETERS), artifact_root=root, cache=False)
    runs = tmp_path / pipeline.name / "runs" / local.id
    for folder in runs.iterdir():  # what a GitHub run has: no record of a mapped step itself, no promote yet
        if folder.name.startswith("promote") or folder.name in {"grade", "announce", "joined"}:
            shutil.rmtree(folder)
    for index in (0, 2):
        monkeypatch.setenv(publish_github_flow.INDEX_ENV, str(index))
        assert publish_github_flow.main(_argv(pipeline, "promote", root, local.id)) == 0
    skipped = json.loads((runs / "promote[0]" / "meta.json").read_text())
    assert skipped["status"] == "skipped" and "`grade.output > threshold` is false" in skipped["reason"]
    assert load_outputs(root, pipeline.name, local.id, "promote[2]") == {"output": "promoted at 6.0"}
    monkeypatch.delenv(publish_github_flow.INDEX_ENV)
    assert publish_github_flow.main(_argv(pipeline, "joined", root, local.id)) == 0
    assert load_outputs(root, pipeline.name, local.id, "joined") == {
        "output": "KEPT AT 1.0,STAGED AT 3.0,PROMOTED AT 6.0"}


def test_the_publishing_flags_are_kept_for_the_steps_own_run():
    rest, publish = publish_github_flow.split_publish(["run", "--step", "s", "--github-output", "a",
                                                       "--github-items", "b", "--output", "a"])
    assert rest == ["run", "--step", "s", "--output", "a"]
    assert publish == ["--github-output", "a", "--github-items", "b"]


def test_a_skipped_item_says_so_on_the_job_summary_page(tmp_path, monkeypatch):
    # its job still succeeds (exit 0), which the Actions page shows as a succeeded job
    pipeline = gh_map_branches.build()
    root = f"file://{tmp_path / 'store'}"
    local = run_pipeline(pipeline, dict(PARAMETERS), artifact_root=root, cache=False)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv(publish_github_flow.INDEX_ENV, "0")
    assert publish_github_flow.main(_argv(pipeline, "promote", root, local.id)) == 0
    text = summary.read_text()
    assert text.startswith("### pipecast step promote\\[0\\]: skipped\\: ") and "is false" in text
