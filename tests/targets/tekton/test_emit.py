"""How the Tekton target lowers each IR feature and setting, and what it refuses."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from pipecast.errors import UnsupportedFeatureError
from pipecast.targets.kube.crd import go_duration, kubelet_change
from pipecast.targets.kube.pod import kubelet_escape
from pipecast.targets.tekton import run_value_change, variable_change
from tests.helpers.cases import compile_case
from tests.helpers.kube_semantics import kubelet_expand
from tests.targets.tekton import pipelines
from tests.targets.tekton.support import documents, inlined, of_kind, schema_errors, task_invocations

BASE = {"gpu_node_label": "gke"}  # the golden settings' choice; unset is tested on its own


def tasks_of(files):
    """The pipeline's tasks, each with the spec it runs inlined (a shared Task's, its per-task values as params)."""
    return inlined(files)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (1, "1s"), (90, "1m30s"), (3600, "1h"), (5400, "1h30m"), (86400, "24h"), (0.25, "0.25s"),
    (1.5, "1.5s"), (3661, "1h1m1s"),
])
def test_go_duration(seconds, text):
    assert go_duration(seconds) == text


@pytest.mark.parametrize("value", ["plain", "$(HOME)", "$$", "a$", "$(params.x) $$(y) $((z))", "${{ x }}", "$"])
def test_kubelet_escape_round_trips_through_expansion(value):
    assert kubelet_expand(kubelet_escape(value), {"HOME": "/root", "y": "Y", "params.x": "P"}) == value


def test_retries_and_timeouts():
    files = compile_case("tekton", pipelines.options_check, settings=BASE).files
    tasks = tasks_of(files)
    flaky = tasks["flaky"]
    assert (flaky["retries"], flaky["timeout"]) == (3, "1m30s")  # native: no delay to honour
    assert "--attempts" not in flaky["taskSpec"]["steps"][0]["args"]
    backoff = tasks["fractional-backoff"]
    assert "retries" not in backoff and "timeout" not in backoff  # Tekton retries at once: the runtime waits
    args = backoff["taskSpec"]["steps"][0]["args"]
    assert args[args.index("--attempts"):] == ["--attempts", "3", "--retry-delay", "5", "--retry-backoff", "1.5"]
    run = of_kind(files, "PipelineRun")[0]
    assert run["spec"]["timeouts"] == {"pipeline": "0s"}
    assert of_kind(compile_case("tekton", pipelines.options_check,
                                settings={**BASE, "pipeline_timeout": "6h"}).files, "PipelineRun")[0][
        "spec"]["timeouts"] == {"pipeline": "6h"}


def test_required_parameter_has_no_default_and_is_left_out_of_the_run_file():
    files = compile_case("tekton", pipelines.options_check, settings=BASE).files
    params = of_kind(files, "Pipeline")[0]["spec"]["params"]
    assert params[0] == {"name": "required", "type": "string", "description": "pipecast type: int"}
    assert of_kind(files, "PipelineRun")[0]["spec"]["params"] == [{"name": "optional", "value": "x"}]


def test_pod_settings_and_gpu():
    files = compile_case("tekton", pipelines.options_check,
                         settings={**BASE, "service_account": "runner", "node_selector": {"zone": "a"},
                                   "tolerations": [{"key": "spot", "operator": "Exists"}], "namespace": "ml"}).files
    run = of_kind(files, "PipelineRun")[0]
    assert run["metadata"]["namespace"] == "ml"
    assert run["spec"]["taskRunTemplate"] == {
        "podTemplate": {"nodeSelector": {"zone": "a"}, "tolerations": [{"key": "spot", "operator": "Exists"}]},
        "serviceAccountName": "runner",
    }
    assert run["spec"]["taskRunSpecs"] == [{"pipelineTaskName": "gpu-step", "podTemplate": {
        "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-a100", "pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }}]
    gpu = tasks_of(files)["gpu-step"]["taskSpec"]["steps"][0]
    assert gpu["computeResources"] == {"limits": {"nvidia.com/gpu": "2"}}
    for doc in documents(files):
        assert schema_errors(doc) == []


def test_env_values_reach_the_container_verbatim():
    """An env value Tekton would substitute travels as a pod annotation; ``$$`` and ``$(HOME)`` survive the kubelet."""
    files = compile_case("tekton", pipelines.options_check, settings=BASE).files
    task_spec = tasks_of(files)["env-step"]["taskSpec"]
    env = {e["name"]: e for e in task_spec["steps"][0]["env"]}
    assert env["REF"] == {"name": "REF", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['pipecast.dev/env-REF']"}}}
    assert task_spec["metadata"]["annotations"] == {
        "pipecast.dev/env-REF": "$(params.required) $(context.taskRun.name)"}
    assert env["TEMPLATE"]["value"] == "{{x}} {{ 7*7 }} {{workflow}}" and env["DOLLARS"]["value"] == "$$$$HOME $$(HOME)"
    assert [p["name"] for p in task_spec["params"]] == ["required", "step"]
    invocations = {name: env for name, _, env in task_invocations(files, "run-1", {"required": "3"})}
    assert invocations["env-step"] == {"DOLLARS": "$$HOME $(HOME)", "REF": "$(params.required) $(context.taskRun.name)",
                                       "TEMPLATE": "{{x}} {{ 7*7 }} {{workflow}}", "PIPECAST_TEKTON_RUN": "run-1"}


def test_values_tekton_would_substitute_are_refused_and_the_replay_shows_why():
    """Tekton substitutes in several passes, so a reference inside a parameter's value is replaced too."""
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("tekton", pipelines.tekton_references, settings=BASE)
    text = str(err.value)
    assert ("the default of parameter 'text' would reach step 'echo_value' changed: it contains "
            "'$(context.taskRun.name)', which Tekton substitutes") in text
    assert "it contains '$(params.text)'" in text and "Tekton has no escape for '$('" in text
    bundle = compile_case("tekton", pipelines.tekton_references, on_unsupported="warn").bundle
    ((_, argv, _),) = task_invocations(bundle.as_dict(), "run-1")
    assert "text=str:run-1-echo-value" in argv  # the TaskRun's name, not the text
    # A value the PipelineRun gives arrives as written when it holds "$(params.…)" (one params pass on a shared
    # Task's step), but a default is refused: Tekton resolves "$(params.…)" in a Pipeline default a run omits.
    assert 'data=dict:{"k": "$(params.text)"}' in argv


