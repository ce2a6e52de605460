"""Submit and track on Kubeflow Pipelines: the real ``kfp.Client`` against a local server that answers as
the KFP v2beta1 REST API does and records what it receives."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from pipecast.targets.kfpspec import kubeflow_versions, retrying
from pipecast.targets.kfpspec.kubeflow_api import kfp_cron, run_url
from tests.helpers.cases import case, compile_case
from tests.targets.kfp.fake_servers import FakeKfp, Reply

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


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch):
    """Retries pause for milliseconds instead of seconds (the pauses still happen, in order)."""
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        time.sleep(min(seconds, 0.01))

    monkeypatch.setattr(retrying, "BACKOFF", retrying.Backoff(sleep=sleep))
    return pauses


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


def _spec_of(server, body):
    """The IR a run or recurring run starts from: its pipeline version's, else its inline spec."""
    reference = body.get("pipeline_version_reference")
    return server.versions[reference["pipeline_version_id"]]["pipeline_spec"] if reference else body["pipeline_spec"]


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
    # KFP runs have no labels: the pipeline's tags travel in the description, with pipecast's run id.
    assert sent.body["description"] == f"pipecast run {handle.run_id} of pipeline quickstart; tags: example"
    assert sent.body["runtime_config"]["parameters"] == {"n": 20, "seed": 7, "label": "numbers"}
    bundle = compile_case("kubeflow", pipeline, settings=SETTINGS).bundle
    # The run starts from a pipeline version holding exactly the emitted IR.
    assert "pipeline_spec" not in sent.body
    version = server.versions[sent.body["pipeline_version_reference"]["pipeline_version_id"]]
    assert sent.body["pipeline_version_reference"]["pipeline_id"] == version["pipeline_id"]
    assert server.pipelines[version["pipeline_id"]]["display_name"] == "quickstart"
    assert version["display_name"] == kubeflow_versions.version_name(bundle[bundle.main_file])
    assert version["pipeline_spec"] == yaml.safe_load(bundle[bundle.main_file])
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
    spec = _spec_of(server, sent.body)
    assert set(spec) == {"pipeline_spec", "platform_spec"}
    executors = spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-load"]["secretAsEnv"][1]["secretName"] == "db-credentials"
    assert sent.body["service_account"] == "runner"
    assert sent.body["runtime_config"]["parameters"]["options"] == {"optimizer": "sgd"}
    (recurring,) = server.find("POST", f"{API}/recurringruns")
    assert recurring.body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert recurring.body["mode"] == "ENABLE" and recurring.body["no_catchup"] is True
    assert recurring.body["pipeline_version_reference"] == sent.body["pipeline_version_reference"]
    row = RunStore.default().get(handle.run_id)
    assert row["metadata"]["recurring_run_id"]
    assert "t0ken" not in repr(row)


def test_the_service_account_setting_and_pipeline_root_reach_the_run(server):
    """service_account is a pod setting on every Kubernetes target; KFP takes it per run, so submit sends the
    compiled setting with the run (-c overrides it for one run). pipeline_root stays in the IR unless -c gives one."""
    pipeline = case("full_options").build()  # a schedule: the recurring run gets the same
    submit_pipeline(pipeline, "kubeflow", {}, {**SETTINGS, "service_account": "runner",
                                               "pipeline_root": "s3://acme/kfp"}, {"host": server.url})
    (sent,) = server.find("POST", f"{API}/runs")
    assert sent.body["service_account"] == "runner"
    assert _spec_of(server, sent.body)["pipeline_spec"]["defaultPipelineRoot"] == "s3://acme/kfp"
    assert "pipeline_root" not in sent.body["runtime_config"]
    (recurring,) = server.find("POST", f"{API}/recurringruns")
    assert recurring.body["service_account"] == "runner"
    submit_pipeline(pipeline, "kubeflow", {}, {**SETTINGS, "service_account": "runner"},
                    {"host": server.url, "service_account": "nightly", "pipeline_root": "s3://acme/other",
                     "schedule": False})
    sent = server.find("POST", f"{API}/runs")[-1]
    assert sent.body["service_account"] == "nightly"
    assert sent.body["runtime_config"]["pipeline_root"] == "s3://acme/other"


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
    again = track(handle.run_id, {})  # `pipecast runs cancel`: endpoint from the recorded run
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


RUNS = rf"{API}/runs"


