"""Conformance and lowering of the kubeflow and vertex targets (the KFP IR, PipelineSpec 2.1.0).

Every case × both targets parses strictly into the kfp-pipeline-spec protobufs (unknown fields rejected),
passes the reference checks the protobuf cannot do, and loads with ``kfp.components``; hostile values come
back verbatim; each IR feature lowers as the capability table says, and what cannot is reported.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp import components
from kfp.pipeline_spec import pipeline_spec_pb2

from pipecast import Resources, Retry, Secret, pipeline, step
from pipecast.errors import UnsupportedFeatureError
from pipecast.runtime.params import decode_constant
from pipecast.runtime.publish_kfp import expand_task
from pipecast.targets.kfpspec.references import check_references
from tests.helpers.cases import CASE_IDS, CASES, ROOT, case, compile_case, env_with_cases
from tests.helpers.kube_semantics import container_env
from tests.targets.kfp.support import documents, parse_strictly

TARGETS = ["kubeflow", "vertex"]
COMMON = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "gs://acme/artifacts"}
# kubeflow's gpu_node_label is the golden settings' choice; unset is tested on its own
SETTINGS = {"kubeflow": {**COMMON, "gpu_node_label": "gke"}, "vertex": COMMON}


def executor(spec: dict, task: str) -> dict:
    """The container a root task runs (tasks with the same shape share one: kfpspec/sharing.py)."""
    component = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]


def task_args(spec: dict, task: str) -> list[str]:
    """The task's args with its own constant inputs substituted, as KFP's launcher does, and its ``--kfp-task``
    list put back in place, as the runtime does."""
    args = executor(spec, task)["args"]
    for name, source in spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"].items():
        if name.startswith("pipecast_") and name != "pipecast_run_id":
            placeholder = "{{$.inputs.parameters['" + name + "']}}"
            args = [a.replace(placeholder, source["runtimeValue"]["constant"]) for a in args]
    return expand_task(args)


# Small pipelines for the lowering tests (their functions never run).
@step
def produce(n: int) -> int:
    return n


@step
def consume(x: int) -> int:
    return x


@step(resources=Resources(gpu=2, gpu_type="nvidia-l4"), timeout="90s")
def gpu_step(x: int) -> int:
    return x


@step(retry=Retry(attempts=4, delay="60s", backoff=3.0, max_delay="2m"))
def capped_retry() -> None:
    pass


@step
def take(blob: str) -> int:
    return len(blob)


@pipeline(name="two_steps")
def two_steps(n: int = 3):
    consume(produce(n))


@pipeline(name="gpus")
def gpus():
    gpu_step(1)


@pipeline(name="capped")
def capped():
    capped_retry()


@pipeline(name="big")
def big():
    take("x" * (1024 * 1024 + 10))


@pipeline(name="clash")
def clash():
    produce.with_options(name="a_b")(1)
    produce.with_options(name="a-b")(2)


@pipeline(name="secretive", secrets=[Secret("creds", key="token", env="TOKEN")])
def secretive():
    produce(1)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("golden_case", CASES, ids=CASE_IDS)
def test_every_case_parses_strictly_resolves_and_loads_in_kfp(golden_case, target, tmp_path):
    bundle = compile_case(target, golden_case, golden=True, on_unsupported="warn").bundle
    assert [path for path, _ in bundle.files] == [bundle.main_file]
    assert bundle.main_file.endswith(".yaml")
    text = bundle[bundle.main_file]
    spec = parse_strictly(text)
    assert spec.schema_version == "2.1.0"
    assert spec.sdk_version == "pipecast"  # no version or timestamp that changes between runs
    assert len(spec.root.dag.tasks) == len(golden_case.build().steps)
    path = tmp_path / bundle.main_file
    path.write_text(text)
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == spec.pipeline_info.name
    if target == "vertex":
        assert documents(text)[1] is None, "Vertex ignores the Kubernetes platform spec, so none is written"


def test_checked_in_goldens_parse_strictly():
    goldens = sorted((ROOT / "tests" / "golden").glob("*/kubeflow/*.yaml")) + sorted(
        (ROOT / "tests" / "golden").glob("*/vertex/*.yaml"))
    assert len(goldens) >= 2 * len(CASES) - 1  # vertex refuses full_options (secrets): an ERROR.txt golden
    for path in goldens:
        parse_strictly(path.read_text())


def test_unknown_fields_are_rejected_where_the_spec_nests_structs():
    text = compile_case("kubeflow", "full_options", settings=SETTINGS["kubeflow"]).main
    spec_doc, platform_doc = documents(text)
    typo = copy.deepcopy(spec_doc)
    typo["deploymentSpec"]["executors"]["exec-load"]["container"]["imagePullPolicyy"] = "Always"
    json_format.ParseDict(typo, pipeline_spec_pb2.PipelineSpec())  # the Struct hides it from PipelineSpec...
    with pytest.raises(json_format.ParseError):
        parse_strictly(yaml.safe_dump(typo) + "---\n" + yaml.safe_dump(platform_doc))  # ...not from our check
    typo = copy.deepcopy(platform_doc)
    typo["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-load"]["nodeSelectr"] = {}
    with pytest.raises(json_format.ParseError):
        parse_strictly(yaml.safe_dump(spec_doc) + "---\n" + yaml.safe_dump(typo))
    typo = copy.deepcopy(spec_doc)
    typo["root"]["dag"]["tasks"]["load"]["retryPolicy"]["maxRetries"] = 2
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(typo, pipeline_spec_pb2.PipelineSpec())


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["root"]["dag"]["tasks"]["train"].__setitem__("componentRef", {"name": "comp-nope"}),
     "componentRef 'comp-nope'"),
    (lambda d: d["components"]["comp-train"].__setitem__("executorLabel", "exec-nope"), "executorLabel 'exec-nope'"),
    (lambda d: d["root"]["dag"]["tasks"]["train"]["dependentTasks"].append("ghost"), "'ghost'"),
    (lambda d: d["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["lr"].__setitem__(
        "componentInputParameter", "lr2"), "'lr2'"),
    (lambda d: d["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"].__setitem__(
        "extra", {"taskOutputParameter": {"producerTask": "ghost", "outputParameterKey": "o"}}), "producerTask"),
    (lambda d: d["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"].pop("lr"), "required input 'lr'"),
    (lambda d: d["components"]["comp-train"]["inputDefinitions"]["parameters"].pop("lr"),
     "substitutes input 'lr'"),
    (lambda d: d["root"]["dag"]["tasks"]["load"].__setitem__("dependentTasks", ["notify"]), "cycle"),
])
def test_reference_checker_finds_what_the_protobuf_accepts(mutate, message):
    text = compile_case("kubeflow", "full_options", settings=SETTINGS["kubeflow"]).main
    spec_doc, platform_doc = documents(text)
    assert check_references(spec_doc, platform_doc) == []
    mutate(spec_doc)
    json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())  # the protobuf takes it
    problems = check_references(spec_doc, platform_doc)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("target", TARGETS)
def test_hostile_values_come_back_verbatim(target):
    pipeline_ir = case("hostile").build()
    text = compile_case(target, pipeline_ir, settings=SETTINGS[target]).main
    spec_doc, _ = documents(text)
    evil = case("hostile").load().build().description
    assert "{{ 7*7 }}" in evil and "\n" in evil
    assert spec_doc["pipelineInfo"]["description"] == evil
    defaults = {name: p["defaultValue"] for name, p in spec_doc["root"]["inputDefinitions"]["parameters"].items()}
    assert defaults == {p.name: p.default for p in pipeline_ir.parameters}
    env = executor(spec_doc, "echo-text")["env"]
    # Kubeflow's kubelet and Vertex AI (its EnvVar docs) expand $(VAR) and $$: the value is written escaped.
    assert container_env(env) == {"EVIL_ENV": evil} and env[0]["value"] != evil
    for name, step_ir in (("echo-text", pipeline_ir.step("echo_text")), ("echo-data", pipeline_ir.step("echo_data"))):
        args = task_args(spec_doc, name)
        constants = {a.partition("=")[0]: decode_constant(a.partition("=")[2])
                     for i, a in enumerate(args) if i and args[i - 1] == "--const"}
        assert constants == {b.input: b.value for b in step_ir.bindings if b.kind.value == "constant"}
        # The only placeholders: input parameters, and the executor input ({{$}}) as the last argument.
        assert args[-2:] == ["--kfp-executor-input", "{{$}}"]
        assert not any("{{" in a and "$.inputs" not in a and "pipeline_job_uuid" not in a for a in args[:-1])


def test_emit_is_pure_and_imports_no_sdk():
    script = (
        "import sys\n"
        "from pipecast.flow import EmitOptions, compile_pipeline\n"
        "from tests.helpers.cases import case\n"
        "for t in ('kubeflow', 'vertex'):\n"
        "    compile_pipeline(case('ml_training').build(), t, EmitOptions(settings={'artifact_root': 'gs://b/r'}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kfp', 'kfp_server_api')"
        " or m.startswith('google.cloud.aiplatform') or m.startswith('google.protobuf')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            env=env_with_cases(), cwd=str(ROOT))
    assert result.stdout.strip() == "[]"
    first = compile_case("kubeflow", "ml_training", settings=SETTINGS["kubeflow"]).main
    assert first == compile_case("kubeflow", "ml_training", settings=SETTINGS["kubeflow"]).main


@pytest.mark.parametrize("target", TARGETS)
def test_parameters_are_typed_root_inputs_wired_to_tasks(target):
    text = compile_case(target, "full_options", settings=SETTINGS[target], on_unsupported="warn").main
    spec_doc, _ = documents(text)
    root = spec_doc["root"]["inputDefinitions"]["parameters"]
    assert {k: v["parameterType"] for k, v in root.items()} == {
        "source": "STRING", "limit": "NUMBER_INTEGER", "lr": "NUMBER_DOUBLE", "epochs": "NUMBER_INTEGER",
        "options": "STRUCT", "dry_run": "BOOLEAN"}
    assert root["options"]["defaultValue"] == {"optimizer": "sgd"} and root["dry_run"]["defaultValue"] is True
    train = spec_doc["root"]["dag"]["tasks"]["train"]
    assert train["inputs"]["parameters"]["lr"] == {"componentInputParameter": "lr"}
    assert train["dependentTasks"] == ["load"]
    assert spec_doc["components"]["comp-train"]["inputDefinitions"]["parameters"]["options"] == {
        "parameterType": "STRUCT"}
    args = executor(spec_doc, "train")["args"]
    assert "options=dict:{{$.inputs.parameters['options']}}" in args
    # The run id: an input every task gets as the runtime constant the engine resolves (see test_replay).
    assert args[args.index("--run-id") + 1] == "{{$.inputs.parameters['pipecast_run_id']}}"
    for name, task in spec_doc["root"]["dag"]["tasks"].items():
        assert task["inputs"]["parameters"]["pipecast_run_id"] == {
            "runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}, name
        component = spec_doc["components"][task["componentRef"]["name"]]
        assert component["inputDefinitions"]["parameters"]["pipecast_run_id"] == {"parameterType": "STRING"}
    assert "{{$.pipeline_job_uuid}}" not in json.dumps(spec_doc["deploymentSpec"])
    assert spec_doc["root"]["dag"]["tasks"]["notify"]["dependentTasks"] == ["publish"]  # an .after() edge
    assert spec_doc["root"]["dag"]["tasks"]["notify"]["taskInfo"] == {"name": "notify"}


def test_kubeflow_lowers_resources_retries_timeouts_secrets_to_kfp_and_the_platform_spec():
    text = compile_case("kubeflow", "full_options", settings=SETTINGS["kubeflow"]).main
    spec_doc, platform_doc = documents(text)
    assert executor(spec_doc, "load")["resources"] == {
        "cpuRequest": 2.0, "memoryLimit": 4.294967296, "memoryRequest": 4.294967296,
        "resourceCpuRequest": "2", "resourceMemoryLimit": "4Gi", "resourceMemoryRequest": "4Gi"}  # no CPU limit
    assert executor(spec_doc, "train")["resources"]["accelerator"] == {
        "count": "1", "resourceCount": "1", "resourceType": "nvidia.com/gpu", "type": "nvidia.com/gpu"}
    assert executor(spec_doc, "train")["image"] == "ghcr.io/acme/gpu:2.1"
    assert executor(spec_doc, "load")["env"] == [{"name": "LOG_LEVEL", "value": "debug"},
                                                 {"name": "PROJECT", "value": "acme"}]
    assert spec_doc["root"]["dag"]["tasks"]["load"]["retryPolicy"] == {
        "backoffDuration": "30s", "backoffFactor": 2.0, "backoffMaxDuration": "3600s", "maxRetryCount": 2}
    assert "--timeout" not in executor(spec_doc, "load")["args"]  # KFP enforces it natively
    platform = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert platform["exec-load"]["activeDeadlineSeconds"] == "3600"
    assert platform["exec-train"]["nodeSelector"] == {"labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}}
    assert platform["exec-load"]["secretAsEnv"][1] == {
        "keyToEnv": [{"envVar": "DB_PASSWORD", "secretKey": "password"}], "optional": False,
        "secretName": "db-credentials", "secretNameParameter": {"runtimeValue": {"constant": "db-credentials"}}}
    assert "--no-cache" in executor(spec_doc, "publish")["args"]
    # Off, as kfp 2.17 writes set_caching_options(False): an empty message (enableCache's proto3 default).
    assert all(t["cachingOptions"] == {} for t in spec_doc["root"]["dag"]["tasks"].values())


def test_vertex_lowers_gpus_to_its_accelerator_types_and_timeouts_to_the_runtime():
    compiled = compile_case("vertex", "full_options", settings=SETTINGS["vertex"], on_unsupported="warn")
    text = compiled.main
    spec_doc, platform_doc = documents(text)
    assert platform_doc is None
    train = executor(spec_doc, "train")
    assert train["resources"] == {
        "accelerator": {"count": "1", "resourceCount": "1", "resourceType": "NVIDIA_TESLA_T4",
                        "type": "NVIDIA_TESLA_T4"},
        "cpuLimit": 0.5, "memoryLimit": 1.073741824, "resourceCpuLimit": "500m", "resourceMemoryLimit": "1Gi"}
    assert train["args"][train["args"].index("--timeout") + 1] == "5400"
    assert [w.message for w in compiled.warnings if w.step == "load"] == [
        "vertex does not support secrets: Vertex AI has no Kubernetes secrets to expose as env; read Secret Manager "
        "inside the step, or use the kubeflow target"]
    assert "DB_PASSWORD" not in text and "db-credentials" not in text
    text = compile_case("vertex", gpus, settings=SETTINGS["vertex"]).main
    assert executor(documents(text)[0], "gpu-step")["resources"]["accelerator"]["type"] == "NVIDIA_L4"


def test_vertex_reports_unknown_accelerators_and_refuses_pod_settings():
    """Vertex schedules no Kubernetes pods: the pod settings are not its settings, so each is refused by name."""
    unknown = gpus.build()
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("vertex", unknown,
                     settings={**SETTINGS["vertex"], "node_selector": {"pool": "gpu"}, "gpu_node_label": "gke",
                               "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]})
    text = str(err.value)
    for key in ("node_selector", "tolerations", "gpu_node_label"):  # gpu_node_label was accepted and ignored
        assert f"unknown setting {key!r} for target 'vertex' in --set" in text
    renamed = gpus.build()
    bad_gpu = type(renamed.steps[0].resources)(gpu=1, gpu_type="a100")
    from dataclasses import replace

    odd = replace(renamed, steps=(replace(renamed.steps[0], resources=bad_gpu),))
    with pytest.raises(UnsupportedFeatureError, match="no accelerator type for gpu_type 'a100'"):
        compile_case("vertex", odd, settings=SETTINGS["vertex"])
    assert compile_case("kubeflow", odd,
                        settings=SETTINGS["kubeflow"]).main  # Kubeflow requests nvidia.com/gpu whatever the type


def test_kubeflow_pod_settings_reach_the_platform_spec():
    text = compile_case("kubeflow", gpus, settings={
        **SETTINGS["kubeflow"], "node_selector": {"pool": "gpu"}, "image_pull_secrets": ["regcred"],
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute",
                         "toleration_seconds": 30}, {"key": "dedicated", "value": "ml"}]}).main
    config = documents(text)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-gpu-step"]
    assert config == {
        "activeDeadlineSeconds": "90",
        "imagePullSecret": [{"secretName": "regcred",
                             "secretNameParameter": {"runtimeValue": {"constant": "regcred"}}}],
        "nodeSelector": {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "gpu"}},
        "tolerations": [{"effect": "NoExecute", "key": "nvidia.com/gpu", "operator": "Exists",
                         "tolerationSeconds": "30"},
                        {"key": "dedicated", "operator": "Equal", "value": "ml"}]}
    parse_strictly(text)


@pytest.mark.parametrize(("settings", "message"), [
    ({"node_selector": ["pool"]}, "setting 'node_selector' (in --set): must be a mapping of text to text"),
    ({"node_selector": {"bad key!": "x"}}, "has key(s) ['bad key!'] that are not label keys"),
    ({"tolerations": [{"key": "k", "operator": "Maybe"}]}, "must be one of ['Equal', 'Exists']"),
    # The API server refuses tolerationSeconds without NoExecute; the old KFP parser let it through.
    ({"tolerations": [{"key": "k", "effect": "NoSchedule", "toleration_seconds": 30}]},
     "has 'tolerationSeconds', which only effect 'NoExecute' takes"),
    ({"image_pull_secrets": "regcred"}, "setting 'image_pull_secrets' (in --set): must be a list of text"),
    ({"node_selector": {"cloud.google.com/gke-accelerator": "nvidia-a100"}},
     "asks for node label cloud.google.com/gke-accelerator='nvidia-a100' in its node_selector"),
])
def test_kubeflow_pod_settings_are_checked_as_kubernetes_would(settings, message):
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("kubeflow", gpus, settings={**SETTINGS["kubeflow"], **settings})
    assert message in str(err.value)


def test_a_bad_setting_is_one_error_not_one_per_step():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("kubeflow", two_steps, settings={**SETTINGS["kubeflow"], "gpu_node_label": "not a label!"})
    (problem,) = err.value.problems
    assert problem.message.startswith("setting 'gpu_node_label' (in --set): is neither a known scheme")


@step(settings={"kubeflow": {"service_account": "trainer", "node_selector": {"pool": "big"}}})
def own_account() -> int:
    return 1


@pipeline(name="accounts", settings={"kubeflow": {"service_account": "runner"}})
def accounts():
    own_account()


def test_a_step_cannot_have_its_own_service_account_on_kubeflow():
    """KFP sets one service account per run; a step's own would be dropped, so it is reported."""
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("kubeflow", accounts, settings=SETTINGS["kubeflow"])
    (problem,) = err.value.problems
    assert problem.step == "own_account" and "sets service_account 'trainer'" in problem.message
    compiled = compile_case("kubeflow", accounts, settings=SETTINGS["kubeflow"], on_unsupported="warn")
    config = documents(compiled.main)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-own-account"]
    assert config == {"nodeSelector": {"labels": {"pool": "big"}}}  # the step's other pod settings apply
    assert compiled.bundle.settings.service_account == "runner"  # what submit gives the run


