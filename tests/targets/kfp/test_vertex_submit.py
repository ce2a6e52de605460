"""Submit and track on Vertex AI Pipelines: the real ``aiplatform.PipelineJob`` (REST transport) against a local
server that answers as the Vertex AI v1 REST API does and records what it receives.

The only thing replaced is what the SDK would otherwise do on the network by itself: finding Application
Default Credentials (anonymous credentials instead) and probing or creating the pipeline-root bucket.
"""

from __future__ import annotations

import dataclasses
import time

import google.auth
import pytest
import yaml
from google.api_core import retry as api_retry
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform import base as aiplatform_base
from google.cloud.aiplatform import initializer
from google.cloud.aiplatform.utils import gcs_utils

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from pipecast.targets.kfpspec import retrying
from pipecast.targets.kfpspec.vertex_api import console_url, job_id, vertex_cron
from tests.helpers.cases import case, compile_case
from tests.targets.kfp.fake_servers import FakeVertex, Reply

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "gs://acme/artifacts"}
PARENT = "/v1/projects/acme-ml/locations/europe-west4"


@pytest.fixture
def bucket_checks(monkeypatch):
    calls = []
    monkeypatch.setattr(gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
                        lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))
    for name in ("GOOGLE_CLOUD_PROJECT", "CLOUD_ML_PROJECT_ID", "GOOGLE_CLOUD_REGION"):
        monkeypatch.delenv(name, raising=False)
    yield calls
    initializer.global_config.__init__()  # the SDK keeps endpoint and credentials process-wide


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch):
    """Retries pause for milliseconds instead of seconds (the pauses still happen, in order)."""
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        time.sleep(min(seconds, 0.01))

    monkeypatch.setattr(retrying, "BACKOFF", retrying.Backoff(sleep=sleep))
    # The SDK's own retry of its gets (transient errors, up to 120s), made as quick.
    monkeypatch.setattr(aiplatform_base, "_DEFAULT_RETRY", api_retry.Retry(initial=0.01, maximum=0.02, timeout=1.0))
    return pauses


@pytest.fixture
def server(request, bucket_checks):
    fake = FakeVertex(**getattr(request, "param", {})).start()
    request.addfinalizer(fake.stop)
    return fake


def config(server, **extra):
    return {"project": "acme-ml", "location": "europe-west4", "api_endpoint": server.url, "api_transport": "rest",
            **extra}


def test_submit_creates_the_pipeline_job_and_tracks_it(server, bucket_checks):
    pipeline = case("ml_training").build()
    handle = submit_pipeline(pipeline, "vertex", {"samples": 50}, SETTINGS, config(
        server, pipeline_root="gs://acme/vertex-root", service_account="runner@acme-ml.iam.gserviceaccount.com",
        network="projects/123/global/networks/ml", labels={"team": "ml"},
        encryption_spec_key_name="projects/acme-ml/locations/europe-west4/keyRings/k/cryptoKeys/c", schedule=False))
    (created,) = server.find("POST", f"{PARENT}/pipelineJobs")
    assert created.query["pipelineJobId"] == job_id(handle.run_id)
    body = created.body
    bundle = compile_case("vertex", pipeline, settings=SETTINGS).bundle
    assert body["pipelineSpec"] == yaml.safe_load(bundle[bundle.main_file])
    assert body["displayName"] == handle.run_id
    assert body["runtimeConfig"]["gcsOutputDirectory"] == "gs://acme/vertex-root"
    assert body["runtimeConfig"]["parameterValues"] == {
        "samples": 50, "seed": 42, "test_fraction": 0.25, "epochs": 30, "lr_small": 0.1, "lr_large": 1.0}
    # PIPELINE_FAILURE_POLICY_FAIL_FAST (value 2: the SDK sends the enum as its number): as pipecast run
    assert body["runtimeConfig"]["failurePolicy"] == 2
    assert body["serviceAccount"] == "runner@acme-ml.iam.gserviceaccount.com"
    assert body["network"] == "projects/123/global/networks/ml"
    assert body["labels"] == {"team": "ml"}
    assert body["encryptionSpec"] == {"kmsKeyName": "projects/acme-ml/locations/europe-west4/keyRings/k/cryptoKeys/c"}
    assert not server.find("POST", f"{PARENT}/schedules")
    assert [c["output_artifacts_gcs_dir"] for c in bucket_checks] == ["gs://acme/vertex-root"]

    name = f"projects/acme-ml/locations/europe-west4/pipelineJobs/{job_id(handle.run_id)}"
    assert handle.engine_run_id == name
    assert handle.url == (f"https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/"
                          f"{job_id(handle.run_id)}?project=acme-ml") == console_url(name)
    row = RunStore.default().get(handle.run_id)
    assert (row["target"], row["engine_run_id"], row["url"]) == ("vertex", name, handle.url)
    assert handle.status() is RunStatus.RUNNING
    handle.poll_interval = 0.01
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED
    assert RunStore.default().get(handle.run_id)["status"] == "succeeded"
    assert {r.path for r in server.find("GET", ".*")} == {f"/v1/{name}"}


