"""Rules every Kubernetes-based target keeps for what a pod needs: Secret references and tolerations.

One rule per engine family, one message: each case runs over every target in ``KUBE_TARGETS``; the other
Kubernetes-based targets (kubeflow, Airflow's pod mode) join by adding their names once they call the same
functions in ``pipecast.targets.kube``.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pipecast import Resources, Secret, pipeline, step
from pipecast.errors import UnsupportedFeatureError
from pipecast.targets import kube
from pipecast.targets.kube.settings import PodSettings
from pipecast.targets.kubernetes import contract
from tests.helpers.cases import compile_case

KUBE_TARGETS = ["argo", "tekton", "kubernetes"]
# Every target that reads secrets from Kubernetes keeps the same Secret rule and message.
SECRET_TARGETS = [*KUBE_TARGETS, "kubeflow", "airflow"]
TARGET_SETTINGS = {"airflow": {"mode": "kubernetes"}}
BASE = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts", "gpu_node_label": "gke"}
SPOT = {"key": "spot", "operator": "Exists", "effect": "NoSchedule"}
GPU = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _problems(pipeline_def: Any, target: str, **settings: Any) -> list[tuple[str, str | None]]:
    with pytest.raises(UnsupportedFeatureError) as info:
        compile_case(target, pipeline_def, settings={**BASE, **TARGET_SETTINGS.get(target, {}), **settings})
    return [(p.message, p.fix) for p in info.value.problems]


# -- Secret references ----------------------------------------------------------------------------------

@step
def read() -> int:
    return 1


def _with_secret(secret: Secret) -> Any:
    reader = read.with_options(secrets=[secret])

    @pipeline(name="secretive")
    def secretive():
        reader()

    return secretive


@pytest.mark.parametrize("target", SECRET_TARGETS)
@pytest.mark.parametrize("secret", [
    Secret("PERSONAL_ACCESS_TOKEN", env="TOKEN"),
    Secret("db_credentials", key="password", env="DB_PASSWORD"),
    Secret("db-credentials", key="pass/word", env="DB_PASSWORD"),
    Secret("-leading", env="X"),
    Secret("x" * 254, env="X"),
], ids=["upper-no-key", "underscore-with-key", "bad-key", "leading-dash", "too-long"])
def test_a_secret_no_kubernetes_secret_can_hold_is_refused_with_one_message(target, secret):
    expected = kube.secret_ref_problem(secret.to_ir())
    assert expected is not None
    assert _problems(_with_secret(secret), target) == [expected]


def test_the_message_names_no_key_that_was_never_given():
    message, fix = kube.secret_ref_problem(Secret("PERSONAL_ACCESS_TOKEN", env="TOKEN").to_ir()) or ("", "")
    assert message.startswith("secret 'PERSONAL_ACCESS_TOKEN' cannot name a Kubernetes Secret: Secret names are "
                              "DNS-1123 subdomains")
    assert "key" not in message and "key='" not in fix  # no key= argument the user never wrote
    assert fix == ("create the Secret under a valid name, e.g. Secret('personal-access-token', env='TOKEN'), "
                   "holding the value under the key 'TOKEN' (the env name, as no key= is given)")
    _, fix = kube.secret_ref_problem(Secret("db_credentials", key="password", env="DB").to_ir()) or ("", "")
    assert "Secret('db-credentials', key='password', env='DB')" in fix


@pytest.mark.parametrize("target", KUBE_TARGETS)
def test_a_valid_secret_becomes_a_secret_key_ref(target):
    bundle = compile_case(target, _with_secret(Secret("db.credentials", key="pass_word-1.x", env="DB")),
                          settings=BASE).bundle
    text = "".join(content for _, content in bundle.files)
    assert "secretKeyRef" in text and "db.credentials" in text and "pass_word-1.x" in text


@pytest.mark.parametrize("target", KUBE_TARGETS)
def test_a_pipeline_wide_bad_secret_is_reported_once(target):
    @pipeline(name="wide", secrets=[Secret("Bad_Name", env="X")])
    def wide():
        read()
        read()

    assert len(_problems(wide, target)) == 1


# -- tolerations and node selectors --------------------------------------------------------------------

@step(resources=Resources(gpu=1, gpu_type="nvidia-l4"),
      settings={t: {"tolerations": [GPU]} for t in KUBE_TARGETS})
def train() -> int:
    return 1


@step
def prepare() -> int:
    return 1


@step(settings={t: {"node_selector": {"pool": "cpu"}} for t in KUBE_TARGETS})
def report(x: int) -> int:
    return x


@pipeline(name="placed", settings={t: {"tolerations": [SPOT], "node_selector": {"pool": "ml"}} for t in KUBE_TARGETS})
def placed():
    report(train())
    prepare()


def effective_placement(target: str, files: dict[str, str]) -> dict[str, tuple[dict[str, str], list[Any]]]:
    """Each step's pod placement as the engine computes it from what we emitted.

    Argo: a template's nodeSelector (tolerations) if it has any, else the workflow's
    (workflow/controller/workflowpod.go addSchedulingConstraints). Tekton: a taskRunSpecs podTemplate's field
    if set, else the run's taskRunTemplate field (pkg/apis/pipeline/pod/template.go MergePodTemplateWithDefault).
    Kubernetes: the step Job's pod spec, as written; the driver's pod under the name "(driver)".
    """
    docs = [d for text in files.values() for d in yaml.safe_load_all(text) if d]
    placement: dict[str, tuple[dict[str, str], list[Any]]] = {}
    if target == "argo":
        spec = next(d for d in docs if d["kind"] == "WorkflowTemplate")["spec"]
        for template in spec["templates"]:
            if "container" in template:
                placement[template["name"]] = (template.get("nodeSelector") or spec.get("nodeSelector") or {},
                                               template.get("tolerations") or spec.get("tolerations") or [])
    elif target == "tekton":
        run = next(d for d in docs if d["kind"] == "PipelineRun")["spec"]
        default = run.get("taskRunTemplate", {}).get("podTemplate", {})
        tasks = next(d for d in docs if d["kind"] == "Pipeline")["spec"]["tasks"]
        own = {s["pipelineTaskName"]: s["podTemplate"] for s in run.get("taskRunSpecs", [])}
        for task in tasks:
            mine = own.get(task["name"], {})
            placement[task["name"]] = (mine.get("nodeSelector", default.get("nodeSelector", {})),
                                       mine.get("tolerations", default.get("tolerations", [])))
    else:
        configmap = next(d for d in docs if d["kind"] == "ConfigMap")
        for entry in contract.configmap_plan(configmap)["steps"]:
            pod = entry["template"]["spec"]["template"]["spec"]
            placement[entry["job"]] = (pod.get("nodeSelector", {}), pod.get("tolerations", []))
        driver = next(d for d in docs if d["kind"] == "Job")["spec"]["template"]["spec"]
        placement["(driver)"] = (driver.get("nodeSelector", {}), driver.get("tolerations", []))
    return placement


@pytest.mark.parametrize("target", KUBE_TARGETS)
def test_pipeline_tolerations_reach_every_pod_and_a_steps_own_replace_them(target):
    files = compile_case(target, placed, settings=BASE).files
    placement = effective_placement(target, files)
    gpu_label = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert placement["train"] == ({"pool": "ml", **gpu_label}, [GPU])  # the pipeline's selector, plus the GPU's
    assert placement["prepare"] == ({"pool": "ml"}, [SPOT])
    assert placement["report"] == ({"pool": "cpu"}, [SPOT])
    if target == "kubernetes":
        assert placement["(driver)"] == ({"pool": "ml"}, [SPOT])


@pytest.mark.parametrize("target", KUBE_TARGETS)
def test_set_tolerations_apply_to_every_step_without_its_own(target):
    tolerations = [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute",
                    "tolerationSeconds": 60}]
    files = compile_case(target, placed, settings={**BASE, "tolerations": tolerations}).files
    placement = effective_placement(target, files)
    assert placement["prepare"][1] == tolerations and placement["train"][1] == [GPU]


@pytest.mark.parametrize("target", KUBE_TARGETS)
@pytest.mark.parametrize(("tolerations", "reason"), [
    ({"key": "spot"}, "must be a list of toleration"),
    (["spot"], "must be an object with keys ['key', 'operator', 'value', 'effect', 'toleration_seconds']"),
    ([{"kee": "spot"}], "has no key 'kee'; its keys are"),
    ([{"key": "spot", "operator": "exists"}], "must be one of ['Equal', 'Exists']"),
    ([{"key": "spot", "effect": "NoSchedul"}], "must be one of ['NoSchedule', 'PreferNoSchedule', 'NoExecute', '']"),
    ([{"operator": "Equal", "value": "x"}], "has no key, which needs operator 'Exists'"),
    ([{"key": "spot", "operator": "Exists", "value": "x"}], "has a value, which operator 'Exists' does not take"),
    ([{"key": "spot", "effect": "NoSchedule", "tolerationSeconds": 5}], "only effect 'NoExecute' takes"),
    ([{"key": "spot", "effect": "NoExecute", "tolerationSeconds": "soon"}], "must be a whole number"),
    ([{"key": "bad key", "operator": "Exists"}], "has key 'bad key', which is not a label key"),
    ([{"key": "spot", "value": "x" * 64}], "which is not a label value"),
])
def test_a_toleration_kubernetes_would_refuse_is_one_error(target, tolerations, reason):
    """One error per bad setting, from the one parser of pod settings, with the rule and an example to copy."""
    ((message, fix),) = _problems(placed, target, tolerations=tolerations)
    assert message.startswith("setting 'tolerations' (in --set): ") and reason in message
    assert fix == "e.g. --set " + PodSettings.spec()["tolerations"].example


@pytest.mark.parametrize("target", KUBE_TARGETS)
def test_a_node_selector_that_contradicts_the_gpu_type_is_an_error(target):
    clash = train.with_options(settings={target: {"node_selector": {"cloud.google.com/gke-accelerator": "a100"}}})

    @pipeline(name="clash")
    def clashing():
        clash()

    ((message, _),) = _problems(clashing, target)
    assert "cloud.google.com/gke-accelerator='a100' in its node_selector" in message
