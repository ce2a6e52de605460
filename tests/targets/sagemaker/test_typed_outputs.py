"""Issue 17: typed outputs as processing outputs, so SageMaker Studio lists them with the S3 URI pipecast writes.

The golden of KFP's typed pipeline (tests/targets/kfp/typed_cases.py) for sagemaker, AWS's definition schema, the
warnings where Studio cannot list them, and a replay against moto's S3: moto's SageMaker runs no job, so the
replay runs each step's command as the job would and then does what CreateProcessingJob documents for an
``S3Output`` with ``S3UploadMode: EndOfJob`` (``ProcessingS3Output``: the platform creates ``LocalPath``, and at the
job's end uploads "its contents" to ``S3Uri``). The listed URI must hold what the runtime wrote, and the upload of
the (empty) local folder must add nothing. That the sagemaker SDK builds the same outputs is in test_sdk.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.targets.sagemaker.outputs import LOCAL_PATH, MAX_OUTPUTS
from tests.helpers.cases import compile_case
from tests.targets.kfp.typed_cases import typed_outputs
from tests.targets.sagemaker.replay import commands, evaluate, replay
from tests.targets.sagemaker.schema import errors, unresolved_references
from tests.targets.sagemaker.test_schema import _without_known_gaps

GOLDEN = Path(__file__).parent / "data" / "typed_outputs"
ROOT = "s3://pipecast-golden/artifacts"
EXECUTION_ID = "typ3d0exec12"


def compiled(root: str = ROOT, **settings):
    return compile_case("sagemaker", typed_outputs.build(), golden=True,
                        settings={"artifact_root": root, **settings}).bundle


def listed(definition: dict) -> dict[str, list[dict]]:
    """Each step's processing outputs."""
    return {step["Name"]: step["Arguments"].get("ProcessingOutputConfig", {}).get("Outputs", [])
            for step in definition["Steps"]}


@pytest.mark.parametrize("step_type", ["processing", "training"])
def test_golden(request, step_type):
    files = dict(compiled(step_type=step_type).files)
    golden = GOLDEN if step_type == "processing" else GOLDEN.with_name("typed_outputs_training")
    if request.config.getoption("--update-goldens"):
        golden.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (golden / name).write_text(text, encoding="utf-8", newline="\n")
    assert {p.name: p.read_text(encoding="utf-8") for p in golden.iterdir()} == files


def test_each_typed_output_is_a_processing_output_at_the_step_folder_and_the_schema_accepts_it():
    bundle = compiled()
    definition = json.loads(bundle[bundle.main_file])
    assert errors(definition) == []
    assert errors(_without_known_gaps(definition), patched=False) == []  # the raw schema has no Std:Join
    assert unresolved_references(definition) == []
    outputs = listed(definition)
    assert [o["OutputName"] for o in outputs["train"]] == ["output", "model", "scores"]
    assert [o["OutputName"] for o in outputs["prepare"]] == ["table"]  # `count` is an int: not listed
    for step, items in outputs.items():
        for index, item in enumerate(items):
            s3 = item["S3Output"]
            assert evaluate(s3["S3Uri"], {}, EXECUTION_ID) == (
                f"{ROOT}/typed_outputs/runs/{EXECUTION_ID}/{step}/outputs/{item['OutputName']}")
            assert (s3["LocalPath"], s3["S3UploadMode"]) == (f"{LOCAL_PATH}/{index}", "EndOfJob")
    assert bundle.warnings == ()


def test_where_studio_cannot_list_them_the_outputs_are_stored_as_usual_and_the_compile_says_so():
    why = "is not in S3"
    bundle = compiled("gs://bucket/artifacts")
    definition = json.loads(bundle[bundle.main_file])
    assert all(items == [] for items in listed(definition).values())
    assert sorted(n.step for n in bundle.warnings) == ["evaluate", "prepare", "train"]
    assert all(why in n.message and "SageMaker Studio does not list" in n.message for n in bundle.warnings)


