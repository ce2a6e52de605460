"""Replay (DESIGN §4): the emitted container templates' commands, run here in DAG order with Argo's and
the kubelet's substitutions applied, give the same outputs as ``pipecast run``."""

from __future__ import annotations

import pytest

from tests.helpers.cases import case, compile_case
from tests.helpers.replay import assert_same_outputs
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.argo.support import replay, task_invocations
from tests.targets.tekton import pipelines

# The golden hostile case holds '{{workflow.name}}', which Argo substitutes: Argo's variant leaves it out.
CASES = {"quickstart": case("quickstart").build, "ml_training": case("ml_training").build,
         "diamond_after": case("diamond_after").build, "hostile": pipelines.argo_hostile.build,
         "gather": case("gather").build}


@pytest.mark.parametrize(("case_name", "run_params", "values"), [
    ("quickstart", {"n": "25", "label": "{{ x }} {{workflow}} & $(HOME)"},
     {"n": 25, "label": "{{ x }} {{workflow}} & $(HOME)"}),
    ("ml_training", {"samples": "60", "epochs": "5"}, {"samples": 60, "epochs": 5}),
    ("diamond_after", {}, {}),
    ("hostile", {}, {}),
    ("gather", {"n": "5", "lr": "0.25"}, {"n": 5, "lr": 0.25}),  # literal lists and dicts as one input
])
@pytest.mark.parametrize("embed", [False, True], ids=["template", "embedded"])
def test_replay_matches_local_run(case_name, run_params, values, embed, tmp_path):
    root = tmp_path / "artifacts"
    pipeline = CASES[case_name]()
    files = compile_case("argo", pipeline, golden=True, settings={"artifact_root": REPLAY_STORE, "embed": embed}).files
    run_name = f"{case_name.replace('_', '-')}-abc12"
    replay(files, run_name, run_params, store=root)
    assert_same_outputs(pipeline, values, root, run_name, tmp_path)


def test_hostile_values_arrive_verbatim():
    """Parameter defaults, constants and env values arrive as written."""
    files = compile_case("argo", pipelines.argo_hostile, golden=True, settings={"artifact_root": REPLAY_STORE}).files
    invocations = {name: (argv, env) for name, argv, env in task_invocations(files, "hostile-x1")}
    argv, env = invocations["echo-text"]
    assert env["EVIL_ENV"] == pipelines.ARGO_EVIL
    assert f"text=str:{pipelines.ARGO_EVIL}" in argv
    argv, _ = invocations["echo-data-2"]
    assert 'data=dict:{"k\'\\"{{x}}": "${{ y }}\\n$(z)"}' in argv
