"""How the Argo target lowers each IR feature and setting, and what it refuses."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from pipecast import pipeline
from pipecast.errors import UnsupportedFeatureError
from pipecast.targets.argo import template_change
from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import compile_case
from tests.targets.argo.support import (
    documents,
    global_scope,
    of_kind,
    schema_errors,
    task_invocations,
    template_as_run,
    value_as_run,
    workflow_spec,
)
from tests.targets.tekton import pipelines

BASE = {"gpu_node_label": "gke"}  # the golden settings' choice; unset is tested on its own


def templates_of(files):
    return {t["name"]: t for t in of_kind(files, "WorkflowTemplate")[0]["spec"]["templates"]}


def test_retry_strategy_and_deadlines():
    files = compile_case("argo", pipelines.options_check,
                         settings={**BASE, "retry_policy": "OnFailure", "pipeline_timeout": "2h"}).files
    templates = templates_of(files)
    assert templates["flaky"]["retryStrategy"] == {"limit": "3", "retryPolicy": "OnFailure"}
    assert templates["flaky"]["activeDeadlineSeconds"] == 90
    # A fractional backoff factor is not an Argo IntOrString: the runtime retries instead.
    assert "retryStrategy" not in templates["fractional-backoff"]
    args = templates["fractional-backoff"]["container"]["args"]
    assert args[args.index("--attempts"):] == ["--attempts", "3", "--retry-delay", "5", "--retry-backoff", "1.5"]
    assert of_kind(files, "WorkflowTemplate")[0]["spec"]["activeDeadlineSeconds"] == 7200


def test_backoff_maps_delay_factor_and_cap():
    load = templates_of(compile_case("argo", "full_options", golden=True).files)["load"]
    assert load["retryStrategy"] == {"limit": "2", "retryPolicy": "Always",
                                     "backoff": {"duration": "30s", "factor": "2", "cap": "10m"}}
    assert load["activeDeadlineSeconds"] == 3600


def test_pod_settings_and_gpu():
    files = compile_case("argo", pipelines.options_check,
                         settings={**BASE, "service_account": "runner", "node_selector": {"zone": "a"},
                                   "tolerations": [{"key": "spot", "operator": "Exists"}], "namespace": "ml"}).files
    spec = of_kind(files, "WorkflowTemplate")[0]["spec"]
    assert (spec["serviceAccountName"], spec["nodeSelector"], spec["tolerations"]) == (
        "runner", {"zone": "a"}, [{"key": "spot", "operator": "Exists"}])
    gpu = templates_of(files)["gpu-step"]
    assert gpu["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-a100", "pool": "gpu"}
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert gpu["container"]["resources"] == {"limits": {"nvidia.com/gpu": "2"}}
    assert all(d["metadata"]["namespace"] == "ml" for d in documents(files))
    for doc in documents(files):
        assert schema_errors(doc) == []


def test_required_parameter_has_no_value():
    files = compile_case("argo", pipelines.options_check, settings=BASE).files
    assert of_kind(files, "WorkflowTemplate")[0]["spec"]["arguments"]["parameters"] == [
        {"name": "required"}, {"name": "optional", "value": "x"}]


def test_env_values_reach_the_container_verbatim():
    """``$`` is escaped for the kubelet; tags that name no Argo variable are left alone by Argo."""
    files = compile_case("argo", pipelines.options_check, settings=BASE).files
    env = {e["name"]: e["value"] for e in templates_of(files)["env-step"]["container"]["env"]}
    assert env["REF"] == "$$(params.required) $$(context.taskRun.name)"
    assert env["TEMPLATE"] == "{{x}} {{ 7*7 }} {{workflow}}"
    invocations = {name: env for name, _, env in task_invocations(files, "wf-1", {"required": "3"})}
    assert invocations["env-step"] == {"DOLLARS": "$$HOME $(HOME)", "REF": "$(params.required) $(context.taskRun.name)",
                                       "TEMPLATE": "{{x}} {{ 7*7 }} {{workflow}}"}


def test_values_argo_would_template_are_refused_and_the_replay_shows_why():
    """Argo templates a step several times, so a tag inside a value is substituted or evaluated too."""
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("argo", pipelines.argo_tags, settings=BASE)
    text = str(err.value)
    assert ("env 'RUN' of step 'argo_tag' would reach the step changed: it contains '{{workflow.name}}', which Argo "
            "substitutes") in text
    assert ("the default of parameter 'text' would reach step 'argo_tag' changed: it contains "
            "'{{workflow.parameters.text}}', which Argo substitutes") in text
    assert "Argo has no escape for '{{'" in text
    bundle = compile_case("argo", pipelines.argo_tags, on_unsupported="warn").bundle
    with pytest.raises(AssertionError, match="does not evaluate Argo expressions"):  # "{{=1+1}}" would be evaluated
        task_invocations(bundle.as_dict(), "wf-1")
    ((_, argv, env),) = task_invocations(bundle.as_dict(), "wf-1", {"text": "{{workflow.name}}!"})
    assert env["RUN"] == "wf-1" and "text=str:wf-1!" in argv


@pytest.mark.parametrize("text", [
    "plain", "{{x}}", "{{ 7*7 }}", "{{workflow}}", "{{workflow.name}}", "{{ workflow.name }}", "{{workflow.uid}}",
    "{{pod.name}}", "{{node.name}}", "{{tasks.name}}", "{{workflow.parameters}}", "a{{x{{workflow.name}}b",
    "{{workflow.parameters.p}}!", "}}", "${{ github.token }}", "{{retries}}", "{{=1+1}}", "{{ =x}}",
])
def test_template_change_fires_when_argo_would_change_the_value(text):
    try:
        changed = value_as_run(text) != text
    except AssertionError:  # Argo fails, or evaluates an expression
        changed = True
    assert (template_change(text) is not None) == changed


@pytest.mark.parametrize("text", ["{{item}}", "{{item.x}}", "{{inputs.parameters.x}}", "{{workflow.bogus}}",
                                  "{{", "x{{y", "}}{{"])
def test_template_change_refuses_what_argo_changes_only_in_some_places(text):
    """Refused though this test's one-parameter template keeps them: in a template's own text (env values)
    Argo's validation refuses an unknown tag under its roots, a loop or an input resolves the others, and an
    unclosed '{{' pairs with whatever '}}' follows in the template's JSON (its end, or another tag)."""
    assert template_change(text) is not None