@pytest.mark.parametrize("target", TARGETS)
def test_pipeline_root_is_a_compile_setting(target):
    """pipeline_root is also read by submit (-c), but a compile setting it stays: --set and settings= reach the
    IR's defaultPipelineRoot; a step cannot have its own, and it must be a URI."""
    assert documents(compile_case(target, two_steps,
                                  settings={**SETTINGS[target], "pipeline_root": "gs://acme/kfp"}).main)[0][
        "defaultPipelineRoot"] == "gs://acme/kfp"
    with pytest.raises(UnsupportedFeatureError, match=r"setting 'pipeline_root' \(in --set\): must be a URI"):
        compile_case(target, two_steps, settings={**SETTINGS[target], "pipeline_root": "acme/kfp"})


@pytest.mark.parametrize("target", TARGETS)
def test_missing_image_or_artifact_root_is_an_error_naming_the_fix(target):
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case(target, "quickstart")
    text = str(err.value)
    assert "step 'make_numbers' has no container image" in text and "--set image=" in text
    assert "has no artifact root" in text and "artifact_root=" in text
    with pytest.raises(UnsupportedFeatureError, match="artifact root '/tmp/artifacts' is a path on one machine"):
        compile_case(target, "quickstart", settings={**SETTINGS[target], "artifact_root": "/tmp/artifacts"})
    # A file:// root names a volume every task mounts (Vertex's Cloud Storage FUSE under /gcs), as the replays do.
    assert compile_case(target, "quickstart",
                        settings={**SETTINGS[target], "artifact_root": "file:///gcs/acme/artifacts"}).main
    with pytest.raises(UnsupportedFeatureError, match="unknown setting 'nodeselector' for target 'kubeflow'"):
        compile_case("kubeflow", "quickstart", settings={"nodeselector": {}})


