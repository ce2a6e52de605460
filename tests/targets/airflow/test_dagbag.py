"""Every emitted DAG loads in a real Airflow 3 (DagBag, then the dag-processor's serializer), with the task ids,
dependencies, retries, timeouts, schedule and params of its pipeline; pod specs and rendered environments are
what the pipeline asked for (resources, env, secret references, hostile values verbatim)."""

from __future__ import annotations

import json

import pytest

from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.runtime.params import render_parameter
from tests.helpers.cases import CASES, case, compile_case, golden_settings
from tests.helpers.slow import slow_fixture
from tests.targets.airflow import pipelines
from tests.targets.airflow.in_airflow_dagbag import RUN_ID
from tests.targets.airflow.support import assert_tasks_match, kubernetes_expand, probe
from tests.targets.airflow.typed_pipelines import HOSTILE_ROOT, assert_loaded_outlets, typed_assets

EVIL = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \\ {% raw %} {{workflow.name}} #x"
POD = {"mode": "kubernetes", "image": "ghcr.io/acme/hostile:1", "artifact_root": "s3://b/a"}

# dag id -> (pipeline, settings); the golden cases with their golden settings, and variants.
VARIANTS = {c.name: (c.build, golden_settings("airflow")) for c in CASES}
VARIANTS.update({
    "hostile_pods": (case("hostile").build, {**POD, "dag_id": "hostile_pods"}),
    "mixed_modes": (pipelines.mixed_modes.build, {}),
    "reserved_names": (pipelines.reserved_names.build, {}),
    "full_options_airflow_secrets": (case("full_options").build,
                                     {"secret_store": "airflow", "dag_id": "full_options_airflow_secrets",
                                      "gpu_node_label": "gke"}),
    "full_options_pod_settings": (case("full_options").build,
                                  {"dag_id": "full_options_pod_settings", "gpu_node_label": "nvidia",
                                   "tolerations": [pipelines.SPOT], "node_selector": {"pool": "ml"},
                                   "image_pull_secrets": ["regcred"]}),
    "operator_kwargs": (pipelines.operator_kwargs.build, {}),
    "typed_assets": (typed_assets.build, {"artifact_root": HOSTILE_ROOT}),
    "typed_pods": (typed_assets.build, {"artifact_root": "s3://b/a", "mode": "kubernetes", "image": "ghcr.io/a/t:1",
                                        "dag_id": "typed_pods"}),
})


@pytest.fixture(scope="module")
@slow_fixture
def loaded(tmp_path_factory):
    """Write every variant's DAG file into one folder and let Airflow load them all (one child process)."""
    dags = tmp_path_factory.mktemp("dags")
    built = {}
    for dag_id, (build, settings) in VARIANTS.items():
        pipeline = build()
        bundle = compile_case("airflow", pipeline, settings=settings).bundle
        assert bundle.main_file == f"{dag_id}.dag.py"
        (dags / bundle.main_file).write_text(bundle.files[0][1], encoding="utf-8")
        built[dag_id] = pipeline
    return built, probe(dags, tmp_path_factory.mktemp("airflow-home"))


def test_every_dag_loads_without_import_or_serialization_errors(loaded):
    result = loaded[1]
    assert result["import_errors"] == {}
    assert sorted(result["dags"]) == sorted(VARIANTS)
    for dag_id, dag in result["dags"].items():
        assert dag["serialization_error"] is None, (dag_id, dag["serialization_error"])


@pytest.mark.parametrize("dag_id", sorted(VARIANTS))
def test_tasks_dependencies_retries_timeouts_schedule_and_params(loaded, dag_id):
    built, result = loaded
    pipeline, dag = built[dag_id], result["dags"][dag_id]
    assert_tasks_match(pipeline, dag, backoff=lambda factor: factor if factor != 1 else 0)  # Airflow 3: a factor
    assert dag["timetable"] == ("CronTriggerTimetable" if pipeline.schedule else "NullTimetable")
    assert "pipecast" in dag["tags"] and set(pipeline.tags) <= set(dag["tags"])


