"""Outputs the KFP/Vertex UI shows: scalar outputs as output parameters, the step's folder as an output artifact.

The replay (:mod:`.support`) runs each task as the engine starts it and then collects its outputs as the
KFP launcher does (:func:`.engine_model.collect_outputs`): a declared output parameter whose file is missing
fails the task, an artifact URI outside the pipeline root's bucket fails the upload.
"""

from __future__ import annotations

import json
from typing import Annotated

import pytest

from pipecast import pipeline, step
from pipecast.errors import PipecastError
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.kfp_outputs import artifact_uri, launcher_accepts, parameter_text
from tests.helpers.cases import compile_case
from tests.targets.kfp.engine_model import KFP_2_4, KFP_2_17, VERTEX, collect_outputs
from tests.targets.kfp.support import replay, replay_tasks

RUN_ID = "5b0d6f7e-2c1a-4c52-9a51-0f3f2f9a7c11"
ENGINES = [pytest.param("kubeflow", KFP_2_17, id="kubeflow-kfp2.17"),
           pytest.param("kubeflow", KFP_2_4, id="kubeflow-kfp2.4"),
           pytest.param("vertex", VERTEX, id="vertex")]
# Text that must reach the UI as written: placeholders, kubelet syntax, quotes, a trailing newline.
HOSTILE = "line 1\n{{$}} {{$.inputs.parameters['label']}} $(HOME) $$ 'q\" <&>\n"
ARTIFACT_TYPE = {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}


@step
def measure(label: str) -> tuple[Annotated[str, "text"], Annotated[int, "count"], Annotated[float, "ratio"],
                                 Annotated[bool, "ok"], Annotated[list, "items"]]:
    return label + HOSTILE, 3, 0.1, True, [1, 2]


@step(timeout="10m")  # on Vertex the runtime enforces it: its supervising process writes the outputs
def scale(count: int) -> int:
    return count * 2 ** 40


@pipeline(name="scalar_outputs")
def scalar_outputs(label: str = "run"):
    _, count, _, _, _ = measure(label)
    scale(count)


@step
def nothing() -> str:
    return None  # type: ignore[return-value]  # a step that breaks its own annotation


@pipeline(name="none_output")
def none_output():
    nothing()


@step
def join(a: str, b: str) -> str:
    return f"{a}|{b}"


@pipeline(name="placeholder_values")
def placeholder_values(a: str = "{{$.inputs.parameters['b']}}", b: str = 'x", "y'):
    join(a, b)


def settings(target: str, root: str) -> dict[str, str]:
    return {"artifact_root": root, "image": "ghcr.io/acme/pipecast:1.0"}


def folder(root: str, step_name: str) -> str:
    return f"{root}/scalar_outputs/runs/{RUN_ID}/{step_name}"


@pytest.mark.parametrize(("target", "engine"), ENGINES)
def test_scalar_outputs_arrive_as_output_parameters_and_the_artifact_is_the_step_folder(target, engine, tmp_path):
    root = f"file://{tmp_path / 'store'}"
    text = compile_case(target, scalar_outputs, settings=settings(target, root)).main
    tasks = {name: outputs for name, (_, outputs) in replay_tasks(text, {"label": "L"}, RUN_ID, engine=engine).items()}

    assert tasks["measure"].parameters == {"text": "L" + HOSTILE, "count": 3.0, "ratio": 0.1, "ok": True}
    assert tasks["scale"].parameters == {"output": float(3 * 2 ** 40)}  # the list stays in the store only
    assert load_outputs(root, "scalar_outputs", RUN_ID, "scale") == {"output": 3 * 2 ** 40}
    for name in ("measure", "scale"):
        artifact = tasks[name].artifacts["pipecast_outputs"]
        assert artifact["uri"] == folder(root, name)
        assert artifact["type"] == ARTIFACT_TYPE
        assert artifact["metadata"]["pipecast_uri"] == folder(root, name)
    files = tasks["measure"].artifacts["pipecast_outputs"]["metadata"]["outputs"]
    assert set(files) == {"text", "count", "ratio", "ok", "items"}
    assert files["items"].startswith(folder(root, "measure") + "/outputs/items")


@pytest.mark.parametrize(("target", "engine"), ENGINES)
def test_a_parameter_value_that_breaks_the_executor_input_json_still_gives_the_outputs(target, engine, tmp_path):
    """The launcher substitutes input placeholders again inside the substituted ``{{$}}``: ``a`` becomes ``b``'s
    value, quote and all, and the JSON of ``inputs`` breaks; ``outputs`` is still read."""
    root = f"file://{tmp_path}"
    text = compile_case(target, placeholder_values, settings=settings(target, root)).main
    tasks = replay_tasks(text, {}, RUN_ID, engine=engine)
    argv = tasks["join"][0].args
    with pytest.raises(ValueError):
        json.loads(argv[argv.index("--kfp-executor-input") + 1])
    stored = load_outputs(root, "placeholder_values", RUN_ID, "join")["output"]
    assert tasks["join"][1].parameters == {"output": stored}
    assert tasks["join"][1].artifacts["pipecast_outputs"]["uri"] == f"{root}/placeholder_values/runs/{RUN_ID}/join"


