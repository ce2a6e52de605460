"""Replay (DESIGN §4): read the DAG file back, order its tasks by their own ``upstream`` lists, render the
environment templates as Airflow does, run each task's command here as its operator would (bash for a
BashOperator; Kubernetes' ``$(VAR)`` expansion then exec for a pod) and compare with ``pipecast run``."""

from __future__ import annotations

import os
from graphlib import TopologicalSorter

import pytest

from pipecast.targets.base import EmitOptions, compile_pipeline
from tests.helpers.cases import case
from tests.helpers.replay import assert_same_outputs, run_task
from tests.targets.airflow.helpers import VENV_BIN, kubernetes_expand, pod_env, read_dag_file, render_env

RUN_ID = "manual__2026-01-02T03:04:05+00:00"
REPLAYS = [
    ("quickstart", {}, {"n": 31, "seed": 3}),
    ("diamond_after", {}, {}),
    ("ml_training", {"mode": "kubernetes"}, {"samples": 60, "epochs": 5, "lr_large": 0.5}),
    ("ml_training", {"mode": "local"}, {"samples": 40}),
    ("hostile", {"mode": "kubernetes", "image": "ghcr.io/acme/hostile:1"}, {"text": "$(HOME) $$ {{ x }} '\""}),
]


def replay(text: str, params: dict) -> None:
    dag = read_dag_file(text)
    tasks = {t["task_id"]: t for t in dag["tasks"]}
    order = TopologicalSorter({t["task_id"]: t["upstream"] for t in dag["tasks"]}).static_order()
    for task_id in order:
        task = tasks[task_id]
        rendered = render_env(dag, task, RUN_ID, params)
        if "command" in task:  # BashOperator: bash -c COMMAND, the worker's environment plus the task's
            env = {**rendered, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
            run_task(["bash", "-c", task["command"]], env=env)
        else:  # a pod: the kubelet expands $(VAR) in env, command and args, then runs the command
            env = pod_env(task, rendered)
            run_task([kubernetes_expand(a, env) for a in task["cmds"] + task["arguments"]], env=env)


@pytest.mark.parametrize(("name", "settings", "params"), REPLAYS,
                         ids=[f"{n}-{s.get('mode', 'auto')}" for n, s, _ in REPLAYS])
def test_replayed_dag_gives_the_outputs_of_pipecast_run(name, settings, params, tmp_path):
    pipeline = case(name).build()
    root = tmp_path / "replay"
    options = EmitOptions(settings={**settings, "artifact_root": f"file://{root}"}, on_unsupported="warn")
    bundle = compile_pipeline(pipeline, "airflow", options)
    values = {**{p.name: p.default for p in pipeline.parameters}, **params}
    replay(bundle.files[0][1], values)
    assert_same_outputs(pipeline, values, root, RUN_ID, tmp_path)
