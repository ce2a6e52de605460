"""Replay (DESIGN §4): the commands in the emitted IR really run, and give the outputs of ``pipecast run``.

Each case is compiled for kubeflow and for vertex with a local ``file://`` artifact root, read back, and
its tasks run in ``dependentTasks`` order with KFP's placeholders substituted by ``kfp.local``.
"""

from __future__ import annotations

import json

import pytest

from pipecast.targets.base import EmitOptions, compile_pipeline
from tests.helpers.cases import case
from tests.helpers.replay import assert_same_outputs
from tests.targets.kfp.kfp_tools import replay, task_commands

TARGETS = ["kubeflow", "vertex"]
RUN_ID = "5b0d6f7e-2c1a-4c52-9a51-0f3f2f9a7c11"  # the shape of a KFP/Vertex pipeline_job_uuid


def _compile(case_name: str, target: str, root: str) -> tuple[object, str]:
    pipeline = case(case_name).build()
    kube_only = {"gpu_node_label": "gke"} if target == "kubeflow" else {}
    bundle = compile_pipeline(pipeline, target, EmitOptions(settings={
        "artifact_root": root, "image": "ghcr.io/acme/pipecast:1.0", **kube_only}))
    return pipeline, bundle[bundle.main_file]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(("case_name", "parameters"), [
    ("quickstart", {"n": 20, "label": "twenty"}),
    ("ml_training", {"samples": 60, "epochs": 5, "lr_small": 0.5}),
    ("diamond_after", {}),
    ("hostile", {}),
])
def test_replay_matches_pipecast_run(case_name, parameters, target, tmp_path):
    root = tmp_path / "replay"
    pipeline, text = _compile(case_name, target, f"file://{root}")
    replay(text, parameters, RUN_ID, tmp_path / "kfp")
    assert_same_outputs(pipeline, parameters, root, RUN_ID, tmp_path)


@pytest.mark.parametrize("target", TARGETS)
def test_replay_of_a_struct_parameter_set_at_run_time(target, tmp_path):
    """A dict parameter reaches the step as the JSON KFP substitutes, hostile keys and all."""
    data = {"k'\"{{x}}": "${{ y }}\n$(z)", "nested": {"list": ["a", "{{ b }}", "$(c)"]}}
    root = tmp_path / "replay"
    pipeline, text = _compile("hostile", target, f"file://{root}")
    replay(text, {"data": data}, RUN_ID, tmp_path / "kfp")
    assert_same_outputs(pipeline, {"data": data}, root, RUN_ID, tmp_path)


def test_substituted_commands_carry_parameters_and_run_id(tmp_path):
    """What KFP substitutes: the run id everywhere, ints as integers, JSON for dicts; constants untouched."""
    _, text = _compile("quickstart", "kubeflow", "gs://bucket/root")
    commands = {name: argv for name, argv, _ in task_commands(text, {"n": 20}, RUN_ID, tmp_path)}
    make = commands["make-numbers"]
    assert make[:3] == ["python", "-m", "pipecast.runtime"]
    assert make[make.index("--run-id") + 1] == RUN_ID
    assert "n=int:20" in make and "seed=int:7" in make
    assert "label=str:numbers" in commands["report"]
    _, text = _compile("full_options", "kubeflow", "gs://bucket/root")
    secrets = {("db-credentials", "password"): "pw", ("api-token", "API_TOKEN"): "tok"}
    resolved = {name: (argv, env) for name, argv, env in task_commands(text, {}, RUN_ID, tmp_path, secrets)}
    train_argv, train_env = resolved["train"]
    options = next(a for a in train_argv if a.startswith("options=dict:"))
    assert json.loads(options.partition(":")[2]) == {"optimizer": "sgd"}
    assert "lr=float:0.01" in train_argv and "epochs=int:3" in train_argv
    assert train_env == {"PROJECT": "acme", "API_TOKEN": "tok"}
    assert resolved["load"][1]["DB_PASSWORD"] == "pw"


def test_replay_fails_when_a_data_edge_is_missing_from_dependent_tasks(tmp_path):
    """The replayer proves the edges: without ``dependentTasks`` the consumer runs first and fails."""
    _, text = _compile("quickstart", "kubeflow", f"file://{tmp_path / 'replay'}")
    broken = text.replace("        dependentTasks:\n        - make-numbers\n", "")
    assert broken != text
    with pytest.raises(AssertionError, match="task failed"):
        replay(broken, {}, RUN_ID, tmp_path / "kfp")
