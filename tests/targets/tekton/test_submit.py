"""Submit and track with the real ``kubernetes`` client against a fake Kubernetes API server.

The fake answers as the API server does for custom resources and records every request; its create
hooks play the Tekton controller, moving a PipelineRun's ``Succeeded`` condition along.
"""

from __future__ import annotations

import threading
import time

import pytest

from pipecast.compiler import naming
from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from pipecast.targets.kube import client as kube_client
from tests.helpers.cases import case, golden_settings

RUNS = "/apis/tekton.dev/v1/namespaces/ml/pipelineruns"
PIPELINES = "/apis/tekton.dev/v1/namespaces/ml/pipelines"
TASKS = "/apis/tekton.dev/v1/namespaces/ml/tasks"
TASKRUNS = "/apis/tekton.dev/v1/namespaces/ml/taskruns"
DASHBOARD = "https://tekton.example.com/dashboard"


def submit(fake, case_name="quickstart", parameters=None, settings=None, **config):
    handle = submit_pipeline(case(case_name).build(), "tekton", parameters or {},
                             {**golden_settings("tekton"), **(settings or {})},
                             {"kubeconfig": fake.kubeconfig, "dashboard_url": DASHBOARD, **config})
    handle.poll_interval = 0.02
    return handle


def condition(status, reason, message=""):
    return {"conditions": [{"type": "Succeeded", "status": status, "reason": reason, "message": message}]}


def play(*statuses, collection=RUNS, pause=0.05):
    """A controller hook that walks a run through ``statuses``."""
    def hook(fake, run):
        for status in statuses:
            time.sleep(pause)
            fake.set_status(collection, run["metadata"]["name"], status, merge=False)
    return hook


def test_submit_applies_pipeline_creates_run_and_waits(kube):
    kube.on_create("pipelineruns", play(condition("Unknown", "Running"), condition("True", "Succeeded")))
    handle = submit(kube, parameters={"n": 20, "label": "it's \"data\""})
    name = naming.rule_for("dns1123_label").apply(handle.run_id)
    assert handle.engine_run_id == f"ml/{name}"
    assert handle.url == f"{DASHBOARD}/#/namespaces/ml/pipelineruns/{name}"

    task_posts = kube.requests_to("POST", TASKS)  # the shared Tasks, applied before the Pipeline that refers to them
    assert [r["body"]["metadata"]["name"] for r in task_posts] == [
        "quickstart-make-numbers", "quickstart-split", "quickstart-total", "quickstart-report"]
    assert kube.requests.index(task_posts[-1]) < kube.requests.index(kube.requests_to("POST", PIPELINES)[0])
    (pipeline_post,) = kube.requests_to("POST", PIPELINES)
    assert pipeline_post["body"]["kind"] == "Pipeline"
    assert {t["taskRef"]["name"] for t in pipeline_post["body"]["spec"]["tasks"]} == {
        r["body"]["metadata"]["name"] for r in task_posts}
    assert pipeline_post["body"]["metadata"] == {
        "name": "quickstart", "namespace": "ml",
        "labels": {"app.kubernetes.io/managed-by": "pipecast", "pipecast.dev/pipeline": "quickstart"},
        "annotations": {"pipecast.dev/tags": "example"},
    }
    (run_post,) = kube.requests_to("POST", RUNS)
    run = run_post["body"]
    assert run["metadata"]["name"] == name and "generateName" not in run["metadata"]
    assert run["metadata"]["annotations"] == {"pipecast.dev/run-id": handle.run_id}
    assert run["spec"]["pipelineRef"] == {"name": "quickstart"}
    assert run["spec"]["params"] == [{"name": "n", "value": "20"}, {"name": "seed", "value": "7"},
                                     {"name": "label", "value": "it's \"data\""}]

    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED
    record = RunStore.default().get(handle.run_id)
    assert (record["status"], record["engine_run_id"], record["url"]) == ("succeeded", f"ml/{name}", handle.url)
    assert record["parameters"] == {"n": 20, "seed": 7, "label": "it's \"data\""}


def test_second_submit_replaces_the_pipeline(kube):
    first = submit(kube)
    second = submit(kube, settings={"service_account": "pipeline-runner"})
    assert first.engine_run_id != second.engine_run_id
    assert [r["method"] for r in kube.requests if r["path"].startswith(PIPELINES)] == ["POST", "POST", "GET", "PUT"]
    put = kube.requests_to("PUT", PIPELINES)[0]
    assert put["path"] == f"{PIPELINES}/quickstart"
    assert kube.requests_to("GET", PIPELINES)[0]["path"] == f"{PIPELINES}/quickstart"
    assert len(kube.items(RUNS)) == 2
    latest = kube.get(RUNS, second.engine_run_id.split("/")[1])
    assert latest["spec"]["taskRunTemplate"] == {"serviceAccountName": "pipeline-runner"}


