"""A step's metrics and metadata on its Azure ML job's MLflow run (issue 17): a real MLflow store receives them.

Azure ML starts each command job with an MLflow run of its own and sets ``MLFLOW_TRACKING_URI``,
``MLFLOW_EXPERIMENT_ID`` and ``MLFLOW_RUN_ID`` in its container ("Log metrics, parameters, and files with
MLflow", learn.microsoft.com/azure/machine-learning/how-to-log-view-metrics); what is logged to that run is the
job's Metrics tab. The replay does the same with a real MLflow tracking store (MLflow's file store): it creates
one run per node job, runs the node's emitted command with those variables, and reads the run back through
``MlflowClient``. Azure's ``azureml://`` store is
MLflow's REST store under the azureml-mlflow plugin; the runtime only calls ``MlflowClient.log_batch``, the same
call on every store.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.azureml_mlflow import MAX_TAG_VALUE, forward, mlflow_name, plan
from pipecast.targets.azureml.emit import RUN_ID_INPUT
from tests.helpers.cases import compile_case
from tests.helpers.replay import run_task
from tests.helpers.slow import slow_fixture
from tests.targets.azureml import typed_pipelines
from tests.targets.azureml.support import resolve_command

FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"

# What score() sends: `accuracy` comes from the Metrics output and from log_metadata, so both get their source.
METRICS = {"output.accuracy": 0.75, "f1 score/val": 0.5, "loss__": 0.25, "_/up": 2.0, "metadata.accuracy": 0.7,
           "epochs": 3.0, "lr": 0.01, "rows": 4.0}
TAGS = {"classes": '["a", "b"]', "long": "x" * MAX_TAG_VALUE, "_mlflow.runName": "hijack",
        "note": "${{inputs.x}} $(HOME) 'q\"", "ok": "true"}


def test_names_follow_mlflows_rules_and_nothing_is_left_out():
    meta = {"outputs": {"a": {"artifact": "Metrics", "metrics": {"acc": 1, "x": 2}},
                        "b": {"artifact": "Metrics", "metrics": {"acc": 0.5}},
                        "m": {"artifact": "Model", "metadata": {"acc": 9}}},  # a Model's metadata stays pipecast's
            "metadata": {"": 1, "a//b/": 2, "AzureML.x": "t", "n": None, "d": {"k": [1]}, "é": 3, "y" * 300: 4},
            "run_metadata": {"x": 5, "big": 10 ** 400}}
    sent = plan(meta)
    assert sent.metrics == {"a.acc": 1.0, "a.x": 2.0, "b.acc": 0.5, "_": 1.0, "a/_/b/_": 2.0, "y" * 250: 4.0,
                            "__2": 3.0, "run_metadata.x": 5.0}  # "é" and "" both become "_": the later one "__2"
    assert sent.tags == {"_AzureML.x": "t", "d": '{"k": [1]}', "n": "null", "big": "1" + "0" * 400}  # past a double
    assert len(sent.notes) == 9 and "metadata 'é' sent as '__2'" in sent.notes  # every renamed key is said
    assert "output 'b' metric 'acc' sent as 'b.acc'" in sent.notes and "run metadata 'x' sent as 'run_metadata.x'" \
        in sent.notes


def test_a_cut_name_keeps_to_mlflows_path_rules():
    import posixpath

    for text in ("/" * 300, "a/" * 200, "." * 300, "a" * 249 + "/..", "a" * 249 + "/b", "..x"):
        name = mlflow_name(text)
        assert 0 < len(name) <= 250 and posixpath.normpath(name) == name and not name.startswith(("/", "..")), name


@pytest.fixture(scope="module")
@slow_fixture
def tracking(tmp_path_factory):
    """A real MLflow tracking store and its client, with the experiment the node jobs' runs belong to.

    MLflow's file store: it needs no database migration, which costs each process seconds of CPU on SQLite (MLflow
    3.x keeps it in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``); it records what ``log_batch`` sends as
    every store does.
    """
    from mlflow import MlflowClient

    uri = f"file://{tmp_path_factory.mktemp('mlflow')}/mlruns"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FILE_STORE, "true")
        client = MlflowClient(tracking_uri=uri)
        yield uri, client, client.create_experiment("az_metrics")


def _node(tmp_path: Path, tracking, run_id: str, *, fail: bool = False, no_mlflow: bool = False,
          rows: int = 4) -> tuple[object, str, dict]:
    """Run node ``score`` of a fresh MLflow run, as Azure ML would; its exit, stderr, meta.json and MLflow run id."""
    uri, client, experiment = tracking
    root = tmp_path / "store"
    settings = {"artifact_root": f"local://{root}", "image": "ghcr.io/acme/pipecast:1.0"}
    job = yaml.safe_load(compile_case("azureml", typed_pipelines.az_metrics, settings=settings).main)
    work = tmp_path / run_id
    (work / "outputs").mkdir(parents=True)  # the Metrics output, a uri_file: Azure ML gives its path
    command = resolve_command(job, "score", dict(job["inputs"]) | {"rows": rows, "fail": fail, RUN_ID_INPUT: run_id},
                              outputs={"output": str(work / "outputs" / "output")})
    assert command.startswith("python -m pipecast.runtime run ") and " --azureml-mlflow" in command
    if no_mlflow:  # an image without mlflow: the import system raises ImportError for a None entry
        code = ("import runpy, sys; sys.modules['mlflow'] = None; "
                "runpy.run_module('pipecast.runtime', run_name='__main__', alter_sys=True)")
        command = command.replace("python -m pipecast.runtime", f"python -c \"{code}\"", 1)
    mlflow_run = client.create_run(experiment).info.run_id  # Azure ML creates the job's run before it starts
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": experiment, "MLFLOW_RUN_ID": mlflow_run,
           FILE_STORE: "true"}
    done = run_task(["bash", "-c", command], env=env, cwd=work, check=False, timeout=600)
    store = ArtifactStore(f"file://{root}")
    meta = store.read_json(f"{store.step_dir('az_metrics', run_id, 'score')}/meta.json")
    return done, mlflow_run, meta


def _logged(client, run_id: str) -> tuple[dict, dict]:
    data = client.get_run(run_id).data
    return data.metrics, {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")}


def test_the_job_run_gets_the_steps_metrics_also_from_the_cache_and_after_a_failure(tmp_path, tracking):
    client = tracking[1]
    for run_id in ("azureml-metrics-1", "azureml-metrics-2"):  # the second step comes from the cache
        done, mlflow_run, meta = _node(tmp_path, tracking, run_id)
        assert done.returncode == 0, done.stderr
        assert meta["cached"] is run_id.endswith("2")
        assert _logged(client, mlflow_run) == (METRICS, TAGS)
        assert all(len(client.get_metric_history(mlflow_run, key)) == 1 for key in METRICS)
        assert f"8 metric(s) and 5 tag(s) sent to the Azure ML job's MLflow run {mlflow_run}" in done.stderr
        assert "metadata 'accuracy' sent as 'metadata.accuracy'" in done.stderr
        assert f"tag 'long' cut to {MAX_TAG_VALUE} of its 9000 characters" in done.stderr
        assert meta["outputs"]["output"]["metrics"] == {"accuracy": 0.75, "f1 score/val": 0.5, "loss$%": 0.25}
    done, mlflow_run, meta = _node(tmp_path, tracking, "azureml-metrics-failed", fail=True, rows=5)
    assert done.returncode == 1 and "failed after logging" in done.stderr
    metrics, tags = _logged(client, mlflow_run)  # what the failed step logged; it has no Metrics output
    assert metrics == {"accuracy": 0.7, "_/up": 2.0, "epochs": 3.0, "lr": 0.01, "rows": 5.0} and tags == TAGS


def test_without_mlflow_in_the_image_the_step_succeeds_with_one_warning(tmp_path, tracking):
    done, mlflow_run, meta = _node(tmp_path, tracking, "azureml-no-mlflow", no_mlflow=True)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, done.stderr
    assert "8 metric(s) and 5 tag(s) not sent" in warnings[0] and "azureml-mlflow" in warnings[0]
    assert "pipecast[azureml-metrics]" in warnings[0] and "pipecast runs show" in warnings[0]
    assert _logged(tracking[1], mlflow_run) == ({}, {})
    assert meta["outputs"]["output"]["metrics"]["accuracy"] == 0.75  # still in pipecast's run store


def test_a_refusing_store_or_a_missing_plugin_is_one_warning(tracking):
    uri, client, experiment = tracking
    meta = {"outputs": {"output": {"artifact": "Metrics", "metrics": {"accuracy": 0.75}}}}
    said: list[str] = []
    assert not forward("score", meta, {"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": "no-such-run"}, said.append)
    assert len(said) == 1 and "MLflow refused them" in said[0] and "no-such-run" in said[0], said
    said.clear()
    azure = "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/g/providers/" \
            "Microsoft.MachineLearningServices/workspaces/w"
    assert not forward("score", meta, {"MLFLOW_TRACKING_URI": azure, "MLFLOW_RUN_ID": "r"}, said.append)
    assert len(said) == 1 and "only the azureml-mlflow plugin reads" in said[0], said
    said.clear()
    assert not forward("score", meta, {}, said.append)
    assert len(said) == 1 and "MLFLOW_RUN_ID is not set" in said[0]
    assert forward("score", {"outputs": {}}, {}, said.append) and len(said) == 1  # nothing to send: no import
    run = client.create_run(experiment).info.run_id
    assert forward("score", meta, {"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": run}, said.append)
    assert client.get_run(run).data.metrics == {"accuracy": 0.75}
    assert json.dumps(said[-1]).count("sent to the Azure ML job's MLflow run") == 1