def test_hostile_file_parses_back_to_the_same_values():
    files = compile_case("argo", pipelines.argo_hostile, golden=True).files
    template = of_kind(files, "WorkflowTemplate")[0]
    assert template["metadata"]["annotations"]["workflows.argoproj.io/description"] == pipelines.ARGO_EVIL
    assert template["spec"]["arguments"]["parameters"][0]["value"] == pipelines.ARGO_EVIL
    assert yaml.safe_load(files["hostile-workflow.yaml"])["spec"]["arguments"]["parameters"][0]["value"] == \
        pipelines.ARGO_EVIL


def test_the_golden_hostile_case_is_refused_for_the_tags_argo_substitutes():
    """EVIL holds '{{workflow.name}}': Argo would give the step the workflow's name instead."""
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("argo", "hostile", golden=True)
    assert "it contains '{{workflow.name}}', which Argo substitutes" in str(err.value)
    files = compile_case("argo", "hostile", golden=True, on_unsupported="warn").files
    invocations = {name: (argv, env) for name, argv, env in task_invocations(files, "hostile-x1")}
    argv, env = invocations["echo-text"]
    assert env["EVIL_ENV"] == EVIL.replace("{{workflow.name}}", "hostile-x1")
    assert f"text=str:{EVIL.replace('{{workflow.name}}', 'hostile-x1')}" in argv


def test_a_step_called_main_does_not_take_the_entrypoint():
    spec = of_kind(compile_case("argo", pipelines.entry, settings=BASE).files, "WorkflowTemplate")[0]["spec"]
    assert spec["entrypoint"] == "main-dag"
    assert [t["name"] for t in spec["templates"]] == ["main-dag", "main"]


def test_embed_and_schedule():
    files = compile_case("argo", "ml_training", golden=True, settings={"embed": True, "timezone": "Europe/Paris"}).files
    assert list(files) == ["ml-training-workflow.yaml", "ml-training-cronworkflow.yaml", "ml-training-rbac.yaml"]
    workflow = of_kind(files, "Workflow")[0]
    cron = of_kind(files, "CronWorkflow")[0]
    referencing = compile_case("argo", "ml_training", golden=True).files
    assert workflow["spec"] == of_kind(referencing, "WorkflowTemplate")[0]["spec"]
    assert cron["spec"]["schedules"] == ["0 4 * * 1"] and cron["spec"]["timezone"] == "Europe/Paris"
    assert cron["spec"]["workflowSpec"] == workflow["spec"]
    referenced = of_kind(referencing, "CronWorkflow")[0]
    assert referenced["spec"]["workflowSpec"] == {"workflowTemplateRef": {"name": "ml-training"}}


