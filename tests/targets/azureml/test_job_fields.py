"""The Azure ML escape hatch (``node_fields``, ``job_fields``): merged onto the job pipecast writes, loaded and
validated by azure-ai-ml, and read back from the REST body it would send (azure-ai-ml passes unknown node keys
through unchecked, so pipecast's own check is what refuses them: every refusal has its case)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipecast.errors import ValidationError
from tests.helpers.cases import compile_case, golden_settings, read_tree, write_tree
from tests.targets.azureml import hatch_pipelines
from tests.targets.azureml.support import reference_problems

DATA = Path(__file__).parent / "data" / "job_fields"
NODE = {"resources": {"instance_count": 2, "shm_size": "8g", "docker_args": "--ulimit nofile=65536"},
        "queue_settings": {"job_tier": "spot", "priority": "high"},
        "identity": {"type": "managed", "client_id": "11111111-2222-3333-4444-555555555555"},
        "tags": {"team": "ml"}, "properties": {"owner": "ml-platform"}}
JOB = {"identity": {"type": "user_identity"}, "tags": {"cost-center": "42"}, "properties": {"tier": "gold"},
       "settings": {"default_datastore": "azureml:workspaceblobstore", "force_rerun": True}}
VARIANTS = {"pipeline": ("quickstart", {"node_fields": NODE, "job_fields": JOB, "instance_type": "Standard_D4"}),
            "per_step": (hatch_pipelines.node_fields, {})}


def _compiled(name: str, folder: Path) -> tuple[dict[str, str], Path]:
    source, settings = VARIANTS[name]
    bundle = compile_case("azureml", source, settings={**golden_settings("azureml"), **settings}).bundle
    bundle.write(str(folder))
    return bundle.as_dict(), folder / bundle.main_file


def _rest(path: Path) -> dict[str, Any]:
    """The job as azure-ai-ml loads and validates it, as the REST body it would send."""
    from azure.ai.ml import load_job

    job = load_job(source=str(path))
    job._validate(raise_error=True)
    return dict(job._to_rest_object().properties.as_dict())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_jobs_match_their_golden_and_azure_ai_ml_accepts_them(name, tmp_path, request):
    files, path = _compiled(name, tmp_path)
    if request.config.getoption("--update-goldens"):
        write_tree(DATA / name, files)
    assert files == read_tree(DATA / name)
    assert reference_problems(yaml.safe_load(path.read_text())) == []
    _rest(path)


def test_every_field_reaches_the_rest_body(tmp_path):
    rest = _rest(_compiled("pipeline", tmp_path)[1])
    assert rest["identity"] == {"identityType": "UserIdentity"}
    assert rest["tags"] == {"example": "", "cost-center": "42"} and rest["properties"] == {"tier": "gold"}
    assert rest["settings"]["default_datastore"] == "workspaceblobstore"
    assert rest["settings"]["force_rerun"] is True and rest["settings"]["continue_on_step_failure"] is False
    for node in rest["jobs"].values():
        assert node["resources"] == {"instance_type": "Standard_D4", **NODE["resources"]}
        assert node["queue_settings"] == {"job_tier": "Spot", "priority": 3}
        assert node["identity"] == {"identity_type": "Managed", "client_id": NODE["identity"]["client_id"]}
        assert node["tags"] == {"team": "ml"} and node["properties"] == {"owner": "ml-platform"}


def test_a_steps_own_fields_replace_the_pipelines(tmp_path):
    jobs = _rest(_compiled("per_step", tmp_path)[1])["jobs"]
    assert jobs["prepare"]["queue_settings"] == {"job_tier": "Spot"} and "resources" not in jobs["prepare"]
    assert jobs["train"]["queue_settings"] == {"job_tier": "Premium"} and "identity" not in jobs["train"]
    assert jobs["train"]["resources"] == hatch_pipelines.GPU_NODE["resources"]
    assert jobs["train"]["computeId"] == "gpu-cluster"


def _problems(**settings: Any) -> list[Any]:
    with pytest.raises(ValidationError) as info:
        compile_case("azureml", "quickstart", golden=True, settings=settings)
    return list(info.value.problems)


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("node_fields", {"compute": "x"}, "sets 'compute', which pipecast cannot pass (use the compute setting)"),
    ("node_fields", {"environment_variables": {"A": "1"}}, "use @step(env=...)"),
    ("node_fields", {"limits": {"timeout": 60}}, "use @step(timeout=...)"),
    ("node_fields", {"resources": {"instance_type": "x"}}, "sets 'resources.instance_type'"),
    ("node_fields", {"command": "echo"}, "pipecast's runtime command runs the step"),
    ("node_fields", {"distribution": {"type": "pytorch"}}, "not a distributed launcher"),
    ("node_fields", {"resource": {}}, "'resource', which is not an Azure ML field pipecast passes"),
    ("node_fields", {"resources": {"shm_size": "8 GB"}}, "'resources.shm_size' that is not a size"),
    ("node_fields", {"resources": {"instance_count": 0}}, "at least 1"),
    ("node_fields", {"queue_settings": {"job_tier": "cheap"}}, "'queue_settings.job_tier' 'cheap', which is none"),
    ("node_fields", {"identity": {"type": "managed", "clientId": "x"}}, "'identity.clientId', which is not"),
    ("node_fields", {"tags": {"a": 1}}, "'tags' that is not a mapping of text"),
    ("node_fields", {"tags": {"a": "${{parent.inputs.n}}"}}, "would read '${{...}}' as an expression"),
    ("job_fields", {"settings": {"default_compute": "x"}}, "sets 'settings.default_compute'"),
    ("job_fields", {"settings": {"continue_on_step_failure": True}}, "use the continue_on_step_failure setting"),
    ("job_fields", {"jobs": {}}, "sets 'jobs', which pipecast cannot pass"),
    ("job_fields", {"experiment_name": "x"}, "use the experiment_name setting"),
    ("job_fields", {"queue_settings": {}}, "'queue_settings', which is not an Azure ML field pipecast passes"),
])
def test_a_field_pipecast_owns_or_azure_ml_lacks_is_one_clear_error(setting, value, expected):
    (problem,) = _problems(**{setting: value})
    assert f"'{setting}'" in problem.message and expected in problem.message, problem.message
    assert problem.fix and f"{setting}=" in problem.fix


def test_job_fields_belong_to_the_pipeline():
    from pipecast.targets.azureml.settings import AzureMLSettings

    assert AzureMLSettings.spec()["job_fields"].step is False and AzureMLSettings.spec()["node_fields"].step


def test_azure_ai_ml_passes_a_misspelt_node_field_through_so_pipecast_checks(tmp_path):
    """Why the tables exist: azure-ai-ml validates the job and sends an unknown node key to the service as is."""
    _, path = _compiled("pipeline", tmp_path)
    job = yaml.safe_load(path.read_text())
    job["jobs"]["make_numbers"]["queue_setting"] = {"job_tier": "spot"}  # misspelt
    path.write_text(yaml.safe_dump(job))
    assert _rest(path)["jobs"]["make_numbers"]["queue_setting"] == {"job_tier": "spot"}
    (problem,) = _problems(node_fields={"queue_setting": {"job_tier": "spot"}})
    assert "'queue_setting', which is not an Azure ML field pipecast passes" in problem.message


def test_hostile_values_reach_the_rest_body_verbatim(tmp_path):
    hostile = "a'b\"c\n{{ 7*7 }} $(whoami) ${HOME} `id` \\ #x: y - [z]"
    bundle = compile_case("azureml", "quickstart", golden=True,
                          settings={"node_fields": {"tags": {"note": hostile}, "properties": {hostile: "k"}},
                                    "job_fields": {"properties": {"note": hostile}}}).bundle
    bundle.write(str(tmp_path))
    rest = _rest(tmp_path / bundle.main_file)
    assert rest["properties"] == {"note": hostile}
    for node in rest["jobs"].values():
        assert node["tags"] == {"note": hostile} and node["properties"] == {hostile: "k"}


def test_the_cli_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pipecast.cli import main
    from tests.helpers.cases import ROOT

    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", "examples/quickstart.py", "-t", "azureml", "--out", str(out),
                                       "--set", "artifact_root=az://c/a", "--set", "image=ghcr.io/a/b:1",
                                       "--set", 'node_fields={"limits": {"timeout": 5}}'])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "sets 'limits', which pipecast cannot pass" in result.output and not out.exists()
