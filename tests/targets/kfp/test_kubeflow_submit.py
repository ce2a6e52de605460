"""Submit and track on Kubeflow Pipelines: the real ``kfp.Client`` against a local server that answers as
the KFP v2beta1 REST API does and records what it receives."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipecast.errors import SubmitError
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import handle_for
from pipecast.targets.base import RunStatus, submit_pipeline
from pipecast.targets.kfpspec.kubeflow_api import kfp_cron, run_url
from tests.helpers.cases import case
from tests.targets.kfp.fake_servers import FakeKfp

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts", "gpu_node_label": "gke"}
API = "/apis/v2beta1"


@pytest.fixture(autouse=True)
def isolated_kfp(tmp_path, monkeypatch):
    """kfp.Client reads ~/.config/kfp/context.json and KFP env vars: keep both out of the tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_TOKEN",
                 "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME", "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
                 "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server(request):
    options = getattr(request, "param", {})
    fake = FakeKfp(**options).start()
    request.addfinalizer(fake.stop)
    return fake


def _ir_as_kfp_sends_it(text: str) -> dict:
    docs = list(yaml.safe_load_all(text))
    spec = json_format.MessageToDict(json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec()))
    if len(docs) == 1:
        return spec
    platform = json_format.MessageToDict(json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec()))
    return {"pipeline_spec": spec, "platform_spec": platform}


def test_submit_starts_a_run_with_its_parameters_and_tracks_it(server):
    pipeline = case("quickstart").build()
    handle = submit_pipeline(pipeline, "kubeflow", {"n": 20}, SETTINGS,
                             {"host": server.url, "experiment": "pipecast-tests"})
    assert handle.url == f"{server.url}/#/runs/details/{handle.engine_run_id}"
    assert server.find("GET", f"{API}/healthz")
    (lookup,) = server.find("GET", f"{API}/experiments")
    assert '"stringValue": "pipecast-tests"' in lookup.query["filter"]
    (created,) = server.find("POST", f"{API}/experiments")
    assert created.body["display_name"] == "pipecast-tests"
    (sent,) = server.find("POST", f"{API}/runs")
    assert sent.body["experiment_id"] == server.runs[handle.engine_run_id]["experiment_id"]
    assert sent.body["display_name"] == handle.run_id
    assert sent.body["runtime_config"]["parameters"] == {"n": 20, "seed": 7, "label": "numbers"}
    from pipecast.targets.base import EmitOptions, compile_pipeline

    bundle = compile_pipeline(pipeline, "kubeflow", EmitOptions(settings=SETTINGS))
    assert sent.body["pipeline_spec"] == _ir_as_kfp_sends_it(bundle[bundle.main_file])
    assert "authorization" not in sent.headers

    row = RunStore.default().get(handle.run_id)
    assert (row["target"], row["status"], row["engine_run_id"], row["url"]) == (
        "kubeflow", "pending", handle.engine_run_id, handle.url)
    assert row["parameters"] == {"n": 20, "seed": 7, "label": "numbers"}
    assert row["metadata"]["host"] == server.url
    assert handle.status() is RunStatus.RUNNING
    handle.poll_interval = 0.01
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED
    assert RunStore.default().get(handle.run_id)["status"] == "succeeded"
    assert all(r.path == f"{API}/runs/{handle.engine_run_id}" for r in server.find("GET", f"{API}/runs/.*"))


def test_platform_spec_token_and_schedule_reach_the_api(server, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "t0ken")
    pipeline = case("full_options").build()
    handle = submit_pipeline(pipeline, "kubeflow", {}, SETTINGS, {"host": server.url, "service_account": "runner"})
    (sent,) = server.find("POST", f"{API}/runs")
    assert sent.headers["authorization"] == "Bearer t0ken"
    assert set(sent.body["pipeline_spec"]) == {"pipeline_spec", "platform_spec"}
    executors = sent.body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-load"]["secretAsEnv"][1]["secretName"] == "db-credentials"
    assert sent.body["service_account"] == "runner"
    assert sent.body["runtime_config"]["parameters"]["options"] == {"optimizer": "sgd"}
    (recurring,) = server.find("POST", f"{API}/recurringruns")
    assert recurring.body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert recurring.body["mode"] == "ENABLE" and recurring.body["no_catchup"] is True
    assert recurring.body["pipeline_spec"] == sent.body["pipeline_spec"]
    row = RunStore.default().get(handle.run_id)
    assert row["metadata"]["recurring_run_id"]
    assert "t0ken" not in repr(row)


