"""What the azureml target emits: accepted by azure-ai-ml, references whole, values kept, rules reported."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipecast.compiler import ir
from pipecast.errors import UnsupportedFeatureError
from pipecast.targets.azureml.emit import input_value
from pipecast.targets.azureml.shell import shell_command, single_quote_body
from tests.helpers.cases import CASES, GOLDEN, ROOT, case, compile_case, golden_settings
from tests.targets.azureml.support import reference_problems

GOLDEN_JOBS = sorted(GOLDEN.glob("*/azureml/*.pipeline.yml"))
GOLDEN_SCHEDULES = sorted(GOLDEN.glob("*/azureml/*.schedule.yml"))
EVIL = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \\ {% raw %} {{workflow.name}} #x"


def unquote_body(text: str) -> str:
    """Inverse of ``single_quote_body``: what the shell does to the body of a single-quoted word."""
    return text.replace("$''[[", "$[[").replace("$''{{", "${{").replace("'\\''", "'")


def write(bundle, folder: Path) -> Path:
    bundle.write(str(folder))
    return folder / bundle.main_file


def test_every_case_has_an_azureml_golden():
    for item in CASES:
        assert list((GOLDEN / item.name / "azureml").iterdir()), item.name
    assert {p.parent.parent.name for p in GOLDEN_JOBS} >= {"quickstart", "ml_training", "hostile", "diamond_after"}


@pytest.mark.parametrize("path", GOLDEN_JOBS, ids=lambda p: p.parent.parent.name)
def test_golden_jobs_load_and_validate_with_azure_ai_ml(path):
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import PipelineJob

    job = load_job(source=str(path))
    assert isinstance(job, PipelineJob)
    job._validate(raise_error=True)
    text = yaml.safe_load(path.read_text())
    assert sorted(job.jobs) == sorted(text["jobs"])


@pytest.mark.parametrize("path", GOLDEN_SCHEDULES, ids=lambda p: p.parent.parent.name)
def test_golden_schedules_load_and_validate_with_azure_ai_ml(path):
    from azure.ai.ml.entities import JobSchedule, PipelineJob
    from azure.ai.ml.entities._load_functions import load_schedule

    schedule = load_schedule(source=str(path))
    assert isinstance(schedule, JobSchedule) and isinstance(schedule.create_job, PipelineJob)
    schedule._validate(raise_error=True)
    assert schedule.trigger.expression == case(path.parent.parent.name).build().schedule
    # The trigger time: the one per-run macro Azure ML documents for a schedule's (string) job inputs.
    assert schedule.create_job.inputs["pipecast_run_id"]._data == "${{creation_context.trigger_time}}"
    # ... and the logical time, in the schedule only (the job's own value is "none": no logical time).
    assert schedule.create_job.inputs["pipecast_logical_time"]._data == "${{creation_context.trigger_time}}"


def test_full_options_compiled_anyway_loads_and_validates(tmp_path):
    """full_options is refused (secrets, GPU without a compute); with warnings the rest still validates."""
    from azure.ai.ml import load_job

    bundle = compile_case("azureml", "full_options", golden=True, on_unsupported="warn").bundle
    assert {w.message.split(":")[0] for w in bundle.warnings} == {
        "secret 'api-token' (env 'API_TOKEN') of the pipeline", "secret 'db-credentials' (env 'DB_PASSWORD')",
        "step 'train' asks for 1 GPU(s); Azure ML gives GPUs only through the compute the node runs on"}
    job = load_job(source=str(write(bundle, tmp_path)))
    job._validate(raise_error=True)
    data = yaml.safe_load(bundle[bundle.main_file])
    assert reference_problems(data) == []
    assert "DB_PASSWORD" not in bundle[bundle.main_file] and "API_TOKEN" not in bundle[bundle.main_file]
    load = data["jobs"]["load"]
    # Retries are the runtime's; Azure ML's timeout bounds every try and every delay (3 × 1h + 30s + 60s).
    assert "--attempts 3 --retry-delay 30 --retry-backoff 2 --retry-max-delay 600 --timeout 3600" in \
        load["component"]["command"]
    assert load["limits"] == {"timeout": 3 * 3600 + 30 + 60}
    assert data["jobs"]["train"]["limits"] == {"timeout": 5400}
    assert "--timeout" not in data["jobs"]["train"]["component"]["command"]
    assert data["jobs"]["train"]["component"]["environment"] == {"image": "ghcr.io/acme/gpu:2.1"}
    assert load["environment_variables"] == {"LOG_LEVEL": "debug", "PROJECT": "acme"}
    assert "--no-cache" in data["jobs"]["publish"]["component"]["command"]
    assert data["inputs"]["options"] == '{"optimizer": "sgd"}' and data["inputs"]["dry_run"] is True
    assert "s3://acme-pipelines/artifacts" in load["component"]["command"]  # the pipeline's root wins


@pytest.mark.parametrize("path", GOLDEN_JOBS, ids=lambda p: p.parent.parent.name)
def test_golden_jobs_have_whole_references(path):
    assert reference_problems(yaml.safe_load(path.read_text())) == []


BROKEN = {
    "dangling node": ("quickstart", lambda j: j["jobs"]["split"]["inputs"]["pipecast_after_make_numbers"].update(
        path="${{parent.jobs.nowhere.outputs.pipecast_done}}"), "names no node"),
    "undeclared command input": ("quickstart", lambda j: j["jobs"]["report"]["component"].update(
        command=j["jobs"]["report"]["component"]["command"] + " ${{inputs.ghost}}"), "no declared input"),
    "undeclared pipeline input": ("quickstart", lambda j: j["inputs"].pop("label"), "names no pipeline input"),
    "undeclared node input": ("quickstart", lambda j: j["jobs"]["report"]["inputs"].update(ghost="x"),
                              "the component does not declare it"),
    "cycle": ("diamond_after", lambda j: j["jobs"]["start"].update(
        inputs={**j["jobs"]["start"]["inputs"], "pipecast_after_add": "${{parent.jobs.add.outputs.pipecast_done}}"},
        component={**j["jobs"]["start"]["component"],
                   "inputs": {**j["jobs"]["start"]["component"]["inputs"], "pipecast_after_add": {
                       "type": "uri_folder"}}}), "a cycle"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_reference_checks_catch_what_load_job_accepts(name, tmp_path):
    """Each broken job passes azure-ai-ml's validation; only pipecast's reference checks reject it."""
    from azure.ai.ml import load_job

    case_name, breaker, message = BROKEN[name]
    job = yaml.safe_load((GOLDEN / case_name / "azureml" / f"{case_name}.pipeline.yml").read_text())
    breaker(job)
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(job))
    load_job(source=str(path))._validate(raise_error=True)
    problems = reference_problems(job)
    assert problems and any(message in p for p in problems), problems


def test_hostile_values_are_data_in_the_yaml():
    """Parsed back, every hostile value is there unchanged (text inputs in shell-single-quote form)."""
    job = yaml.safe_load((GOLDEN / "hostile" / "azureml" / "hostile.pipeline.yml").read_text())
    assert job["description"] == EVIL
    assert job["jobs"]["echo_text"]["environment_variables"] == {"EVIL_ENV": EVIL}
    assert unquote_body(job["inputs"]["text"]) == EVIL
    assert yaml.safe_load(unquote_body(job["inputs"]["data"])) == {"k'\"{{x}}": "${{ y }}\n$(z)"}
    assert sorted(job) == ["$schema", "description", "display_name", "experiment_name", "inputs", "jobs", "settings",
                           "type"]
    # No value holds an Azure ML expression: the only ones are pipecast's bindings and placeholders.
    assert "${{ github.token }}" not in job["inputs"]["text"]


NASTY = ["", " ", "'", "''", "a'b", "\\'", "$(id)", "`id`", "${{inputs.x}}", "${{ inputs.x }}", "$[[--x]]",
         "$'\\n'", "a\nb", "\"$HOME\"", "-n", "*", "~", "#x", "!!", "%s", "\t", "é ü 中", EVIL]


@pytest.mark.parametrize("value", NASTY)
def test_shell_command_gives_the_program_exactly_its_arguments(value):
    """bash receives every argument unchanged, literal text and substituted values alike."""
    marker = "\x00p\x00"
    command = shell_command(["printf", "%s\\0", value, f"k=str:{marker}", f"{value}{marker}{value}"],
                            {marker: "${{inputs.p}}"})
    assert "${{" not in command.replace("${{inputs.p}}", "")
    pasted = command.replace("${{inputs.p}}", single_quote_body(value))  # Azure ML's substitution
    out = subprocess.run(["bash", "-c", pasted], capture_output=True, check=True).stdout.decode()
    assert out.split("\0")[:-1] == [value, f"k=str:{value}", value * 3]


def test_input_values_keep_numbers_typed_and_encode_text():
    def param(kind):
        return ir.Parameter(name="p", type=kind, default_json="null")

    assert input_value(param(ir.TypeName.INT), 3) == 3
    assert input_value(param(ir.TypeName.FLOAT), 2) == 2.0
    assert input_value(param(ir.TypeName.BOOL), False) is False
    assert input_value(param(ir.TypeName.STR), "it's") == "it'\\''s"
    assert input_value(param(ir.TypeName.LIST), ["'"]) == "[\"'\\''\"]"


def test_importing_the_target_does_not_import_the_sdk():
    script = ("import sys, pipecast.targets.azureml as t; t.AzureMLTarget();"
              "bad = [m for m in sys.modules if m.startswith(('azure', 'marshmallow'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)


def test_missing_image_and_artifact_root_are_errors_naming_the_fix():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("azureml", "quickstart", on_unsupported="warn")
    text = str(err.value)
    assert "step 'make_numbers' has no container image" in text and "--set image=" in text
    assert "no artifact root" in text and "--set artifact_root=" in text and "az://" in text


def test_a_node_local_artifact_root_is_an_error():
    """Each node runs on compute of its own: a path on one machine cannot carry values between nodes."""
    with pytest.raises(UnsupportedFeatureError, match="artifact root 'file:///tmp/art' is a path on one machine"):
        compile_case("azureml", "quickstart", golden=True, settings={"artifact_root": "file:///tmp/art"})


def test_the_schedule_time_zone_is_the_timezone_setting():
    bundle = compile_case("azureml", "ml_training", golden=True, settings={"timezone": "Pacific Standard Time"}).bundle
    schedule = yaml.safe_load(bundle.as_dict()["ml_training.schedule.yml"])
    assert schedule["trigger"]["time_zone"] == "Pacific Standard Time"
    with pytest.raises(UnsupportedFeatureError, match=r"setting 'schedule_time_zone' .* is now called 'timezone'"):
        compile_case("azureml", "ml_training", golden=True, settings={"schedule_time_zone": "UTC"})


def build(source: str, tmp_path: Path):
    from pipecast.compiler.loader import load_pipeline

    path = tmp_path / f"azureml_case_{tmp_path.name}.py"  # a module name no other test uses
    path.write_text("from pipecast import pipeline, step\n" + source)
    return load_pipeline(str(path)).build()


def test_parameter_rules(tmp_path):
    pipeline = build(
        "@step\ndef s(a: str, b: str, c: str) -> str:\n    return a\n"
        "@pipeline\ndef p(lr: str, LR: str = 'x', pipecast_run_id: str = 'y'):\n    s(lr, LR, pipecast_run_id)\n",
        tmp_path)
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("azureml", pipeline, golden=True)
    text = str(err.value)
    assert "parameter 'lr' has no default" in text
    assert "parameter 'LR' and 'lr' differ only in case" in text
    assert "parameter 'pipecast_run_id' uses the prefix 'pipecast_'" in text


def test_step_settings_choose_compute_and_instance_type(tmp_path):
    pipeline = build(
        "from pipecast import Resources\n"
        "@step(resources=Resources(gpu=1), settings={'azureml': {'compute': 'gpu-cluster'}})\n"
        "def g() -> int:\n    return 1\n"
        "@step(settings={'azureml': {'instance_type': 'Standard_E4s_v3'}})\ndef h(x: int) -> int:\n    return x\n"
        "@pipeline\ndef p():\n    h(g())\n", tmp_path)
    bundle = compile_case("azureml", pipeline, golden=True).bundle
    job = yaml.safe_load(bundle[bundle.main_file])
    assert job["settings"]["default_compute"] == "azureml:cpu-cluster"
    assert job["jobs"]["g"]["compute"] == "azureml:gpu-cluster" and "resources" not in job["jobs"]["g"]
    assert job["jobs"]["h"]["resources"] == {"instance_type": "Standard_E4s_v3"} and "compute" not in job["jobs"]["h"]


def test_without_compute_the_job_runs_on_serverless_compute_and_validates(tmp_path):
    """azure-ai-ml refuses nodes without compute ("Compute not set"): the default is serverless compute."""
    from azure.ai.ml import load_job

    settings = {k: v for k, v in golden_settings("azureml").items() if k != "compute"}
    bundle = compile_case("azureml", "quickstart", settings=settings).bundle
    job = load_job(source=str(write(bundle, tmp_path)))
    job._validate(raise_error=True)
    assert yaml.safe_load(bundle[bundle.main_file])["settings"]["default_compute"] == "azureml:serverless"
    assert job.settings.default_compute == "serverless"


def test_serverless_is_written_as_the_cli_docs_write_it(tmp_path):
    from azure.ai.ml import load_job

    pipeline = build("@step(settings={'azureml': {'compute': 'serverless', 'instance_type': 'Standard_NC6s_v3'}})\n"
                     "def g() -> int:\n    return 1\n@pipeline\ndef p():\n    g()\n", tmp_path)
    bundle = compile_case("azureml", pipeline, golden=True, settings={"compute": "serverless"}).bundle
    data = yaml.safe_load(bundle[bundle.main_file])
    assert data["settings"]["default_compute"] == data["jobs"]["g"]["compute"] == "azureml:serverless"
    job = load_job(source=str(write(bundle, tmp_path / "out")))
    job._validate(raise_error=True)
    assert job.jobs["g"].compute == "serverless"


def test_unknown_setting_in_a_step_is_an_error(tmp_path):
    pipeline = build("@step(settings={'azureml': {'computer': 'x'}})\ndef g() -> int:\n    return 1\n"
                     "@pipeline\ndef p():\n    g()\n", tmp_path)
    with pytest.raises(UnsupportedFeatureError, match="unknown setting 'computer' for target 'azureml'"):
        compile_case("azureml", pipeline, golden=True)


def test_node_names_follow_azure_rules_and_collisions_are_errors(tmp_path):
    pipeline = build("@step\ndef g() -> int:\n    return 1\n"
                     "@pipeline\ndef p():\n    g.with_options(name='Load-Data')()\n"
                     "    g.with_options(name='load_data')()\n", tmp_path)
    with pytest.raises(UnsupportedFeatureError, match="both become 'load_data'"):
        compile_case("azureml", pipeline, golden=True)


def test_emit_is_the_same_twice():
    first = compile_case("azureml", "ml_training", golden=True).bundle
    assert first.files == compile_case("azureml", "ml_training", golden=True).bundle.files


def test_experiment_name_must_fit_azure_rules():
    with pytest.raises(UnsupportedFeatureError, match=r"setting 'experiment_name' .*breaks Azure ML's rule"):
        compile_case("azureml", "quickstart", golden=True, settings={"experiment_name": "my experiment"})
    dotted = dataclasses.replace(case("quickstart").build(), name="nightly.v2")  # a valid pipecast name
    with pytest.raises(UnsupportedFeatureError, match=r"pipeline name 'nightly\.v2' cannot be the Azure ML experiment"):
        compile_case("azureml", dotted, golden=True)
    bundle = compile_case("azureml", "quickstart", golden=True, settings={"experiment_name": "nightly-runs"}).bundle
    assert yaml.safe_load(bundle[bundle.main_file])["experiment_name"] == "nightly-runs"