def test_unknown_setting_in_the_pipeline_is_an_error():
    from dataclasses import replace

    from pipecast.compiler import ir

    typo = replace(two_steps.build(), settings=(ir.Setting(target="vertex", key="projet", value_json='"p"'),))
    with pytest.raises(UnsupportedFeatureError, match="unknown setting 'projet' for target 'vertex' in the "
                                                      "pipeline's settings="):
        compile_case("vertex", typo, settings=SETTINGS["vertex"])
    known = replace(two_steps.build(), settings=(ir.Setting(target="vertex", key="project", value_json='"p"'),))
    assert compile_case("vertex", known, settings=SETTINGS["vertex"]).main  # a connection setting submit reads


@pytest.mark.parametrize("target", TARGETS)
def test_engine_cache_is_off_and_reported_because_it_cannot_hit_across_runs(target):
    """The engine's cache key holds every input value, the run id among them: it could never reuse a task."""
    text = compile_case(target, two_steps, settings=SETTINGS[target]).main
    assert {t["cachingOptions"].get("enableCache", False)
            for t in documents(text)[0]["root"]["dag"]["tasks"].values()} == {False}
    with pytest.raises(UnsupportedFeatureError, match="cache cannot reuse step 'produce' from another run") as err:
        compile_case(target, two_steps, settings={**SETTINGS[target], "engine_cache": True})
    assert "cannot reuse step 'consume'" in str(err.value) and "pipecast_run_id" in str(err.value)
    compiled = compile_case(target, two_steps, settings={**SETTINGS[target], "engine_cache": True},
                            on_unsupported="warn")
    tasks = documents(compiled.main)[0]["root"]["dag"]["tasks"]
    assert tasks["produce"]["cachingOptions"] == {"enableCache": True}  # forced, with a warning
    assert len(compiled.warnings) == 2


