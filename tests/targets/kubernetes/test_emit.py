"""What the kubernetes target emits: strict schema validity, values that stay data, settings, limits, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipecast.errors import SubmitError, UnsupportedFeatureError
from pipecast.runs.status import RunStatus
from pipecast.runtime.params import decode_constant
from pipecast.targets.kubernetes import contract
from pipecast.targets.kubernetes.driver import Driver, main
from pipecast.targets.kubernetes.submit import KubernetesRun
from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import CASE_IDS, CASES, CompiledCase, case, compile_case, golden_settings
from tests.helpers.kube_semantics import kubelet_expand as expand
from tests.targets.kubernetes import pipelines

K8S_VERSION = "1.35"


def parsed(compiled: CompiledCase) -> dict[str, Any]:
    """The documents of pipeline.yaml and run.yaml, and the plan."""
    bundle = compiled.bundle
    documents = [d for d in yaml.safe_load_all(bundle["pipeline.yaml"]) if d]
    configmap = next(d for d in documents if d["kind"] == "ConfigMap")
    return {"documents": documents, "driver": yaml.safe_load(bundle["run.yaml"]),
            "plan": contract.configmap_plan(configmap),
            "kinds": [d["kind"] for d in documents], "files": bundle.as_dict()}


def step_template(emitted: dict[str, Any], step: str) -> dict[str, Any]:
    return next(s for s in emitted["plan"]["steps"] if s["name"] == step)["template"]


def container(template: dict[str, Any]) -> dict[str, Any]:
    (only,) = template["spec"]["template"]["spec"]["containers"]
    return only


def env_of(template: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container(template)["env"]}


@pytest.mark.parametrize("golden_case", CASES, ids=CASE_IDS)
def test_every_manifest_validates_against_the_kubernetes_schema_in_strict_mode(golden_case):
    emitted = parsed(compile_case("kubernetes", golden_case, golden=True))
    pipeline = golden_case.build()
    for document in [*emitted["documents"], emitted["driver"]]:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    # The step Jobs the driver creates: the templates, and a real one with name, owner and parameter values.
    driver = Driver(emitted["plan"], {p.name: p.default for p in pipeline.parameters}, "run-1", api=None)
    driver.owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "run-1", "uid": "u-1"}
    for step in driver.steps.values():
        kubernetes_validate.validate(step.template, K8S_VERSION, strict=True)
        kubernetes_validate.validate(driver.job_manifest(step), K8S_VERSION, strict=True)
    expected = ["ServiceAccount", "Role", "RoleBinding", "ConfigMap"] + (["CronJob"] if pipeline.schedule else [])
    assert emitted["kinds"] == expected


def test_strict_validation_is_strict():
    """The validator we rely on really rejects a field Kubernetes does not know."""
    template = step_template(parsed(compile_case("kubernetes", "quickstart", golden=True)), "split")
    container(template)["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(template, K8S_VERSION, strict=True)


def test_hostile_values_come_back_verbatim_after_kubernetes_expansion():
    pipeline = case("hostile").build()
    emitted = parsed(compile_case("kubernetes", pipeline, golden=True))
    text = json.dumps(emitted)  # every string parsed back as data; nothing leaked into structure
    assert "whoami" in text
    template = step_template(emitted, "echo_text")
    variables = {"PIPECAST_RUN_ID": "run-1"}
    assert expand(env_of(template)["EVIL_ENV"]["value"], variables) == EVIL
    args = [expand(a, variables) for a in container(template)["args"]]
    constant = args[args.index("--const") + 1]
    assert decode_constant(constant.partition("=")[2]) == EVIL
    assert {p["name"]: json.loads(p["default_json"]) for p in emitted["plan"]["parameters"]} == {
        p.name: p.default for p in pipeline.parameters}
    # Parameter values the driver puts in the step Job come back verbatim, even ones written like references.
    value = f"{EVIL} $(PIPECAST_RUN_ID) $$ $(HOME)"
    driver = Driver(emitted["plan"], {"text": value, "data": {"$(x)": "$$"}}, "run-1", api=None)
    driver.owner = {}
    job = driver.job_manifest(driver.steps["echo_text"])
    env = {e["name"]: e.get("value") for e in container(job)["env"]}
    resolved = {"PIPECAST_RUN_ID": "run-1"}
    for name, raw in env.items():
        if raw is not None:
            resolved[name] = expand(raw, resolved)
    assert resolved["PIPECAST_PARAM_text"] == value
    args = [expand(a, resolved) for a in container(job)["args"]]
    assert f"text=str:{value}" in args


def test_steps_lower_to_jobs_with_every_option():
    emitted = parsed(compile_case("kubernetes", "full_options", golden=True,
                                  settings={"namespace": "ml", "service_account": "trainer",
                                            "node_selector": {"pool": "batch"},
                                            "tolerations": [{"key": "gpu", "operator": "Exists"}],
                                            "image_pull_secrets": ["regcred"], "timezone": "Europe/Paris",
                                            "ttl_seconds_after_finished": 3600, "max_parallel": 3,
                                            "driver_image": "ghcr.io/acme/driver:1"}))
    load, train = step_template(emitted, "load"), step_template(emitted, "train")
    assert load["spec"]["backoffLimit"] == 2
    assert emitted["plan"]["steps"][0]["retry"] == {"attempts": 3, "delay_seconds": 30.0, "backoff": 2.0,
                                                    "max_delay_seconds": 600.0}
    pod = train["spec"]["template"]["spec"]
    assert pod["activeDeadlineSeconds"] == 5400 and pod["serviceAccountName"] == "trainer"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4", "pool": "batch"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert container(train)["image"] == "ghcr.io/acme/gpu:2.1"
    assert container(train)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert env_of(load)["DB_PASSWORD"] == {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "db-credentials", "key": "password"}}}
    assert "--no-cache" in container(step_template(emitted, "publish"))["args"]
    assert emitted["plan"]["max_parallel"] == 3
    cron = emitted["documents"][-1]
    assert cron["kind"] == "CronJob" and cron["spec"]["schedule"] == "0 3 * * *"
    assert cron["spec"]["timeZone"] == "Europe/Paris"
    assert cron["spec"]["jobTemplate"]["spec"] == emitted["driver"]["spec"]
    assert emitted["driver"]["spec"]["ttlSecondsAfterFinished"] == 3600
    assert container(emitted["driver"])["image"] == "ghcr.io/acme/driver:1"
    assert {d["metadata"]["namespace"] for d in [*emitted["documents"], emitted["driver"]]} == {"ml"}
    assert emitted["documents"][2]["subjects"][0]["namespace"] == "ml"
    assert "api-token" not in json.dumps(emitted["plan"]).replace('"name": "api-token"', "")  # a reference only


def test_a_local_artifact_root_needs_a_shared_volume():
    pipeline = case("quickstart").build()
    with pytest.raises(UnsupportedFeatureError, match="separate pods do not share"):
        compile_case("kubernetes", pipeline, golden=True, settings={"artifact_root": "file:///data/artifacts"})
    emitted = parsed(compile_case("kubernetes", pipeline, golden=True,
                                  settings={"artifact_root": "file:///data/artifacts", "artifact_pvc": "shared"}))
    pod = step_template(emitted, "split")["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "artifacts", "persistentVolumeClaim": {"claimName": "shared"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "artifacts", "mountPath": "/data/artifacts"}]
    assert "file:///data/artifacts" in pod["containers"][0]["args"]


@pytest.mark.parametrize(("settings", "message"), [
    ({"image": None}, "step 'make_numbers' has no container image"),
    ({"artifact_root": None}, "has no artifact root"),
    ({"node_selector": ["a"]}, "setting 'node_selector' (in --set): must be a mapping of text to text"),
    ({"tolerations": [{"key": "a", "colour": "red"}]}, "setting 'tolerations' (in --set): has no key 'colour'"),
    ({"max_parallel": 0}, "setting 'max_parallel' (in --set): must be at least 1"),
    ({"poll_seconds": 0}, "setting 'poll_seconds' (in --set): must be at least 0.05"),
    ({"ttl_seconds_after_finished": "1h"}, "setting 'ttl_seconds_after_finished' (in --set): must be a whole number"),
    ({"artifact_pvc": "Shared_PVC"}, "setting 'artifact_pvc' (in --set): must be a DNS-1123 subdomain"),
    ({"artifact_pvc": "shared"}, "artifact_pvc 'shared' is set, but the artifact root 's3://acme-pipelines/artifacts' "
                                 "is not a local path"),
    ({"bogus": 1}, "unknown setting 'bogus'"),
])
def test_bad_or_missing_settings_are_errors_that_say_the_fix(settings, message):
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("kubernetes", "quickstart", golden=True, settings=settings)
    assert message in str(err.value)


def test_reserved_env_names_and_unschedulable_required_parameters_are_errors():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("kubernetes", pipelines.reserved_pipeline, golden=True)
    assert "'PIPECAST_PARAM_x'" in str(err.value) and "reserves" in str(err.value)
    assert "parameter 'x' has no default, so the CronJob cannot start a run" in str(err.value)


def test_names_fit_kubernetes_and_collisions_are_errors():
    emitted = parsed(compile_case("kubernetes", pipelines.long_names_pipeline, golden=True))
    cron = emitted["documents"][-1]
    assert len(cron["metadata"]["name"]) <= 52
    run = contract.run_name("a-pipeline-name-that-is-long-enough-to-need-cutting-20260101-000000-abcdef")
    job = contract.step_job_name(run, emitted["plan"]["steps"][0]["job"])
    assert len(run) <= 63 and len(job) <= 63 and job != contract.step_job_name(run, "other")
    for document in emitted["documents"]:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    with pytest.raises(UnsupportedFeatureError, match="both become 'load-data'"):
        compile_case("kubernetes", pipelines.clash_pipeline, golden=True)


def test_object_and_argument_limits_are_checked_at_compile_time():
    with pytest.raises(UnsupportedFeatureError, match="Linux refuses arguments of 131072 with their NUL"):
        compile_case("kubernetes", pipelines.huge_constant_pipeline, golden=True)
    with pytest.raises(UnsupportedFeatureError, match=r"ConfigMap 'bigger-plan-\w+' is \d+ bytes; pipecast keeps "
                                                      r"a ConfigMap to 1048576 bytes \(1 MiB\) in all: the Kubernetes"):
        compile_case("kubernetes", pipelines.many_constants_pipeline, golden=True)


def test_a_plan_too_big_to_read_is_stored_compressed():
    pipeline = pipelines.chain_pipeline(800).build()  # about 1.1 MiB of plan text
    emitted = parsed(compile_case("kubernetes", pipeline, golden=True))
    configmap = emitted["documents"][3]
    assert list(configmap) == ["apiVersion", "kind", "metadata", "binaryData"]
    assert list(configmap["binaryData"]) == [contract.PLAN_FILE_GZ]
    assert len(emitted["plan"]["steps"]) == len(pipeline.steps)
    assert container(emitted["driver"])["args"] == ["--plan", f"{contract.PLAN_DIR}/{contract.PLAN_FILE_GZ}"]
    kubernetes_validate.validate(configmap, K8S_VERSION, strict=True)


def test_submit_checks_parameter_sizes_before_creating_anything(tmp_path):
    from pipecast.flow import submit_pipeline
    from tests.helpers.fake_kube import FakeKube

    with FakeKube() as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        with pytest.raises(SubmitError, match="Linux refuses"):
            submit_pipeline(case("quickstart").build(), "kubernetes", {"label": "z" * (130 * 1024)},
                            golden_settings("kubernetes"), {"kubeconfig": str(kubeconfig)})
        assert fake.requests_to("POST") == []


class _Jobs:
    """Stands in for the API: one driver Job, or none."""

    namespace = "ns"

    def __init__(self, job: dict[str, Any] | None) -> None:
        self.job = job

    def get(self, kind: str, name: str) -> dict[str, Any]:
        from pipecast.targets.kube.client import KubeError

        if self.job is None:
            raise KubeError(404, "not found")
        return self.job


def _driver_job(conditions: list[str] = (), active: int = 0, state: dict[str, Any] | None = None) -> dict[str, Any]:
    annotations = {contract.ANNOTATION_STATE: json.dumps(state)} if state else {}
    return {"metadata": {"name": "r", "annotations": annotations},
            "status": {"active": active, "conditions": [
                {"type": c, "status": "True", "reason": "BackoffLimitExceeded", "message": "m"} for c in conditions]}}


@pytest.mark.parametrize(("job", "last", "expected", "detail"), [
    (_driver_job(["SuccessCriteriaMet", "Complete"], state={"status": "succeeded"}), None, RunStatus.SUCCEEDED, ""),
    (_driver_job(["Failed"], state={"status": "failed", "detail": "step 'x' failed"}), None, RunStatus.FAILED,
     "step 'x' failed"),
    (_driver_job(["Failed"]), None, RunStatus.FAILED, "driver Job BackoffLimitExceeded: m"),
    (_driver_job(active=1, state={"status": "running"}), None, RunStatus.RUNNING, ""),
    (_driver_job(), None, RunStatus.PENDING, ""),
    (None, "running", RunStatus.FAILED, "no longer exists"),
    (None, "cancelled", RunStatus.CANCELLED, ""),
    (None, "succeeded", RunStatus.SUCCEEDED, "no longer exists"),
])
def test_run_status_maps_the_driver_job(job, last, expected, detail):
    handle = KubernetesRun(_Jobs(job), run_id="p-1", name="r", url=None, last_status=last)  # type: ignore[arg-type]
    assert handle.fetch_status() is expected
    assert detail in handle.detail


def test_the_driver_refuses_bad_input_with_exit_status_2(tmp_path, monkeypatch, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text(contract.dump_plan(parsed(compile_case("kubernetes", "quickstart", golden=True))["plan"]))
    monkeypatch.delenv(contract.RUN_ID_ENV, raising=False)
    assert main(["--plan", str(plan), "--namespace", "ns"]) == contract.EXIT_BAD_INPUT
    assert "the run id and namespace are unknown" in capsys.readouterr().err
    assert main(["--plan", str(plan), "--namespace", "ns", "--run-id", "r", "--param", "n=%22x%22"]) == 2
    assert "parameter 'n': cannot read 'x' as int" in capsys.readouterr().err
    assert main(["--plan", str(tmp_path / "missing.yaml"), "--namespace", "ns", "--run-id", "r"]) == 2


def test_importing_the_target_and_driver_does_not_import_the_sdk():
    code = ("import sys, pipecast.targets.kubernetes, pipecast.targets.kubernetes.driver, "
            "pipecast.targets.kubernetes.submit, pipecast.targets.kube.submit; print('kubernetes' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_cli_compile_writes_both_files(tmp_path):
    from click.testing import CliRunner

    from pipecast.cli import main as cli

    result = CliRunner().invoke(cli, ["compile", str(case("quickstart").path), "--target", "kubernetes",
                                      "--out", str(tmp_path), "--set", "image=img:1",
                                      "--set", "artifact_root=gs://b/p"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pipecast", "pipeline.yaml", "run.yaml"]  # + its record
    listing = CliRunner().invoke(cli, ["targets", "--json"])
    row = next(r for r in json.loads(listing.output) if r["name"] == "kubernetes")
    assert row["status"] == "experimental" and row["capabilities"]["retry backoff"]["support"] == "emulated"


def test_driver_rejects_a_plan_of_another_version():
    with pytest.raises(ValueError, match="version 1"):
        contract.load_plan("version: 99\n")


def test_a_steps_own_service_account_and_pull_secrets_go_on_its_job():
    from tests.targets.tekton import pipelines as crd_pipelines

    emitted = parsed(compile_case("kubernetes", crd_pipelines.identity, golden=True))
    own = step_template(emitted, "own_identity")["spec"]["template"]["spec"]
    other = step_template(emitted, "plain")["spec"]["template"]["spec"]
    driver = emitted["driver"]["spec"]["template"]["spec"]
    assert (own["serviceAccountName"], own["imagePullSecrets"]) == ("trainer", [{"name": "gpu-registry"}])
    assert (other["serviceAccountName"], other["imagePullSecrets"]) == ("runner", [{"name": "regcred"}])
    assert driver["imagePullSecrets"] == [{"name": "regcred"}]  # the driver runs as its own service account
    assert driver["serviceAccountName"] == "identity-pipecast-driver"
    for template in (step_template(emitted, "own_identity"), step_template(emitted, "plain")):
        kubernetes_validate.validate(template, K8S_VERSION, strict=True)


def test_housekeeping_disruptions_and_least_privilege_by_default():
    emitted = parsed(compile_case("kubernetes", "quickstart", golden=True))
    # A finished run goes after a week by default (its step Jobs with it: the driver Job owns them).
    assert emitted["driver"]["spec"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600
    kept = parsed(compile_case("kubernetes", "quickstart", golden=True,
                               settings={"ttl_seconds_after_finished": None}))
    assert "ttlSecondsAfterFinished" not in kept["driver"]["spec"]
    # A drained node or a preempted spot instance does not spend a step's retries, nor the driver's.
    ignore = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    for step in emitted["plan"]["steps"]:
        assert step["template"]["spec"]["podFailurePolicy"] == {"rules": [ignore]}
        assert step["template"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy needs it
    assert ignore in emitted["driver"]["spec"]["podFailurePolicy"]["rules"]
    # The driver's Role: the Job calls it makes, no deletecollection, nothing on pods.
    role = next(d for d in emitted["documents"] if d["kind"] == "Role")
    assert role["rules"] == [{"apiGroups": ["batch"], "resources": ["jobs"],
                              "verbs": ["get", "list", "create", "patch", "delete"]}]
    # Every object says its pipeline; step Jobs and their pods also their step (and, from the driver, their run).
    for document in [*emitted["documents"], emitted["driver"]]:
        assert document["metadata"]["labels"][contract.LABEL_PIPELINE] == "quickstart"
    for step in emitted["plan"]["steps"]:
        for meta in (step["template"]["metadata"], step["template"]["spec"]["template"]["metadata"]):
            assert meta["labels"][contract.LABEL_STEP] == step["job"]


@pytest.mark.parametrize("steps", [3, 5_600, 7_000])  # YAML fits; JSON fits, YAML does not; neither fits
def test_pack_plan_streams_the_bytes_of_one_shot_gzip(steps):
    import base64
    import gzip

    plan = {"version": 1, "pipeline": "caf\u00e9", "parameters": [], "flow": {"ir": {"k": [1.5, None, True]}},
            "steps": [{"name": f"s{i}", "x": "\u00e9" * 40, "d": {"e": {"f": [1, 2, "a\nb"]}}} for i in range(steps)]}
    compact = json.dumps(plan, separators=(",", ":"), ensure_ascii=False).encode()
    text = contract.dump_plan(plan)
    fits = len(compact) <= contract.PLAN_TEXT_LIMIT and len(text.encode()) <= contract.PLAN_TEXT_LIMIT
    expected = (("data", contract.PLAN_FILE, text) if fits else
                ("binaryData", contract.PLAN_FILE_GZ, base64.b64encode(gzip.compress(compact, 9, mtime=0)).decode()))
    assert (len(compact) <= contract.PLAN_TEXT_LIMIT, fits) == {3: (True, True), 5_600: (True, False),
                                                                7_000: (False, False)}[steps]
    assert contract.pack_plan(plan) == expected
    assert contract.load_plan(base64.b64decode(expected[2]) if not fits else expected[2]) == plan
