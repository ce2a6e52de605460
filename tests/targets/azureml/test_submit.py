"""Submit with the real azure-ai-ml SDK against a local HTTPS server that answers as Azure ML's REST API.

The server's certificate comes from a CA this test makes (trustme) and trusts through
``REQUESTS_CA_BUNDLE``; ``MLClient`` reaches it as a custom cloud whose Resource Manager endpoint is
the server (``resource_manager_url``). The credential hands out unsigned JWTs whose audience is the
scope asked for, which is what the SDK checks before it submits a pipeline job.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from tests.helpers.cases import GOLDEN, case, golden_settings
from tests.helpers.runs import forget_engine_identity
from tests.helpers.slow import slow_fixture
from tests.targets.azureml.fake_azureml import STUDIO, FakeAzureML, start

WORKSPACE = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws-1"
TENANT = "tenant-1"


class FakeCredential:
    """A TokenCredential: an unsigned JWT for the requested audience, valid for an hour."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        import jwt
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        claims = {"aud": scopes[0].removesuffix("/.default"), "tid": TENANT}
        return AccessToken(jwt.encode(claims, "not-a-secret-just-a-32-byte-test-key", algorithm="HS256"),
                           int(time.time()) + 3600)


@pytest.fixture
@slow_fixture
def azureml(tmp_path, monkeypatch):
    """The fake service, started on 127.0.0.1 and stopped after the test; the client config to reach it."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)  # no git repository: the SDK adds git properties from the working directory
    service = FakeAzureML()
    server, url = start(service, ca)
    config = {"subscription_id": "sub-1", "resource_group": "rg-1", "workspace": "ws-1",
              "credential": FakeCredential(), "resource_manager_url": url}
    yield service, config
    server.shutdown()
    server.server_close()


def submit(name: str, parameters: dict[str, Any], config: dict[str, Any]):
    handle = submit_pipeline(case(name).build(), "azureml", parameters, golden_settings("azureml"), config)
    handle.poll_interval = 0.01
    return handle


def golden_job(name: str) -> dict[str, Any]:
    return yaml.safe_load((GOLDEN / name / "azureml" / f"{name}.pipeline.yml").read_text())


def test_submit_creates_the_job_and_records_the_studio_url(azureml):
    service, config = azureml
    handle = submit("quickstart", {"n": 20, "label": "it's"}, config)

    job_name = handle.engine_run_id
    assert job_name == handle.run_id  # the Azure ML job is named after the pipecast run
    assert handle.url == f"{STUDIO}/runs/{job_name}?wsid={WORKSPACE}&tid={TENANT}"
    record = RunStore.default().get(handle.run_id)
    assert record["url"] == handle.url and record["engine_run_id"] == job_name and record["target"] == "azureml"

    (put,) = service.calls("PUT", f"/jobs/{job_name}")
    assert put.headers["Authorization"].startswith("Bearer ") and put.headers["x-azureml-token"]
    body = put.body["properties"]
    assert body["jobType"] == "Pipeline" and body["displayName"] == "quickstart"
    assert body["experimentName"] == "quickstart"
    assert body["settings"]["default_compute"].endswith("/computes/cpu-cluster")
    assert body["settings"]["continue_on_step_failure"] is False
    inputs = {k: v["value"] for k, v in body["inputs"].items()}
    assert inputs == {"n": "20", "seed": "7", "label": "it'\\''s", "pipecast_run_id": handle.run_id}
    assert sorted(body["jobs"]) == sorted(golden_job("quickstart")["jobs"])
    split = body["jobs"]["split"]["inputs"]["pipecast_after_make_numbers"]
    # A binding travels as a literal; Azure ML resolves it to the upstream node's output (never mounted).
    assert split == {"job_input_type": "literal", "value": "${{parent.jobs.make_numbers.outputs.pipecast_done}}",
                     "mode": "Direct"}

    # Every node's component was registered first, with the command the golden file holds.
    components = {r.path: r.body for r in service.calls("PUT", "/components/azureml_anonymous/versions/")}
    commands = {b["properties"]["componentSpec"]["command"] for b in components.values()}
    assert commands == {n["component"]["command"] for n in golden_job("quickstart")["jobs"].values()}
    for node in body["jobs"].values():
        assert node["componentId"].removeprefix("azureml:") in components
    (environment,) = {r.path for r in service.calls("PUT", "/environments/")}
    assert service.resources[environment]["properties"]["image"] == "ghcr.io/acme/pipecast:1.0"


def test_wait_follows_the_job_to_completion(azureml):
    service, config = azureml
    service.status_script = ["NotStarted", "Queued", "Running", "Finalizing", "Completed"]
    handle = submit("diamond_after", {}, config)
    assert handle.wait(timeout=60) is RunStatus.SUCCEEDED
    assert len(service.calls("GET", f"/jobs/{handle.engine_run_id}")) == 5
    assert RunStore.default().get(handle.run_id)["status"] == "succeeded"


def test_a_failed_job_names_the_failed_step(azureml):
    service, config = azureml
    service.status_script = ["Running", "Failed"]
    service.child_status = {"total_2": "Failed", "report": "Canceled"}
    handle = submit("quickstart", {}, config)
    assert handle.wait(timeout=60) is RunStatus.FAILED
    assert handle.detail == "Azure ML status Failed; failed step(s): total_2"
    assert service.calls("GET", f"/history/v1.0{WORKSPACE}/runs/{handle.engine_run_id}/children")
    record = RunStore.default().get(handle.run_id)
    assert record["status"] == "failed" and "total_2" in record["detail"]


def test_cancel_from_a_reconnected_handle(azureml):
    service, config = azureml
    service.status_script = ["Running"]
    handle = submit("quickstart", {}, config)
    again = track(handle.run_id, config)  # what `pipecast runs cancel` does
    assert again.engine_run_id == handle.engine_run_id and again.url == handle.url
    assert again.status() is RunStatus.RUNNING
    again.cancel()
    assert service.calls("POST", f"/jobs/{handle.engine_run_id}/cancel")
    again.poll_interval = 0.01
    assert again.wait(timeout=60) is RunStatus.CANCELLED
    assert RunStore.default().get(handle.run_id)["status"] == "cancelled"


def test_schedule_is_created_as_a_job_schedule(azureml):
    service, config = azureml
    handle = submit("ml_training", {"epochs": 3}, {**config, "schedule": "true"})
    (put,) = service.calls("PUT", "/schedules/ml_training_schedule")
    properties = put.body["properties"]
    assert properties["trigger"] == {"triggerType": "Cron", "expression": "0 4 * * 1", "timeZone": "UTC"}
    action = properties["action"]
    assert action["actionType"] == "CreateJob"
    definition = action["jobDefinition"]
    assert definition["jobType"] == "Pipeline"
    # Each scheduled run gets its own run id: its trigger time, which Azure ML substitutes in a schedule's inputs.
    assert definition["inputs"]["pipecast_run_id"]["value"] == "${{creation_context.trigger_time}}"
    assert definition["inputs"]["epochs"]["value"] == "30"  # the schedule runs with the pipeline's defaults
    # ... and its logical time, also the trigger time; the submitted job carries "none" (no logical time).
    assert definition["inputs"]["pipecast_logical_time"]["value"] == "${{creation_context.trigger_time}}"
    (job,) = service.calls("PUT", f"/jobs/{handle.engine_run_id}")
    assert job.body["properties"]["inputs"]["pipecast_logical_time"] == {"jobInputType": "literal", "value": "none"}
    assert handle.url


def test_hostile_values_are_sent_as_data(azureml):
    service, config = azureml
    evil = "x'; rm -rf / #\n${{inputs.text}} $[[y]]"
    handle = submit("hostile", {"text": evil}, config)
    (put,) = service.calls("PUT", f"/jobs/{handle.engine_run_id}")
    body = put.body["properties"]
    assert body["inputs"]["text"]["value"] == "x'\\''; rm -rf / #\n$''{{inputs.text}} $''[[y]]"
    hostile = case("hostile").build()
    assert body["description"] == hostile.description
    assert body["jobs"]["echo_text"]["environment_variables"] == {"EVIL_ENV": dict(hostile.steps[0].env)["EVIL_ENV"]}


def test_a_lost_answer_to_the_job_create_is_resolved_by_asking_for_the_job(azureml):
    """Azure ML created the job but the answer never came (the SDK's retry then hits "already exists"):
    the job pipecast named is asked for, found, and tracked; the run is not recorded as failed."""
    service, config = azureml
    service.lose_job_answers = 1
    handle = submit("quickstart", {"n": 5}, config)
    run_id = handle.run_id
    assert handle.engine_run_id == run_id and handle.url
    assert service.lose_job_answers == 0 and len(service.calls("PUT", f"/jobs/{run_id}")) >= 1
    assert [r for r in service.resources if "/jobs/" in r] == [f"{WORKSPACE}/jobs/{run_id}"]  # created once
    record = RunStore.default().get(run_id)
    assert record["status"] == "pending" and record["engine_run_id"] == run_id
    assert handle.wait(timeout=60) is RunStatus.SUCCEEDED


def test_a_run_recorded_without_its_job_name_is_reconnected_by_name(azureml):
    """The job name is the run id: `pipecast runs wait` finds the job even if submit recorded no engine id."""
    _, config = azureml
    handle = submit("quickstart", {}, config)
    forget_engine_identity(handle.run_id)
    again = track(handle.run_id, config)
    assert again.engine_run_id == handle.engine_run_id
    again.poll_interval = 0.01
    assert again.wait(timeout=60) is RunStatus.SUCCEEDED


def test_missing_workspace_config_says_which_key(azureml, monkeypatch):
    _, config = azureml
    monkeypatch.delenv("AZUREML_WORKSPACE_NAME", raising=False)
    with pytest.raises(SubmitError, match=re.escape("Azure ML needs 'workspace': pass -c workspace=... or set "
                                                    "AZUREML_WORKSPACE_NAME")):
        submit("quickstart", {}, {k: v for k, v in config.items() if k != "workspace"})
    (record,) = RunStore.default().list()
    assert record["status"] == "failed"


def test_the_server_certificate_is_really_checked(azureml, monkeypatch, tmp_path: Path):
    """Trusting another CA makes the same submit fail: the TLS path is real."""
    _, config = azureml
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    with pytest.raises(SubmitOutcomeUnknownError,
                       match=r"Azure ML created pipeline job .* failed \(.*(SSL|certificate)"):
        submit("quickstart", {}, config)
    (record,) = RunStore.default().list()  # it cannot be asked: unknown, not failed, and findable by its name
    assert record["status"] == "unknown" and record["engine_run_id"] == record["id"]


def test_stream_prints_the_logs_until_the_job_ends(azureml, capsys, monkeypatch):
    from azure.ai.ml.operations._run_history_constants import RunHistoryConstants

    monkeypatch.setattr(RunHistoryConstants, "_WAIT_COMPLETION_POLLING_INTERVAL_MIN", 0)  # poll at once
    monkeypatch.setattr(RunHistoryConstants, "_WAIT_COMPLETION_POLLING_INTERVAL_MAX", 0)
    service, config = azureml
    service.status_script = ["Running", "Running", "Completed"]
    service.log_lines = ["[2025-01-01 00:00:01Z] Submitting 5 runs", "[2025-01-01 00:00:09Z] Completing processing"]
    handle = submit("quickstart", {}, config)
    capsys.readouterr()
    handle.stream()
    out = capsys.readouterr().out
    assert f"RunId: {handle.engine_run_id}\nWeb View: {STUDIO}/runs/{handle.engine_run_id}?wsid={WORKSPACE}\n" in out
    assert "Submitting 5 runs" in out and "Completing processing" in out
    assert service.calls("GET", f"/history/v1.0{WORKSPACE}/runs/{handle.engine_run_id}/details")