def test_param_schemas_are_typed(loaded):
    params = loaded[1]["dags"]["full_options"]["params"]
    assert {name: p["schema"]["type"] for name, p in params.items()} == {
        "source": "string", "limit": "integer", "lr": "number", "epochs": "integer", "options": "object",
        "dry_run": "boolean"}


def test_pod_specs_carry_resources_env_and_secret_references(loaded):
    tasks = loaded[1]["dags"]["full_options"]["tasks"]
    load = tasks["load"]["pod"]
    container = load["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acme/train:1.0"
    assert container["command"] == ["python", "-m", "pipecast.runtime"]
    assert container["resources"] == {"limits": {"memory": "4Gi"},
                                      "requests": {"cpu": "2", "memory": "4Gi"}}
    env = {e["name"]: e for e in container["env"]}
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "debug"}
    assert env["PROJECT"]["value"] == "acme"
    assert env["PIPECAST_RUN_ID"]["value"] == RUN_ID
    assert env["PIPECAST_PARAM_source"]["value"] == "s3://acme/data.csv"
    assert env["DB_PASSWORD"] == {"name": "DB_PASSWORD",
                                  "valueFrom": {"secretKeyRef": {"key": "password", "name": "db-credentials"}}}
    assert env["API_TOKEN"]["valueFrom"] == {"secretKeyRef": {"key": "API_TOKEN", "name": "api-token"}}
    assert not any("value" in e for e in (env["DB_PASSWORD"], env["API_TOKEN"]))
    train = tasks["train"]["pod"]
    assert train["spec"]["containers"][0]["image"] == "ghcr.io/acme/gpu:2.1"
    assert train["spec"]["containers"][0]["resources"]["limits"] == {"memory": "1Gi",
                                                                       "nvidia.com/gpu": "1"}
    assert train["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    options = {e["name"]: e for e in train["spec"]["containers"][0]["env"]}["PIPECAST_PARAM_options"]["value"]
    assert json.loads(options) == {"optimizer": "sgd"}


def test_namespace_and_service_account_from_settings_per_pipeline_and_step(loaded):
    tasks = loaded[1]["dags"]["mixed_modes"]["tasks"]
    pod = tasks["in_pod"]["pod"]
    assert pod["metadata"]["namespace"] == "gpu-jobs"  # the step's setting
    assert pod["spec"]["serviceAccountName"] == "pipecast-runner"  # the pipeline's
    assert tasks["emit"]["type"] == "BashOperator" and tasks["on_worker"]["type"] == "BashOperator"
    assert tasks["on_worker"]["env"]["API_TOKEN"] == "<var:api-token>"


def test_tolerations_and_gpu_node_label_reach_the_pods(loaded):
    """The pipeline's tolerations (DAG default_args) reach every pod, a step's own replace them; the GPU node
    label is the one chosen, beside the pipeline's node selector; the image pull secrets reach every pod."""
    dags = loaded[1]["dags"]
    pods = {name: task["pod"]["spec"] for name, task in dags["full_options_pod_settings"]["tasks"].items()}
    assert all(spec["tolerations"] == [pipelines.SPOT] for spec in pods.values())
    assert all(spec["imagePullSecrets"] == [{"name": "regcred"}] for spec in pods.values())
    assert pods["load"]["nodeSelector"] == {"pool": "ml"}
    assert pods["train"]["nodeSelector"] == {"nvidia.com/gpu.product": "nvidia-tesla-t4", "pool": "ml"}
    assert dags["mixed_modes"]["tasks"]["in_pod"]["pod"]["spec"]["tolerations"] == [pipelines.DEDICATED]


def test_hostile_values_reach_pods_verbatim(loaded):
    built, result = loaded
    pipeline = built["hostile_pods"]
    params = {p.name: p.default for p in pipeline.parameters}
    for step in pipeline.steps:
        container = result["dags"]["hostile_pods"]["tasks"][step.name]["pod"]["spec"]["containers"][0]
        env: dict[str, str] = {}
        for item in container["env"]:  # the kubelet expands each value against those before it
            env[item["name"]] = kubernetes_expand(item["value"], env)
        if step.name == "echo_text":
            assert env["EVIL_ENV"] == EVIL
        argv = [kubernetes_expand(a, env) for a in container["command"] + container["args"]]
        syntax = EngineSyntax(run_id=RUN_ID, artifact_root="s3://b/a",
                              parameter=lambda p: render_parameter(p.type, params[p.name]))
        expected = step_command(pipeline, step, syntax)
        assert [_decoded(a) for a in argv] == [_decoded(a) for a in expected]


def _decoded(word: str) -> object:
    return json.loads(word[len("data=dict:"):]) if word.startswith("data=dict:") else word


def test_hostile_values_reach_the_worker_environment_verbatim(loaded):
    tasks = loaded[1]["dags"]["hostile"]["tasks"]
    first = tasks["echo_text"]
    assert first["env"]["EVIL_ENV"] == EVIL
    assert first["env"]["PIPECAST_PARAM_text"] == EVIL  # rendered by Airflow's Jinja: data, not a template
    assert first["env"]["PIPECAST_RUN_ID"] == RUN_ID
    assert first["append_env"] is True and first["skip_on_exit_code"] == []
    assert json.loads(tasks["echo_data_2"]["env"]["PIPECAST_PARAM_data"]) == {"k'\"{{x}}": "${{ y }}\n$(z)"}
    assert "{{" not in first["bash_command"].replace("%7B", "")


def test_airflow_secrets_and_reserved_parameter_names_render(loaded):
    dags = loaded[1]["dags"]
    env = {e["name"]: e["value"] for e in
           dags["full_options_airflow_secrets"]["tasks"]["load"]["pod"]["spec"]["containers"][0]["env"]}
    assert env["DB_PASSWORD"] == "<conn:db-credentials.password>"
    assert env["API_TOKEN"] == "<var:api-token>"
    keyed = dags["reserved_names"]["tasks"]["keyed"]["env"]
    assert (keyed["PIPECAST_PARAM_values"], keyed["PIPECAST_PARAM_items"], keyed["PIPECAST_PARAM_dump"]) == \
        ("[]", "2", "x")


def test_operator_kwargs_reach_each_operator_verbatim(loaded):
    """The operator_kwargs escape hatch: the pipeline's arguments on the task without its own, the pod step's
    and the worker step's own on theirs, as Airflow's operators keep them; the hostile owner verbatim."""
    tasks = loaded[1]["dags"]["operator_kwargs"]["tasks"]
    default, pod, worker = (tasks[name] for name in ("tuned_default", "tuned_pod", "tuned_worker"))
    assert default["type"] == "BashOperator" and pod["type"] == "KubernetesPodOperator"
    expected = {**pipelines.PIPELINE_KWARGS, "email": ["ml@example.com"]}
    assert {key: default["attributes"][key] for key in expected} == expected
    assert default["attributes"]["owner"] == pipelines.HOSTILE_OWNER
    for attributes, kwargs in ((pod["attributes"], pipelines.POD_KWARGS), (worker["attributes"],
                                                                          pipelines.WORKER_KWARGS)):
        assert {key: attributes[key] for key in kwargs if key in attributes} == \
            {key: value for key, value in kwargs.items() if key in attributes}
        assert attributes["owner"] != pipelines.HOSTILE_OWNER  # a step's own replace the pipeline's
    assert pod["attributes"]["name"] == "tuned-pod" and pod["attributes"]["on_finish_action"] == "keep_pod"
    spec = pod["pod"]["spec"]  # KubernetesPodOperator.build_pod_request_obj: the pod fields reach the pod
    assert spec["priorityClassName"] == "batch-high"
    assert pod["pod"]["metadata"]["name"] == "tuned-pod"  # random_name_suffix false
    assert worker["attributes"]["output_encoding"] == "latin-1"


def test_typed_outputs_are_asset_outlets_and_pods_push_their_xcom_in_airflow_3(loaded):
    """Each typed output is an outlet (Asset) of its task at its static URI (the hostile root percent-encoded
    as written in the task table), with the post_execute hook that fills each event's extra; a pod task pushes
    XCom (the operator adds the sidecar and mounts /airflow/xcom in the step's container)."""
    assert_loaded_outlets(loaded[1]["dags"], "Asset")