def test_replace_sends_the_current_resource_version(kube):
    submit(kube)
    stored_version = kube.get(PIPELINES, "quickstart")["metadata"]["resourceVersion"]
    submit(kube)
    assert kube.requests_to("PUT", PIPELINES)[0]["body"]["metadata"]["resourceVersion"] == stored_version


def test_failed_run_names_the_failing_task(kube):
    def controller(fake, run):
        name = run["metadata"]["name"]
        time.sleep(0.05)
        fake.handle("POST", TASKRUNS, {
            "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
            "metadata": {"name": f"{name}-total", "labels": {"tekton.dev/pipelineRun": name,
                                                             "tekton.dev/pipelineTask": "total"}},
            "status": condition("False", "Failed", "\"step-run\" exited with code 1"),
        }, "application/json")
        fake.set_status(RUNS, name, condition("False", "Failed", "Tasks Completed: 3 (Failed: 1, Cancelled 0)"),
                        merge=False)

    kube.on_create("pipelineruns", controller)
    handle = submit(kube)
    assert handle.wait(timeout=30) is RunStatus.FAILED
    assert handle.detail == "task 'total' failed: \"step-run\" exited with code 1"
    listing = kube.requests_to("GET", TASKRUNS)[-1]
    assert listing["query"]["labelSelector"] == f"tekton.dev/pipelineRun={handle.engine_run_id.split('/')[1]}"
    assert RunStore.default().get(handle.run_id)["detail"] == handle.detail


