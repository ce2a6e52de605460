"""The SageMaker escape hatch (``processor_args``, ``estimator_args``): lowered where the CreateProcessingJob /
CreateTrainingJob request holds each argument, validated against AWS's published pipeline-definition schema and,
field by field, against botocore's SageMaker API model (patterns, lengths, bounds); refusals are one clear error."""

from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import botocore
import pytest

from pipecast.errors import ValidationError
from pipecast.targets.sagemaker import job_args
from tests.helpers.cases import compile_case, read_tree, write_tree
from tests.targets.sagemaker import hatch_pipelines, schema
from tests.targets.sagemaker.support import definition

DATA = Path(__file__).parent / "data" / "job_args"
NETWORK = {"subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"], "security_group_ids": ["sg-0123456789abcdef0"]}
PROCESSOR = {"network_config": {**NETWORK, "enable_network_isolation": False,
                                "encrypt_inter_container_traffic": True},
             "volume_kms_key": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
             "tags": {"team": "ml", "cost-center": "42"}}
ESTIMATOR = {**NETWORK, "encrypt_inter_container_traffic": True, "volume_kms_key": "alias/ml-volumes",
             "output_kms_key": "alias/ml-models", "tags": [{"Key": "team", "Value": "ml"}],
             "use_spot_instances": True, "max_wait": 172800, "checkpoint_s3_uri": "s3://acme-pipecast/checkpoints"}
VARIANTS = {
    "processing": ("quickstart", {"processor_args": PROCESSOR}),
    "training": ("quickstart", {"step_type": "training", "estimator_args": ESTIMATOR}),
    "per_step": (hatch_pipelines.job_args, {}),
}


@lru_cache(maxsize=1)
def _model() -> dict[str, Any]:
    path = Path(botocore.__file__).parent / "data" / "sagemaker" / "2017-07-24" / "service-2.json.gz"
    return dict(json.loads(gzip.decompress(path.read_bytes()))["shapes"])