@pipeline(name="clashing")
def clashing(pipecast_run_id: int = 1):
    produce(pipecast_run_id)


def test_a_parameter_may_not_take_the_run_id_input_name():
    for target in TARGETS:
        with pytest.raises(UnsupportedFeatureError, match="parameter 'pipecast_run_id' has the name of the input"):
            compile_case(target, clashing, settings=SETTINGS[target])


@pipeline(name="token_user", secrets=[Secret("PERSONAL_ACCESS_TOKEN", env="TOKEN")])
def token_user():
    produce(1)
    consume(2)


def test_a_secret_name_no_kubernetes_secret_can_have_is_an_error():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("kubeflow", token_user, settings=SETTINGS["kubeflow"],
                     on_unsupported="warn")  # an error, whatever --on-unsupported says
    text = str(err.value)
    assert text.count("'PERSONAL_ACCESS_TOKEN' cannot name a Kubernetes Secret") == 1  # once, not per step
    assert "DNS-1123" in text and "Secret('personal-access-token', env='TOKEN')" in text
    assert "step 'produce'" in text


@pipeline(name="tagged", tags=["team-ml", "nightly_2"])
def tagged():
    produce(1)


@pipeline(name="badly_tagged", tags=["ML Training", "9lives", "ok"])
def badly_tagged():
    produce(1)