@pytest.mark.parametrize("text", [
    "plain", "$(whoami)", "$(HOME)", "$(params.text)!", "$(params.run-id)", "$(params[\"text\"])!",
    "$(context.taskRun.name)", "$(context.pipelineRun.name)", "$(context.task.retry-count)",
    "$(step.artifacts.path)", "$(artifacts.path)", "$(credentials.path)", "$(steps.step-run.exitCode.path)",
    "$(params)", "$(context)", "${{ x }}",
])
def test_a_run_value_is_refused_exactly_when_tekton_would_change_it(text):
    """The submit rule (``run_value_change``) against the replay of a PipelineRun giving the value: refused iff
    the step would get other text. The defaults' rule (``variable_change``) refuses ``$(params.…)`` too."""
    pipeline = pipelines.undefined_reference.build()
    files = compile_case("tekton", pipeline, on_unsupported="warn").files
    ((_, argv, _),) = task_invocations(files, "run-1", {"text": text})
    changed = f"text=str:{text}" not in argv
    assert (run_value_change(text) is not None) == changed
    assert (variable_change(text) is not None) == (changed or text.startswith(("$(params.", "$(params[")))


@pytest.mark.parametrize("text", ["$(context.pipelineTask.retries)", "$(workspaces.w.path)", "$(results.r.path)",
                                  "$(tasks.a.results.b)", "$(context.bogus)"])
def test_variable_change_refuses_what_tekton_changes_only_in_some_places(text):
    """Refused though this replay keeps them in args: Tekton replaces them in a task's params (the retries),
    or where a workspace, a result or a task of that name exists, or in a later release."""
    assert variable_change(text) is not None and run_value_change(text) is not None