def botocore_errors(value: Any, shape_name: str, path: str = "") -> list[str]:
    """Where ``value`` breaks botocore's shape (members, types, patterns, lengths, bounds); pipeline functions
    (``Get``/``Std:Join``, which SageMaker substitutes) are skipped."""
    shape = _model()[shape_name]
    if isinstance(value, dict) and ("Get" in value or "Std:Join" in value):
        return []
    kind = shape["type"]
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        errors = [f"{path}.{key}: not a member of {shape_name}" for key in value if key not in shape["members"]]
        errors += [f"{path}: lacks required {key}" for key in shape.get("required", []) if key not in value]
        return errors + [e for key, item in value.items() if key in shape["members"]
                         for e in botocore_errors(item, shape["members"][key]["shape"], f"{path}.{key}")]
    if kind == "list":
        if not isinstance(value, list) or not shape.get("min", 0) <= len(value) <= shape.get("max", 10**9):
            return [f"{path}: not a list of {shape.get('min', 0)}-{shape.get('max')} items"]
        return [e for i, item in enumerate(value) for e in botocore_errors(item, shape["member"]["shape"],
                                                                          f"{path}[{i}]")]
    if kind == "map":
        return [e for key, item in value.items() for e in botocore_errors(item, shape["value"]["shape"],
                                                                         f"{path}.{key}")]
    if kind == "string":
        ok = isinstance(value, str) and shape.get("min", 0) <= len(value) <= shape.get("max", 10**9)
        pattern = shape.get("pattern")
        if ok and pattern:  # botocore's \p{L}-style classes, as Python's re writes them
            python = pattern.replace(r"\p{L}\p{Z}\p{N}", r"\w\s").replace(r"\p{L}", r"\w")
            ok = re.fullmatch(python, value) is not None
        bounds = f"{shape.get('min')}-{shape.get('max')}"
        return [] if ok else [f"{path}: {value!r} breaks {shape_name} ({pattern}, {bounds})"]
    if kind == "integer":
        ok = isinstance(value, int) and shape.get("min", -10**18) <= value <= shape.get("max", 10**18)
        return [] if ok else [f"{path}: {value!r} out of {shape_name}'s bounds"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: not a boolean"]
    return []


def _request_shape(step: dict[str, Any]) -> str:
    return "CreateProcessingJobRequest" if step["Type"] == "Processing" else "CreateTrainingJobRequest"


def _compiled(name: str) -> dict[str, Any]:
    source, settings = VARIANTS[name]
    return definition(compile_case("sagemaker", source, golden=True, settings=settings).bundle)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_definitions_match_their_golden_and_validate(name, request):
    document = _compiled(name)
    folder = DATA / name
    if request.config.getoption("--update-goldens"):
        write_tree(folder, {"pipeline.json": json.dumps(document, indent=2) + "\n"})
    assert read_tree(folder) == {"pipeline.json": json.dumps(document, indent=2) + "\n"}
    assert schema.errors(document) == []  # AWS's published pipeline-definition schema
    assert schema.unresolved_references(document) == []
    for step in document["Steps"]:  # each step's Arguments are a valid request body, name aside
        assert botocore_errors(step["Arguments"], _request_shape(step)) == [
            f": lacks required {'ProcessingJobName' if step['Type'] == 'Processing' else 'TrainingJobName'}"]


def test_each_argument_lands_where_the_job_request_holds_it():
    (processing,) = {s["Name"]: s["Arguments"] for s in _compiled("processing")["Steps"] if s["Name"] == "split"}\
        .values()
    assert processing["NetworkConfig"] == {"EnableInterContainerTrafficEncryption": True,
                                           "EnableNetworkIsolation": False,
                                           "VpcConfig": {"SecurityGroupIds": NETWORK["security_group_ids"],
                                                         "Subnets": NETWORK["subnets"]}}
    assert processing["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == PROCESSOR["volume_kms_key"]
    assert processing["Tags"] == [{"Key": "team", "Value": "ml"}, {"Key": "cost-center", "Value": "42"}]
    training = _compiled("training")["Steps"][0]["Arguments"]
    assert training["VpcConfig"] == processing["NetworkConfig"]["VpcConfig"]
    assert training["EnableInterContainerTrafficEncryption"] is True
    assert training["ResourceConfig"]["VolumeKmsKeyId"] == "alias/ml-volumes"
    assert training["OutputDataConfig"]["KmsKeyId"] == "alias/ml-models"
    assert training["EnableManagedSpotTraining"] is True and training["CheckpointConfig"] == {
        "S3Uri": "s3://acme-pipecast/checkpoints"}
    assert training["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400, "MaxWaitTimeInSeconds": 172800}


def test_a_steps_own_arguments_replace_the_pipelines_for_its_kind():
    steps = {s["Name"]: s["Arguments"] for s in _compiled("per_step")["Steps"]}
    assert steps["prepare"]["Tags"] == [{"Key": "stage", "Value": "prep"}]  # its own replace the pipeline's
    assert steps["prepare"]["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "alias/step-key"
    fit = steps["fit"]
    assert "Tags" not in fit  # the pipeline's processor_args are for processing steps
    assert fit["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}


def _problems(source: Any = "quickstart", **settings: Any) -> list[Any]:
    with pytest.raises(ValidationError) as info:
        compile_case("sagemaker", source, golden=True, settings=settings)
    return list(info.value.problems)


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("processor_args", {"env": {"A": "1"}}, "sets 'env', which pipecast cannot pass (use @step(env=...))"),
    ("processor_args", {"max_runtime_in_seconds": 60}, "use @step(timeout=...)"),
    ("processor_args", {"output_kms_key": "alias/x"}, "a processing step has no output SageMaker uploads"),
    ("processor_args", {"subnets": ["subnet-1"]}, "put it in network_config"),
    ("processor_args", {"volume_kms": "alias/x"}, "'volume_kms', which is not a sagemaker Processor argument"),
    ("processor_args", {"network_config": {"subnets": ["subnet-1"]}}, "a SageMaker VpcConfig needs both"),
    ("processor_args", {"network_config": {**NETWORK, "enable_network_isolation": True}}, "cannot reach S3"),
    ("processor_args", {"network_config": {"subnets": ["a b"], "security_group_ids": ["sg-1"]}},
     "are not subnet or security group ids"),
    ("processor_args", {"network_config": {"subnets": [f"subnet-{i}" for i in range(17)],
                                           "security_group_ids": ["sg-1"]}}, "SageMaker takes at most 16"),
    ("processor_args", {"volume_kms_key": "key with spaces"}, "is not a KMS key id, ARN or alias"),
    ("processor_args", {"tags": {"aws:owner": "x"}}, "not starting with aws:"),
    ("processor_args", {"tags": {"team": "m" * 257}}, "at most 256"),
    ("processor_args", {"tags": ["team"]}, "neither a mapping of text nor a list"),
    ("estimator_args", {"max_run": 60}, "use @step(timeout=...)"),
    ("estimator_args", {"output_path": "s3://x/y"}, "pipecast sets the training output path"),
    ("estimator_args", {"network_config": {}}, "pass subnets, security_group_ids"),
    ("estimator_args", {"use_spot_instances": True}, "without 'max_wait'"),
    ("estimator_args", {"max_wait": 3600}, "without 'use_spot_instances' true"),
    ("estimator_args", {"checkpoint_s3_uri": "/tmp/x"}, "is not s3://"),
])
def test_a_key_pipecast_owns_or_sagemaker_lacks_is_one_clear_error(setting, value, expected):
    settings = {setting: value, **({"step_type": "training"} if setting == "estimator_args" else {})}
    (problem,) = _problems(**settings)
    assert f"'{setting}'" in problem.message and expected in problem.message, problem.message
    assert problem.fix and f"{setting}=" in problem.fix


def test_spot_max_wait_below_the_runtime_is_refused_naming_the_step():
    problems = _problems("ml_training", step_type="training",
                         estimator_args={"use_spot_instances": True, "max_wait": 60})
    assert problems and all("'max_wait' 60 is below the step's MaxRuntimeInSeconds" in p.message for p in problems)
    assert all(p.step for p in problems)


def test_arguments_for_the_other_job_type_are_refused():
    (problem,) = _problems(hatch_pipelines.wrong_kind_pipeline)
    assert problem.step == "wrong_kind" and "sets estimator_args, but it runs a processing job" in problem.message
    (problem,) = _problems(estimator_args={"output_kms_key": "alias/x"})  # the pipeline's, and no training step
    assert "'estimator_args' applies to training steps, and no step of the pipeline is one" in problem.message


def test_the_limits_are_botocores():
    shapes = _model()
    assert shapes["Subnets"]["max"] == 16 and shapes["VpcSecurityGroupIds"]["max"] == 5
    assert shapes["SubnetId"]["pattern"] == job_args._VPC_ID.pattern.replace("{1,32}", "+")
    assert shapes["SubnetId"]["max"] == 32 and shapes["SecurityGroupId"]["max"] == 32
    assert shapes["KmsKeyId"]["max"] == 2048 and shapes["KmsKeyId"]["pattern"] == "[a-zA-Z0-9:/_-]*"
    assert shapes["TagList"]["max"] == job_args.MAX_TAGS
    assert (shapes["TagKey"]["min"], shapes["TagKey"]["max"], shapes["TagValue"]["max"]) == (1, 128, 256)
    assert shapes["MaxWaitTimeInSeconds"]["min"] == 1


def test_the_botocore_check_finds_what_sagemaker_would_refuse():
    wrong = {"VpcConfig": {"Subnets": ["a b"]}, "Tags": [{"Key": "k" * 129, "Value": "v"}], "Nope": 1}
    errors = "\n".join(botocore_errors(wrong, "CreateTrainingJobRequest"))
    for expected in (".Nope: not a member", ": lacks required RoleArn", ".VpcConfig: lacks required SecurityGroupIds",
                     ".VpcConfig.Subnets[0]: 'a b' breaks SubnetId", ".Tags[0].Key: 'kkk"):
        assert expected in errors, errors


def test_pipeline_tags_go_on_the_create_pipeline_request():
    bundle = compile_case("sagemaker", "quickstart", golden=True,
                          settings={"pipeline_tags": {"team": "ml", "example": "yes"}}).bundle
    request = json.loads(bundle["quickstart.create-pipeline.json"])
    assert sorted(request["Tags"], key=str) == [{"Key": "example", "Value": "yes"}, {"Key": "team", "Value": "ml"}]
    assert botocore_errors(request["Tags"], "TagList") == []
    (problem,) = _problems(pipeline_tags={"aws:cost": "1"})
    assert "'pipeline_tags'" in problem.message and "not starting with aws:" in problem.message


def test_the_cli_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pipecast.cli import main
    from tests.helpers.cases import ROOT

    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", "examples/quickstart.py", "-t", "sagemaker", "--out", str(out),
                                       "--set", "role_arn=arn:aws:iam::123456789012:role/x", "--set", "bucket=acme-b",
                                       "--set", 'processor_args={"env": {"A": "1"}}'])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "sets 'env', which pipecast cannot pass" in result.output and not out.exists()