def test_a_run_whose_answer_was_lost_is_found_by_its_display_name_not_created_twice(server, short_pauses):
    """The server creates the run, then the connection drops: submit asks the engine and reconnects."""
    server.fault("POST", RUNS, "drop")
    handle = submit_pipeline(case("quickstart").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    assert len(server.runs) == 1 and handle.engine_run_id in server.runs
    assert len(server.find("POST", RUNS)) == 1  # never sent again: the run was there
    (lookup,) = server.find("GET", RUNS)
    assert json.loads(lookup.query["filter"])["predicates"] == [
        {"operation": "EQUALS", "key": "display_name", "stringValue": handle.run_id}]
    assert lookup.query["experiment_id"] == server.runs[handle.engine_run_id]["experiment_id"]
    assert short_pauses == [1.0]  # one pause before asking, so a slow server can finish
    row = RunStore.default().get(handle.run_id)
    assert (row["status"], row["engine_run_id"]) == ("pending", handle.engine_run_id)
    handle.poll_interval = 0.01
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED


def test_unserved_requests_busy_answers_and_rate_limits_are_retried(server, short_pauses):
    """A create that never reached the server, a 503 and a 429 are sent again; reads are retried too."""
    server.fault("POST", RUNS, "drop_unserved")
    server.fault("POST", RUNS, "reply", reply=Reply(503, {"code": 14, "message": "unavailable", "details": []}))
    server.fault("POST", RUNS, "reply", reply=Reply(429, {"code": 8, "message": "slow down", "details": []},
                                                    {"Retry-After": "7"}))
    server.fault("GET", rf"{API}/runs/[^/:]+", "reply", times=2,
                 reply=Reply(502, {"code": 14, "message": "bad gateway", "details": []}))
    handle = submit_pipeline(case("quickstart").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    assert len(server.runs) == 1 and len(server.find("POST", RUNS)) == 4
    assert len(server.find("GET", RUNS)) == 2  # asked after the drop and after the 503: nothing there, so resent
    assert short_pauses == [1.0, 2.0, 7.0]  # backoff, backoff, then the server's Retry-After
    assert handle.status() is RunStatus.RUNNING  # after two 502 answers
    assert short_pauses[3:] == [1.0, 2.0]


def test_a_submit_that_never_gets_an_answer_is_a_clean_error_when_no_run_exists(server):
    server.fault("POST", RUNS, "drop_unserved", times=100)
    with pytest.raises(SubmitError, match=r"has no run named '.*' in experiment 'Default', so none was created"):
        submit_pipeline(case("diamond_after").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    assert not server.runs
    assert len(server.find("POST", RUNS)) == retrying.BACKOFF.attempts
    (row,) = RunStore.default().list()
    assert row["status"] == "failed"


def test_a_recurring_run_whose_answer_was_lost_is_found_by_its_description(server):
    server.fault("POST", rf"{API}/recurringruns", "drop")
    handle = submit_pipeline(case("full_options").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    (recurring,) = server.recurring_runs.values()
    assert handle.run_id in recurring["description"] and "tags: golden, options" in recurring["description"]
    assert len(server.find("POST", rf"{API}/recurringruns")) == 1
    assert RunStore.default().get(handle.run_id)["metadata"]["recurring_run_id"] == recurring["recurring_run_id"]


def test_a_schedule_that_cannot_be_created_leaves_the_started_run_recorded(server):
    server.fault("POST", rf"{API}/recurringruns", "reply", times=1,
                 reply=Reply(400, {"code": 3, "message": "bad cron", "details": []}))
    with pytest.warns(UserWarning, match="started, but its schedule was not"):
        handle = submit_pipeline(case("full_options").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    row = RunStore.default().get(handle.run_id)
    assert row["status"] == "pending" and row["engine_run_id"] == handle.engine_run_id
    assert "bad cron" in row["metadata"]["schedule_error"]


@pytest.mark.parametrize("created", [True, False])
def test_a_submit_the_engine_cannot_confirm_is_recorded_and_resolved_by_asking_later(server, created):
    """The create's answer is lost and the engine cannot be asked: the run is recorded as unknown, not failed,
    with the experiment to look in; its status finds it by display name later (and the framework records the id
    it finds), or reports that it was never created."""
    server.fault("POST", RUNS, "drop" if created else "drop_unserved")
    server.fault("GET", RUNS, "drop_unserved", times=100)
    with pytest.raises(SubmitOutcomeUnknownError, match=r"whether Kubeflow Pipelines created the run named '.*' "
                                                        r"in experiment 'Default' is unknown"):
        submit_pipeline(case("quickstart").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    assert len(server.runs) == (1 if created else 0) and len(server.find("POST", RUNS)) == 1
    (row,) = RunStore.default().list()
    assert (row["status"], row["engine_run_id"]) == ("unknown", None)
    assert "`pipecast runs wait" in row["detail"]
    assert row["metadata"]["experiment_id"] == next(iter(server.experiments))  # noted before the create
    server.faults.clear()  # the API answers again
    again = track(row["id"], {})  # `pipecast runs wait`
    again.poll_interval = 0.01
    if created:
        assert again.wait(timeout=30) is RunStatus.SUCCEEDED
        (run_id,) = server.runs
        row = RunStore.default().get(again.run_id)
        assert (row["engine_run_id"], row["url"]) == (run_id, f"{server.url}/#/runs/details/{run_id}")
    else:
        assert again.wait(timeout=30) is RunStatus.FAILED
        assert "has no run named" in again.detail and "never created" in again.detail


def test_submitting_a_scheduled_pipeline_again_replaces_its_recurring_run(server):
    """One recurring run per pipeline: v2beta1 cannot edit one in place, so the new one is created, then the
    earlier one (same display name, same experiment) deleted; another pipeline's schedule is left alone."""
    first = submit_pipeline(case("full_options").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    other = submit_pipeline(case("ml_training").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    old_id = RunStore.default().get(first.run_id)["metadata"]["recurring_run_id"]
    second = submit_pipeline(case("full_options").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    row = RunStore.default().get(second.run_id)
    (deleted,) = server.find("DELETE", rf"{API}/recurringruns/.*")
    assert deleted.path == f"{API}/recurringruns/{old_id}"
    assert row["metadata"]["replaced_recurring_runs"] == [old_id]
    names = sorted(r["display_name"] for r in server.recurring_runs.values())
    assert names == ["full_options (pipecast schedule)", "ml_training (pipecast schedule)"]
    assert row["metadata"]["recurring_run_id"] in server.recurring_runs
    assert RunStore.default().get(other.run_id)["metadata"]["recurring_run_id"] in server.recurring_runs


def test_a_replaced_recurring_run_that_cannot_be_deleted_is_reported(server):
    submit_pipeline(case("full_options").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    server.fault("DELETE", rf"{API}/recurringruns/.*", "reply", reply=Reply(403, {"code": 7, "message": "denied"}))
    with pytest.warns(UserWarning, match="schedule was updated, but .*denied"):
        handle = submit_pipeline(case("full_options").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    assert len(server.recurring_runs) == 2  # two schedules, never none
    assert RunStore.default().get(handle.run_id)["metadata"]["recurring_run_id"] in server.recurring_runs


def test_the_same_ir_reuses_its_pipeline_version_and_a_change_adds_one(server):
    """Pipeline and version are looked up by name first: one pipeline, one version per distinct IR."""
    pipeline = case("quickstart").build()
    for _ in range(2):
        submit_pipeline(pipeline, "kubeflow", {}, SETTINGS, {"host": server.url, "schedule": False})
    assert len(server.pipelines) == 1 and len(server.versions) == 1
    assert len(server.find("POST", f"{API}/pipelines/upload_version")) == 1
    submit_pipeline(pipeline, "kubeflow", {}, {**SETTINGS, "image": "ghcr.io/acme/pipecast:1.1"},
                    {"host": server.url, "schedule": False})
    assert len(server.pipelines) == 1 and len(server.versions) == 2
    first, second = (r.body["pipeline_version_reference"]["pipeline_version_id"]
                     for r in server.find("POST", f"{API}/runs")[1:])
    assert first != second


def test_a_version_whose_upload_answer_was_lost_is_found_not_uploaded_twice(server):
    server.fault("POST", f"{API}/pipelines/upload_version", "drop")
    server.fault("POST", f"{API}/pipelines", "drop")
    submit_pipeline(case("quickstart").build(), "kubeflow", {}, SETTINGS, {"host": server.url})
    assert len(server.pipelines) == 1 and len(server.versions) == 1
    (sent,) = server.find("POST", f"{API}/runs")
    assert sent.body["pipeline_version_reference"]["pipeline_version_id"] in server.versions


def test_upload_pipeline_false_sends_the_spec_inline(server):
    """For an account that may start runs but not create pipelines."""
    pipeline = case("quickstart").build()
    submit_pipeline(pipeline, "kubeflow", {}, SETTINGS, {"host": server.url, "upload_pipeline": "false"})
    (sent,) = server.find("POST", f"{API}/runs")
    bundle = compile_case("kubeflow", pipeline, settings=SETTINGS).bundle
    assert sent.body["pipeline_spec"] == _ir_as_kfp_sends_it(bundle[bundle.main_file])
    assert not server.pipelines and "pipeline_version_reference" not in sent.body