def test_tags_that_cannot_be_vertex_labels_are_reported():
    assert compile_case("vertex", tagged, settings=SETTINGS["vertex"]).main
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("vertex", badly_tagged, settings=SETTINGS["vertex"])
    text = str(err.value)
    assert "tag 'ML Training' cannot become a Vertex AI label" in text and "'ml-training'" in text
    assert "tag '9lives'" in text and "starts with a lowercase letter" in text and "'ok'" not in text
    from pipecast.targets.vertex import tag_labels

    assert tag_labels(badly_tagged.build()) == {"ok": ""}  # what a warn-compiled submit labels the job with
    assert compile_case("kubeflow", badly_tagged,
                        settings=SETTINGS["kubeflow"]).main  # KFP runs carry the tags in their description (submit)


@step(retry=Retry(attempts=3, delay="40m"), timeout="10m")
def patient() -> None:
    pass


@pipeline(name="windowed")
def windowed():
    patient()


@pytest.mark.parametrize("target", TARGETS)
def test_retries_kfp_cannot_express_are_made_by_the_runtime(target):
    """KFP's retryPolicy has no per-delay cap and stops retrying an hour after the first try: such a policy is
    retried by pipecast's runtime inside the task, exactly, instead of being refused."""
    for built, task, policy in (
            (capped.build(), "capped-retry",
             ["--attempts", "4", "--retry-delay", "60", "--retry-backoff", "3", "--retry-max-delay", "120"]),
            (windowed.build(), "patient", ["--attempts", "3", "--retry-delay", "2400", "--retry-backoff", "1"])):
        spec_doc, platform_doc = documents(compile_case(target, built, settings=SETTINGS[target]).main)
        assert "retryPolicy" not in spec_doc["root"]["dag"]["tasks"][task]
        args = executor(spec_doc, task)["args"]
        assert args[args.index("--attempts"):][:len(policy)] == policy
    spec_doc, platform_doc = documents(compile_case(target, windowed, settings=SETTINGS[target]).main)
    args = executor(spec_doc, "patient")["args"]
    assert args[args.index("--timeout") + 1] == "600"  # per try, by the runtime
    if target == "kubeflow":  # the pod lives through every try: 3 × 10 min + 2 × 40 min
        config = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-patient"]
        assert config["activeDeadlineSeconds"] == str(3 * 600 + 2 * 2400)
    # full_options caps delays at 10 minutes, but its two retries wait 30s and 60s: exact on KFP, so KFP retries.
    spec_doc, _ = documents(compile_case(target, "full_options", settings=SETTINGS[target],
                                         on_unsupported="warn").main)
    assert spec_doc["root"]["dag"]["tasks"]["load"]["retryPolicy"]["maxRetryCount"] == 2
    assert "--attempts" not in executor(spec_doc, "load")["args"]


