"""Submit and track with the real ``kubernetes`` client against a fake Kubernetes API server.

The fake answers as the API server does for custom resources and records every request; its create
hooks play the Argo workflow controller, moving a Workflow's ``status.phase`` along.
"""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner

from pipecast import Client
from pipecast.cli import main
from pipecast.compiler import naming
from pipecast.errors import SubmitError, UnsupportedFeatureError, UnsupportedFeatureWarning
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from pipecast.targets.kube import client as kube_client
from tests.helpers.cases import case, golden_settings
from tests.targets.tekton import pipelines as tekton_pipelines

WORKFLOWS = "/apis/argoproj.io/v1alpha1/namespaces/ml/workflows"
TEMPLATES = "/apis/argoproj.io/v1alpha1/namespaces/ml/workflowtemplates"
ARGO_UI = "https://argo.example.com"


def submit(fake, case_name="quickstart", parameters=None, settings=None, **config):
    handle = submit_pipeline(case(case_name).build(), "argo", parameters or {},
                             {**golden_settings("argo"), **(settings or {})},
                             {"kubeconfig": fake.kubeconfig, "argo_url": ARGO_UI, **config})
    handle.poll_interval = 0.02
    return handle


def play(*phases, pause=0.05):
    def hook(fake, workflow):
        for status in phases:
            time.sleep(pause)
            fake.set_status(WORKFLOWS, workflow["metadata"]["name"], status, merge=False)
    return hook


def test_submit_applies_template_creates_workflow_and_waits(kube):
    kube.on_create("workflows", play({"phase": "Pending"}, {"phase": "Running"}, {"phase": "Succeeded"}))
    handle = submit(kube, parameters={"n": 20, "label": "{{ x }}"})
    name = naming.rule_for("dns1123_label").apply(handle.run_id)
    assert handle.engine_run_id == f"ml/{name}"
    assert handle.url == f"{ARGO_UI}/workflows/ml/{name}"
    (template_post,) = kube.requests_to("POST", TEMPLATES)
    assert template_post["body"]["kind"] == "WorkflowTemplate"
    assert template_post["body"]["metadata"]["name"] == "quickstart"
    (workflow_post,) = kube.requests_to("POST", WORKFLOWS)
    workflow = workflow_post["body"]
    assert workflow["metadata"]["name"] == name and "generateName" not in workflow["metadata"]
    assert workflow["metadata"]["labels"]["pipecast.dev/run"] == name  # the run and its pods can be selected
    assert workflow["spec"] == {
        "workflowTemplateRef": {"name": "quickstart"},
        "podMetadata": {"labels": {"pipecast.dev/run": name}},
        "arguments": {"parameters": [{"name": "n", "value": "20"}, {"name": "seed", "value": "7"},
                                     {"name": "label", "value": "{{ x }}"}]},
    }
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED
    record = RunStore.default().get(handle.run_id)
    assert (record["status"], record["engine_run_id"], record["url"]) == ("succeeded", f"ml/{name}", handle.url)


def test_second_submit_replaces_the_template(kube):
    submit(kube)
    version = kube.get(TEMPLATES, "quickstart")["metadata"]["resourceVersion"]
    submit(kube, settings={"service_account": "argo-runner"})
    assert [r["method"] for r in kube.requests if "/workflowtemplates" in r["path"]] == ["POST", "POST", "GET", "PUT"]
    put = kube.requests_to("PUT", TEMPLATES)[0]
    assert put["path"] == f"{TEMPLATES}/quickstart"
    assert put["body"]["metadata"]["resourceVersion"] == version
    assert kube.get(TEMPLATES, "quickstart")["spec"]["serviceAccountName"] == "argo-runner"
    assert len(kube.items(WORKFLOWS)) == 2


def test_failed_workflow_names_the_failing_task(kube):
    kube.on_create("workflows", play({"phase": "Running"}, {
        "phase": "Failed", "message": "child 'x' failed",
        "nodes": {
            "a": {"id": "a", "name": "wf", "displayName": "wf", "type": "DAG", "phase": "Failed"},
            "b": {"id": "b", "name": "wf.split", "displayName": "split", "type": "Pod", "phase": "Succeeded"},
            "c": {"id": "c", "name": "wf.total", "displayName": "total", "type": "Pod", "phase": "Failed",
                  "message": "Error (exit code 1)", "finishedAt": "2026-01-01T00:00:02Z"},
        },
    }))
    handle = submit(kube)
    assert handle.wait(timeout=30) is RunStatus.FAILED
    assert handle.detail == "task 'total' failed: Error (exit code 1)"


