"""The escape hatch of every Kubernetes-based target: pod/container patches, labels, affinity, security context.

Each applied patch is proven by the emitted object validating against the strict Kubernetes 1.35 schema
(``kubernetes-validate``) or the engine's own schema, and by the merged fields being where the engine reads them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest

from pipecast.errors import UnsupportedFeatureError
from pipecast.targets.kube.patches import strategic_merge
from tests.helpers.cases import compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.kubernetes.test_emit import K8S_VERSION, parsed, step_template

AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ml"]}]}]}}}
SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000}
POD_PATCH = {"priorityClassName": "batch-high",
             "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}]}
CONTAINER_PATCH = {"securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                   "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}
HATCH = {"affinity": AFFINITY, "security_context": SECURITY, "pod_spec_patch": POD_PATCH,
         "container_patch": CONTAINER_PATCH, "pod_labels": {"team": "ml"},
         "pod_annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}}


def _problems(target: str, **settings: Any) -> list[tuple[str, str | None]]:
    with pytest.raises(UnsupportedFeatureError) as info:
        compile_case(target, "quickstart", golden=True, settings=settings)
    return [(p.message, p.fix) for p in info.value.problems]


def test_kubernetes_step_pods_get_every_hatch_setting_and_stay_schema_valid():
    emitted = parsed(compile_case("kubernetes", "quickstart", golden=True, settings=HATCH))
    template = step_template(emitted, "split")
    kubernetes_validate.validate(template, K8S_VERSION, strict=True)
    pod = template["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "ml"
    assert pod["metadata"]["labels"]["pipecast.dev/role"] == "step"  # pipecast's labels stay
    assert pod["metadata"]["annotations"] == HATCH["pod_annotations"]
    spec = pod["spec"]
    assert spec["affinity"] == AFFINITY and spec["securityContext"] == SECURITY
    assert spec["priorityClassName"] == "batch-high"
    assert {"name": "scratch", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "scratch", "mountPath": "/scratch"} in container["volumeMounts"]
    assert container["command"] and container["image"]  # pipecast's fields are untouched


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("pod_spec_patch", {"containers": []}, "sets 'containers', which pipecast writes itself (use container_patch"),
    ("pod_spec_patch", {"nodeSelector": {"a": "b"}}, "use the node_selector setting"),
    ("pod_spec_patch", {"priorityClasName": "x"}, "'priorityClasName', which is not a field of a Kubernetes PodSpec"),
    ("pod_spec_patch", {"priority": "high"}, "'priority' that is not a whole number"),
    ("container_patch", {"command": ["sh"]}, "sets 'command', which pipecast writes itself"),
    ("container_patch", {"env": [{"name": "A", "value": "1"}]}, "use @step(env=...) or secrets="),
    ("container_patch", {"resources": {}}, "cpu_limit/memory_limit"),
    ("container_patch", {"volumeMount": []}, "not a field of a Kubernetes Container"),
    ("security_context", {"runAsUser": "root"}, "'runAsUser' that is not a whole number"),
    ("affinity", {"nodeAfinity": {}}, "not a field of a Kubernetes Affinity"),
    ("pod_labels", {"pipecast.dev/step": "x"}, "under pipecast.dev/, which pipecast writes itself"),
    ("pod_labels", {"team": "m l"}, "not label values"),
])
def test_fields_pipecast_owns_or_kubernetes_lacks_are_refused_at_compile(setting, value, expected):
    problems = _problems("kubernetes", **{setting: value})
    assert len(problems) == 1, problems
    assert expected in problems[0][0] and setting in problems[0][0]


def test_strategic_merge_merges_keyed_lists_by_their_key_and_replaces_other_lists():
    base = {"volumes": [{"name": "a", "emptyDir": {}}], "tolerations": [{"key": "x", "operator": "Exists"}],
            "containers": [{"name": "main", "volumeMounts": [{"name": "a", "mountPath": "/a"}],
                            "args": ["1"]}]}
    patch = {"volumes": [{"name": "b", "emptyDir": {}}], "tolerations": [{"key": "y", "operator": "Exists"}],
             "containers": [{"name": "main", "volumeMounts": [{"name": "a", "mountPath": "/b"}],
                             "args": ["2"]}]}
    merged = strategic_merge(base, patch)
    assert [v["name"] for v in merged["volumes"]] == ["a", "b"]
    assert merged["tolerations"] == [{"key": "y", "operator": "Exists"}]  # no merge key: replaced
    (main,) = merged["containers"]
    assert [m["mountPath"] for m in main["volumeMounts"]] == ["/a", "/b"]  # keyed by mountPath, not name
    assert main["args"] == ["2"]
    assert base["volumes"] == [{"name": "a", "emptyDir": {}}]  # inputs unchanged


def test_argo_templates_carry_the_hatch_settings_and_validate_against_argos_schema():
    from tests.targets.argo.support import documents, of_kind, schema_errors

    files = compile_case("argo", "quickstart", golden=True, settings=HATCH).files
    for doc in documents(files):
        assert schema_errors(doc) == []
    (workflow_template,) = of_kind(files, "WorkflowTemplate")
    split = next(t for t in workflow_template["spec"]["templates"] if "container" in t and "split" in t["name"])
    assert split["metadata"]["labels"]["team"] == "ml" and "pipecast.dev/step" in split["metadata"]["labels"]
    assert split["metadata"]["annotations"] == HATCH["pod_annotations"]
    assert split["affinity"] == AFFINITY and split["securityContext"] == SECURITY
    assert split["container"]["securityContext"]["readOnlyRootFilesystem"] is True
    # Argo merges podSpecPatch onto the pod it builds: the result is a valid Kubernetes pod.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": strategic_merge({"containers": [{"name": "main", **split["container"]}],
                                    "affinity": split["affinity"], "securityContext": split["securityContext"]},
                                   json.loads(split["podSpecPatch"]))}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert pod["spec"]["priorityClassName"] == "batch-high"


def test_argo_refuses_a_patch_argo_would_template():
    problems = _problems("argo", pod_annotations={"note": "{{workflow.name}}"})
    assert any("Argo reads as a template expression" in message for message, _ in problems)


TEKTON_HATCH = {**HATCH, "container_patch": {"securityContext": {"readOnlyRootFilesystem": True},
                                             "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}}


def test_tekton_gets_the_hatch_in_its_pod_template_and_step_and_stays_schema_valid():
    from tests.targets.tekton.support import documents, inlined, of_kind, schema_errors

    files = compile_case("tekton", "quickstart", golden=True, settings={**TEKTON_HATCH, "embed": True}).files
    for doc in documents(files):
        if doc["apiVersion"] == "tekton.dev/v1":
            assert schema_errors(doc) == []
    (run,) = of_kind(files, "PipelineRun")
    pod = run["spec"]["taskRunTemplate"]["podTemplate"]
    assert pod["affinity"] == AFFINITY and pod["securityContext"] == SECURITY
    assert pod["priorityClassName"] == "batch-high" and pod["volumes"] == POD_PATCH["volumes"]
    task = inlined(files)["split"]  # the shared Task's spec and metadata
    assert task["taskSpec"]["metadata"]["labels"]["team"] == "ml"
    assert task["taskSpec"]["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    (container,) = task["taskSpec"]["steps"]
    assert container["volumeMounts"] == [{"name": "scratch", "mountPath": "/scratch"}]
    # Tekton builds the pod from the podTemplate and the step: the result is a valid Kubernetes pod.
    step = {k: v for k, v in container.items() if k != "computeResources"}
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                  "spec": {**pod, "containers": [step]}}, K8S_VERSION, strict=True)


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("pod_spec_patch", {"hostPID": True}, "pod_spec_patch sets ['hostPID'], which a Tekton podTemplate does not have"),
    ("container_patch", {"ports": [{"containerPort": 80}]}, "which a Tekton Step does not have"),
    ("container_patch", {"workingDir": "$(params.x)"}, "Tekton replaces as a variable"),
])
def test_tekton_refuses_what_it_has_no_field_for(setting, value, expected):
    problems = _problems("tekton", **{setting: value})
    assert any(expected in message for message, _ in problems), problems


def test_kubeflow_writes_the_hatch_settings_kfp_kubernetes_supports_and_parses_strictly():
    from tests.targets.kfp.support import documents, parse_strictly

    settings = {"affinity": {"nodeAffinity": AFFINITY["nodeAffinity"]},
                "security_context": {"runAsUser": 1000, "runAsNonRoot": True},
                "pod_labels": {"team": "ml"}, "pod_annotations": {"note": "x"}}
    files = compile_case("kubeflow", "quickstart", golden=True, settings=settings).files
    (text,) = files.values()
    parse_strictly(text)  # the KubernetesExecutorConfig protobuf of kfp-kubernetes, unknown fields refused
    _, platform = documents(text)
    config = next(iter(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()))
    # Exactly what kfp-kubernetes 2.17's add_node_affinity_json, set_security_context, add_pod_label/annotation write.
    assert config["nodeAffinity"] == [{"nodeAffinityJson": {"runtimeValue": {"constant": AFFINITY["nodeAffinity"]}}}]
    assert config["podMetadata"] == {"annotations": {"note": "x"}, "labels": {"team": "ml"}}
    assert config["securityContext"] == {"runAsNonRoot": True, "runAsUser": "1000"}


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("pod_spec_patch", {"priorityClassName": "x"}, "pod_spec_patch is set, but Kubeflow Pipelines' platform spec"),
    ("container_patch", {"workingDir": "/w"}, "container_patch is set, but Kubeflow Pipelines' platform spec"),
    ("security_context", {"fsGroup": 1}, "security_context sets ['fsGroup']"),
    ("affinity", {"podAntiAffinity": {}}, "affinity sets ['podAntiAffinity']"),
])
def test_kubeflow_refuses_what_its_platform_spec_cannot_carry(setting, value, expected):
    problems = _problems("kubeflow", **{setting: value})
    assert any(expected in message for message, _ in problems), problems


@pytest.fixture(scope="module")
@slow_fixture
def airflow_pod(tmp_path_factory) -> dict[str, Any]:
    """The pod Airflow 3's KubernetesPodOperator builds for the hatch DAG's first task, rendered as a worker does."""
    from tests.targets.airflow.support import HERE, airflow_env

    base = tmp_path_factory.mktemp("hatch")
    dags = base / "dags"
    dags.mkdir()
    settings = {**HATCH, "mode": "kubernetes", "image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://a/b",
                "dag_id": "hatch", "pod_annotations": {"note": "{{ not a template }}"}}
    bundle = compile_case("airflow", "quickstart", settings=settings).bundle
    (dags / bundle.main_file).write_text(bundle.files[0][1], encoding="utf-8")
    runs, out = base / "runs.json", base / "out.json"
    runs.write_text(json.dumps({"hatch": {"run_id": "r1", "conf": {}}}))
    result = subprocess.run([sys.executable, str(HERE / "in_airflow_render.py"), str(dags), str(runs), str(out)],
                            env=airflow_env(base / "home", dags), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    answer = json.loads(out.read_text())
    assert answer["import_errors"] == {}
    task = next(iter(answer["dags"]["hatch"].values()))
    assert "error" not in task, task.get("traceback")
    return task["pod"]


def test_airflow_pods_get_every_hatch_setting_from_the_operator_itself(airflow_pod):
    kubernetes_validate.validate(airflow_pod, K8S_VERSION, strict=True)
    assert airflow_pod["metadata"]["labels"]["team"] == "ml"
    assert airflow_pod["metadata"]["annotations"] == {"note": "{{ not a template }}"}  # literal(): not rendered
    spec = airflow_pod["spec"]
    assert spec["affinity"] == AFFINITY and spec["securityContext"] == SECURITY
    assert spec["priorityClassName"] == "batch-high"
    assert {"name": "scratch", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
    # do_xcom_push: the provider adds its XCom sidecar beside the step's container ("base")
    containers = {c["name"]: c for c in spec["containers"]}
    assert sorted(containers) == ["airflow-xcom-sidecar", "base"]
    container = containers["base"]
    assert container["securityContext"] == CONTAINER_PATCH["securityContext"]
    assert {"name": "scratch", "mountPath": "/scratch"} in container["volumeMounts"]
    assert container["command"] == ["python", "-m", "pipecast.runtime"]  # the operator's own fields win


# -- resource limits -------------------------------------------------------------------------------------

def _split_resources(target: str, **settings: Any) -> dict[str, Any]:
    compiled = compile_case(target, "ml_training", golden=True, settings=settings)
    if target == "kubernetes":
        template = step_template(parsed(compiled), "train_model")
        kubernetes_validate.validate(template, K8S_VERSION, strict=True)
        (only,) = template["spec"]["template"]["spec"]["containers"]
        return dict(only["resources"])
    from tests.targets.argo.support import of_kind

    (workflow_template,) = of_kind(compiled.files, "WorkflowTemplate")
    return dict(next(t for t in workflow_template["spec"]["templates"] if t["name"] == "train-model")
                ["container"]["resources"])


@pytest.mark.parametrize("target", ["kubernetes", "argo"])
def test_no_cpu_limit_by_default_and_memory_limited_at_the_request(target):
    assert _split_resources(target) == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}


@pytest.mark.parametrize("target", ["kubernetes", "argo"])
def test_cpu_and_memory_limits_are_the_settings(target):
    assert _split_resources(target, cpu_limit="4", memory_limit="2Gi") == {
        "requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "4", "memory": "2Gi"}}


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("cpu_limit", "1", "cpu_limit '1' is below the step's cpu request '2'"),
    ("memory_limit", "512Mi", "memory_limit '512Mi' is below the step's memory request '1Gi'"),
    ("cpu_limit", "two", "is not a positive Kubernetes quantity"),
])
def test_a_limit_the_api_server_would_refuse_is_refused_at_compile(setting, value, expected):
    with pytest.raises(UnsupportedFeatureError) as info:
        compile_case("kubernetes", "ml_training", golden=True, settings={setting: value})
    assert any(expected in p.message for p in info.value.problems), info.value.problems