def test_more_typed_outputs_than_a_job_takes_are_not_listed_and_the_compile_says_so():
    from pipecast import Artifact, Output, pipeline, step

    names = [f"out{i}" for i in range(MAX_OUTPUTS + 1)]
    source = "def many(" + ", ".join(f"{n}: Output[Artifact]" for n in names) + "):\n"
    source += "".join(f"    {n}.path.write_text('x')\n" for n in names)
    space: dict = {"Output": Output, "Artifact": Artifact}
    exec(source, space)  # a step with eleven output parameters, written out
    many = step(space["many"])

    @pipeline(name="many_outputs")
    def many_outputs():
        many()

    bundle = compile_case("sagemaker", many_outputs.build(), golden=True, settings={"artifact_root": ROOT}).bundle
    assert "ProcessingOutputConfig" not in bundle[bundle.main_file]
    (notice,) = bundle.warnings
    assert f"lists at most {MAX_OUTPUTS} more" in notice.message


def test_replay_on_moto_s3_finds_each_listed_output_where_the_runtime_wrote_it(tmp_path, moto_s3):
    fs = moto_s3.fs
    fs.mkdir("typed-sm")
    root = "s3://typed-sm/artifacts"
    bundle = compiled(root)
    text = bundle[bundle.main_file]
    parameters = [{"Name": "rows", "Value": "4"}]
    # The runtime never writes into a listed output's LocalPath (nothing in any command names it) ...
    assert not any(LOCAL_PATH in word for _, argv, env in commands(text, parameters, EXECUTION_ID)
                   for word in [*argv, *env.values()])
    before = set(fs.find("typed-sm"))
    assert replay(text, parameters, EXECUTION_ID) == ["prepare", "train", "evaluate"]
    written = set(fs.find("typed-sm")) - before
    # ... so the EndOfJob upload of each (platform-created, empty) LocalPath adds nothing to S3.
    for step, items in listed(json.loads(text)).items():
        for item in items:
            local = tmp_path / "job" / step / item["S3Output"]["LocalPath"].lstrip("/")
            local.mkdir(parents=True)
            uri = evaluate(item["S3Output"]["S3Uri"], {"rows": "4"}, EXECUTION_ID)
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                fs.put_file(str(path), f"{uri}/{path.relative_to(local).as_posix()}")
            stored = load_outputs(root, "typed_outputs", EXECUTION_ID, step, names={item["OutputName"]})
            record = stored[item["OutputName"]]
            assert record.uri and record.uri.startswith(uri), (record.uri, uri)
            under = {p for p in written if p.startswith(uri.removeprefix("s3://"))}
            assert under and all(p.startswith(record.uri.removeprefix("s3://")) for p in under), (under, record.uri)
    assert set(fs.find("typed-sm")) - before == written
    model = load_outputs(root, "typed_outputs", EXECUTION_ID, "train", names={"model"})["model"]
    assert json.loads(fs.cat_file(f"{model.uri}/config.json")) == {"rows": 4}


# Training steps (a training job has no processing outputs: SageMaker uploads /opt/ml/model and /opt/ml/output/data).

