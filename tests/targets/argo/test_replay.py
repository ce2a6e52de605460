"""Replay (DESIGN §4): the emitted container templates' commands, run here in DAG order with Argo's and
the kubelet's substitutions applied, give the same outputs as ``pipecast run``."""

from __future__ import annotations

import pytest

from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import case
from tests.helpers.replay import assert_same_outputs
from tests.targets.argo.support import emit, replay, task_invocations


@pytest.mark.parametrize(("case_name", "run_params", "values"), [
    ("quickstart", {"n": "25", "label": "{{workflow.name}} & $(HOME)"},
     {"n": 25, "label": "{{workflow.name}} & $(HOME)"}),
    ("ml_training", {"samples": "60", "epochs": "5"}, {"samples": 60, "epochs": 5}),
    ("diamond_after", {}, {}),
    ("hostile", {}, {}),
])
@pytest.mark.parametrize("embed", [False, True], ids=["template", "embedded"])
def test_replay_matches_local_run(case_name, run_params, values, embed, tmp_path):
    root = tmp_path / "artifacts"
    files = emit(case_name, artifact_root=f"file://{root}", embed=embed)
    run_name = f"{case_name.replace('_', '-')}-abc12"
    replay(files, run_name, run_params)
    assert_same_outputs(case(case_name).build(), values, root, run_name, tmp_path)


def test_hostile_values_arrive_verbatim(tmp_path):
    """Parameter defaults, constants and env values (which Argo would template) arrive as written."""
    files = emit("hostile", artifact_root=f"file://{tmp_path}")
    invocations = {name: (argv, env) for name, argv, env in task_invocations(files, "hostile-x1")}
    argv, env = invocations["echo-text"]
    assert env["EVIL_ENV"] == EVIL
    assert f"text=str:{EVIL}" in argv
    argv, _ = invocations["echo-data-2"]
    assert 'data=dict:{"k\'\\"{{x}}": "${{ y }}\\n$(z)"}' in argv
