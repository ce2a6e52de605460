"""Conformance: every emitted definition validates against AWS's published schema, and limits match botocore.

The schema's gaps are patched in memory (``schema.py``, SOURCE.md); a test proves that those constructs
are the only reason the unpatched schema rejects what pipecast emits.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import botocore
import pytest

from pipecast.targets.sagemaker import instances, settings, steps, submit, target
from tests.helpers.cases import ALL_CASE_IDS, GOLDEN, compile_case, read_tree, write_tree
from tests.targets.sagemaker import schema
from tests.targets.sagemaker.support import definition

GOLDEN_DEFINITIONS = sorted(GOLDEN.glob("*/sagemaker/*.pipeline.json"))
DATA = Path(__file__).parent / "data"


@lru_cache(maxsize=1)
def sagemaker_model() -> dict[str, Any]:
    path = Path(botocore.__file__).parent / "data" / "sagemaker" / "2017-07-24" / "service-2.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))


def shape(name: str) -> dict[str, Any]:
    return sagemaker_model()["shapes"][name]


def test_project_copy_is_the_recorded_upstream_file():
    recorded = re.search(r"`([0-9a-f]{64})`", (schema.SCHEMA_PATH.parent / "SOURCE.md").read_text()).group(1)
    data = schema.SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(data).hexdigest() == recorded
    shared = schema.shared_copy()  # compared when this checkout has the shared copy beside it
    if shared is not None:
        assert shared.read_bytes() == data


def test_goldens_exist_for_every_case():
    compiled = {p.parent.parent.name for p in GOLDEN_DEFINITIONS}
    refused = {p.parent.parent.name for p in GOLDEN.glob("*/sagemaker/ERROR.txt")}
    assert compiled | refused == set(ALL_CASE_IDS)
    # full_options: SageMaker jobs cannot read a secret store; hyperparameter_search and the ML example
    # (ml_pipeline): their map, exit handler and OneOf
    assert refused == {"full_options", "hyperparameter_search", "ml_pipeline"}


@pytest.mark.parametrize("path", GOLDEN_DEFINITIONS, ids=lambda p: p.parent.parent.name)
def test_golden_definition_validates_and_every_get_resolves(path):
    document = json.loads(path.read_text())
    assert schema.errors(document) == []
    assert schema.unresolved_references(document) == []


def test_training_steps_validate():
    document = definition(compile_case("sagemaker", "ml_training", golden=True,
                                       settings={"step_type": "training"}).bundle)
    assert {s["Type"] for s in document["Steps"]} == {"Training"}
    assert schema.errors(document) == []
    assert schema.unresolved_references(document) == []


def test_full_options_with_warnings_validates_and_matches_its_golden(request):
    """full_options is refused (secrets); compiled with warnings, every other option is reviewed here."""
    bundle = compile_case("sagemaker", "full_options", golden=True, on_unsupported="warn").bundle
    assert {w.step for w in bundle.warnings} == {"load", "train", "publish", "notify"}
    assert all("secrets" in w.message for w in bundle.warnings)
    folder = DATA / "full_options.warn"
    if request.config.getoption("--update-goldens"):
        write_tree(folder, bundle.as_dict())
    assert bundle.as_dict() == read_tree(folder)
    document = definition(bundle)
    assert schema.errors(document) == []
    assert schema.unresolved_references(document) == []
    steps_by_name = {s["Name"]: s for s in document["Steps"]}
    assert "DB_PASSWORD" not in json.dumps(document) and "API_TOKEN" not in json.dumps(document)
    train = steps_by_name["train"]["Arguments"]
    assert train["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert train["AppSpecification"]["ImageUri"] == "ghcr.io/acme/gpu:2.1"
    load = steps_by_name["load"]
    assert load["RetryPolicies"][0]["BackoffRate"] == 2.0 and load["RetryPolicies"][0]["MaxAttempts"] == 2
    # 3 tries of 1h with 30s and 60s between them
    assert load["Arguments"]["StoppingCondition"] == {"MaxRuntimeInSeconds": 3 * 3600 + 30 + 60}
    assert load["Arguments"]["Environment"] == {"LOG_LEVEL": "debug", "PROJECT": "acme",  # and the run's time:
                                                "PIPECAST_LOGICAL_TIME": {"Get": "Parameters.pipecast_logical_time"}}


def _without_known_gaps(document: dict[str, Any]) -> dict[str, Any]:
    """The definition with each construct of a documented gap replaced by one the raw schema has."""
    result = copy.deepcopy(document)

    def flatten(value: Any) -> Any:
        if isinstance(value, dict) and "Std:Join" in value:
            return "joined"
        if isinstance(value, dict):
            return {k: flatten(v) for k, v in value.items()}
        if isinstance(value, list):
            return [flatten(v) for v in value]
        return value

    result = flatten(result)
    for step in result["Steps"]:
        step["RetryPolicies"] = [{**p, "ExceptionType": t} for p in step.get("RetryPolicies", [])
                                 for t in p["ExceptionType"]] or step.pop("RetryPolicies", [])
        if not step["RetryPolicies"]:
            del step["RetryPolicies"]
        if step["Type"] == "Training":
            step["Arguments"].pop("Environment", None)
            step["Arguments"]["AlgorithmSpecification"].pop("ContainerEntrypoint")
            step["Arguments"]["AlgorithmSpecification"].pop("ContainerArguments")
    return result


@pytest.mark.parametrize("name", ["quickstart", "ml_training", "hostile", "ml_training+training"])
def test_the_documented_gaps_are_the_only_reason_the_raw_schema_objects(name):
    case_name, _, kind = name.partition("+")
    document = definition(compile_case("sagemaker", case_name, golden=True,
                                       settings={"step_type": kind} if kind else {}).bundle)
    assert schema.errors(document, patched=False) != []  # the raw schema does reject these constructs
    assert schema.errors(_without_known_gaps(document), patched=False) == []


def test_the_schema_rejects_mistakes():
    """The validator is not vacuous: typical emitter mistakes are caught."""
    document = definition(compile_case("sagemaker", "quickstart", golden=True).bundle)
    mistakes = []
    bad = copy.deepcopy(document)
    bad["Steps"][0]["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = "1"
    mistakes.append(bad)
    bad = copy.deepcopy(document)
    bad["Steps"][0]["Arguments"]["Command"] = ["python"]
    mistakes.append(bad)
    bad = copy.deepcopy(document)
    bad["Steps"][0]["Name"] = "make numbers"
    mistakes.append(bad)
    bad = copy.deepcopy(document)
    bad["Parameters"][0]["DefaultValue"] = "10"
    mistakes.append(bad)
    bad = copy.deepcopy(document)
    bad["Steps"][2]["RetryPolicies"][0]["ExceptionType"] = ["Step.USER_ERROR"]
    mistakes.append(bad)
    for bad in mistakes:
        assert schema.errors(bad) != []


def test_get_reference_check_finds_undeclared_parameters():
    document = definition(compile_case("sagemaker", "quickstart", golden=True).bundle)
    document["Parameters"] = [p for p in document["Parameters"] if p["Name"] != "label"]
    assert schema.unresolved_references(document) == ["Parameters.label"]


def test_training_patch_matches_the_create_training_job_api():
    assert {"ContainerEntrypoint", "ContainerArguments"} <= set(shape("AlgorithmSpecification")["members"])
    assert "Environment" in shape("CreateTrainingJobRequest")["members"]


def test_instance_table_names_types_sagemaker_accepts():
    accepted = {instances.PROCESSING: set(shape("ProcessingInstanceType")["enum"]),
                instances.TRAINING: set(shape("TrainingInstanceType")["enum"])}
    table = list(instances.CPU_INSTANCES) + [i for family in instances.GPU_INSTANCES.values() for i in family]
    for instance in table:
        for job in (instances.PROCESSING, instances.TRAINING):
            assert (instance.name in accepted[job]) == (job in instance.jobs), (instance.name, job)
    assert settings.DEFAULT_INSTANCE_TYPE in accepted[instances.PROCESSING]


def test_limits_match_botocore():
    assert shape("ContainerArgument")["max"] == steps.MAX_ARGUMENT_LENGTH
    assert shape("ContainerEntrypointString")["max"] == steps.MAX_ARGUMENT_LENGTH
    assert shape("ContainerArguments")["max"] == steps.MAX_ARGUMENTS
    assert shape("ProcessingEnvironmentValue")["max"] == steps.MAX_ENV_VALUE["processing"]
    assert shape("TrainingEnvironmentValue")["max"] == steps.MAX_ENV_VALUE["training"]
    assert shape("ProcessingEnvironmentMap")["max"] == steps.MAX_ENV_ENTRIES
    assert shape("ProcessingMaxRuntimeInSeconds")["max"] == steps.MAX_RUNTIME["processing"]
    assert shape("String1024")["max"] == submit.MAX_PARAMETER_VALUE
    assert shape("PipelineDefinition")["max"] == target.MAX_DEFINITION
    assert shape("PipelineDescription")["max"] == target.MAX_PIPELINE_DESCRIPTION
    assert set(shape("PipelineExecutionStatus")["enum"]) == set(submit.STATUSES)
    assert re.fullmatch(shape("PipelineName")["pattern"], "ml-training")
