"""How the vm_* targets lower a pipeline: task grouping, resources, settings, errors, scripts."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from pipecast import Resources, Secret, pipeline, step
from pipecast.build.plan import pipeline_requirements
from pipecast.errors import UnsupportedFeatureError
from pipecast.targets.listing import describe_targets
from tests.helpers.cases import ROOT, compile_case
from tests.targets.skypilot.support import SETTINGS, task_documents

S3 = {"artifact_root": "s3://b/p"}


@step
def produce(n: int) -> int:
    return n


@step(resources=Resources(cpu="500m", memory="512Mi"))
def small(x: int) -> int:
    return x


@step(resources=Resources(cpu=4, memory="16Gi", gpu=2, gpu_type="nvidia-tesla-v100"))
def big(x: int) -> int:
    return x


@step(resources=Resources(gpu=1))
def untyped_gpu(x: int) -> int:
    return x


@step
def combine(a: int, b: int) -> int:
    return a + b


@pipeline(name="mixed")
def mixed(n: int = 3):
    first = produce(n)
    return combine(small(first), big(first))


@pipeline(name="fan")
def fan(n: int = 3):
    first = produce(n)
    # small, produce-like steps interleaved with big ones: grouping keeps each kind together when it can
    a = small(first)
    b = big(first)
    c = small.with_options(name="small_again")(first)
    d = big.with_options(name="big_again")(first)
    return combine(combine(a, c), combine.with_options(name="combine_big")(b, d))


def steps_of(document):
    """The steps a task's run script runs, in order."""
    return [line.split()[1] for line in document["run"].splitlines() if line.strip().startswith("--step ")]


def test_one_task_when_every_step_asks_the_same():
    header, docs = task_documents(compile_case("vm_aws", "quickstart", settings=S3).main)
    assert header is None and len(docs) == 1
    assert steps_of(docs[0]) == ["make_numbers", "split", "total", "total_2", "report"]


def test_steps_with_other_resources_get_their_own_task_in_dependency_order():
    header, docs = task_documents(compile_case("vm_aws", mixed, settings=S3).main)
    assert header == {"name": "mixed"}
    assert [steps_of(d) for d in docs] == [["produce"], ["small"], ["big"], ["combine"]]
    assert docs[1]["resources"] == {"cloud": "aws", "cpus": "0.5+", "memory": "0.5+"}
    assert docs[2]["resources"] == {"cloud": "aws", "cpus": "4+", "memory": "16+", "accelerators": {"V100": 2}}


def test_grouping_prefers_steps_that_fit_the_current_task():
    _, docs = task_documents(compile_case("vm_aws", fan, settings=S3).main)
    groups = [steps_of(d) for d in docs]
    assert groups == [["produce"], ["small", "small_again"], ["big", "big_again"], ["combine", "combine_big",
                                                                                    "combine_2"]]


def test_per_step_settings_reach_resources_and_split_tasks():
    spot = small.with_options(name="spot", settings={"vm_gcp": {"use_spot": True, "region": "europe-west4",
                                                                  "instance_type": "n2-standard-8",
                                                                  "disk_size": 200}})

    @pipeline(name="spotty")
    def spotty():
        return combine(small(1), spot(2))

    _, docs = task_documents(compile_case("vm_gcp", spotty, settings={**S3, "zone": "europe-west4-a"}).main)
    spot_doc = next(d for d in docs if steps_of(d) == ["spot"])
    assert spot_doc["resources"] == {"cloud": "gcp", "region": "europe-west4", "zone": "europe-west4-a",
                                     "instance_type": "n2-standard-8", "cpus": "0.5+", "memory": "0.5+",
                                     "use_spot": True, "disk_size": 200}
    assert [steps_of(d) for d in docs] == [["small"], ["spot"], ["combine"]]


