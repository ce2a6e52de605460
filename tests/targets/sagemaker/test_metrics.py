"""Issue 17: a training step's declared metrics as its job's MetricDefinitions, printed by the runtime.

SageMaker searches a training job's log with each ``MetricDefinitions`` regex and records the value of its first
capture group ("Define training metrics", docs.aws.amazon.com/sagemaker/latest/dg/training-metrics.html). moto's
SageMaker runs no job and scrapes no log, so the replay runs each job's command, keeps its real stdout and stderr,
and applies every emitted regex with Python's ``re`` to each line as SageMaker would: each declared metric is
found with exactly the value pipecast recorded, and no other line (warnings included) matches.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from pipecast import pipeline, step
from pipecast.errors import ValidationError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.publish_sagemaker import metric_lines
from pipecast.targets.sagemaker.metrics import MAX_DEFINITIONS, MAX_REGEX, definitions
from tests.helpers.cases import compile_case
from tests.targets.kfp.typed_cases import typed_outputs
from tests.targets.sagemaker.replay import commands, evaluate
from tests.targets.sagemaker.schema import errors, unresolved_references
from tests.targets.sagemaker.test_job_args import botocore_errors

GOLDEN = Path(__file__).parent / "data" / "metrics_training"
ROOT = "s3://pipecast-golden/artifacts"
DECLARED = ["accuracy", "loss", "auc", "never.logged"]  # rows and framework_ok are logged, not declared


def compiled(root: str = ROOT, **settings):
    return compile_case("sagemaker", typed_outputs.build(), golden=True,
                        settings={"artifact_root": root, "step_type": "training", "metrics": DECLARED,
                                  **settings}).bundle


def test_golden(request):
    files = dict(compiled().files)
    if request.config.getoption("--update-goldens"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (GOLDEN / name).write_text(text, encoding="utf-8", newline="\n")
    assert {p.name: p.read_text(encoding="utf-8") for p in GOLDEN.iterdir()} == files


def test_each_declared_name_is_one_definition_the_schema_and_botocore_accept():
    bundle = compiled()
    definition = json.loads(bundle[bundle.main_file])
    assert errors(definition) == [] and unresolved_references(definition) == []
    for item in definition["Steps"]:
        spec = item["Arguments"]["AlgorithmSpecification"]
        assert [d["Name"] for d in spec["MetricDefinitions"]] == DECLARED
        assert botocore_errors(spec, "AlgorithmSpecification") == []
        argv = spec["ContainerArguments"]
        assert [argv[i + 1] for i, word in enumerate(argv) if word == "--sagemaker-metric"] == DECLARED
    assert bundle.warnings == ()
    longest = definitions(["x" * 255])[0]
    assert botocore_errors([longest] * MAX_DEFINITIONS, "MetricDefinitionList") == []
    assert len(longest["Regex"]) <= MAX_REGEX


def test_a_processing_step_with_metrics_compiles_and_says_they_are_not_the_jobs():
    bundle = compiled(step_type="processing")
    definition = json.loads(bundle[bundle.main_file])
    assert all("MetricDefinitions" not in json.dumps(item) for item in definition["Steps"])
    assert len(bundle.warnings) == 3 and all("training steps" in w.message for w in bundle.warnings)


@pytest.mark.parametrize(("names", "expected"), [
    ([f"m{i}" for i in range(MAX_DEFINITIONS + 1)], "at most 40 metric definitions"),
    (["acc uracy"], "'acc uracy'"),
    (["a=1"], "'a=1'"),
    (["x" * 256], "1 to 255"),
    ([""], "non-empty text"),
    (["loss", "loss"], "names 'loss' twice"),
])
def test_names_sagemaker_or_the_regex_cannot_take_are_one_clear_error(names, expected):
    with pytest.raises(ValidationError) as info:
        compiled(metrics=names)
    text = str(info.value)
    assert "metrics" in text and expected in text, text
    assert "Traceback" not in text


def test_a_hostile_undeclared_name_cannot_make_a_line_sagemaker_reads():
    hostile = "x\npipecast-metric accuracy=9.5 "
    meta = {"outputs": {"m": {"artifact": "Metrics", "metrics": {"accuracy": 0.5, hostile: 1.0}}},
            "metadata": {"accuracy": float("nan"), "note": "text", "epochs": 10},
            "run_metadata": {"flag": True, "best": 1e-05}}
    lines, warnings = metric_lines(meta, ["accuracy", "epochs", "best"])
    assert lines == ["pipecast-metric accuracy=0.5", "pipecast-metric epochs=10.0", "pipecast-metric best=1e-05"]
    assert len(warnings) == 2 and "settings={\"sagemaker\": {\"metrics\"" in warnings[0]
    assert "not a finite number" in warnings[1]
    assert [re.search(d["Regex"], line).group(1) for d, line in zip(definitions(["accuracy", "epochs", "best"]),
                                                                     lines, strict=True)] == ["0.5", "10.0", "1e-05"]
    pattern = re.compile(definitions(["accuracy"])[0]["Regex"])
    found = [m.group(1) for text in lines + warnings for line in text.splitlines() if (m := pattern.search(line))]
    assert found == ["0.5"]


def test_replay_on_moto_the_definitions_extract_exactly_the_recorded_values_from_the_jobs_log(tmp_path, moto_s3):
    """Each training job's real stdout+stderr, searched line by line with each emitted regex (first group), gives
    every declared metric the step logged with its recorded value, once; an undeclared one is a warning."""
    import boto3

    from tests.helpers.replay import run_task

    fs = moto_s3.fs
    fs.mkdir("metrics-train")
    root = "s3://metrics-train/artifacts"
    bundle = compiled(root)
    text = bundle[bundle.main_file]
    steps = {s["Name"]: s for s in json.loads(text)["Steps"]}
    sagemaker = boto3.client("sagemaker")
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    execution = "metricsexec1"
    scraped, logs = {}, {}
    for name, argv, env in commands(text, [{"Name": "rows", "Value": "4"}], execution):
        job = tmp_path / name
        (job / "model").mkdir(parents=True)
        (job / "output" / "data").mkdir(parents=True)
        result = run_task(argv, {**env, "PATH": path, "SM_MODEL_DIR": str(job / "model"),
                                 "SM_OUTPUT_DATA_DIR": str(job / "output" / "data")})
        arguments = steps[name]["Arguments"]
        # botocore's client validates the request (lengths, list bounds) before moto sees it; moto's
        # DescribeTrainingJob answers fixed MetricDefinitions of its own, so the regexes are the emitted ones.
        sagemaker.create_training_job(
            TrainingJobName=f"pipelines-{execution}-{name}", RoleArn=arguments["RoleArn"],
            AlgorithmSpecification=arguments["AlgorithmSpecification"], ResourceConfig=arguments["ResourceConfig"],
            OutputDataConfig=arguments["OutputDataConfig"], StoppingCondition={"MaxRuntimeInSeconds": 3600},
            Environment={k: evaluate(v, {"rows": "4"}, execution) for k, v in arguments["Environment"].items()})
        log = result.stdout.splitlines() + result.stderr.splitlines()  # SageMaker reads both (MetricDefinition)
        logs[name] = log
        scraped[name] = {d["Name"]: [m.group(1) for line in log if (m := re.search(d["Regex"], line))]
                         for d in arguments["AlgorithmSpecification"]["MetricDefinitions"]}
    store = ArtifactStore(root)
    for name in steps:
        meta = store.read_json(f"{store.step_dir('typed_outputs', execution, name)}/meta.json")
        recorded = {k: v for record in meta["outputs"].values() if record.get("artifact") == "Metrics"
                    for k, v in record["metrics"].items()}
        assert scraped[name] == {d: [repr(float(recorded[d]))] if d in recorded else [] for d in DECLARED}, name
        for undeclared in set(recorded) - set(DECLARED):
            assert any(f'metric "{undeclared}" is not a SageMaker metric' in line and "metrics" in line
                       for line in logs[name]), (name, undeclared)
    assert scraped["train"] == {"accuracy": ["0.75"], "loss": ["0.25"], "auc": [], "never.logged": []}
    assert scraped["evaluate"] == {"accuracy": [], "loss": [], "auc": ["0.54"], "never.logged": []}



# A step declaring its own metrics (defined at module level: engines import steps by module path).

@step(settings={"sagemaker": {"step_type": "training", "metrics": ["accuracy"]}})
def fit() -> float:
    return 0.5


@step
def other() -> int:
    return 1


@pipeline(name="own_metrics")
def own_metrics():
    fit()
    other()


@step(settings={"sagemaker": {"step_type": "training", "metrics": ["val loss"]}})
def bad() -> float:
    return 0.5


@pipeline(name="bad_metrics")
def bad_metrics():
    bad()


def test_a_step_declares_its_own_metrics_and_a_bad_name_is_refused_at_its_line():
    bundle = compile_case("sagemaker", own_metrics, golden=True).bundle
    steps = {s["Name"]: s for s in json.loads(bundle[bundle.main_file])["Steps"]}
    assert steps["fit"]["Arguments"]["AlgorithmSpecification"]["MetricDefinitions"] == definitions(["accuracy"])
    assert "MetricDefinitions" not in json.dumps(steps["other"])
    with pytest.raises(ValidationError) as info:
        compile_case("sagemaker", bad_metrics, golden=True)
    text = str(info.value)
    assert "'val loss'" in text and f"{Path(__file__).name}:" in text and "Traceback" not in text, text