def test_a_task_that_writes_no_declared_output_parameter_fails_as_on_the_launcher(tmp_path):
    """Without the executor input the runtime writes no output files: the launcher fails the task."""
    text = compile_case("kubeflow", scalar_outputs, settings=settings("kubeflow", f"file://{tmp_path}")).main
    without = text.replace("        - --kfp-executor-input\n        - '{{$}}'\n", "")
    assert without != text and "{{$}}" not in without
    with pytest.raises(AssertionError, match=r"failed to read output parameter name='count'.*no such file"):
        replay(without, {}, RUN_ID, engine=KFP_2_17)


def test_a_value_no_output_parameter_can_hold_is_one_clear_error(tmp_path):
    text = compile_case("kubeflow", none_output, settings=settings("kubeflow", f"file://{tmp_path}")).main
    with pytest.raises(AssertionError, match=r"(?s)task failed \(2\).*step 'nothing' returned NoneType None for output "
                                             r"'output', which the engine collects as an output parameter"):
        replay(text, {}, RUN_ID, engine=KFP_2_17)


def test_parameter_text_is_what_the_launcher_parses():
    assert [parameter_text("s", "o", v) for v in (True, 7, -2 ** 63, 0.1, 1e-7, "x\n")] == [
        "true", "7", str(-2 ** 63), "0.1", "1e-07", "x\n"]
    assert parameter_text("s", "o", [1, "a"]) == '[1,"a"]'  # a list a map iterates: a LIST output parameter
    for bad in (2 ** 63, float("nan"), float("inf"), None, {"a": 1}):
        with pytest.raises(PipecastError, match="output parameter"):
            parameter_text("s", "o", bad)


def test_a_folder_on_vertex_cloud_storage_mount_is_shown_as_its_bucket():
    assert artifact_uri("file:///gcs/acme/pipecast/p/runs/r/s") == "gs://acme/pipecast/p/runs/r/s"
    assert artifact_uri("file:///data/gcs/p") == "file:///data/gcs/p"
    assert launcher_accepts(artifact_uri("file:///gcs/acme/x"), "gs://acme/root/r/t/pipecast_outputs")
    assert not launcher_accepts(artifact_uri("file:///gcs/acme/x"), "gs://other/root/r/t/pipecast_outputs")


# (the step folder, the pipeline root the engine uses, whether the KFP launcher takes the folder as the URI)
ROOTS = [("file:///data/store/p/runs/r/s", "minio://mlpipeline/v2/artifacts", True),  # no local path: not uploaded
         ("az://container/p/runs/r/s", "gs://bucket/root", True),
         ("gs://bucket/store/p/runs/r/s", "gs://bucket/root", True),
         ("gs://other/store/p/runs/r/s", "gs://bucket/root", False),
         ("s3://bucket/store/p/runs/r/s", "minio://bucket/root", False),
         ("s3://bucket/store/p/runs/r/s", "s3://bucket/kfp", True)]


@pytest.mark.parametrize(("uri", "pipeline_root", "accepted"), ROOTS)
def test_the_runtime_names_the_folder_only_where_the_launcher_takes_it(uri, pipeline_root, accepted, tmp_path):
    """:func:`launcher_accepts` and the launcher model agree: the folder as the URI uploads, or fails the task."""
    engine_uri = f"{pipeline_root}/{RUN_ID}/task/pipecast_outputs"
    assert launcher_accepts(uri, engine_uri) is accepted
    component = {"outputDefinitions": {"artifacts": {"pipecast_outputs": {"artifactType": ARTIFACT_TYPE}}}}
    inputs = {"outputs": {"artifacts": {"pipecast_outputs": {"artifacts": [{"name": "pipecast_outputs",
                                                                            "uri": engine_uri}]}}}}
    written = tmp_path / "output_metadata.json"
    written.write_text(json.dumps({"artifacts": {"pipecast_outputs": {"artifacts": [{"uri": uri}]}}}))
    inputs["outputs"]["outputFile"] = str(written)
    if accepted:
        assert collect_outputs(component, inputs, pipeline_root).artifacts["pipecast_outputs"]["uri"] == uri
    else:
        with pytest.raises(AssertionError, match="does not have expected bucket prefix"):
            collect_outputs(component, inputs, pipeline_root)


def test_an_artifact_root_outside_the_pipeline_root_bucket_keeps_the_engine_uri(moto_s3):
    """Against S3 (moto): the folder is the artifact's URI in the pipeline root's bucket; elsewhere the engine's URI
    stays (so the upload cannot fail) and the folder is in the metadata."""
    moto_s3.fs.mkdir("pipecast-store")
    root = "s3://pipecast-store/artifacts"
    text = compile_case("kubeflow", scalar_outputs, settings=settings("kubeflow", root)).main
    for pipeline_root, uri in (("s3://pipecast-store/kfp", folder(root, "scale")),
                               ("s3://kfp-bucket/root", f"s3://kfp-bucket/root/{RUN_ID}/scale/pipecast_outputs")):
        tasks = replay_tasks(text, {}, RUN_ID, engine=KFP_2_17, env=moto_s3.env, pipeline_root=pipeline_root)
        artifact = tasks["scale"][1].artifacts["pipecast_outputs"]
        assert (artifact["uri"], artifact["metadata"]["pipecast_uri"]) == (uri, folder(root, "scale"))
        assert tasks["scale"][1].parameters == {"output": float(3 * 2 ** 40)}