def test_a_schedule_becomes_a_vertex_pipeline_schedule(server):
    pipeline = case("ml_training").build()
    handle = submit_pipeline(pipeline, "vertex", {}, SETTINGS, config(server))
    (schedule,) = server.find("POST", f"{PARENT}/schedules")
    assert schedule.body["cron"] == "0 4 * * 1"
    assert schedule.body["displayName"] == "ml_training (pipecast schedule)"
    request = schedule.body["createPipelineJobRequest"]
    assert request["parent"] == PARENT.removeprefix("/v1/")
    assert request["pipelineJob"]["pipelineSpec"]["pipelineInfo"]["name"] == "ml-training"
    assert RunStore.default().get(handle.run_id)["metadata"]["schedule"] == (
        "projects/acme-ml/locations/europe-west4/schedules/1234567890")


@pytest.mark.parametrize("server", [{"states": ("PIPELINE_STATE_RUNNING", "PIPELINE_STATE_FAILED"), "failure": {
    "error": {"code": 9, "message": "The DAG failed because some tasks failed."},
    "jobDetail": {"taskDetails": [{"taskName": "train-model", "state": "FAILED"},
                                  {"taskName": "split-data", "state": "SUCCEEDED"}]}}}], indirect=True)
def test_a_failed_job_names_its_failed_task(server):
    handle = submit_pipeline(case("ml_training").build(), "vertex", {}, SETTINGS, config(server, schedule=False))
    handle.poll_interval = 0.01
    assert handle.wait(timeout=30) is RunStatus.FAILED
    assert handle.detail == "failed task(s): train-model; The DAG failed because some tasks failed."


def test_cancel_through_the_run_store(server):
    handle = submit_pipeline(case("quickstart").build(), "vertex", {"n": 3}, SETTINGS, config(server))
    again = track(handle.run_id, {"api_endpoint": server.url, "api_transport": "rest"})
    again.cancel()
    (cancel,) = server.find("POST", f"{PARENT}/pipelineJobs/.*:cancel")
    assert cancel.path == f"/v1/{handle.engine_run_id}:cancel"
    again.poll_interval = 0.01
    assert again.wait(timeout=30) is RunStatus.CANCELLED
    assert RunStore.default().get(handle.run_id)["status"] == "cancelled"


def test_project_is_required_and_refusals_are_submit_errors(server):
    with pytest.raises(SubmitError, match="--config project="):
        submit_pipeline(case("quickstart").build(), "vertex", {}, SETTINGS, {"api_endpoint": server.url})
    server.fault("POST", f"{PARENT}/pipelineJobs", "reply", reply=Reply(400, {"error": {
        "code": 400, "message": "Invalid pipeline spec", "status": "INVALID_ARGUMENT"}}))
    with pytest.raises(SubmitError, match=r"refused the pipeline job.*Invalid pipeline spec"):
        submit_pipeline(case("quickstart").build(), "vertex", {}, SETTINGS, config(server))
    assert len(server.find("POST", f"{PARENT}/pipelineJobs")) == 1  # a refusal is not retried


def test_a_job_id_held_by_another_run_is_an_error(server):
    """The same job id again (409): reconnecting is right only when the job is this run's."""
    from pipecast.targets.base import SubmitRequest
    from pipecast.targets.kfpspec import vertex_api
    from pipecast.targets.registry import get_target

    first = submit_pipeline(case("quickstart").build(), "vertex", {}, SETTINGS, config(server))
    bundle = compile_case("vertex", "quickstart", settings=SETTINGS).bundle
    request = SubmitRequest(get_target("vertex"), case("quickstart").build(), bundle, {}, config(server),
                            first.run_id)
    again = vertex_api.submit(request)
    assert again.engine_run_id == first.engine_run_id and len(server.jobs) == 1  # this run's own job
    server.jobs[first.engine_run_id]["displayName"] = "someone-else"
    with pytest.raises(SubmitError, match=r"already exists and is not run"):
        vertex_api.submit(request)


