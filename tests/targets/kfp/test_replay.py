"""Replay (DESIGN §4): the commands in the emitted IR really run, and give the outputs of ``pipecast run``.

Each case is compiled for kubeflow and for vertex with a local ``file://`` artifact root, read back, and its
tasks run in ``dependentTasks`` order with only the substitutions the engine makes (:mod:`.engine_model`):
the KFP backend's driver and launcher as of KFP 2.17 and as of 2.4–2.16, the kubelet, Vertex AI.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from pipecast import pipeline, step
from pipecast.errors import ArtifactError
from pipecast.runtime.executor import load_outputs
from tests.helpers.cases import compile_case
from tests.helpers.replay import assert_same_outputs
from tests.targets.kfp.engine_model import KFP_2_4, KFP_2_17, VERTEX, go_format_f, go_format_g, go_json
from tests.targets.kfp.support import replay, task_commands

RUN_ID = "5b0d6f7e-2c1a-4c52-9a51-0f3f2f9a7c11"  # the shape of a KFP/Vertex pipeline_job_uuid
ENGINES = [pytest.param("kubeflow", KFP_2_17, id="kubeflow-kfp2.17"),
           pytest.param("kubeflow", KFP_2_4, id="kubeflow-kfp2.4"),
           pytest.param("vertex", VERTEX, id="vertex")]


def replay_settings(target: str, root: str) -> dict[str, str]:
    """The settings of every replay: an artifact root the test chooses (and kubeflow's golden GPU label)."""
    kube_only = {"gpu_node_label": "gke"} if target == "kubeflow" else {}
    return {"artifact_root": root, "image": "ghcr.io/acme/pipecast:1.0", **kube_only}


CASE_PARAMETERS = {"quickstart": {"n": 20, "label": "twenty"},
                   "ml_training": {"samples": 60, "epochs": 5, "lr_small": 0.5},
                   "diamond_after": {}, "hostile": {}, "gather": {"n": 5, "lr": 0.25}}
# The KFP 2.4 model differs from 2.17 only in how values are substituted: quickstart and hostile cover that.
REPLAYS = [pytest.param(name, target, engine, id=f"{name}-{param.id}")
           for name in CASE_PARAMETERS for param in ENGINES for target, engine in [param.values]
           if engine is not KFP_2_4 or name in ("quickstart", "hostile")]


@pytest.mark.parametrize(("case_name", "target", "engine"), REPLAYS)
def test_replay_matches_pipecast_run(case_name, target, engine, tmp_path):
    parameters = CASE_PARAMETERS[case_name]
    root = tmp_path / "replay"
    compiled = compile_case(target, case_name, settings=replay_settings(target, f"file://{root}"))
    pipeline_ir, text = compiled.pipeline, compiled.main
    replay(text, parameters, RUN_ID, engine=engine)
    assert_same_outputs(pipeline_ir, parameters, root, RUN_ID, tmp_path)


@pytest.mark.parametrize(("target", "engine"), ENGINES)
def test_replay_of_a_struct_parameter_set_at_run_time(target, engine, tmp_path):
    """A dict parameter reaches the step as the JSON the engine substitutes, hostile keys and all."""
    data = {"k'\"{{x}}": "${{ y }}\n$(z) <&>", "nested": {"list": ["a", "{{ b }}", "$(c)", 3, 0.5, 1e-7]}}
    root = tmp_path / "replay"
    compiled = compile_case(target, "hostile", settings=replay_settings(target, f"file://{root}"))
    pipeline_ir, text = compiled.pipeline, compiled.main
    replay(text, {"data": data}, RUN_ID, engine=engine)
    assert_same_outputs(pipeline_ir, {"data": data}, root, RUN_ID, tmp_path)


def test_the_run_id_reaches_every_task_as_the_engine_resolves_it():
    """The driver swaps the runtime constant for the run's id; the args read it as an input parameter."""
    text = compile_case("kubeflow", "quickstart", settings=replay_settings("kubeflow", "gs://bucket/root")).main
    for engine in (KFP_2_17, KFP_2_4):
        commands = {name: argv for name, argv, _ in task_commands(text, {"n": 20}, RUN_ID, engine=engine)}
        assert set(commands) == {"make-numbers", "split", "total", "total-2", "report"}
        for argv in commands.values():
            assert argv[argv.index("--run-id") + 1] == RUN_ID
            assert not any("{{" in part for part in argv)
        make = commands["make-numbers"]
        assert make[:3] == ["python", "-m", "pipecast.runtime"]
        assert "n=int:20" in make and "seed=int:7" in make
        assert "label=str:numbers" in commands["report"]


def _old_form(text: str) -> str:
    """The IR as pipecast emitted it before: ``{{$.pipeline_job_uuid}}`` written straight into the args."""
    old = text.replace("'{{$.inputs.parameters[''pipecast_run_id'']}}'", "'{{$.pipeline_job_uuid}}'")
    old = re.sub(r"\n( +)pipecast_run_id:\n\1  (parameterType: STRING|runtimeValue:\n\1    constant: "
                 r"'\{\{\$\.pipeline_job_uuid}}')", "", old)
    assert old != text and "pipecast_run_id" not in old
    return old


@pytest.mark.parametrize(("target", "engine"), [pytest.param("kubeflow", KFP_2_17, id="kfp2.17"),
                                               pytest.param("kubeflow", KFP_2_4, id="kfp2.4")])
def test_the_old_form_with_the_job_uuid_in_args_is_not_substituted(target, engine, tmp_path):
    """KFP's launcher substitutes input and output placeholders only: a job placeholder in args stays literal,
    so every run of the old IR wrote into one folder named after the placeholder."""
    root = tmp_path / "replay"
    compiled = compile_case(target, "quickstart", settings=replay_settings(target, f"file://{root}"))
    pipeline_ir, text = compiled.pipeline, compiled.main
    old = _old_form(text)
    for _, argv, _ in task_commands(old, {}, RUN_ID, engine=engine):
        assert argv[argv.index("--run-id") + 1] == "{{$.pipeline_job_uuid}}"
    try:
        replay(old, {}, RUN_ID, engine=engine)
    except AssertionError as err:  # a runtime that refuses an unsubstituted run id fails the first task
        assert "task failed" in str(err)
    else:  # a runtime that takes it writes every run into the same folder, named after the placeholder
        assert load_outputs(f"file://{root}", pipeline_ir.name, "{{$.pipeline_job_uuid}}", "report")
    with pytest.raises(ArtifactError):
        load_outputs(f"file://{root}", pipeline_ir.name, RUN_ID, "make_numbers")


def test_parameters_are_formatted_as_each_backend_writes_them(tmp_path):
    """KFP 2.17's driver writes numbers with %d/%g, the launcher with strconv 'f'; both give the runtime the
    same values, and JSON as Go's encoding/json does."""
    assert [go_format_g(x) for x in (0.01, 1e-05, 1234567.5, 0.5)] == ["0.01", "1e-05", "1.2345675e+06", "0.5"]
    assert [go_format_f(x) for x in (0.01, 1e-05, 1234567.5, 1e21, 20.0)] == [
        "0.01", "0.00001", "1234567.5", "1000000000000000000000", "20"]
    assert go_json({"b": [3.0, 0.5, 1e-7, 1e21], "a": "<x> & y"}) == (
        '{"a":"\\u003cx\\u003e \\u0026 y","b":[3,0.5,1e-7,1e+21]}')
    text = compile_case("kubeflow", "full_options", settings=replay_settings("kubeflow", "gs://bucket/root")).main
    secrets = {("db-credentials", "password"): "pw", ("api-token", "API_TOKEN"): "tok"}
    for engine, lr in ((KFP_2_17, "1e-05"), (KFP_2_4, "0.00001")):
        resolved = {name: (argv, env) for name, argv, env in task_commands(
            text, {"lr": 1e-5}, RUN_ID, engine=engine, secrets=secrets)}
        train_argv, train_env = resolved["train"]
        assert f"lr=float:{lr}" in train_argv and "epochs=int:3" in train_argv
        options = next(a for a in train_argv if a.startswith("options=dict:"))
        assert json.loads(options.partition(":")[2]) == {"optimizer": "sgd"}
        assert train_env == {"PROJECT": "acme", "API_TOKEN": "tok"}
        assert resolved["load"][1]["DB_PASSWORD"] == "pw"


def test_kfp_2_17_expands_kubelet_references_in_parameter_values_it_writes_into_the_pod():
    """A limit of the engine, not of pipecast (docs/targets/kubeflow.md): KFP 2.17 resolves parameters into the
    pod's args, where the kubelet turns ``$$`` into ``$``; 2.4–2.16 substituted after the kubelet."""
    text = compile_case("kubeflow", "quickstart", settings=replay_settings("kubeflow", "gs://bucket/root")).main

    def label(engine):
        report = dict((n, a) for n, a, _ in task_commands(text, {"label": "costs $$5"}, RUN_ID, engine=engine))
        return next(a for a in report["report"] if a.startswith("label="))

    assert label(KFP_2_4) == "label=str:costs $$5"
    assert label(KFP_2_17) == "label=str:costs $5"


def test_replay_fails_when_a_data_edge_is_missing_from_dependent_tasks(tmp_path):
    """The replayer proves the edges: without ``dependentTasks`` the consumer runs first and fails."""
    root = f"file://{tmp_path / 'replay'}"
    text = compile_case("kubeflow", "quickstart", settings=replay_settings("kubeflow", root)).main
    broken = text.replace("        dependentTasks:\n        - make-numbers\n", "")
    assert broken != text
    with pytest.raises(AssertionError, match="task failed"):
        replay(broken, {}, RUN_ID)


@step(env={"B": "$(A) costs $$5 ${A}"})
def read_env() -> str:
    return os.environ["A"] + "|" + os.environ["B"]


@pipeline(name="env_values", env={"A": "a"})
def env_values():
    read_env()


@pytest.mark.parametrize(("target", "engine"), ENGINES)
def test_env_values_reach_the_step_as_written(target, engine, tmp_path):
    """Kubeflow's kubelet and Vertex AI (its EnvVar: "$(VAR_NAME) … can be escaped with a double $$") expand env
    values; the emitted values are escaped so that the expansion gives back what the pipeline wrote."""
    root = tmp_path / "replay"
    text = compile_case(target, env_values, settings=replay_settings(target, f"file://{root}")).main
    replay(text, {}, RUN_ID, engine=engine)
    outputs = load_outputs(f"file://{root}", "env_values", RUN_ID, "read_env")
    assert outputs == {"output": "a|$(A) costs $$5 ${A}"}
