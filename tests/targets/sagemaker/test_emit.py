"""The sagemaker emitter: settings, lowering rules, limits and values that must stay data."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest

from pipecast.compiler import ir
from pipecast.errors import UnsupportedFeatureError
from pipecast.runtime.command import parse_command
from pipecast.targets.base import Feature
from pipecast.targets.registry import get_target
from pipecast.targets.sagemaker.instances import choose_instance
from pipecast.targets.sagemaker.schedule import eventbridge_cron
from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import case, compile_case
from tests.targets.sagemaker.replay import evaluate
from tests.targets.sagemaker.support import SETTINGS, definition


def _setting(key: str, value: Any) -> ir.Setting:
    return ir.Setting(target="sagemaker", key=key, value_json=json.dumps(value))


def _changed(name: str, step: str | None = None, **changes: Any) -> ir.Pipeline:
    """Golden case ``name`` with ``changes`` applied to one step (or to the pipeline)."""
    pipeline = case(name).build()
    if step is None:
        return dataclasses.replace(pipeline, **changes)
    steps = tuple(dataclasses.replace(s, **changes) if s.name == step else s for s in pipeline.steps)
    return dataclasses.replace(pipeline, steps=steps)


def _step(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in document["Steps"] if s["Name"] == name)


def _problems(pipeline: ir.Pipeline, **settings: Any) -> str:
    with pytest.raises(UnsupportedFeatureError) as raised:
        compile_case("sagemaker", pipeline, golden=True, settings=settings)
    return str(raised.value)


def test_importing_the_target_does_not_import_boto3():
    code = "import sys, pipecast.targets.sagemaker; print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_every_feature_is_declared():
    target = get_target("sagemaker")
    assert set(target.capabilities) == set(Feature)
    assert target.extra == "sagemaker" and target.sdk_modules == ("boto3",)


def test_hostile_values_come_back_verbatim():
    bundle = compile_case("sagemaker", "hostile", golden=True).bundle
    document = definition(bundle)
    defaults = {p["Name"]: p["DefaultValue"] for p in document["Parameters"]}
    assert defaults["text"] == EVIL
    assert json.loads(defaults["data"]) == {"k'\"{{x}}": "${{ y }}\n$(z)"}
    assert json.loads(bundle["hostile.create-pipeline.json"])["PipelineDescription"] == EVIL
    echo_text = _step(document, "echo_text")["Arguments"]
    assert echo_text["Environment"] == {"EVIL_ENV": EVIL}
    argv = [evaluate(a, {"text": "T", "data": "{}"}, "x") for a in echo_text["AppSpecification"]["ContainerArguments"]]
    invocation = parse_command(argv)[0]
    assert invocation.values == {"text": "T", "extra": EVIL}
    nested = _step(document, "echo_data")["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert parse_command([evaluate(a, {}, "x") for a in nested])[0].values["data"] == {
        "nested": ["{{ 1 }}", "$(rm -rf /)", "${{ secrets.X }}"], "q": "'\""}


def test_parameters_are_typed_and_dicts_travel_as_json_strings():
    document = definition(compile_case("sagemaker", _changed("full_options"), golden=True,
                                       on_unsupported="warn").bundle)
    assert [(p["Name"], p["Type"], p["DefaultValue"]) for p in document["Parameters"]] == [
        ("source", "String", "s3://acme/data.csv"), ("limit", "Integer", 100), ("lr", "Float", 0.01),
        ("epochs", "Integer", 3), ("options", "String", '{"optimizer":"sgd"}'), ("dry_run", "Boolean", True),
        ("pipecast_logical_time", "String", "")]  # the pipeline has a schedule: its runs' time (test_logical_time)
    floats = definition(compile_case("sagemaker", "ml_training", golden=True).bundle)["Parameters"]
    assert next(p for p in floats if p["Name"] == "lr_large")["DefaultValue"] == 1.0


def test_run_id_and_parameters_are_sagemaker_functions():
    quickstart = definition(compile_case("sagemaker", "quickstart", golden=True).bundle)
    arguments = _step(quickstart, "make_numbers")["Arguments"]["AppSpecification"]
    args = arguments["ContainerArguments"]
    assert args[args.index("--run-id") + 1] == {"Get": "Execution.PipelineExecutionId"}
    assert {"Std:Join": {"On": "", "Values": ["n=int:", {"Get": "Parameters.n"}]}} in args
    assert arguments["ContainerEntrypoint"] == ["python", "-m", "pipecast.runtime"]


def test_required_settings_are_errors():
    message = _problems(case("quickstart").build(), role_arn=None, image=None, bucket=None)
    assert "no role_arn is set" in message
    assert "step 'make_numbers'" in message and "no container image" in message
    assert "artifact root" in message
    assert "is not an IAM role ARN" in _problems(case("quickstart").build(), role_arn="admin")


def test_bucket_gives_the_default_artifact_root_and_the_pipeline_root_wins():
    quickstart = definition(compile_case("sagemaker", "quickstart", golden=True).bundle)
    args = _step(quickstart, "split")["Arguments"]["AppSpecification"]
    assert "s3://acme-pipecast/pipecast" in args["ContainerArguments"]
    document = definition(compile_case("sagemaker", "quickstart", golden=True,
                                       settings={"artifact_root": "s3://other/root"}).bundle)
    assert "s3://other/root" in _step(document, "split")["Arguments"]["AppSpecification"]["ContainerArguments"]


def test_env_values_longer_than_256_characters_are_errors_in_processing_jobs():
    pipeline = _changed("quickstart", "split", env=(("BIG", "x" * 257),))
    assert "environment variable 'BIG' is 257 characters" in _problems(pipeline)
    trained = compile_case("sagemaker", pipeline, golden=True,
                           settings={"step_type": "training"}).bundle  # training jobs allow 512
    assert _step(definition(trained), "split")["Arguments"]["Environment"]["BIG"] == "x" * 257


def test_long_constants_and_long_defaults_hit_the_argument_limit():
    binding = ir.Binding(input="numbers", kind=ir.BindingKind.CONSTANT, value_json=json.dumps(["y" * 300]))
    assert "SageMaker allows 256 per container argument" in _problems(_changed("quickstart", "split",
                                                                              bindings=(binding,)))
    params = tuple(dataclasses.replace(p, default_json=json.dumps("z" * 300)) if p.name == "label" else p
                   for p in case("quickstart").build().parameters)
    assert "with its default values" in _problems(_changed("quickstart", parameters=params))


def test_instance_types_from_resources():
    def chosen(job: str = "processing", **resources: Any) -> str | None:
        instance, _ = choose_instance(ir.Resources(**resources), job)
        return instance.name if instance else None

    assert chosen() == "ml.m5.large"
    assert chosen(cpu="3", memory="4Gi") == "ml.m5.xlarge"
    assert chosen(memory="100Gi") == "ml.m5.12xlarge"
    assert chosen(gpu=1) == "ml.g4dn.xlarge"
    assert chosen(gpu=1, gpu_type="nvidia-tesla-v100") == "ml.p3.2xlarge"
    assert chosen(gpu=4, gpu_type="nvidia-a10g") == "ml.g5.12xlarge"
    assert chosen(gpu=1, gpu_type="nvidia-l4", cpu=10) == "ml.g6.4xlarge"
    assert chosen(gpu=8, gpu_type="nvidia-tesla-a100") is None
    assert chosen("training", gpu=8, gpu_type="nvidia-tesla-a100") == "ml.p4d.24xlarge"
    assert chosen(gpu=1, gpu_type="tpu-v4") is None
    assert chosen(cpu="200") is None


def test_instance_type_settings_and_unmappable_resources():
    big = ir.Resources(gpu=1, gpu_type="tpu-v4")
    assert "gpu_type 'tpu-v4' is not in pipecast's SageMaker instance table" in _problems(
        _changed("quickstart", "split", resources=big))
    own = _changed("quickstart", "split", resources=big, settings=(_setting("instance_type", "ml.c5.xlarge"),))
    document = definition(compile_case("sagemaker", own, golden=True,
                                       settings={"instance_type": "ml.m5.xlarge"}).bundle)
    assert _step(document, "split")["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceType"] == \
        "ml.c5.xlarge"
    assert _step(document, "total")["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceType"] == \
        "ml.m5.xlarge"
    assert "is not a SageMaker instance type" in _problems(case("quickstart").build(), instance_type="m5.large")
    counted = definition(compile_case("sagemaker", "quickstart", golden=True,
                                      settings={"instance_count": 2, "volume_size_gb": 100}).bundle)
    assert _step(counted, "split")["Arguments"]["ProcessingResources"]["ClusterConfig"] == {
        "InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 100}
    assert "setting 'instance_count' (in --set): must be an integer from 1 to 10000, got 0" in _problems(
        case("quickstart").build(), instance_count=0)
    assert "SageMaker processing jobs take at most 100 instances" in _problems(case("quickstart").build(),
                                                                              instance_count=101)
    trained = definition(compile_case("sagemaker", "quickstart", golden=True,
                                      settings={"instance_count": 101, "step_type": "training"}).bundle)
    assert _step(trained, "split")["Arguments"]["ResourceConfig"]["InstanceCount"] == 101


def test_step_settings_are_checked():
    wrong = _changed("quickstart", "split", settings=(_setting("role_arn", "x"), _setting("colour", "red")))
    message = _problems(wrong)
    assert "setting 'role_arn' applies to the whole pipeline" in message
    assert "unknown setting 'colour'" in message
    assert "setting 'step_type' (in --set): must be one of ['processing', 'training'], got 'lambda'" in _problems(
        case("quickstart").build(), step_type="lambda")


def test_one_training_step_among_processing_steps():
    pipeline = _changed("ml_training", "train_model", settings=(_setting("step_type", "training"),))
    document = definition(compile_case("sagemaker", pipeline, golden=True).bundle)
    train = _step(document, "train_model")
    assert train["Type"] == "Training" and _step(document, "train_model_2")["Type"] == "Processing"
    assert train["Arguments"]["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert train["Arguments"]["OutputDataConfig"]["S3OutputPath"].startswith("s3://acme-pipecast/pipecast/")
    assert train["Arguments"]["StoppingCondition"] == {"MaxRuntimeInSeconds": 2 * 1800 + 10}


def test_a_training_job_gets_the_run_id_and_parameters_in_its_environment():
    """A training job takes pipeline functions in Environment only: its command reads them through the launcher."""
    from pipecast.targets.sagemaker.expressions import LAUNCHER

    train = _step(definition(compile_case("sagemaker", "ml_training", golden=True,
                                          settings={"step_type": "training"}).bundle), "make_dataset")
    spec = train["Arguments"]["AlgorithmSpecification"]
    assert spec["ContainerEntrypoint"] == ["python", "-c", LAUNCHER]
    assert all(isinstance(word, str) for word in spec["ContainerArguments"])
    words = spec["ContainerArguments"]
    assert words[:4] == ["python", "-m", "pipecast.runtime", "run"]
    assert words[words.index("--run-id") + 1] == "@{PIPECAST_RUN_ID}"
    assert "samples=int:@{PIPECAST_PARAM_samples}" in words
    assert train["Arguments"]["Environment"] == {"PIPECAST_RUN_ID": {"Get": "Execution.PipelineExecutionId"},
                                                 "PIPECAST_PARAM_samples": {"Get": "Parameters.samples"},
                                                 "PIPECAST_PARAM_seed": {"Get": "Parameters.seed"},
                                                 "PIPECAST_LOGICAL_TIME": {"Get": "Parameters.pipecast_logical_time"}}
    clash = _changed("ml_training", "make_dataset", env=(("PIPECAST_RUN_ID", "mine"),))
    assert "environment variable 'PIPECAST_RUN_ID' is where a training job gets a value of the run" in \
        _problems(clash, step_type="training")


def test_the_launcher_puts_in_values_and_keeps_every_other_character(tmp_path):
    """`python -c LAUNCHER prog args`: @{NAME} becomes $NAME (never read again), @@ an @, the rest as it is."""
    from pipecast.targets.sagemaker.expressions import LAUNCHER, to_launcher_text

    value = "@{HOME} @@ $(id) '\"\n\\ é"
    word = to_launcher_text("a@b@@{X}=\x00param:n\x00;\x00run_id\x00")
    out = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-c", "import sys; print(sys.argv[1:])",
                          word, "plain @ text"], env={"PIPECAST_PARAM_n": value, "PIPECAST_RUN_ID": "r-1"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == repr([f"a@b@@{{X}}={value};r-1", "plain @ text"])


def test_timeout_without_retries_is_native_only():
    timed = _changed("quickstart", "split", timeout_seconds=90.5)
    step = _step(definition(compile_case("sagemaker", timed, golden=True).bundle), "split")
    assert step["Arguments"]["StoppingCondition"] == {"MaxRuntimeInSeconds": 91}
    assert "--timeout" not in step["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert "RetryPolicies" not in step
    too_long = _changed("quickstart", "split", timeout_seconds=10 * 86400.0)
    assert "SageMaker processing jobs stop after 777600s" in _problems(too_long)


def test_names_follow_sagemaker_rules_and_collisions_are_errors():
    pipeline = case("diamond_after").build()
    renamed = tuple(dataclasses.replace(s, name="cleanup.tmp") if s.name == "add_2" else s for s in pipeline.steps)
    assert "both become 'cleanup-tmp'" in _problems(dataclasses.replace(pipeline, steps=renamed))
    long_name = "x" * 80
    steps = tuple(dataclasses.replace(s, name=long_name) if s.name == "add_2" else s for s in pipeline.steps)
    renamed = dataclasses.replace(pipeline, steps=steps)
    names = [s["Name"] for s in definition(compile_case("sagemaker", renamed, golden=True).bundle)["Steps"]]
    assert max(len(n) for n in names) == 64
    named = compile_case("sagemaker", "ml_training", golden=True, settings={"pipeline_name": "Team ML/training"})
    request = json.loads(named["ml_training.create-pipeline.json"])
    assert request["PipelineName"] == "Team-ML-training"


def test_create_request_options():
    bundle = compile_case("sagemaker", "quickstart", golden=True,
                          settings={"max_parallel": 2, "inline_definition_limit": 1000}).bundle
    request = json.loads(bundle["quickstart.create-pipeline.json"])
    assert request["ParallelismConfiguration"] == {"MaxParallelExecutionSteps": 2}
    assert request["PipelineDefinitionS3Location"] == {
        "Bucket": "acme-pipecast", "ObjectKey": "pipecast/quickstart/sagemaker/quickstart.pipeline.json"}


@pytest.mark.parametrize(("cron", "expected"), [
    ("0 4 * * 1", "cron(0 4 ? * 2 *)"),
    ("0 3 * * *", "cron(0 3 * * ? *)"),
    ("*/15 * * * *", "cron(0/15 * * * ? *)"),
    ("0 9 * * mon-fri", "cron(0 9 ? * 2,3,4,5,6 *)"),
    ("0 0 * * 5-7", "cron(0 0 ? * 1,6,7 *)"),
    ("30 2 1 jan,jul *", "cron(30 2 1 JAN,JUL ? *)"),
    ("@weekly", "cron(0 0 ? * 1 *)"),
    ("@daily", "cron(0 0 * * ? *)"),
])
def test_cron_becomes_eventbridge_cron(cron, expected):
    assert eventbridge_cron(cron) == (expected, "")


def test_schedules_that_eventbridge_cannot_run_are_reported():
    assert eventbridge_cron("0 0 1 * 1")[0] is None
    assert "EventBridge cron can only use one" in _problems(_changed("ml_training", schedule="0 0 1 * 1"))
    required = tuple(dataclasses.replace(p, default_json=None) if p.name == "seed" else p
                     for p in case("ml_training").build().parameters)
    assert "a scheduled run cannot start" in _problems(_changed("ml_training", parameters=required))
    assert "names its region" in _problems(case("ml_training").build(), region=None)
    scheduled = compile_case("sagemaker", "ml_training", golden=True, settings={
        "timezone": "Europe/Paris", "schedule_role_arn": "arn:aws:iam::123456789012:role/scheduler"})
    schedule = json.loads(scheduled["ml_training.schedule.json"])
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert schedule["Target"]["RoleArn"] == "arn:aws:iam::123456789012:role/scheduler"
    assert "setting 'schedule_timezone' (in --set) is now called 'timezone'" in _problems(
        case("ml_training").build(), schedule_timezone="UTC")


def test_a_node_local_artifact_root_is_an_error():
    """Each step is a job on instances of its own: a path on one machine cannot carry values between them."""
    assert "artifact root 'file:///tmp/art' is a path on one machine" in _problems(
        case("quickstart").build(), artifact_root="file:///tmp/art")


def test_a_step_may_name_its_own_image_in_its_settings():
    own = _changed("quickstart", "split", settings=(_setting("image", "ecr/split:2"),))
    document = definition(compile_case("sagemaker", own, golden=True).bundle)
    assert _step(document, "split")["Arguments"]["AppSpecification"]["ImageUri"] == "ecr/split:2"
    assert _step(document, "total")["Arguments"]["AppSpecification"]["ImageUri"] == SETTINGS["image"]


def test_a_definition_over_1_mib_cannot_go_inline():
    pipeline = case("quickstart").build()
    first = pipeline.steps[0]
    wide = dataclasses.replace(pipeline, steps=tuple(dataclasses.replace(first, name=f"copy_{i}")
                                                     for i in range(700)))
    bundle = compile_case("sagemaker", wide, golden=True).bundle
    assert len(bundle["quickstart.pipeline.json"].encode()) > 1024 * 1024
    assert "PipelineDefinitionS3Location" in json.loads(bundle["quickstart.create-pipeline.json"])
    assert "SageMaker takes 1048576 inline" in _problems(wide, inline_definition_limit=10**8)