def test_hostile_file_parses_back_to_the_same_values():
    files = compile_case("tekton", "hostile", golden=True).files
    pipeline = of_kind(files, "Pipeline")[0]
    from tests.golden.cases.hostile import EVIL

    assert pipeline["spec"]["description"] == EVIL
    assert pipeline["spec"]["params"][0]["default"] == EVIL
    assert yaml.safe_load(files["hostile-pipelinerun.yaml"])["spec"]["params"][0]["value"] == EVIL


def test_embed_puts_the_pipeline_spec_in_the_run():
    files = compile_case("tekton", "quickstart", golden=True, settings={"embed": True}).files
    assert list(files) == ["quickstart-pipelinerun.yaml", "quickstart-tasks.yaml"]
    run = of_kind(files, "PipelineRun")[0]
    referencing = compile_case("tekton", "quickstart", golden=True).files
    assert run["spec"]["pipelineSpec"] == of_kind(referencing, "Pipeline")[0]["spec"]
    assert of_kind(files, "Task") == of_kind(referencing, "Task")


def test_schedule_cronjob_creates_the_pipelinerun():
    files = compile_case("tekton", "ml_training", golden=True,
                         settings={"timezone": "Europe/Paris", "cron_image": "ghcr.io/acme/pipecast:1.0"}).files
    (cron,) = of_kind(files, "CronJob")
    assert cron["spec"]["schedule"] == "0 4 * * 1"
    assert cron["spec"]["timeZone"] == "Europe/Paris"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acme/pipecast:1.0"
    assert container["command"] + container["args"] == ["python", "-m", "pipecast.targets.tekton_cron", "--run",
                                                        "/etc/pipecast/pipelinerun.yaml"]
    (role,) = of_kind(files, "Role")
    assert role["rules"] == [{"apiGroups": ["tekton.dev"], "resources": ["pipelineruns"], "verbs": ["create"]},
                             {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]}]


def test_long_pipeline_names_fit_the_cronjob_limit():
    from pipecast.compiler import ir

    pipeline = case_pipeline("ml_training")
    long = ir.Pipeline(**{**{f: getattr(pipeline, f) for f in pipeline.__dataclass_fields__}, "name": "p" * 70})
    files = compile_case("tekton", long, settings={"artifact_root": "s3://b"}).files
    (cron,) = of_kind(files, "CronJob")
    assert len(cron["metadata"]["name"]) <= 52
    assert all(len(d["metadata"].get("name", "")) <= 63 for d in documents(files))


def case_pipeline(name):
    from tests.helpers.cases import case

    return case(name).build()


@pytest.mark.parametrize(("pipeline_def", "settings", "message"), [
    (pipelines.no_image, {"artifact_root": "s3://b"}, "step 'make' has no container image"),
    (pipelines.no_image, {"image": "i"}, "pipeline 'no_image' has no artifact root"),
    (pipelines.colliding, {}, "steps 'same-name' and 'same_name' both become 'same-name'"),
    (pipelines.huge, {}, "is 10"),
    (pipelines.options_check, {"namespace": "Not_DNS"}, "setting 'namespace' (in --set): must be a DNS-1123 name"),
    (pipelines.options_check, {"node_selector": ["a"]}, "setting 'node_selector' (in --set): must be a mapping"),
    (pipelines.options_check, {"node_selector": {"pool": "not a value!"}},
     "setting 'node_selector' (in --set): has value(s) ['not a value!'] that are not label values"),
    (pipelines.options_check, {"tolerations": [{"kee": "x"}]}, "setting 'tolerations' (in --set): has no key 'kee'"),
    (pipelines.options_check, {"pipeline_timeout": "soon"}, "setting 'pipeline_timeout' (in --set): must be a "
                                                            "duration"),
    (pipelines.options_check, {"embed": "maybe"}, "setting 'embed' (in --set): must be true or false"),
    (pipelines.options_check, {"image_pull_secrets": ["Reg Cred"]},
     "setting 'image_pull_secrets' (in --set): has name(s) ['Reg Cred'] that are not DNS-1123 subdomains"),
    (pipelines.options_check, {"bogus": 1}, "unknown setting 'bogus'"),
    (pipelines.odd_names, {}, "the command of step 'x{{workflow.name}}$(y)' would contain '$'"),
])
def test_refusals(pipeline_def, settings, message):
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("tekton", pipeline_def, settings={**BASE, **settings})
    assert message in str(err.value)


