"""Typed outputs in the KFP/Vertex UI (issue 17): an output artifact per typed output, of its schema type.

Goldens, the protobuf schema, kfp 2.17's compiler for ``Output[Model]``/``Output[Metrics]``/``Output[Dataset]``,
and the replay (:mod:`.support`), which collects the artifacts as the KFP launcher does
(:func:`.engine_model.collect_outputs`: ``mergeRuntimeArtifacts``, the bucket check of ``uploadOutputArtifacts``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import components, dsl

from pipecast.errors import PipecastError
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.kfp_outputs import typed_artifact
from tests.helpers.cases import compile_case, read_tree, write_tree
from tests.targets.kfp.engine_model import KFP_2_4, KFP_2_17, VERTEX, collect_outputs
from tests.targets.kfp.support import documents, parse_strictly, replay_tasks
from tests.targets.kfp.test_kfp_compiler_parity import kfp_compiled, per_task
from tests.targets.kfp.typed_cases import typed_outputs

GOLDENS = Path(__file__).parent / "goldens"
RUN_ID = "5b0d6f7e-2c1a-4c52-9a51-0f3f2f9a7c11"
ENGINES = [pytest.param("kubeflow", KFP_2_17, id="kubeflow-kfp2.17"),
           pytest.param("kubeflow", KFP_2_4, id="kubeflow-kfp2.4"),
           pytest.param("vertex", VERTEX, id="vertex")]


def schema(title: str) -> dict[str, str]:
    return {"schemaTitle": f"system.{title}", "schemaVersion": "0.0.1"}


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_golden_and_schema(target, request):
    files = compile_case(target, typed_outputs, golden=True).files
    folder = GOLDENS / "typed_outputs" / target
    if request.config.getoption("--update-goldens"):
        write_tree(folder, files)
    assert read_tree(folder) == files, f"typed_outputs × {target} differs from its golden (pytest --update-goldens)"
    for text in files.values():
        parse_strictly(text)
        assert components.load_component_from_text(text).name == "typed-outputs"


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_output_definitions_are_what_kfp_compiles_for_typed_outputs(target, tmp_path, monkeypatch):
    """kfp 2.17 compiles ``Output[Dataset]``/``Output[Model]``/``Output[Metrics]`` parameters of the same names
    into the same outputDefinitions (and the rest of the parity test's checks on placeholders hold)."""
    compiled = compile_case(target, typed_outputs, golden=True)
    ours = per_task(documents(compiled.main)[0])
    kinds = {"Dataset": dsl.Dataset, "Model": dsl.Model, "Metrics": dsl.Metrics}
    typed = {step.name: {out.name: dsl.Output[kinds[out.artifact]] for out in step.outputs if out.artifact}
             for step in compiled.pipeline.steps}
    from tests.targets.kfp import test_kfp_compiler_parity as parity

    original = parity._component

    def with_typed(task_name, inputs, image, command, outputs=None):
        return original(task_name, inputs, image, command, {**(outputs or {}), **typed[task_name]})

    monkeypatch.setattr(parity, "_component", with_typed)
    theirs = kfp_compiled(compiled.pipeline, ours, target, tmp_path)
    for name, component in ours["components"].items():
        assert component["outputDefinitions"] == theirs["components"][name]["outputDefinitions"], name
    assert ours["components"]["comp-train"]["outputDefinitions"]["artifacts"]["model"] == {
        "artifactType": schema("Model")}


@pytest.mark.parametrize(("target", "engine"), ENGINES)
def test_the_launcher_collects_each_typed_artifact_with_its_uri_and_metadata(target, engine, tmp_path):
    root = f"file://{tmp_path / 'store'}"
    text = compile_case(target, typed_outputs, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"}).main
    tasks = {name: outputs for name, (_, outputs) in replay_tasks(text, {"rows": 4}, RUN_ID, engine=engine).items()}

    def stored(step: str, name: str) -> str:
        uri = load_outputs(root, "typed_outputs", RUN_ID, step, names={name})[name].uri
        assert uri and uri.startswith(f"{root}/typed_outputs/runs/{RUN_ID}/{step}/outputs/{name}"), uri
        return uri

    table = tasks["prepare"].artifacts["table"]
    assert table == {"name": "table", "type": schema("Dataset"), "uri": stored("prepare", "table"),
                     "metadata": {"rows": 4.0, "source": "{{$}} $(HOME) 'q\""}}
    assert tasks["prepare"].parameters == {"count": 4.0}
    model = tasks["train"].artifacts["model"]
    assert (model["type"], model["uri"], model["metadata"]) == (
        schema("Model"), stored("train", "model"), {"framework": "plain"})
    assert json.loads((Path(model["uri"][len("file://"):]) / "config.json").read_text()) == {"rows": 4}
    # Metrics: each metric a metadata field, as kfp's Metrics.log_metric records it (numbers are doubles)
    assert tasks["train"].artifacts["scores"]["metadata"] == {"loss": 0.25, "rows": 4.0}
    assert tasks["train"].artifacts["output"]["metadata"] == {"accuracy": 0.75, "split": "validation"}
    assert tasks["train"].artifacts["output"]["type"] == schema("Metrics")
    assert tasks["evaluate"].artifacts["output"]["metadata"] == {"auc": 0.54, "framework_ok": 1.0}
    assert tasks["evaluate"].artifacts["output"]["uri"] == stored("evaluate", "output")
    for outputs in tasks.values():  # the step's folder stays the pipecast_outputs artifact
        assert outputs.artifacts["pipecast_outputs"]["type"] == schema("Artifact")


@pytest.mark.parametrize(("uri", "pipeline_root", "accepted"), [
    ("s3://store/p/runs/r/s/outputs/model", "s3://store/kfp", True),
    ("s3://store/p/runs/r/s/outputs/model", "s3://kfp-bucket/root", False),
    ("file:///gcs/acme/p/runs/r/s/outputs/model", "gs://acme/root", True)])
def test_a_typed_artifact_outside_the_pipeline_root_bucket_keeps_the_engine_uri(uri, pipeline_root, accepted,
                                                                                  tmp_path):
    """The launcher rule of ``pipecast_outputs`` holds for typed artifacts: our URI only where the launcher uploads
    it without failing; elsewhere the engine's URI stays and ours is ``pipecast_uri`` in the metadata."""
    engine_uri = f"{pipeline_root}/{RUN_ID}/task/model"
    record = {"file": "outputs/model", "artifact": "Model", "metadata": {"framework": "x"}}
    produced = typed_artifact("train", "model", {"name": "model", "uri": engine_uri}, uri, record)
    component = {"outputDefinitions": {"artifacts": {"model": {"artifactType": schema("Model")}}}}
    written = tmp_path / "output_metadata.json"
    written.write_text(json.dumps({"artifacts": {"model": {"artifacts": [produced]}}}))
    inputs = {"outputs": {"artifacts": {"model": {"artifacts": [{"name": "model", "uri": engine_uri}]}},
                          "outputFile": str(written)}}
    collected = collect_outputs(component, inputs, pipeline_root).artifacts["model"]
    if accepted:
        assert collected["uri"] == uri.replace("file:///gcs/", "gs://")
        assert collected["metadata"] == {"framework": "x"}
    else:
        assert collected == {"name": "model", "uri": engine_uri, "metadata": {"framework": "x", "pipecast_uri": uri}}


def test_a_metric_named_like_a_metadata_key_is_one_clear_error():
    record = {"file": "outputs/output.json", "artifact": "Metrics", "metadata": {"loss": "l2"},
              "metrics": {"loss": 0.1}}
    with pytest.raises(PipecastError, match=r"step 'train': Metrics output 'output' has 'loss' both as a metric and "
                                            r"as a metadata key.*rename one of them"):
        typed_artifact("train", "output", {"uri": "gs://b/x"}, "gs://b/y", record)