def test_names_follow_kfp_rules_and_collisions_are_errors():
    text = compile_case("kubeflow", "diamond_after", settings=SETTINGS["kubeflow"]).main
    tasks = documents(text)[0]["root"]["dag"]["tasks"]
    assert sorted(tasks) == ["add", "add-2", "cleanup-tmp", "double", "double-right", "start"]
    assert tasks["double-right"]["taskInfo"]["name"] == "double_right"
    assert documents(text)[0]["pipelineInfo"] == {"displayName": "diamond_after", "name": "diamond-after"}
    with pytest.raises(UnsupportedFeatureError, match="both become 'a-b'"):
        compile_case("kubeflow", clash, settings=SETTINGS["kubeflow"])


def test_kubeflow_refuses_a_pipeline_whose_argo_workflow_cannot_fit():
    with pytest.raises(UnsupportedFeatureError, match="the Argo Workflow the Kubeflow Pipelines backend makes of "
                                                      "pipeline 'big' is at least 2,"):
        compile_case("kubeflow", big, settings=SETTINGS["kubeflow"])
    assert compile_case("vertex", big, settings=SETTINGS["vertex"]).main


def test_secrets_are_references_only():
    text = compile_case("kubeflow", secretive, settings=SETTINGS["kubeflow"]).main
    platform = documents(text)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-produce"]
    assert platform["secretAsEnv"][0]["keyToEnv"] == [{"envVar": "TOKEN", "secretKey": "token"}]
    assert "TOKEN" not in json.dumps(documents(text)[0])  # not in the container's env: only the reference


def test_golden_settings_files_exist():
    for target in TARGETS:
        expected = {"image", "artifact_root"} | ({"gpu_node_label"} if target == "kubeflow" else set())
        assert set(json.loads(Path(ROOT / f"tests/golden/settings/{target}.json").read_text())) == expected
