"""Submitting to a fake API server that loses answers or cannot be reached: clean errors, never a lost run.

The fake stores objects and answers as the API server does (``tests/helpers/fake_kube.py``); no Job runs
here (the driver's own behaviour is ``test_driver.py``'s), a test moves the driver Job's status itself.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from pipecast.targets.kube import client as kube_client
from tests.helpers.cases import case, golden_settings

JOBS = "/apis/batch/v1/namespaces/ml/jobs"
COMPLETE = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(kube_client, "RETRY_DELAY", 0.01)


def submit(kube, **config):
    handle = submit_pipeline(case("quickstart").build(), "kubernetes", {},
                             {**golden_settings("kubernetes"), "namespace": "ml"},
                             {"kubeconfig": kube.kubeconfig, **config})
    handle.poll_interval = 0.02
    return handle


def test_a_lost_answer_to_the_driver_job_create_reconnects_to_the_job(kube):
    kube.lose_answers("POST", r"/jobs$")
    handle = submit(kube)
    assert [r["method"] for r in kube.requests if r["path"].startswith(JOBS)] == ["POST", "POST", "GET"]
    (job,) = kube.items(JOBS)
    assert job["metadata"]["name"] == handle.engine_run_id
    assert job["metadata"]["annotations"]["pipecast.dev/run-id"] == handle.run_id
    kube.set_status(JOBS, handle.engine_run_id, COMPLETE)
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED
    assert RunStore.default().get(handle.run_id)["status"] == "succeeded"


def test_a_lost_answer_while_applying_the_plan_is_retried(kube):
    kube.lose_answers("POST", r"/configmaps$")
    kube.lose_answers("PUT", r"/serviceaccounts/")
    submit(kube)
    submit(kube)  # the second submit replaces the RBAC objects: the first PUT's answer is lost
    # The PUT is sent again, meets 409 Conflict (it was done: the resourceVersion moved on), reads, replaces.
    assert [r["method"] for r in kube.requests if "/serviceaccounts" in r["path"]] == \
        ["POST", "POST", "GET", "PUT", "PUT", "GET", "PUT"]
    assert len(kube.items("/api/v1/namespaces/ml/configmaps")) == 1 and len(kube.items(JOBS)) == 2


def test_a_driver_job_of_another_run_is_not_adopted(kube):
    kube.lose_answers("POST", r"/jobs$")
    original = kube.handle

    def someone_else(method, path, body, content_type):
        if method == "POST" and path.endswith("/jobs") and body:
            body = {**body, "metadata": {**body["metadata"], "annotations": {}}}
        return original(method, path, body, content_type)

    kube.handle = someone_else
    with pytest.raises(SubmitError, match=r"cannot create driver Job '.*' in namespace 'ml': an object of that "
                                          r"name exists and belongs to no pipecast run"):
        submit(kube)


def test_an_unanswered_driver_job_create_is_recorded_so_runs_wait_can_ask(kube):
    kube.lose_answers("POST", r"/jobs$", times=4)
    with pytest.raises(SubmitOutcomeUnknownError, match=r"whether driver Job '.*' in namespace 'ml' was created is "
                                                        r"unknown"):
        submit(kube)
    (record,) = RunStore.default().list()
    assert record["status"] == "unknown" and record["engine_run_id"] and record["metadata"]["namespace"] == "ml"
    kube.set_status(JOBS, record["engine_run_id"], COMPLETE)
    assert track(record["id"], {"kubeconfig": kube.kubeconfig}).wait(timeout=30) is RunStatus.SUCCEEDED


def test_an_unreachable_api_is_a_clean_error_naming_server_and_kubeconfig(kube):
    url, config = kube.url, kube.kubeconfig
    kube.stop()
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "kubernetes", {}, golden_settings("kubernetes"),
                        {"kubeconfig": config})
    text = str(err.value)
    # The first request, the version check, finds no server: nothing is created.
    assert text.startswith("cannot read the Kubernetes version: no answer from the Kubernetes API server after 4 "
                           "tries (")
    assert f"the API server is {url} (kubeconfig {config!r}, context 'fake')" in text
    assert "--config kubeconfig=PATH and --config context=NAME" in text
    assert RunStore.default().list()[0]["status"] == "failed"


def test_the_cli_reports_an_unreachable_api_without_a_traceback(kube):
    config = kube.kubeconfig
    kube.stop()
    reference = f"{case('quickstart').path}:quickstart"
    result = CliRunner().invoke(main, ["submit", reference, "-t", "kubernetes", "--set", "image=i", "--set",
                                       "artifact_root=s3://b", "-c", f"kubeconfig={config}"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "MaxRetryError" not in result.output
    assert "no answer from the Kubernetes API server" in result.output


def test_runs_wait_and_cancel_against_an_unreachable_api_are_clean_errors(kube):
    handle = submit(kube)
    config = kube.kubeconfig
    kube.stop()
    for command in ("wait", "cancel"):
        result = CliRunner().invoke(main, ["runs", command, handle.run_id, "-c", f"kubeconfig={config}"])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "no answer from the Kubernetes API server" in result.output