@pytest.mark.parametrize(("pipeline_def", "settings", "message"), [
    (pipelines.no_image, {"artifact_root": "s3://b"}, "step 'make' has no container image"),
    (pipelines.no_image, {"image": "i"}, "pipeline 'no_image' has no artifact root"),
    (pipelines.colliding, {}, "steps 'same-name' and 'same_name' both become 'same-name'"),
    (pipelines.huge, {}, "Argo's workflow controller fails a Workflow over 1048576 bytes"),
    (pipelines.options_check, {"retry_policy": "Sometimes"}, "setting 'retry_policy' (in --set): must be one of"),
    (pipelines.options_check, {"service_account": "Bad Name"},
     "setting 'service_account' (in --set): must be a DNS-1123 subdomain"),
    (pipelines.options_check, {"argo_url": "x"}, "'argo_url' given with --set is a connection setting"),
])
def test_refusals(pipeline_def, settings, message):
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("argo", pipeline_def, settings={**BASE, **settings})
    assert message in str(err.value)


def test_template_syntax_in_a_step_name_is_refused():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("argo", pipelines.odd_names, settings=BASE)
    assert "the command of step 'x{{workflow.name}}$(y)' would contain '$'" in str(err.value)


def test_double_dollar_default_is_refused_and_compiles_with_warn():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("argo", pipelines.double_dollar, settings=BASE)
    assert "the default of parameter 'text' would reach step 'echo_value' changed: it contains '$$'" in str(err.value)
    assert "after the engine substitutes the value" in str(err.value)
    bundle = compile_case("argo", pipelines.double_dollar, on_unsupported="warn").bundle
    assert [w.message for w in bundle.warnings if "parameter 'text'" in w.message]


def test_undefined_references_in_defaults_compile_and_reach_the_step_verbatim():
    ((_, argv, _),) = task_invocations(compile_case("argo", pipelines.undefined_reference, settings=BASE).files, "wf-1")
    assert "text=str:$(whoami) $HOME" in argv and 'data=dict:{"k": "$(z)"}' in argv


def test_a_default_naming_a_defined_or_argo_added_env_variable_is_refused():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("argo", pipelines.defined_reference, settings=BASE)
    assert "it contains '$(TOKEN_DIR)', which the kubelet replaces" in str(err.value)
    argo_env = pipelines.undefined_reference.build()
    argo_env = dataclasses.replace(argo_env, parameters=tuple(
        dataclasses.replace(p, default_json='"$(ARGO_NODE_ID)"') if p.name == "text" else p
        for p in argo_env.parameters))
    with pytest.raises(UnsupportedFeatureError, match=r"it contains '\$\(ARGO_NODE_ID\)'"):
        compile_case("argo", argo_env)


def test_a_node_local_artifact_root_is_refused():
    """Each task runs in a pod of its own: a path on one node would lose a step's inputs."""
    for root in ("file:///data/artifacts", "/data/artifacts"):
        with pytest.raises(UnsupportedFeatureError, match=r"artifact root '.*' is a path on one machine, but each "
                                                          r"task of 'argo' runs on a machine \(or pod\) of its own"):
            compile_case("argo", pipelines.no_image, settings={**BASE, "image": "i", "artifact_root": root})


def test_a_steps_own_service_account_and_retry_policy_go_on_its_template():
    files = compile_case("argo", pipelines.identity, settings=BASE).files
    spec = of_kind(files, "WorkflowTemplate")[0]["spec"]
    assert spec["serviceAccountName"] == "runner" and spec["imagePullSecrets"] == [{"name": "regcred"}]
    templates = templates_of(files)
    assert templates["own-identity"]["serviceAccountName"] == "trainer"
    assert templates["own-identity"]["retryStrategy"] == {"limit": "1", "retryPolicy": "OnError"}
    assert "serviceAccountName" not in templates["plain"]  # the workflow's applies
    for doc in documents(files):
        assert schema_errors(doc) == []


def test_a_steps_own_image_pull_secrets_are_reported_argo_takes_them_per_workflow():
    with pytest.raises(UnsupportedFeatureError, match=r"step 'own_pull_secret' sets image_pull_secrets of its own; "
                                                      r"Argo takes them for the whole workflow only"):
        compile_case("argo", pipelines.argo_pull, settings=BASE)


def test_a_bad_step_setting_is_reported_at_the_step():
    bad = pipelines.plain.with_options(settings={"argo": {"retry_policy": "Never", "node_selectr": {"a": "b"}}})

    @pipeline(name="bad_step", image="i", artifact_root="s3://b")
    def bad_step():
        bad(1)

    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("argo", bad_step, settings=BASE)
    problems = {p.message: p for p in err.value.problems}
    wrong = problems["setting 'retry_policy' (in the step's settings=): must be one of ['Always', 'OnFailure', "
                     "'OnError', 'OnTransientError'], got 'Never'"]
    typo = problems["unknown setting 'node_selectr' for target 'argo' in the step's settings=; did you mean "
                    "'node_selector'?"]
    assert wrong.step == typo.step == "plain" and "test_emit.py:" in (wrong.location or "")