def test_cancel_terminates_and_ends_cancelled(kube):
    stopped = threading.Event()

    def controller(fake, workflow):
        name = workflow["metadata"]["name"]
        fake.set_status(WORKFLOWS, name, {"phase": "Running"}, merge=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (fake.get(WORKFLOWS, name) or {}).get("spec", {}).get("shutdown") == "Terminate":
                fake.set_status(WORKFLOWS, name, {"phase": "Failed",
                                                  "message": "Stopped with strategy 'Terminate'"}, merge=False)
                stopped.set()
                return
            time.sleep(0.02)

    kube.on_create("workflows", controller)
    handle = submit(kube)
    handle.cancel()
    (patch,) = kube.requests_to("PATCH", WORKFLOWS)
    assert patch["body"] == {"spec": {"shutdown": "Terminate"}}
    assert patch["content_type"] == "application/merge-patch+json"
    assert stopped.wait(10)
    assert handle.wait(timeout=30) is RunStatus.CANCELLED


def test_statuses_map_from_the_phase(kube):
    handle = submit(kube)
    name = handle.engine_run_id.split("/")[1]
    assert handle.status() is RunStatus.PENDING
    for status, expected in [({"phase": "Pending"}, RunStatus.PENDING), ({"phase": "Running"}, RunStatus.RUNNING),
                             ({"phase": "Error", "message": "pod deleted"}, RunStatus.FAILED),
                             ({"phase": "Succeeded"}, RunStatus.SUCCEEDED)]:
        kube.set_status(WORKFLOWS, name, status, merge=False)
        assert handle.status() is expected


def test_runs_wait_reconnects_from_the_run_store(kube):
    kube.on_create("workflows", play({"phase": "Running"}, {"phase": "Succeeded"}))
    handle = submit(kube)
    again = track(handle.run_id, {"kubeconfig": kube.kubeconfig})
    again.poll_interval = 0.02
    assert (again.engine_run_id, again.url) == (handle.engine_run_id, handle.url)
    assert again.wait(timeout=30) is RunStatus.SUCCEEDED


def test_embedded_submit_creates_only_the_workflow(kube):
    handle = submit(kube, settings={"embed": True}, namespace="team-a")
    assert kube.requests_to("POST", "/workflowtemplates") == []
    (post,) = kube.requests_to("POST", "/apis/argoproj.io/v1alpha1/namespaces/team-a/workflows")
    assert post["body"]["spec"]["entrypoint"] == "main"
    assert post["body"]["spec"]["arguments"]["parameters"][0] == {"name": "n", "value": "10"}
    assert handle.engine_run_id.startswith("team-a/")


def test_schedule_is_not_submitted_with_a_run(kube):
    submit(kube, case_name="ml_training")
    assert kube.requests_to("POST", "/cronworkflows") == []


def test_oversized_workflow_is_refused_before_any_request(kube):
    with pytest.raises(SubmitError, match=r"Workflow .* bytes; Argo's workflow controller fails a Workflow over "
                                               r"1048576"):
        submit(kube, parameters={"label": "x" * (1024 * 1024)})
    assert kube.requests == []


def test_default_ui_url_is_the_port_forward_address(kube):
    handle = submit_pipeline(case("quickstart").build(), "argo", {}, golden_settings("argo"),
                             {"kubeconfig": kube.kubeconfig})
    assert handle.url == f"https://localhost:2746/workflows/ml/{handle.engine_run_id.split('/')[1]}"


def test_api_errors_say_what_failed(kube):
    kube.on_create("workflowtemplates", lambda fake, obj: None)
    original = kube.handle

    def forbid(method, path, body, content_type):
        if method == "POST" and "/workflows" in path:
            return 403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                         "reason": "Forbidden", "message": "workflows.argoproj.io is forbidden: User cannot create"}
        return original(method, path, body, content_type)

    kube.handle = forbid
    with pytest.raises(SubmitError, match=r"cannot create Workflow '.*': 403 workflows.argoproj.io is forbidden.*"
                                          r"lacks RBAC rights"):
        submit(kube)


def test_a_value_argo_would_template_is_refused_before_any_request(kube):
    with pytest.raises(SubmitError, match=r"the value of parameter 'label' would reach step 'report' changed: "
                                          r"it contains '\{\{workflow.name\}\}', which Argo substitutes.*nothing was "
                                          r"submitted \(remove the '\{\{…\}\}' tag"):
        submit(kube, parameters={"label": "{{workflow.name}}"})
    assert kube.requests == []


