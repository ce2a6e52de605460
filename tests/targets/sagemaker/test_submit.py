"""Submit and track with boto3: against moto_server (started by the test) and a recording fake.

moto checks the real request shapes (botocore validates every call against SageMaker's model) and
holds pipelines, executions, S3 objects and schedules; the fake covers what moto does not implement
(stopping an execution, failed steps, executions that take time).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.errors import ParameterError, SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.runs.client import Client
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import RunHandle, track
from pipecast.targets.sagemaker.submit import SageMakerRun, reconnect
from tests.helpers.cases import ROOT, case, compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.sagemaker.servers import FakeSageMaker, LosingProxy, moto_server, reset_moto
from tests.targets.sagemaker.support import SETTINGS

REGION = "us-east-1"
EXECUTION_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/quickstart/execution/abcdef123456"


@pytest.fixture(scope="module")
@slow_fixture
def moto_url(tmp_path_factory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Fake credentials; no real AWS configuration, profile or instance metadata is ever read."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def moto(moto_url) -> str:
    reset_moto(moto_url)
    return moto_url


def _client(url: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=url, region_name=REGION)


def _config(url: str, **extra: Any) -> dict[str, Any]:
    return {"endpoint_url": url, "region": REGION, **extra}


def test_submit_creates_the_pipeline_starts_an_execution_and_records_the_url(moto):
    pipeline = case("quickstart").build()
    handle = submit_pipeline(pipeline, "sagemaker", {"n": 20, "label": "odd & even"}, SETTINGS,
                             _config(moto, studio_domain_id="d-abc123"))
    sagemaker = _client(moto, "sagemaker")
    described = sagemaker.describe_pipeline(PipelineName="quickstart")
    bundle = compile_case("sagemaker", pipeline, golden=True).bundle
    assert json.loads(described["PipelineDefinition"]) == json.loads(bundle["quickstart.pipeline.json"])
    assert described["RoleArn"] == SETTINGS["role_arn"]
    assert described["PipelineDescription"] == pipeline.description
    execution_id = handle.engine_run_id.rsplit("/", 1)[1]
    assert handle.engine_run_id.startswith(f"{described['PipelineArn']}/execution/")
    assert handle.url == (f"https://studio-d-abc123.studio.{REGION}.sagemaker.aws/pipelines/quickstart/"
                          f"executions/{execution_id}")
    parameters = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=handle.engine_run_id)
    assert parameters["PipelineParameters"] == [
        {"Name": "n", "Value": "20"}, {"Name": "seed", "Value": "7"}, {"Name": "label", "Value": "odd & even"}]
    execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=handle.engine_run_id)
    assert execution["PipelineExecutionDescription"] == f"pipecast run {handle.run_id}"
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,81}", execution["PipelineExecutionDisplayName"])
    run = Client().get_pipeline_run(handle.run_id)
    assert run.run_metadata["orchestrator_url"] == handle.url
    assert run.engine_run_id == handle.engine_run_id and run.target == "sagemaker"
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED  # moto finishes executions at once
    assert RunStore.default().get(handle.run_id)["status"] == "succeeded"


def test_submitting_again_updates_the_pipeline(moto):
    pipeline = case("quickstart").build()
    first = submit_pipeline(pipeline, "sagemaker", {}, SETTINGS, _config(moto))
    second = submit_pipeline(pipeline, "sagemaker", {}, {**SETTINGS, "instance_type": "ml.m5.xlarge"},
                             _config(moto))
    sagemaker = _client(moto, "sagemaker")
    definition = json.loads(sagemaker.describe_pipeline(PipelineName="quickstart")["PipelineDefinition"])
    cluster = definition["Steps"][0]["Arguments"]["ProcessingResources"]["ClusterConfig"]
    assert cluster["InstanceType"] == "ml.m5.xlarge"
    executions = sagemaker.list_pipeline_executions(PipelineName="quickstart")["PipelineExecutionSummaries"]
    assert {e["PipelineExecutionArn"] for e in executions} == {first.engine_run_id, second.engine_run_id}
    assert first.url and first.url.startswith(f"https://{REGION}.console.aws.amazon.com/sagemaker/")


def test_tags_reach_the_pipeline_when_it_is_created_and_when_it_is_updated(moto):
    """UpdatePipeline takes no Tags: a tag added to an existing pipeline is added with AddTags."""
    import dataclasses

    pipeline = case("quickstart").build()
    submit_pipeline(pipeline, "sagemaker", {}, SETTINGS, _config(moto))
    sagemaker = _client(moto, "sagemaker")
    arn = sagemaker.describe_pipeline(PipelineName="quickstart")["PipelineArn"]
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "example", "Value": ""}]
    submit_pipeline(dataclasses.replace(pipeline, tags=("example", "nightly")), "sagemaker", {}, SETTINGS,
                    _config(moto))
    tags = sagemaker.list_tags(ResourceArn=arn)["Tags"]
    assert sorted(t["Key"] for t in tags) == ["example", "nightly"]
    # the pipeline_tags setting (tags with values): added, and a changed value overwritten on update
    for team in ("ml", "platform"):
        submit_pipeline(pipeline, "sagemaker", {}, {**SETTINGS, "pipeline_tags": {"team": team, "example": "x"}},
                        _config(moto))
        tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
        assert tags == {"example": "x", "nightly": "", "team": team}


def test_a_lost_answer_to_the_start_is_resolved_by_asking_sagemaker(moto):
    """moto started the execution but the answer never came, every time: submit finds the execution by the
    run id in its description instead of recording the run as failed; one execution exists."""
    with LosingProxy(moto) as proxy:
        proxy.lose["SageMaker.StartPipelineExecution"] = 10
        handle = submit_pipeline(case("quickstart").build(), "sagemaker", {}, SETTINGS, _config(proxy.url))
        assert proxy.lost == ["SageMaker.StartPipelineExecution"]
    executions = _client(moto, "sagemaker").list_pipeline_executions(
        PipelineName="quickstart")["PipelineExecutionSummaries"]
    assert [e["PipelineExecutionArn"] for e in executions] == [handle.engine_run_id]
    record = RunStore.default().get(handle.run_id)
    assert record["engine_run_id"] == handle.engine_run_id and record["status"] == "pending"


def test_a_start_that_is_never_answered_leaves_the_run_unknown_and_findable(moto):
    """No start is answered and SageMaker cannot be asked: the run is `unknown` (not failed), and
    `pipecast runs wait` finds its execution by the run id in its description, in the pipeline noted before
    the start."""
    sleeps: list[float] = []
    with LosingProxy(moto) as proxy:
        proxy.lose["SageMaker.StartPipelineExecution"] = 5
        proxy.lose["SageMaker.ListPipelineExecutions"] = 5
        with pytest.raises(SubmitOutcomeUnknownError, match="did not answer StartPipelineExecution"):
            submit_pipeline(case("quickstart").build(), "sagemaker", {}, SETTINGS,
                            {**_config(proxy.url), "sleep": sleeps.append})
    assert sleeps == [1.0, 2.0, 4.0, 8.0]
    (record,) = RunStore.default().list()
    assert record["status"] == "unknown" and not record["engine_run_id"]
    assert record["metadata"] == {"sagemaker_pipeline": "quickstart", "region": REGION}
    found = track(record["id"], {"endpoint_url": moto})
    executions = _client(moto, "sagemaker").list_pipeline_executions(PipelineName="quickstart")
    described = [e["PipelineExecutionArn"] for e in executions["PipelineExecutionSummaries"]
                 if e["PipelineExecutionDescription"] == f"pipecast run {record['id']}"]
    assert found.engine_run_id in described  # (moto starts one per try: SageMaker keeps one per token)
    assert RunStore.default().get(record["id"])["engine_run_id"] == found.engine_run_id


def test_moto_does_not_keep_start_pipeline_execution_idempotent(moto):
    """Why the submit asks before it starts again: SageMaker documents one execution per ClientRequestToken,
    but moto (5.2) starts a new one for every call, so a blind retry would double the run there."""
    pipeline = case("quickstart").build()
    submit_pipeline(pipeline, "sagemaker", {}, SETTINGS, _config(moto))
    sagemaker = _client(moto, "sagemaker")
    first = sagemaker.start_pipeline_execution(PipelineName="quickstart", ClientRequestToken="t" * 40)
    again = sagemaker.start_pipeline_execution(PipelineName="quickstart", ClientRequestToken="t" * 40)
    assert first["PipelineExecutionArn"] != again["PipelineExecutionArn"]


def test_schedule_is_created_then_updated(moto):
    pipeline = case("ml_training").build()
    submit_pipeline(pipeline, "sagemaker", {}, SETTINGS, _config(moto))
    scheduler = _client(moto, "scheduler")
    pipeline_arn = _client(moto, "sagemaker").describe_pipeline(PipelineName="ml-training")["PipelineArn"]
    schedule = scheduler.get_schedule(Name="ml-training")
    assert schedule["ScheduleExpression"] == "cron(0 4 ? * 2 *)"
    # EventBridge Scheduler's universal target starts the pipeline: test_schedules.py replays a scheduled run.
    assert schedule["Target"]["Arn"] == "arn:aws:scheduler:::aws-sdk:sagemaker:startPipelineExecution"
    assert json.loads(schedule["Target"]["Input"])["PipelineName"] == pipeline_arn
    assert schedule["Target"]["RoleArn"] == SETTINGS["role_arn"]
    submit_pipeline(pipeline, "sagemaker", {}, {**SETTINGS, "timezone": "Europe/Paris"}, _config(moto))
    assert scheduler.get_schedule(Name="ml-training")["ScheduleExpressionTimezone"] == "Europe/Paris"


def test_schedule_is_left_alone_when_asked(moto):
    submit_pipeline(case("ml_training").build(), "sagemaker", {}, SETTINGS, _config(moto, create_schedule="false"))
    assert _client(moto, "scheduler").list_schedules()["Schedules"] == []


def test_a_large_definition_goes_through_s3(moto):
    _client(moto, "s3").create_bucket(Bucket="acme-pipecast")
    pipeline = case("quickstart").build()
    settings = {**SETTINGS, "inline_definition_limit": 1000}
    submit_pipeline(pipeline, "sagemaker", {}, settings, _config(moto))
    text = compile_case("sagemaker", pipeline, golden=True,
                        settings={"inline_definition_limit": 1000}).bundle["quickstart.pipeline.json"]
    stored = _client(moto, "s3").get_object(Bucket="acme-pipecast",
                                            Key="pipecast/quickstart/sagemaker/quickstart.pipeline.json")
    assert stored["Body"].read().decode() == text
    described = _client(moto, "sagemaker").describe_pipeline(PipelineName="quickstart")["PipelineDefinition"]
    # moto keeps a definition read from S3 as a Python dict and returns its repr.
    assert ast.literal_eval(described) == json.loads(text)


def test_limits_are_checked_before_anything_is_sent(moto):
    pipeline = case("quickstart").build()
    with pytest.raises(ParameterError, match="SageMaker allows 256 per container argument"):
        submit_pipeline(pipeline, "sagemaker", {"label": "x" * 300}, SETTINGS, _config(moto))
    with pytest.raises(ParameterError, match="SageMaker takes 1024 per parameter value"):
        submit_pipeline(pipeline, "sagemaker", {"label": "x" * 1100}, SETTINGS, _config(moto))
    assert _client(moto, "sagemaker").list_pipelines()["PipelineSummaries"] == []


def test_a_refused_submit_is_a_submit_error(moto):
    settings = {**SETTINGS, "inline_definition_limit": 1000}  # its bucket does not exist in moto
    with pytest.raises(SubmitError, match=r"AWS refused pipeline 'quickstart'.*NoSuchBucket"):
        submit_pipeline(case("quickstart").build(), "sagemaker", {}, settings, _config(moto))


def test_no_region_is_a_clear_error(moto):
    with pytest.raises(SubmitError, match="no AWS region"):
        submit_pipeline(case("quickstart").build(), "sagemaker", {}, SETTINGS, {"endpoint_url": moto})


def test_cli_submit_and_runs_wait_reconnect(moto):
    sets = [item for key, value in SETTINGS.items() for item in ("--set", f"{key}={value}")]
    config = ["-c", f"endpoint_url={moto}", "-c", f"region={REGION}"]
    result = CliRunner().invoke(main, ["submit", str(ROOT / "examples" / "quickstart.py"), "-t", "sagemaker",
                                       "-p", "n=5", *sets, *config])
    assert result.exit_code == 0, result.output
    run_id = result.output.split()[1].rstrip(":")
    assert f"run {run_id}: https://{REGION}.console.aws.amazon.com/" in result.output
    handle = track(run_id, _config(moto))
    assert isinstance(handle.engine, SageMakerRun) and handle.url == RunStore.default().get(run_id)["url"]
    waited = CliRunner().invoke(main, ["runs", "wait", run_id, *config])
    assert waited.exit_code == 0 and waited.output.strip() == "succeeded"


@pytest.fixture
def fake() -> Iterator[FakeSageMaker]:
    with FakeSageMaker() as server:
        yield server


def _handle(fake: FakeSageMaker) -> SageMakerRun:
    handle = reconnect({"id": "quickstart-run", "engine_run_id": EXECUTION_ARN, "url": "u"},
                       {"endpoint_url": fake.url})
    handle.poll_interval = 0.01
    return handle


@pytest.mark.parametrize(("state", "expected"), [
    ("Executing", RunStatus.RUNNING), ("Stopping", RunStatus.RUNNING), ("Stopped", RunStatus.CANCELLED),
    ("Succeeded", RunStatus.SUCCEEDED), ("Failed", RunStatus.FAILED), ("CompletedWithFailures", RunStatus.FAILED),
    ("Paused", RunStatus.UNKNOWN),
])
def test_execution_states_map_to_run_statuses(fake, state, expected):
    fake.states = [state]
    handle = _handle(fake)
    assert handle.fetch_status() is expected
    assert fake.requests[0] == ("DescribePipelineExecution", {"PipelineExecutionArn": EXECUTION_ARN})
    if expected is RunStatus.UNKNOWN:
        assert handle.detail == "SageMaker status 'Paused'"


def test_a_failed_execution_names_the_failed_step(fake):
    fake.states = ["Failed"]
    fake.failure_reason = "Step failure: One or multiple steps failed."
    fake.steps = [{"StepName": "split", "StepStatus": "Failed", "FailureReason": "AlgorithmError: boom"},
                  {"StepName": "make_numbers", "StepStatus": "Succeeded"}]
    handle = _handle(fake)
    assert handle.fetch_status() is RunStatus.FAILED
    assert handle.detail == "step 'split' failed: AlgorithmError: boom"
    assert fake.requests[1] == ("ListPipelineExecutionSteps",
                                {"PipelineExecutionArn": EXECUTION_ARN, "SortOrder": "Ascending"})


def test_wait_polls_until_the_execution_ends(fake):
    fake.states = ["Executing", "Executing", "Succeeded"]
    assert RunHandle(_handle(fake)).wait(timeout=30) is RunStatus.SUCCEEDED
    assert fake.operations() == ["DescribePipelineExecution"] * 3


def test_cancel_stops_the_execution_idempotently(fake):
    handle = _handle(fake)
    handle.cancel()
    handle.cancel()
    stops = [body for operation, body in fake.requests if operation == "StopPipelineExecution"]
    assert len(stops) == 2 and stops[0] == stops[1]
    assert stops[0]["PipelineExecutionArn"] == EXECUTION_ARN
    assert 32 <= len(stops[0]["ClientRequestToken"]) <= 128


def test_cli_cancel_reconnects_from_the_run_store(fake):
    store = RunStore.default()
    store.create_run("quickstart-1", pipeline="quickstart", target="sagemaker", parameters={}, status="running")
    store.note_run("quickstart-1", engine_run_id=EXECUTION_ARN, url="https://example")
    result = CliRunner().invoke(main, ["runs", "cancel", "quickstart-1", "-c", f"endpoint_url={fake.url}"])
    assert result.exit_code == 0, result.output
    assert fake.operations() == ["StopPipelineExecution"]


def test_submit_creates_a_pipeline_with_condition_steps(moto):
    """Conditions (issue 16) on moto's server: the nested definition and the parallelism bound as created."""
    from tests.targets.sagemaker import flow_pipelines

    pipeline = flow_pipelines.sm_branches.build()
    handle = submit_pipeline(pipeline, "sagemaker", {"scale": 0.5, "force": True}, SETTINGS, _config(moto))
    sagemaker = _client(moto, "sagemaker")
    described = sagemaker.describe_pipeline(PipelineName="sm-branches")
    bundle = compile_case("sagemaker", pipeline, golden=True).bundle
    assert json.loads(described["PipelineDefinition"]) == json.loads(bundle["sm_branches.pipeline.json"])
    assert described.get("ParallelismConfiguration", {}).get("MaxParallelExecutionSteps") == 3
    parameters = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=handle.engine_run_id)
    assert {p["Name"]: p["Value"] for p in parameters["PipelineParameters"]} == {
        "scale": "0.5", "threshold": "0.5", "force": "true", "env": "prod"}