def test_oversized_object_error_names_the_limit():
    with pytest.raises(UnsupportedFeatureError, match=r"Pipeline 'huge' is \d+ bytes; pipecast keeps Tekton "
                                                      r"objects to 1048576 bytes \(1 MiB\): etcd refuses a request"):
        compile_case("tekton", pipelines.huge, settings=BASE)


def test_importing_the_target_does_not_import_the_kubernetes_client():
    code = ("import sys, pipecast.targets.tekton, pipecast.targets.argo; "
            "print([m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("text", ["plain", "$$", "a$$b", "$(HOME)", "$(whoami)", "$(HOME", "$x$$", "$($$)",
                                  "$$(HOME)", "$(KUBERNETES_SERVICE_HOST)", "$(DB_PORT_5432_TCP_ADDR)", "$", "x$"])
def test_kubelet_change_fires_exactly_when_the_kubelet_changes_the_text(text):
    env = {"HOME": "<home>", "KUBERNETES_SERVICE_HOST": "<host>", "DB_PORT_5432_TCP_ADDR": "<addr>"}
    changed = kubelet_expand(text, env) != text
    assert (kubelet_change(text, {"HOME"}) is not None) == changed


def test_double_dollar_default_is_refused_naming_parameter_reason_and_fix():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("tekton", pipelines.double_dollar, settings=BASE)
    text = str(err.value)
    assert "the default of parameter 'text' would reach step 'echo_value' changed: it contains '$$'" in text
    assert "the kubelet expands $(VAR) in container args and env after the engine substitutes the value" in text
    assert "'kubeflow'" in text


def test_double_dollar_default_compiles_with_a_warning():
    bundle = compile_case("tekton", pipelines.double_dollar, on_unsupported="warn").bundle
    assert [w.message for w in bundle.warnings if "parameter 'text'" in w.message]


def test_undefined_references_in_defaults_compile_and_reach_the_step_verbatim():
    files = compile_case("tekton", pipelines.undefined_reference, settings=BASE).files
    ((_, argv, _),) = task_invocations(files, "run-1")
    assert "text=str:$(whoami) $HOME" in argv and 'data=dict:{"k": "$(z)"}' in argv


def test_a_default_naming_a_defined_env_variable_is_refused():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("tekton", pipelines.defined_reference, settings=BASE)
    assert ("the default of parameter 'data' would reach step 'echo_value' changed: it contains '$(TOKEN_DIR)', "
            "which the kubelet replaces with the container's env variable 'TOKEN_DIR'") in str(err.value)


def test_a_node_local_artifact_root_is_refused():
    """Each task runs in a pod of its own: a path on one node would lose a step's inputs."""
    for root in ("file:///data/artifacts", "/data/artifacts"):
        with pytest.raises(UnsupportedFeatureError, match=r"artifact root '.*' is a path on one machine, but each "
                                                          r"task of 'tekton' runs on a machine \(or pod\) of its own"):
            compile_case("tekton", pipelines.no_image, settings={**BASE, "image": "i", "artifact_root": root})


def test_service_account_and_pull_secrets_for_the_run_and_a_steps_own():
    files = compile_case("tekton", pipelines.identity, settings=BASE).files
    run = of_kind(files, "PipelineRun")[0]["spec"]
    assert run["taskRunTemplate"] == {"podTemplate": {"imagePullSecrets": [{"name": "regcred"}]},
                                      "serviceAccountName": "runner"}
    assert run["taskRunSpecs"] == [{"pipelineTaskName": "own-identity", "serviceAccountName": "trainer",
                                    "podTemplate": {"imagePullSecrets": [{"name": "gpu-registry"}]}}]
    for doc in documents(files):
        assert schema_errors(doc) == []
