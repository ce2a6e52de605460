"""Where SageMaker substitutes pipeline functions: pipecast's definition against the sagemaker SDK's own.

SageMaker evaluates ``Get``/``Std:Join`` only where a pipeline variable is accepted. The sagemaker SDK
(v3: ``sagemaker-mlops``, ``sagemaker-train``) is the reference for that: ``in_sdk_v3.py`` rebuilds every
step of pipecast's definition with the SDK's constructs (a ``Processor`` run with pipecast's arguments; a
``ModelTrainer`` with pipecast's environment, since the SDK takes pipeline variables nowhere else in a
training job) and the test checks that every function pipecast emits sits at the same place, with the
same value, as in the SDK's definition.

The SDK cannot share the project's virtualenv (it pins older s3fs, rich, numpy...), so it runs in one of
its own (``tests/helpers/side_venv.py``), against a moto server for the S3 calls it makes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cases import compile_case
from tests.helpers.side_venv import side_venv
from tests.helpers.slow import slow_fixture
from tests.targets.kfp.typed_cases import typed_outputs
from tests.targets.sagemaker import flow_pipelines
from tests.targets.sagemaker.schema import all_steps
from tests.targets.sagemaker.servers import moto_server
from tests.targets.sagemaker.support import definition
from tests.targets.sagemaker.test_job_args import ESTIMATOR, PROCESSOR

SDK_REQUIREMENT = "sagemaker-mlops==1.27.0"
SCRIPT = Path(__file__).with_name("in_sdk_v3.py")


CASES = [(name, kind) for name in ("ml_training", "hostile") for kind in ("processing", "training")]
FLOW = ("sm_branches", "processing")  # ConditionSteps on property files (flow_pipelines.py)
TYPED = ("typed_outputs", "processing")  # typed outputs as processing outputs (test_typed_outputs.py)
TYPED_TRAINING = ("typed_outputs", "training")  # typed outputs copied to a training job's model and output data
# The escape hatch (test_job_args): quickstart with every processor and estimator argument.
HATCH = {("hatch", "processing"): {"processor_args": PROCESSOR},
         ("hatch", "training"): {"step_type": "training", "estimator_args": ESTIMATOR}}
# CreateTrainingJob's defaults (API reference: CheckpointConfig.LocalPath, OutputDataConfig.CompressionType),
# which the SDK writes out and pipecast leaves to the service.
SERVICE_DEFAULTS = {"CheckpointConfig": {"LocalPath": "/opt/ml/checkpoints"},
                    "OutputDataConfig": {"CompressionType": "GZIP"}}
HATCH_FIELDS = {"Processing": ("NetworkConfig", "ProcessingResources", "Tags"),
                "Training": ("VpcConfig", "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption",
                             "ResourceConfig", "OutputDataConfig", "StoppingCondition", "CheckpointConfig",
                             "EnableManagedSpotTraining", "Tags")}


@pytest.fixture(scope="module")
@slow_fixture
def compiled(tmp_path_factory) -> dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]]:
    """pipecast's definition and the SDK's, for every case and step type (one SDK interpreter for all)."""
    python = os.environ.get("PIPECAST_SAGEMAKER_SDK_PYTHON") or str(side_venv("sagemaker-sdk-venv",
                                                                              (SDK_REQUIREMENT,)))
    folder = tmp_path_factory.mktemp("sdk")
    ours, files = {}, []
    variants: dict[tuple[str, str], tuple[str, Any, dict[str, Any]]] = {
        **{case: ("sagemaker", case[0], {"step_type": case[1]}) for case in CASES},
        **{case: ("sagemaker", "quickstart", settings) for case, settings in HATCH.items()},
        FLOW: ("sagemaker", flow_pipelines.sm_branches, {}),
        TYPED: ("sagemaker", typed_outputs, {"artifact_root": "s3://pipecast-golden/artifacts"}),
        TYPED_TRAINING: ("sagemaker", typed_outputs, {"artifact_root": "s3://pipecast-golden/artifacts",
                                                      "step_type": "training"})}
    for (name, kind), (target, source, settings) in variants.items():
        ours[(name, kind)] = definition(compile_case(target, source, golden=True, settings=settings).bundle)
        source = folder / f"{name}-{kind}.pipecast.json"
        source.write_text(json.dumps(ours[(name, kind)]))
        files += [str(source), str(folder / f"{name}-{kind}.sdk.json")]
    with moto_server(folder / "moto.log") as url:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "SAGEMAKER_"))}
        env.update({"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                    "SAGEMAKER_VALIDATE_ROLE": "false", "HOME": str(folder)})
        # -P: the script's folder stays off sys.path (its schema.py would shadow the `schema` package).
        result = subprocess.run([python, "-P", str(SCRIPT), *files], env=env, cwd=folder, capture_output=True,
                                text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return {key: (ours[key], json.loads((folder / f"{key[0]}-{key[1]}.sdk.json").read_text())) for key in ours}


def functions(value: Any, path: str = "") -> dict[str, Any]:
    """Every ``Get``/``Std:Join`` in ``value`` by its JSON path."""
    if isinstance(value, dict):
        if "Get" in value or "Std:Join" in value:
            return {path: value}
        return {k: v for key, item in value.items() for k, v in functions(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for index, item in enumerate(value) for k, v in functions(item, f"{path}[{index}]").items()}
    return {}


def step_functions(pipeline_definition: dict[str, Any]) -> dict[str, Any]:
    return {k: v for step in pipeline_definition["Steps"]
            for k, v in functions(step["Arguments"], step["Name"]).items()}


def tree(steps: list[dict[str, Any]]) -> list[Any]:
    """The step names, with each condition step's branches nested under it."""
    return [(s["Name"], tree(s["Arguments"]["IfSteps"]), tree(s["Arguments"]["ElseSteps"]))
            if s["Type"] == "Condition" else s["Name"] for s in steps]