@pytest.mark.parametrize("server", [{"states": ("PENDING", "RUNNING", "FAILED"), "failure": {
    "error": {"code": 2, "message": "1 task failed"},
    "run_details": {"task_details": [{"display_name": "train", "state": "FAILED"},
                                     {"display_name": "load", "state": "SUCCEEDED"}]}}}], indirect=True)
def test_a_failed_run_names_its_failed_task(server):
    handle = submit_pipeline(case("full_options").build(), "kubeflow", {}, SETTINGS,
                             {"host": server.url, "schedule": False})
    assert not server.find("POST", f"{API}/recurringruns")
    handle.poll_interval = 0.01
    assert handle.wait(timeout=30) is RunStatus.FAILED
    assert handle.detail == "failed task(s): train; 1 task failed"
    assert RunStore.default().get(handle.run_id)["detail"] == handle.detail


def test_cancel_through_the_run_store_terminates_the_run(server):
    handle = submit_pipeline(case("diamond_after").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    again = handle_for(handle.run_id, {})  # `pipecast runs cancel`: endpoint from the recorded run
    again.cancel()
    (terminate,) = server.find("POST", f"{API}/runs/.*:terminate")
    assert terminate.path == f"{API}/runs/{handle.engine_run_id}:terminate"
    again.poll_interval = 0.01
    assert again.wait(timeout=30) is RunStatus.CANCELLED
    assert RunStore.default().get(handle.run_id)["status"] == "cancelled"


@pytest.mark.parametrize("server", [{"multi_user": True}], indirect=True)
def test_multi_user_deployments_get_namespaced_experiments_and_urls(server):
    host = f"{server.url}/pipeline"  # the API behind the central dashboard
    handle = submit_pipeline(case("diamond_after").build(), "kubeflow", {}, SETTINGS,
                             {"host": host, "namespace": "team-a"})
    (created,) = server.find("POST", f"/pipeline{API}/experiments")
    assert created.body == {"display_name": "Default", "namespace": "team-a"}
    assert server.find("GET", f"/pipeline{API}/experiments")[0].query["namespace"] == "team-a"
    assert handle.url == f"{server.url}/_/pipeline/?ns=team-a#/runs/details/{handle.engine_run_id}"
    assert RunStore.default().get(handle.run_id)["url"] == handle.url


@pytest.mark.parametrize("server", [{"refuse_runs": True}], indirect=True)
def test_a_refused_run_is_a_submit_error_recorded_as_failed(server):
    with pytest.raises(SubmitError, match=r"refused to start the run \(HTTP 400\).*bad pipeline spec"):
        submit_pipeline(case("diamond_after").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    (row,) = RunStore.default().list()
    assert row["status"] == "failed" and "submit failed" in row["detail"]


def test_submit_without_an_endpoint_says_how_to_give_one():
    with pytest.raises(SubmitError, match="--config host="):
        submit_pipeline(case("diamond_after").build(), "kubeflow", {}, SETTINGS, {})


def test_an_unreachable_endpoint_is_a_submit_error():
    import socket

    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SubmitError, match="cannot reach Kubeflow Pipelines"):
        submit_pipeline(case("diamond_after").build(), "kubeflow", {}, SETTINGS, {"host": f"http://127.0.0.1:{port}"})


def test_cli_submit_prints_the_run_url(server):
    from pipecast.cli import main

    result = CliRunner().invoke(main, [
        "submit", "examples/quickstart.py", "--target", "kubeflow", "-p", "n=5",
        "--set", "image=ghcr.io/acme/pipecast:1.0", "--set", "artifact_root=s3://acme/artifacts",
        "-c", f"host={server.url}", "--wait", "--timeout", "60"])
    assert result.exit_code == 0, result.output
    run_id = next(iter(server.runs))
    assert f"{server.url}/#/runs/details/{run_id}" in result.output
    assert result.output.strip().endswith("succeeded")
    assert server.runs[run_id]["runtime_config"]["parameters"]["n"] == 5


def test_cron_and_url_forms():
    assert kfp_cron("0 4 * * 1") == "0 0 4 * * 1"
    assert kfp_cron("@daily") == "0 0 0 * * *"
    assert kfp_cron("30 2 * * 7") == "0 30 2 * * 0"
    assert kfp_cron("0 0 * * 5-7") == "0 0 0 * * 5-6,0"
    assert kfp_cron("*/5 * * * 1-5") == "0 */5 * * * 1-5"
    assert run_url("https://kf.example.com/", "r1") == "https://kf.example.com/#/runs/details/r1"
    assert run_url("https://kf.example.com/pipeline", "r1", "a b", multi_user=True) == (
        "https://kf.example.com/_/pipeline/?ns=a%20b#/runs/details/r1")