def test_housekeeping_by_default_podgc_ttl_and_labels_on_every_pod_and_workflow():
    files = compile_case("argo", "quickstart", golden=True).files
    spec = of_kind(files, "WorkflowTemplate")[0]["spec"]
    labels = {"app.kubernetes.io/managed-by": "pipecast", "pipecast.dev/pipeline": "quickstart"}
    assert spec["podGC"] == {"strategy": "OnWorkflowSuccess", "deleteDelayDuration": "1h"}  # logs stay readable
    assert spec["ttlStrategy"] == {"secondsAfterCompletion": 7 * 86400}
    assert spec["podMetadata"] == spec["workflowMetadata"] == {"labels": labels}
    assert "parallelism" not in spec and "priority" not in spec
    templates = {t["name"]: t for t in spec["templates"]}
    runnable, values = workflow_spec(files)
    scope = global_scope(runnable, "wf-1", values)
    tasks = spec["templates"][0]["dag"]["tasks"]
    assert [t["template"] for t in tasks] == ["make-numbers", "split", "total", "total", "report"]  # one shared
    steps = {"make-numbers": "make_numbers", "split": "split", "total": "total", "total-2": "total_2",
             "report": "report"}
    for task in tasks:  # and each step's pod its step's name, from the shared template's --step input
        ran = template_as_run(templates[task["template"]], task, scope, f"wf-1-{task['name']}")
        assert ran["metadata"]["labels"] == {"pipecast.dev/step": steps[task["name"]]}


def test_housekeeping_settings():
    files = compile_case("argo", "quickstart", golden=True, settings={
        "pod_gc": "OnPodSuccess", "pod_gc_delay": "10m", "ttl": "3d", "parallelism": 4, "priority": -2}).files
    spec = of_kind(files, "WorkflowTemplate")[0]["spec"]
    assert spec["podGC"] == {"strategy": "OnPodSuccess", "deleteDelayDuration": "10m"}
    assert spec["ttlStrategy"] == {"secondsAfterCompletion": 3 * 86400}
    assert (spec["parallelism"], spec["priority"]) == (4, -2)
    for doc in documents(files):
        assert schema_errors(doc) == []
    spec = of_kind(compile_case("argo", "quickstart", golden=True, settings={"pod_gc": "Never", "ttl": None}).files,
                   "WorkflowTemplate")[0]["spec"]
    assert "podGC" not in spec and "ttlStrategy" not in spec
    spec = of_kind(compile_case("argo", "quickstart", golden=True, settings={"pod_gc_delay": None}).files,
                   "WorkflowTemplate")[0]["spec"]
    assert spec["podGC"] == {"strategy": "OnWorkflowSuccess"}
    with pytest.raises(UnsupportedFeatureError, match=r"setting 'parallelism' .*must be a whole number greater than 0"):
        compile_case("argo", "quickstart", golden=True, settings={"parallelism": 0})
    with pytest.raises(UnsupportedFeatureError, match=r"setting 'pod_gc' .*must be one of"):
        compile_case("argo", "quickstart", golden=True, settings={"pod_gc": "OnPodFailure"})


def test_rbac_file_grants_each_service_account_what_argos_executor_needs():
    """Argo's documented minimum (docs/workflow-rbac.md): create/patch workflowtaskresults, for every account."""
    files = compile_case("argo", pipelines.identity, settings={**BASE, "namespace": "ml"}).files
    rbac = yaml.safe_load_all(files["identity-rbac.yaml"])
    accounts, role, binding = {}, None, None
    for doc in rbac:
        assert doc["metadata"]["namespace"] == "ml" and schema_errors(doc) == []
        if doc["kind"] == "ServiceAccount":
            accounts[doc["metadata"]["name"]] = doc
        elif doc["kind"] == "Role":
            role = doc
        else:
            binding = doc
    assert list(accounts) == ["runner", "trainer"]  # the pipeline's and a step's own
    assert accounts["runner"]["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "pipecast"}  # shared
    assert role["rules"] == [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                              "verbs": ["create", "patch"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "ml"} for name in accounts]
    assert "identity-rbac.yaml" not in compile_case("argo", pipelines.identity, settings={**BASE, "rbac": False}).files
    assert not [f for f in compile_case("argo", pipelines.options_check, settings=BASE).files if "rbac" in f]