@pytest.mark.parametrize(("case_name", "step_type"), [*CASES, FLOW, TYPED, TYPED_TRAINING])
def test_every_function_sits_where_the_sdk_puts_it(compiled, case_name, step_type):
    ours, sdks = compiled[(case_name, step_type)]
    emitted = step_functions(ours)
    assert emitted, "the run id at least is a function"
    assert emitted == step_functions(sdks)
    if step_type == "training":
        assert all(".Environment." in path for path in emitted)  # nowhere in the container's command


def test_condition_steps_and_property_files_are_what_the_sdk_writes(compiled):
    """ConditionStep, JsonGet on a PropertyFile, ConditionIn/Not/Or and nested branches, as the SDK compiles them.

    The SDK also checks each JsonGet: its step is a processing step declaring the property file, whose output
    exists (``ConditionStep._validate_json_get_property_file_reference``).
    """
    ours, sdks = compiled[FLOW]
    assert tree(ours["Steps"]) == tree(sdks["Steps"])
    mine = {s["Name"]: s for s in all_steps(ours["Steps"])}
    theirs = {s["Name"]: s for s in all_steps(sdks["Steps"])}
    conditions = [name for name, step in mine.items() if step["Type"] == "Condition"]
    assert len(conditions) == 4
    for name in conditions:
        assert mine[name]["Arguments"]["Conditions"] == theirs[name]["Arguments"]["Conditions"], name
    published = [name for name, step in mine.items() if "PropertyFiles" in step]
    assert published == ["measure", "is_ready", "label", "count"]
    for name in published:
        assert mine[name]["PropertyFiles"] == theirs[name]["PropertyFiles"]
        sdk_outputs = [{k: v for k, v in o.items() if k != "AppManaged"}  # the SDK writes the API's default
                       for o in theirs[name]["Arguments"]["ProcessingOutputConfig"]["Outputs"]]
        assert mine[name]["Arguments"]["ProcessingOutputConfig"]["Outputs"] == sdk_outputs


def test_typed_outputs_are_the_processing_outputs_the_sdk_writes(compiled):
    """Each typed output's ProcessingOutput (S3Uri joined with the execution id) given to the SDK's
    ``ProcessingOutput``/``ProcessingS3Output`` compiles to what pipecast wrote."""
    ours, sdks = compiled[TYPED]
    for mine, theirs in zip(ours["Steps"], sdks["Steps"], strict=True):
        sdk_outputs = [{k: v for k, v in o.items() if k != "AppManaged"}  # the SDK writes the API's default
                       for o in theirs["Arguments"]["ProcessingOutputConfig"]["Outputs"]]
        assert mine["Arguments"]["ProcessingOutputConfig"]["Outputs"] == sdk_outputs, mine["Name"]
        assert sdk_outputs and all(o["S3Output"]["S3Uri"]["Std:Join"] for o in sdk_outputs)


@pytest.mark.parametrize("kind", ["processing", "training"])
def test_the_escape_hatch_sits_where_the_sdk_puts_it(compiled, kind):
    """VPC, KMS keys, tags and spot training given to the SDK's own arguments land where pipecast wrote them."""
    ours, sdks = compiled[("hatch", kind)]
    for mine, theirs in zip(ours["Steps"], sdks["Steps"], strict=True):
        fields = HATCH_FIELDS[mine["Type"]]
        sdk = {key: theirs["Arguments"].get(key) for key in fields}
        for key, defaults in SERVICE_DEFAULTS.items():  # the SDK writes these defaults of the API explicitly
            if sdk.get(key):
                sdk[key] = {k: v for k, v in sdk[key].items() if defaults.get(k) != v}
        assert {key: mine["Arguments"].get(key) for key in fields} == sdk, mine["Name"]