def test_a_retried_create_that_meets_409_reconnects_to_the_job(server, short_pauses):
    """Vertex made the job but the answer was a 503, and the first get did not see it yet: the create is sent
    again, Vertex refuses the taken id (409), and submit reconnects to this run's job instead of failing."""
    server.fault("POST", f"{PARENT}/pipelineJobs", "served_reply", reply=Reply(503, {"error": {
        "code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}))
    server.fault("GET", f"{PARENT}/pipelineJobs/.*", "reply", reply=Reply(404, {"error": {
        "code": 404, "message": "not found", "status": "NOT_FOUND"}}))
    handle = submit_pipeline(case("quickstart").build(), "vertex", {}, SETTINGS, config(server, schedule=False))
    assert list(server.jobs) == [handle.engine_run_id]
    assert len(server.find("POST", f"{PARENT}/pipelineJobs")) == 2  # the resend met the 409
    assert RunStore.default().get(handle.run_id)["status"] == "pending"


def test_a_job_whose_answer_was_lost_is_found_by_its_id_not_created_twice(server, short_pauses):
    """Vertex creates the job, then the connection drops: submit gets the job it chose the id of."""
    server.fault("POST", f"{PARENT}/pipelineJobs", "drop")
    handle = submit_pipeline(case("quickstart").build(), "vertex", {}, SETTINGS, config(server))
    assert list(server.jobs) == [handle.engine_run_id]
    assert len(server.find("POST", f"{PARENT}/pipelineJobs")) == 1
    assert server.find("GET", f"/v1/{handle.engine_run_id}")
    assert short_pauses == [1.0]
    row = RunStore.default().get(handle.run_id)
    assert (row["status"], row["engine_run_id"]) == ("pending", handle.engine_run_id)
    handle.poll_interval = 0.01
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED


@pytest.mark.parametrize("created", [True, False])
def test_a_job_vertex_cannot_confirm_is_recorded_and_resolved_by_asking_later(server, created):
    """The job's name and URL are noted before the create, so a job whose creation cannot be confirmed is
    recorded as unknown under its name, and its status gets it later."""
    server.fault("POST", f"{PARENT}/pipelineJobs", "drop" if created else "drop_unserved")
    server.fault("GET", f"{PARENT}/pipelineJobs/[^/:]+", "drop_unserved", times=100)
    with pytest.raises(SubmitOutcomeUnknownError, match=r"whether Vertex AI created the pipeline job named "
                                                        r"'projects/acme-ml/.*' is unknown"):
        submit_pipeline(case("quickstart").build(), "vertex", {}, SETTINGS, config(server))
    (row,) = RunStore.default().list()
    name = f"projects/acme-ml/locations/europe-west4/pipelineJobs/{job_id(row['id'])}"
    assert list(server.jobs) == ([name] if created else [])
    assert (row["status"], row["engine_run_id"], row["url"]) == ("unknown", name, console_url(name))
    assert row["metadata"] == {"project": "acme-ml", "location": "europe-west4"}
    server.faults.clear()
    again = track(row["id"], {"api_endpoint": server.url, "api_transport": "rest"})
    again.poll_interval = 0.01
    if created:
        assert again.wait(timeout=30) is RunStatus.SUCCEEDED
    else:
        assert again.wait(timeout=30) is RunStatus.FAILED
        assert "never created" in again.detail


def test_busy_answers_and_rate_limits_are_retried(server, short_pauses):
    server.fault("POST", f"{PARENT}/pipelineJobs", "reply", reply=Reply(503, {"error": {
        "code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}))
    server.fault("POST", f"{PARENT}/pipelineJobs", "reply", reply=Reply(429, {"error": {
        "code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}, {"Retry-After": "3"}))
    server.fault("POST", f"{PARENT}/pipelineJobs", "drop_unserved")
    server.fault("GET", f"{PARENT}/pipelineJobs/[^/:]+", "reply", reply=Reply(500, {"error": {
        "code": 500, "message": "internal", "status": "INTERNAL"}}))
    handle = submit_pipeline(case("quickstart").build(), "vertex", {}, SETTINGS, config(server))
    assert len(server.jobs) == 1 and len(server.find("POST", f"{PARENT}/pipelineJobs")) == 4
    assert short_pauses[:3] == [1.0, 3.0, 4.0]  # backoff, the server's Retry-After, backoff
    assert handle.status() is RunStatus.RUNNING


def test_tags_become_labels_of_the_job(server):
    pipeline_ir = case("full_options").build()  # tags: golden, options
    notices: list[str] = []  # its secrets are reported: Vertex has none
    submit_pipeline(pipeline_ir, "vertex", {}, SETTINGS, config(server, labels={"team": "ml"}, schedule=False),
                    on_unsupported="warn", warn=notices.append)
    (created,) = server.find("POST", f"{PARENT}/pipelineJobs")
    assert created.body["labels"] == {"golden": "", "options": "", "team": "ml"}


def test_a_schedule_that_cannot_be_created_leaves_the_started_job_recorded(server):
    server.fault("POST", f"{PARENT}/schedules", "reply", reply=Reply(400, {"error": {
        "code": 400, "message": "bad cron", "status": "INVALID_ARGUMENT"}}))
    with pytest.warns(UserWarning, match="started, but its schedule was not"):
        handle = submit_pipeline(case("ml_training").build(), "vertex", {}, SETTINGS, config(server))
    row = RunStore.default().get(handle.run_id)
    assert row["status"] == "pending" and row["engine_run_id"] == handle.engine_run_id
    assert "bad cron" in row["metadata"]["schedule_error"]


def test_missing_credentials_say_how_to_log_in(server, monkeypatch):
    from google.auth import exceptions as auth_exceptions

    def no_credentials(*args, **kwargs):
        raise auth_exceptions.DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    with pytest.raises(SubmitError, match="application-default login"):
        submit_pipeline(case("quickstart").build(), "vertex", {}, SETTINGS, config(server))
    assert not server.requests


def test_ids_crons_and_urls():
    assert job_id("ml_training-20260102-030405-a1b2c3") == "ml-training-20260102-030405-a1b2c3"
    assert job_id("9lives-x") == "p-9lives-x"
    assert len(job_id("x" * 300)) == 128
    assert vertex_cron("@weekly") == "0 0 * * 0" and vertex_cron("0 4 * * 1") == "0 4 * * 1"
    with pytest.raises(SubmitError):
        console_url("projects/p/jobs/x")


@pytest.mark.parametrize("case_name", ["quickstart", "ml_training", "diamond_after", "hostile", "full_options"])
def test_pipeline_job_accepts_every_case(case_name, bucket_checks, tmp_path):
    """The SDK's own loader builds a PipelineJob from each emitted file (no request is made)."""
    from google.cloud import aiplatform

    bundle = compile_case("vertex", case_name, settings=SETTINGS, on_unsupported="warn").bundle
    path = tmp_path / bundle.main_file
    path.write_text(bundle[bundle.main_file])
    job = aiplatform.PipelineJob(display_name=case_name, template_path=str(path), job_id=job_id(case_name),
                                 pipeline_root="gs://acme/root", project="acme-ml", location="europe-west4")
    assert job.pipeline_spec["pipelineInfo"]["name"] == yaml.safe_load(bundle[bundle.main_file])["pipelineInfo"]["name"]


def test_submitting_a_scheduled_pipeline_again_updates_its_schedule_in_place(server):
    """One schedule per pipeline: found by its display name and patched (cron, concurrency, the job it creates),
    never a second one; another pipeline's schedule is a different one."""
    first = submit_pipeline(case("ml_training").build(), "vertex", {}, SETTINGS, config(server))
    name = RunStore.default().get(first.run_id)["metadata"]["schedule"]
    again = submit_pipeline(case("ml_training").build(), "vertex", {"epochs": 7}, SETTINGS, config(server))
    row = RunStore.default().get(again.run_id)
    assert "schedule_error" not in row["metadata"], row["metadata"]["schedule_error"]
    assert row["metadata"]["schedule"] == name and row["metadata"]["schedule_updated"] is True
    assert len(server.find("POST", f"{PARENT}/schedules")) == 1 and list(server.schedules) == [name]
    (listed,) = server.find("GET", f"{PARENT}/schedules")[1:]
    assert listed.query["filter"] == 'display_name="ml_training (pipecast schedule)"'
    (patch,) = server.find("PATCH", f"{PARENT}/schedules/.*")
    assert patch.path == f"/v1/{name}"
    assert set(patch.query["updateMask"].split(",")) == {"cron", "maxConcurrentRunCount", "createPipelineJobRequest"}
    job = server.schedules[name]["createPipelineJobRequest"]["pipelineJob"]
    assert job["runtimeConfig"]["parameterValues"]["epochs"] == 7
    renamed = dataclasses.replace(case("ml_training").build(), name="ml_training_v2")
    other = submit_pipeline(renamed, "vertex", {}, SETTINGS, config(server))
    assert RunStore.default().get(other.run_id)["metadata"]["schedule"] != name and len(server.schedules) == 2


def test_a_completed_schedule_is_not_updated_but_replaced(server):
    first = submit_pipeline(case("ml_training").build(), "vertex", {}, SETTINGS, config(server))
    old = RunStore.default().get(first.run_id)["metadata"]["schedule"]
    server.schedules[old]["state"] = "COMPLETED"
    again = submit_pipeline(case("ml_training").build(), "vertex", {}, SETTINGS, config(server))
    assert RunStore.default().get(again.run_id)["metadata"]["schedule"] != old
    assert not server.find("PATCH", f"{PARENT}/schedules/.*")