def test_cancel_patches_spec_status_and_ends_cancelled(kube):
    cancelled = threading.Event()

    def controller(fake, run):
        name = run["metadata"]["name"]
        fake.set_status(RUNS, name, condition("Unknown", "Running"), merge=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (fake.get(RUNS, name) or {}).get("spec", {}).get("status") == "CancelledRunFinally":
                fake.set_status(RUNS, name, condition("False", "Cancelled", "PipelineRun cancelled"), merge=False)
                cancelled.set()
                return
            time.sleep(0.02)

    kube.on_create("pipelineruns", controller)
    handle = submit(kube)
    handle.cancel()
    (patch,) = kube.requests_to("PATCH", RUNS)
    assert patch["body"] == {"spec": {"status": "CancelledRunFinally"}}  # the finally tasks (handlers) still run
    assert patch["content_type"] == "application/merge-patch+json"
    assert cancelled.wait(10)
    assert handle.wait(timeout=30) is RunStatus.CANCELLED


def test_runs_wait_reconnects_from_the_run_store(kube):
    kube.on_create("pipelineruns", play(condition("Unknown", "Running"), condition("True", "Succeeded")))
    handle = submit(kube)
    again = track(handle.run_id, {"kubeconfig": kube.kubeconfig})
    again.poll_interval = 0.02
    assert (again.engine_run_id, again.url) == (handle.engine_run_id, handle.url)
    assert again.wait(timeout=30) is RunStatus.SUCCEEDED


def test_statuses_map_from_conditions(kube):
    handle = submit(kube)
    name = handle.engine_run_id.split("/")[1]
    assert handle.status() is RunStatus.PENDING  # no status yet: the controller has not seen it
    for status, expected in [
        (condition("Unknown", "PipelineRunPending"), RunStatus.PENDING),
        (condition("Unknown", "Started"), RunStatus.RUNNING),
        (condition("Unknown", "Running"), RunStatus.RUNNING),
        (condition("False", "PipelineRunTimeout", "timed out"), RunStatus.FAILED),
        (condition("False", "StoppedRunFinally"), RunStatus.CANCELLED),
        (condition("True", "Completed"), RunStatus.SUCCEEDED),
    ]:
        kube.set_status(RUNS, name, status, merge=False)
        assert handle.status() is expected


def test_embedded_submit_creates_only_the_tasks_and_the_run(kube):
    handle = submit(kube, settings={"embed": True}, namespace="team-a")
    assert kube.requests_to("POST", "/pipelines") == []
    assert len(kube.requests_to("POST", "/apis/tekton.dev/v1/namespaces/team-a/tasks")) == 4
    (run_post,) = kube.requests_to("POST", "/apis/tekton.dev/v1/namespaces/team-a/pipelineruns")
    assert [t["name"] for t in run_post["body"]["spec"]["pipelineSpec"]["tasks"]] == [
        "make-numbers", "split", "total", "total-2", "report"]
    assert handle.engine_run_id.startswith("team-a/")


def test_namespace_setting_is_used_when_config_names_none(kube):
    handle = submit(kube, settings={"namespace": "from-setting"})
    assert handle.engine_run_id.startswith("from-setting/")
    assert kube.requests_to("POST", "/namespaces/from-setting/pipelines")


def test_oversized_run_is_refused_before_any_request(kube):
    with pytest.raises(SubmitError, match=r"PipelineRun .* bytes; pipecast keeps Tekton objects to 1048576"):
        submit(kube, parameters={"label": "x" * (1024 * 1024)})
    assert kube.requests == []
    assert RunStore.default().list()[0]["status"] == "failed"


def test_unknown_config_key_is_an_error(kube):
    with pytest.raises(SubmitError, match=r"unknown --config key\(s\) \['argo_url'\]"):
        submit(kube, argo_url="https://argo")
    assert kube.requests == []


def test_unreachable_api_is_a_submit_error(kube, monkeypatch):
    monkeypatch.setattr(kube_client, "RETRY_DELAY", 0.01)
    config = kube.kubeconfig
    url = kube.url
    kube.stop()
    with pytest.raises(SubmitError, match=rf"cannot read the Kubernetes version: no answer from the "
                                          rf"Kubernetes API server after 4 tries \(.*\); the API server is {url} "
                                          rf"\(kubeconfig "):
        submit_pipeline(case("quickstart").build(), "tekton", {}, golden_settings("tekton"), {"kubeconfig": config})


def test_a_lost_answer_to_the_pipelinerun_create_reconnects_to_the_run(kube):
    kube.lose_answers("POST", r"/pipelineruns$")
    kube.on_create("pipelineruns", play(condition("Unknown", "Running"), condition("True", "Succeeded")))
    handle = submit(kube)
    assert [r["method"] for r in kube.requests if r["path"].startswith(RUNS)][:3] == ["POST", "POST", "GET"]
    assert len(kube.items(RUNS)) == 1 and kube.lost[0]["code"] == 201
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED


def test_a_run_create_without_an_answer_is_recorded_so_runs_wait_can_ask(kube, monkeypatch):
    """Every try's answer is lost: the run is recorded unknown, not failed, with the engine id `runs wait` asks for."""
    monkeypatch.setattr(kube_client, "RETRY_DELAY", 0.01)
    kube.lose_answers("POST", r"/pipelineruns$", times=4)
    kube.lose_answers("GET", r"/pipelineruns/", times=0)
    with pytest.raises(SubmitOutcomeUnknownError, match=r"whether PipelineRun '.*' in namespace 'ml' was created is "
                                                        r"unknown: `pipecast runs wait .*` asks the cluster once it "
                                                        r"answers"):
        submit(kube)
    (record,) = RunStore.default().list()
    assert record["status"] == "unknown" and record["engine_run_id"].startswith("ml/")
    assert len(kube.items(RUNS)) == 1  # the first try created it
    kube.set_status(RUNS, record["engine_run_id"].split("/")[1], condition("True", "Succeeded"), merge=False)
    again = track(record["id"], {"kubeconfig": kube.kubeconfig})
    assert again.wait(timeout=30) is RunStatus.SUCCEEDED
    assert RunStore.default().get(record["id"])["status"] == "succeeded"


def test_a_value_tekton_would_substitute_is_refused_before_any_request(kube):
    with pytest.raises(SubmitError, match=r"the value of parameter 'label' would reach step 'report' changed: it "
                                          r"contains '\$\(context.taskRun.name\)', which Tekton substitutes"):
        submit(kube, parameters={"label": "$(context.taskRun.name)"})
    assert kube.requests == []


def test_missing_kubeconfig_is_a_submit_error(tmp_path):
    with pytest.raises(SubmitError, match="cannot load the Kubernetes configuration"):
        submit_pipeline(case("quickstart").build(), "tekton", {}, golden_settings("tekton"),
                        {"kubeconfig": str(tmp_path / "missing")})


def test_dashboard_url_from_the_environment(kube, monkeypatch):
    monkeypatch.setenv("PIPECAST_TEKTON_DASHBOARD_URL", "https://dash.internal/")
    handle = submit_pipeline(case("quickstart").build(), "tekton", {}, golden_settings("tekton"),
                             {"kubeconfig": kube.kubeconfig})
    assert handle.url == f"https://dash.internal/#/namespaces/ml/pipelineruns/{handle.engine_run_id.split('/')[1]}"


def test_a_value_the_kubelet_would_change_is_refused_before_any_request(kube):
    with pytest.raises(SubmitError, match=r"the value of parameter 'label' would reach step 'report' changed: "
                                          r"it contains '\$\$'.*nothing was submitted"):
        submit(kube, parameters={"label": "costs $$5"})
    assert kube.requests_to("POST") == [] and kube.requests == []
    assert RunStore.default().list()[0]["status"] == "failed"


def test_undefined_references_in_a_value_are_submitted(kube):
    submit(kube, parameters={"label": "$(whoami)"})
    (run_post,) = kube.requests_to("POST", RUNS)
    assert {"name": "label", "value": "$(whoami)"} in run_post["body"]["spec"]["params"]


def test_a_value_holding_a_params_reference_is_submitted_as_written(kube):
    """Tekton takes a PipelineRun's value as resolved and a shared Task's step sees one params pass
    (``test_emit.py`` replays it): ``$(params.…)`` in a value reaches the step as written, so it is not refused."""
    submit(kube, parameters={"label": "$(params.label) and $(params.n)"})
    (run_post,) = kube.requests_to("POST", RUNS)
    assert {"name": "label", "value": "$(params.label) and $(params.n)"} in run_post["body"]["spec"]["params"]