def training_words(definition: dict) -> dict[str, list[str]]:
    """Each training step's runtime options for its typed outputs."""
    words = {}
    for step in definition["Steps"]:
        argv = step["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
        words[step["Name"]] = [w for i, w in enumerate(argv) if w.startswith("--sagemaker-")
                               or argv[i - 1].startswith("--sagemaker-")]
    return words


def test_a_training_step_copies_its_model_and_its_other_typed_outputs_where_sagemaker_uploads_them():
    bundle = compiled(step_type="training")
    definition = json.loads(bundle[bundle.main_file])
    assert errors(definition) == [] and unresolved_references(definition) == []
    assert bundle.warnings == ()
    assert training_words(definition) == {
        "prepare": ["--sagemaker-output-data", "table"],
        "train": ["--sagemaker-model", "model", "--sagemaker-output-data", "output", "--sagemaker-output-data",
                  "scores"],
        "evaluate": ["--sagemaker-output-data", "output"]}
    assert all("ProcessingOutputConfig" not in step["Arguments"] for step in definition["Steps"])


def test_a_training_step_with_two_models_puts_the_second_in_its_output_data_and_the_compile_says_so():
    from pipecast import Model, Output, pipeline, step

    space: dict = {"Output": Output, "Model": Model}
    exec("def two_models(first: Output[Model], second: Output[Model]):\n    pass\n", space)  # at module level
    two_models = step(space["two_models"])

    @pipeline(name="two_models")
    def two_models_pipeline():
        two_models()

    bundle = compile_case("sagemaker", two_models_pipeline.build(), golden=True,
                          settings={"artifact_root": ROOT, "step_type": "training"}).bundle
    assert training_words(json.loads(bundle[bundle.main_file])) == {
        "two_models": ["--sagemaker-model", "first", "--sagemaker-output-data", "second"]}
    (notice,) = bundle.warnings
    assert notice.step == "two_models" and "'second' go to its output data" in notice.message


def _archive(tmp_path: Path, folder: Path) -> bytes:
    """``folder`` as SageMaker uploads it: a gzipped tar of its contents."""
    import tarfile

    target = tmp_path / f"archive-{len(list(tmp_path.glob('archive-*')))}.tar.gz"
    with tarfile.open(target, "w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            archive.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return target.read_bytes()


def _members(data: bytes) -> dict[str, str]:
    """The sha256 of each file in a .tar.gz."""
    import hashlib
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {m.name: hashlib.sha256(archive.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
                for m in archive.getmembers() if m.isfile()}


def _expected(record: dict, prefix: str = "") -> dict[str, str]:
    """Where each file of a stored output lands in the job's folder, with its recorded sha256."""
    if record.get("materializer") == "path":
        return {prefix + rel: entry["sha256"] for rel, entry in record["manifest"].items()}
    return {prefix + record["file"].rsplit("/", 1)[1]: record["sha256"]}


def test_replay_of_training_steps_on_moto_gives_each_typed_output_to_sagemakers_archives(
        tmp_path, moto_s3):
    """Two executions (the second all from pipecast's cache): each training job's model.tar.gz, at the
    ``ModelArtifacts.S3ModelArtifacts`` moto's DescribeTrainingJob gives, holds the step's Model output, and its
    output.tar.gz the other typed outputs, byte for byte (sha256) as the runtime recorded them."""
    import boto3

    from tests.helpers.replay import run_task

    fs = moto_s3.fs
    fs.mkdir("typed-train")
    root = "s3://typed-train/artifacts"
    bundle = compiled(root, step_type="training")
    text = bundle[bundle.main_file]
    steps = {s["Name"]: s for s in json.loads(text)["Steps"]}
    sagemaker = boto3.client("sagemaker")
    parameters = [{"Name": "rows", "Value": "4"}]
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    archives: dict[str, dict[str, dict[str, str]]] = {}
    for execution in ("trainexec001", "trainexec002"):
        for name, argv, env in commands(text, parameters, execution):
            job = tmp_path / execution / name  # the job's /opt/ml, which the platform creates
            (job / "model").mkdir(parents=True)
            (job / "output" / "data").mkdir(parents=True)
            run_task(argv, {**env, "PATH": path, "SM_MODEL_DIR": str(job / "model"),
                            "SM_OUTPUT_DATA_DIR": str(job / "output" / "data")})
            # The job ends: SageMaker archives both folders under S3OutputPath/<job name>/output/.
            arguments = steps[name]["Arguments"]
            job_name = f"pipelines-{execution}-{name}"
            sagemaker.create_training_job(
                TrainingJobName=job_name, RoleArn=arguments["RoleArn"],
                AlgorithmSpecification=arguments["AlgorithmSpecification"], ResourceConfig=arguments["ResourceConfig"],
                OutputDataConfig=arguments["OutputDataConfig"], StoppingCondition={"MaxRuntimeInSeconds": 3600},
                Environment={k: evaluate(v, {"rows": "4"}, execution) for k, v in arguments["Environment"].items()})
            model_uri = sagemaker.describe_training_job(TrainingJobName=job_name)["ModelArtifacts"]["S3ModelArtifacts"]
            assert model_uri == f"{arguments['OutputDataConfig']['S3OutputPath']}/{job_name}/output/model.tar.gz"
            fs.pipe_file(model_uri, _archive(tmp_path, job / "model"))
            fs.pipe_file(model_uri.replace("/model.tar.gz", "/output.tar.gz"), _archive(tmp_path, job / "output/data"))
            archives.setdefault(execution, {})[name] = {
                "model": _members(fs.cat_file(model_uri)),
                "data": _members(fs.cat_file(model_uri.replace("/model.tar.gz", "/output.tar.gz")))}
    store = ArtifactStore(root)
    for execution in archives:
        for name in steps:
            meta = store.read_json(f"{store.step_dir('typed_outputs', execution, name)}/meta.json")
            assert meta["cached"] is (execution == "trainexec002"), (execution, name)
            records = meta["outputs"]
            model = _expected(records["model"]) if "model" in records and name == "train" else {}
            data = {k: v for output, record in records.items() if record.get("artifact") and output != "model"
                    for k, v in _expected(record, f"{output}/").items()}
            assert archives[execution][name] == {"model": model, "data": data}, (execution, name)
    assert archives["trainexec001"]["train"]["model"] == {
        "config.json": hashlib.sha256(json.dumps({"rows": 4}).encode()).hexdigest()}
    assert set(archives["trainexec001"]["train"]["data"]) == {"output/output.json", "scores/scores.json"}
    assert archives["trainexec001"] == archives["trainexec002"]


def test_the_training_folders_are_sagemakers_and_a_missing_or_changed_output_fails_the_job(tmp_path, monkeypatch):
    from pipecast.errors import ArtifactError, PipecastError
    from pipecast.runtime import publish_sagemaker
    from pipecast.runtime.executor import StepInvocation, execute_step

    # The platform's folders ("How Amazon SageMaker AI Processes Training Output"), used when the toolkit's
    # SM_MODEL_DIR / SM_OUTPUT_DATA_DIR are not set (the runtime's launcher is not the toolkit).
    assert (publish_sagemaker.MODEL_DIR, publish_sagemaker.OUTPUT_DATA_DIR) == ("/opt/ml/model", "/opt/ml/output/data")
    root = f"file://{tmp_path / 'store'}"
    invocation = StepInvocation("tests.targets.kfp.typed_cases:prepare", "typed_outputs", "prepare", "r1", root,
                                values={"rows": 2}, outputs=("table", "count"))
    execute_step(invocation)
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(PipecastError, match="recorded no output 'nope'"):
        publish_sagemaker.place_training_outputs(invocation, None, ["nope"])
    # Several instances: only the first host copies (SageMaker merges every host's folder into one archive).
    config = tmp_path / "config"
    config.mkdir()
    monkeypatch.setenv("SM_INPUT_CONFIG_DIR", str(config))
    for host, placed in (("algo-2", False), ("algo-1", True)):
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": ["algo-2", "algo-1"]}))
        publish_sagemaker.place_training_outputs(invocation, None, ["table"])
        assert (tmp_path / "data" / "table" / "table.json").exists() is placed, host
    stored = ArtifactStore(root)
    table = f"{stored.step_dir('typed_outputs', 'r1', 'prepare')}/outputs/table.json"
    Path(table).write_text("{}")
    with pytest.raises(ArtifactError, match="no longer matches the sha256"):
        publish_sagemaker.place_training_outputs(invocation, None, ["table"])
