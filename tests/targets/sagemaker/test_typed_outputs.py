"""Issue 17: typed outputs as processing outputs, so SageMaker Studio lists them with the S3 URI pipecast writes.

The golden of KFP's typed pipeline (tests/targets/kfp/typed_cases.py) for sagemaker, AWS's definition schema, the
warnings where Studio cannot list them, and a replay against moto's S3: moto's SageMaker runs no job, so the
replay runs each step's command as the job would and then does what CreateProcessingJob documents for an
``S3Output`` with ``S3UploadMode: EndOfJob`` (``ProcessingS3Output``: the platform creates ``LocalPath``, and at the
job's end uploads "its contents" to ``S3Uri``). The listed URI must hold what the runtime wrote, and the upload of
the (empty) local folder must add nothing. That the sagemaker SDK builds the same outputs is in test_sdk.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecast.runtime.executor import load_outputs
from pipecast.targets.sagemaker.outputs import LOCAL_PATH, MAX_OUTPUTS
from tests.helpers.cases import compile_case
from tests.targets.kfp.typed_cases import typed_outputs
from tests.targets.sagemaker.replay import commands, evaluate, replay
from tests.targets.sagemaker.schema import errors, unresolved_references
from tests.targets.sagemaker.test_schema import _without_known_gaps
from tests.unit.test_paths import moto_s3  # noqa: F401  (the module's moto server)

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


def test_golden(request):
    files = dict(compiled().files)
    if request.config.getoption("--update-goldens"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (GOLDEN / name).write_text(text, encoding="utf-8", newline="\n")
    assert {p.name: p.read_text(encoding="utf-8") for p in GOLDEN.iterdir()} == files


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


@pytest.mark.parametrize("settings, why", [
    ({"step_type": "training"}, "a training job has no processing outputs"),
    ({"root": "gs://bucket/artifacts"}, "is not in S3"),
])
def test_where_studio_cannot_list_them_the_outputs_are_stored_as_usual_and_the_compile_says_so(settings, why):
    bundle = compiled(**({"root": settings.pop("root")} if "root" in settings else {}), **settings)
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


def test_replay_on_moto_s3_finds_each_listed_output_where_the_runtime_wrote_it(tmp_path, moto_s3, monkeypatch):  # noqa: F811
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": moto_s3, "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
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