def test_a_lost_answer_to_the_workflow_create_reconnects_to_the_workflow(kube):
    """The API server stored the Workflow, then the connection dropped: the retry meets 409 and adopts it."""
    kube.lose_answers("POST", r"/workflows$")
    kube.on_create("workflows", play({"phase": "Running"}, {"phase": "Succeeded"}))
    handle = submit(kube)
    assert [r["method"] for r in kube.requests if r["path"].startswith(WORKFLOWS)][:3] == ["POST", "POST", "GET"]
    assert kube.lost == [{"method": "POST", "path": WORKFLOWS, "code": 201, "mode": "drop"}]
    assert len(kube.items(WORKFLOWS)) == 1
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED
    assert RunStore.default().get(handle.run_id)["status"] == "succeeded"


def test_a_timed_out_template_create_is_retried_and_replaced(kube, monkeypatch):
    monkeypatch.setattr(kube_client, "REQUEST_TIMEOUT", 1.0)
    kube.lose_answers("POST", r"/workflowtemplates$", mode="stall")
    submit(kube)
    assert [r["method"] for r in kube.requests if "/workflowtemplates" in r["path"]] == ["POST", "POST", "GET", "PUT"]
    assert kube.lost[0]["mode"] == "stall" and len(kube.items(WORKFLOWS)) == 1


def test_a_name_taken_by_another_run_is_not_adopted(kube):
    kube.lose_answers("POST", r"/workflows$")
    original = kube.handle

    def someone_else(method, path, body, content_type):  # the stored Workflow belongs to another run
        if method == "POST" and path.endswith("/workflows") and body:
            body = {**body, "metadata": {**body["metadata"], "annotations": {"pipecast.dev/run-id": "other-run"}}}
        return original(method, path, body, content_type)

    kube.handle = someone_else
    with pytest.raises(SubmitError, match=r"cannot create Workflow '.*' in namespace 'ml': an object of that name "
                                          r"exists and belongs to run 'other-run'"):
        submit(kube)


def test_an_unreachable_api_is_a_clean_error_naming_server_and_kubeconfig(kube, monkeypatch):
    monkeypatch.setattr(kube_client, "RETRY_DELAY", 0.01)
    config = kube.kubeconfig
    url = kube.url
    kube.stop()
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "argo", {}, golden_settings("argo"), {"kubeconfig": config})
    text = str(err.value)
    assert text.startswith("cannot ask whether you may create workflowtemplates.argoproj.io in namespace 'ml': no "
                           "answer from the Kubernetes API server after 4 tries (")  # the first request: a review
    assert f"the API server is {url} (kubeconfig {config!r}, context 'fake')" in text
    assert "--config kubeconfig=PATH" in text


