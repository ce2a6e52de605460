"""Replay (DESIGN §4): the emitted tasks' commands, run here in ``runAfter`` order with Tekton's and the
kubelet's substitutions applied, give the same outputs as ``pipecast run``."""

from __future__ import annotations

import pytest

from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import case, compile_case
from tests.helpers.replay import assert_same_outputs
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.tekton.support import replay, task_invocations


@pytest.mark.parametrize(("case_name", "run_params", "values"), [
    ("quickstart", {"n": "25", "label": "odd & even"}, {"n": 25, "label": "odd & even"}),
    ("ml_training", {"samples": "60", "epochs": "5"}, {"samples": 60, "epochs": 5}),
    ("diamond_after", {}, {}),
    ("hostile", {}, {}),
    ("gather", {"n": "5", "lr": "0.25"}, {"n": 5, "lr": 0.25}),  # literal lists and dicts as one input
])
@pytest.mark.parametrize("embed", [False, True], ids=["pipeline", "embedded"])
def test_replay_matches_local_run(case_name, run_params, values, embed, tmp_path):
    root = tmp_path / "artifacts"
    files = compile_case("tekton", case_name, golden=True,
                         settings={"artifact_root": REPLAY_STORE, "embed": embed}).files
    run_name = f"{case_name.replace('_', '-')}-replay"
    replay(files, run_name, run_params, store=root)
    pipeline = case(case_name).build()
    assert_same_outputs(pipeline, values, root, run_name, tmp_path)


def test_hostile_values_arrive_verbatim():
    """Parameter defaults, constants and env values reach the process exactly as written in Python."""
    files = compile_case("tekton", "hostile", golden=True, settings={"artifact_root": REPLAY_STORE}).files
    invocations = {name: (argv, env) for name, argv, env in task_invocations(files, "hostile-run")}
    argv, env = invocations["echo-text"]
    assert env["EVIL_ENV"] == EVIL
    assert f"text=str:{EVIL}" in argv
    argv, _ = invocations["echo-data-2"]
    assert 'data=dict:{"k\'\\"{{x}}": "${{ y }}\\n$(z)"}' in argv