def test_a_step_level_image_setting_is_honoured_as_on_argo_and_kubeflow():
    """The step's image, the pipeline's, then the image setting, a step's own settings included."""
    custom = small.with_options(name="custom", settings={"vm_aws": {"image": "ghcr.io/acme/custom:2"}})

    @pipeline(name="images")
    def images():
        return combine(small(1), custom(2))

    _, docs = task_documents(compile_case("vm_aws", images, settings={**S3, "image": "ghcr.io/acme/base:1"}).main)
    by_step = {steps_of(d)[0]: d["resources"].get("image_id") for d in docs}
    assert by_step == {"small": "docker:ghcr.io/acme/base:1", "custom": "docker:ghcr.io/acme/custom:2",
                       "combine": "docker:ghcr.io/acme/base:1"}


def test_tags_become_vm_labels_under_each_clouds_rule():
    @pipeline(name="tagged", tags=["nightly", "Team:ML"])
    def tagged():
        return produce(1)

    _, (doc,) = task_documents(compile_case("vm_aws", tagged, settings=S3).main)
    assert doc["resources"]["labels"] == {"nightly": "", "Team:ML": ""}
    with pytest.raises(UnsupportedFeatureError, match=r"tag 'Team:ML' cannot be a GCP label key on a SkyPilot VM"):
        compile_case("vm_gcp", tagged, settings={**S3, "artifact_root": "gs://b/p"})
    bundle = compile_case("vm_gcp", tagged, settings={"artifact_root": "gs://b/p"}, on_unsupported="warn").bundle
    (only,) = task_documents(bundle[bundle.main_file])[1]
    assert only["resources"]["labels"] == {"nightly": ""} and len(bundle.warnings) == 1


def test_accelerators_setting_replaces_the_gpu_request():
    _, docs = task_documents(compile_case("vm_aws", mixed, settings={**S3, "accelerators": "A100:8"}).main)
    assert all(d["resources"]["accelerators"] == "A100:8" for d in docs)


def test_gpu_without_a_type_is_an_error_with_a_fix():
    @pipeline(name="gpu")
    def gpu():
        return untyped_gpu(1)

    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("vm_aws", gpu, settings=S3)
    assert "without a type" in str(err.value) and "gpu_type" in str(err.value)


@pytest.mark.parametrize(("target", "root", "hint"), [
    ("vm_aws", None, "s3://"), ("vm_gcp", "file:///tmp/x", "gs://"), ("vm_azure", "/data/artifacts", "az://"),
])
def test_artifact_root_must_be_an_object_store(target, root, hint):
    settings = {} if root is None else {"artifact_root": root}
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case(target, mixed, settings=settings)
    assert hint in str(err.value) and "artifact" in str(err.value)


def test_store_backend_is_installed_by_setup():
    _, docs = task_documents(compile_case("vm_azure", mixed,
                                          settings={**S3, "artifact_root": "az://box/p", "pip_packages": ["numpy==2.1"],
                                                    "requirements_file": "requirements.txt",
                                                    "pipecast_package": "pipecast==0.1.0"}).main)
    # No requirements= here: the import root's (this repository's) pyproject.toml dependencies, as pipecast build
    found = " ".join(shlex.quote(r) for r in pipeline_requirements(mixed.build(), ROOT))
    assert found
    assert docs[0]["setup"] == ("set -euo pipefail\n"
                                f"python3 -m pip install pipecast==0.1.0 adlfs {found} numpy==2.1\n"
                                "python3 -m pip install -r requirements.txt\n")


@pytest.mark.parametrize("settings", [{"use_spot": "maybe"}, {"disk_size": "big"}, {"disk_size": 0},
                                      {"pip_packages": "numpy"}, {"working_directory": ["a"]}])
def test_settings_of_the_wrong_type_are_errors(settings):
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("vm_aws", mixed, settings={**S3, **settings})
    assert repr(next(iter(settings))) in str(err.value)


def test_the_working_directory_is_synced_and_workdir_is_its_old_name():
    _, docs = task_documents(compile_case("vm_aws", mixed, settings={**S3, "working_directory": "examples"}).main)
    assert all(d["workdir"] == "examples" for d in docs)
    _, docs = task_documents(compile_case("vm_aws", mixed, settings={**S3, "working_directory": ""}).main)
    assert all("workdir" not in d for d in docs)
    with pytest.raises(UnsupportedFeatureError, match=r"setting 'workdir' .* is now called 'working_directory'"):
        compile_case("vm_aws", mixed, settings={**S3, "workdir": "examples"})