def test_runs_wait_against_an_unreachable_api_is_a_clean_error(kube, monkeypatch):
    handle = submit(kube)
    monkeypatch.setattr(kube_client, "RETRY_DELAY", 0.01)
    config = kube.kubeconfig
    kube.stop()
    result = CliRunner().invoke(main, ["runs", "wait", handle.run_id, "-c", f"kubeconfig={config}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no answer from the Kubernetes API server" in result.output
    result = CliRunner().invoke(main, ["runs", "cancel", handle.run_id, "-c", f"kubeconfig={config}"])
    assert result.exit_code == 2 and "cannot patch Workflow" in result.output


def test_a_value_the_kubelet_would_change_is_refused_before_any_request(kube):
    with pytest.raises(SubmitError, match=r"the value of parameter 'label' would reach step 'report' changed: "
                                          r"it contains '\$\$'.*nothing was submitted"):
        submit(kube, parameters={"label": "costs $$5"})
    assert kube.requests_to("POST") == [] and kube.requests == []


def test_a_refused_default_can_be_submitted_with_warn_and_an_override(kube):
    """A default the kubelet would change blocks compile and submit, unless the user asks for warnings."""
    pipeline = tekton_pipelines.double_dollar.build()
    config = {"kubeconfig": kube.kubeconfig, "argo_url": ARGO_UI}
    with pytest.raises(UnsupportedFeatureError, match=r"(?s)--on-unsupported=warn.*parameter 'text'"):
        submit_pipeline(pipeline, "argo", {"text": "plain"}, {}, config)
    assert kube.requests == []
    with pytest.warns(UnsupportedFeatureWarning, match=r"the default of parameter 'text' would reach step"):
        handle = submit_pipeline(pipeline, "argo", {"text": "plain"}, {}, config, on_unsupported="warn")
    (workflow_post,) = kube.requests_to("POST", WORKFLOWS)
    assert {"name": "text", "value": "plain"} in workflow_post["body"]["spec"]["arguments"]["parameters"]
    (notice,) = Client().get_pipeline_run(handle.run_id).run_metadata["warnings"]
    assert "the default of parameter 'text'" in notice


def test_the_cli_submits_with_warnings_on_stderr(kube):
    reference = f"{tekton_pipelines.__file__}:double_dollar"
    args = ["submit", reference, "-t", "argo", "-p", "text=plain", "-c", f"kubeconfig={kube.kubeconfig}"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "--on-unsupported=warn" in refused.output and kube.requests == []
    result = CliRunner().invoke(main, [*args, "--on-unsupported", "warn"])
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "the default of parameter 'text'" in result.stderr
    assert result.stdout.startswith("run double_dollar-")
    assert len(kube.requests_to("POST", WORKFLOWS)) == 1


REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
LOCAL_REVIEWS = "/apis/authorization.k8s.io/v1/namespaces/ml/localsubjectaccessreviews"


def test_access_is_reviewed_before_the_first_write(kube):
    submit(kube)
    asked = [(r["body"]["spec"]["resourceAttributes"]["verb"], r["body"]["spec"]["resourceAttributes"]["resource"])
             for r in kube.requests_to("POST", REVIEWS)]
    assert asked == [("create", "workflowtemplates"), ("get", "workflowtemplates"), ("update", "workflowtemplates"),
                     ("create", "workflows"), ("get", "workflows")]
    assert {r["body"]["spec"]["resourceAttributes"]["namespace"] for r in kube.requests_to("POST", REVIEWS)} == {"ml"}
    (create, patch) = kube.requests_to("POST", LOCAL_REVIEWS)
    assert create["body"]["spec"]["user"] == "system:serviceaccount:ml:pipecast-runner"  # the golden settings'
    assert "system:serviceaccounts:ml" in create["body"]["spec"]["groups"]
    assert [r["body"]["spec"]["resourceAttributes"]["verb"] for r in (create, patch)] == ["create", "patch"]
    posts = [r["path"] for r in kube.requests if r["method"] == "POST"]
    assert posts.index(TEMPLATES) > max(i for i, p in enumerate(posts) if "accessreviews" in p)


def test_a_missing_right_names_the_verb_and_resource_and_nothing_is_submitted(kube):
    kube.deny("update", "workflowtemplates", "argoproj.io")
    kube.deny("create", "workflows", "argoproj.io")
    with pytest.raises(SubmitError) as err:
        submit(kube)
    message = str(err.value)
    assert ("your account may not update workflowtemplates.argoproj.io in namespace 'ml'; your account may not "
            "create workflows.argoproj.io in namespace 'ml' (asked with a SelfSubjectAccessReview); nothing was "
            "submitted") in message
    assert [r for r in kube.requests if "argoproj.io" in r["path"]] == []


def test_pods_whose_account_cannot_record_results_are_refused_before_submit(kube):
    """The 'wait: Error (exit code 64)' of a fresh namespace (argo-workflows #15203), caught at submit."""
    kube.deny("patch", "workflowtaskresults", "argoproj.io", user="system:serviceaccount:ml:default")
    settings = {"service_account": None, "rbac": False}
    with pytest.raises(SubmitError, match=r"service account 'default' of namespace 'ml', which the steps run as, "
                                          r"may not patch workflowtaskresults.argoproj.io .*exit code 64"):
        submit(kube, settings=settings)
    assert [r for r in kube.requests if "argoproj.io/v1alpha1" in r["path"]] == []
    submit(kube)  # the golden settings' own account may: submitted
    assert len(kube.requests_to("POST", WORKFLOWS)) == 1


def test_the_cli_reports_a_missing_right_as_one_clear_error(kube):
    kube.deny("create", "workflows", "argoproj.io")
    result = CliRunner().invoke(main, ["submit", f"{tekton_pipelines.__file__}:entry", "-t", "argo",
                                       "-c", f"kubeconfig={kube.kubeconfig}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "your account may not create workflows.argoproj.io in namespace 'ml'" in result.output


def test_an_account_that_may_not_review_others_is_not_blocked(kube):
    """A LocalSubjectAccessReview needs a right of its own (Kubernetes' admin role): refused, it is skipped."""
    original = kube.handle

    def forbid_local_reviews(method, path, body, content_type):
        if method == "POST" and path.endswith("/localsubjectaccessreviews"):
            return 403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403, "reason": "Forbidden",
                         "message": "localsubjectaccessreviews.authorization.k8s.io is forbidden: User \"dev\" "
                                    "cannot create resource \"localsubjectaccessreviews\""}
        return original(method, path, body, content_type)

    kube.handle = forbid_local_reviews
    submit(kube)
    assert len(kube.requests_to("POST", REVIEWS)) == 5 and len(kube.requests_to("POST", WORKFLOWS)) == 1