def test_an_artifact_root_no_setup_can_reach_is_an_error():
    with pytest.raises(UnsupportedFeatureError, match="'hdfs://nn/x' is not an object store"):
        compile_case("vm_aws", mixed, settings={**S3, "artifact_root": "hdfs://nn/x"})


def test_parameters_that_would_clash_as_env_vars_are_errors():
    shouting = produce.with_options(name="shouting", env={"n": "1"})

    @pipeline(name="clash")
    def clash(n: int = 1, PATH: str = "x"):  # noqa: N803 - the clash under test
        return shouting(n)

    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("vm_aws", clash, settings=S3)
    assert "'PATH'" in str(err.value) and "'n' has the name of a step env var" in str(err.value)


def test_required_parameter_is_a_null_env_skypilot_asks_for():
    @pipeline(name="needs")
    def needs(n: int):
        return produce(n)

    _, (doc,) = task_documents(compile_case("vm_aws", needs, settings=S3).main)
    assert doc["envs"]["n"] is None


def test_secrets_are_references_without_values():
    @pipeline(name="secretive", secrets=[Secret("api-token", env="API_TOKEN")])
    def secretive():
        return produce(1)

    bundle = compile_case("vm_aws", secretive, settings={"artifact_root": "s3://b/p"}).bundle
    (doc,) = yaml.safe_load_all(bundle["secretive.sky.yaml"])
    assert doc["secrets"] == {"API_TOKEN": None}
    assert "api-token" not in bundle["secretive.sky.yaml"]


def test_scripts_are_valid_bash():
    for name in ("full_options", "hostile", "ml_training"):
        bundle = compile_case("vm_aws", name, settings=SETTINGS["vm_aws"]).bundle
        for doc in task_documents(bundle[bundle.main_file])[1]:
            for script in (doc["setup"], doc["run"]):
                subprocess.run(["bash", "-n", "-c", script], check=True)


def test_crontab_launches_the_yaml_on_the_schedule():
    text = compile_case("vm_aws", "ml_training", settings=SETTINGS["vm_aws"]).bundle["ml_training.crontab"]
    (line,) = [line for line in text.splitlines() if not line.startswith("#")]
    assert line == ("0 4 * * 1 cd '@DIR@' && sky jobs launch --yes --detach-run --name ml_training "
                    "ml_training.sky.yaml >>sky-schedule.log 2>&1")


def test_importing_the_target_does_not_import_skypilot():
    code = "import sys, pipecast.targets.skypilot as t; t.VmAwsTarget(); print('sky' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"


def test_listed_with_their_real_status():
    listing = describe_targets()
    for name in ("vm_aws", "vm_gcp", "vm_azure"):
        (line,) = [line for line in listing.splitlines() if line.startswith(name + " ")]
        assert "experimental" in line and "pipecast[skypilot]" in line



@pytest.mark.parametrize("name", ["PIPECAST_FLOW_STOPPED", "PIPECAST_FLOW_CANCELLED", "PIPECAST_RUN_ID",
                                  "PIPECAST_ARTIFACT_ROOT", "SKYPILOT_TASK_ID"])
def test_a_step_env_var_the_run_script_sets_is_refused(name):
    """The task's ``envs`` reach the whole run script: PIPECAST_FLOW_STOPPED there would make every later step
    record itself skipped (pipecast/runtime/inline_flow.py), a run id or root another run's records."""
    stopping = produce.with_options(name="stopping", env={name: "1"})

    @pipeline(name="stops")
    def stops(n: int = 1):
        return produce(stopping(n))

    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("vm_aws", stops, settings=S3)
    assert f"env var {name!r} is set by pipecast or SkyPilot" in str(err.value)
    assert "rename the step's env var or secret" in str(err.value)
