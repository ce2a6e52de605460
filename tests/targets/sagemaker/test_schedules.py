"""SageMaker schedules against moto_server's EventBridge Scheduler and SageMaker (boto3).

``pipecast schedules list|delete``, and a scheduled run's ``pipecast.context().logical_time`` (issue 17): the
schedule's universal target carries the StartPipelineExecution request with EventBridge Scheduler's keyword
``<aws.scheduler.scheduled-time>``. moto stores a schedule's target verbatim and never fires it
(``moto/scheduler/models.py``), so the test does what AWS documents EventBridge Scheduler does when the schedule
fires: "EventBridge Scheduler replaces each keyword with its respective value when your schedule invokes the
target: <aws.scheduler.scheduled-time> – The time you specified for the schedule to invoke its target, for
example, 2022-03-22T18:59:43Z" (scheduler/latest/UserGuide/managing-schedule-context-attributes.html), then sends
the ``Input`` as the request of the API in the target's ARN (managing-targets-universal.html). The substitution
itself is AWS's word, not something moto shows.
"""

from __future__ import annotations

import json
import re

import botocore.session
import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.errors import ContextError, UnsupportedFeatureError
from pipecast.flow import submit_pipeline
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.context import LOGICAL_TIME_VAR, logical_time_from_env
from pipecast.runtime.executor import load_outputs
from tests.helpers.cases import case, compile_case
from tests.targets.sagemaker import schedule_pipelines, schema
from tests.targets.sagemaker import test_submit as submit_tests
from tests.targets.sagemaker.replay import replay

aws_env, moto_url, moto = submit_tests.aws_env, submit_tests.moto_url, submit_tests.moto


def cli(*args):
    return CliRunner().invoke(main, ["schedules", *args])


def test_the_pipelines_schedule_is_listed_once_and_deleted(moto):
    scheduler = submit_tests._client(moto, "scheduler")
    for settings in (submit_tests.SETTINGS, {**submit_tests.SETTINGS, "timezone": "Europe/Paris"}):
        submit_pipeline(case("ml_training").build(), "sagemaker", {}, settings, submit_tests._config(moto))
    # A schedule pipecast did not make, starting the same pipeline the same way: not listed, not deleted.
    target = scheduler.get_schedule(Name="ml-training")["Target"]
    pipeline_arn = json.loads(target["Input"])["PipelineName"]
    scheduler.create_schedule(Name="by-hand", ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
                              Target=target)
    # One an older pipecast made (its target is the pipeline's ARN): found, so it can be deleted.
    scheduler.create_schedule(Name="older", ScheduleExpression="rate(1 day)", FlexibleTimeWindow={"Mode": "OFF"},
                              Description="Starts SageMaker pipeline ml-training (pipecast pipeline older)",
                              Target={"Arn": pipeline_arn, "RoleArn": submit_tests.SETTINGS["role_arn"]})
    config = ["-c", f"endpoint_url={moto}", "-c", f"region={submit_tests.REGION}"]
    listed = cli("list", "-t", "sagemaker", *config, "--json")
    assert listed.exit_code == 0, listed.output
    row, older = sorted(json.loads(listed.output), key=lambda r: r["pipeline"])
    assert (row["pipeline"], row["schedule"], row["state"]) == ("ml_training", "cron(0 4 ? * 2 *) (Europe/Paris)",
                                                                 "enabled")
    assert row["id"].endswith(":schedule/default/ml-training")
    assert (older["pipeline"], older["schedule"]) == ("older", "rate(1 day) (UTC)")
    deleted = cli("delete", "ml_training", "-t", "sagemaker", *config)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.output == (f"deleted EventBridge Scheduler schedule ml-training (it started SageMaker pipeline "
                              f"{pipeline_arn}, which stays)\n")
    assert cli("delete", "older", "-t", "sagemaker", *config).output.startswith(
        f"deleted EventBridge Scheduler schedule older (it started SageMaker pipeline {pipeline_arn}, ")
    assert [s["Name"] for s in scheduler.list_schedules()["Schedules"]] == ["by-hand"]
    assert cli("delete", "ml_training", "-t", "sagemaker", *config).exit_code == 2
    unknown = cli("list", "-t", "sagemaker", "-c", "host=x")
    assert unknown.exit_code == 2 and "unknown --config key(s) ['host']" in unknown.output


UNIVERSAL = "arn:aws:scheduler:::aws-sdk:sagemaker:startPipelineExecution"
KEYWORD = "<aws.scheduler.scheduled-time>"
FIRED = "2025-01-06T04:00:00Z"  # a Monday 04:00 UTC tick of "0 4 * * 1", in the format AWS documents


def _stamps(root: str, execution_id: str) -> dict[str, tuple[object, str]]:
    """Each step's (meta.json logical_time, what the step returned) after the replay of one execution."""
    store = ArtifactStore(root)
    found = {}
    for step in ("stamp", "stamp_training"):
        meta = store.read_json(f"{store.step_dir('sm_scheduled', execution_id, step)}/meta.json")
        found[step] = (meta.get("logical_time"), load_outputs(root, "sm_scheduled", execution_id, step)["output"])
    return found


def test_a_scheduled_run_gets_the_time_eventbridge_substitutes_and_a_one_off_run_none(moto, tmp_path):
    root = f"file://{tmp_path}/store"
    pipeline = schedule_pipelines.sm_scheduled.build()
    settings = {**submit_tests.SETTINGS, "artifact_root": f"local://{tmp_path}/store"}  # every replayed job's
    handle = submit_pipeline(pipeline, "sagemaker", {}, settings, submit_tests._config(moto))
    sagemaker = submit_tests._client(moto, "sagemaker")
    described = sagemaker.describe_pipeline(PipelineName="sm-scheduled")
    definition = described["PipelineDefinition"]
    assert schema.errors(json.loads(definition)) == []
    target = submit_tests._client(moto, "scheduler").get_schedule(Name="sm-scheduled")["Target"]
    assert target["Arn"] == UNIVERSAL and target["RoleArn"] == submit_tests.SETTINGS["role_arn"]
    request = json.loads(target["Input"])
    token = request.pop("ClientRequestToken")  # one per pipeline and tick: a retried start is one execution
    assert re.fullmatch(f"pipecast-schedule-[0-9a-f]{{16}}-{KEYWORD}", token)
    assert 32 <= len(token.replace(KEYWORD, FIRED)) <= 128
    assert request == {"PipelineName": described["PipelineArn"],
                       "PipelineParameters": [{"Name": "pipecast_logical_time", "Value": KEYWORD}]}
    request["ClientRequestToken"] = token
    # The request is one StartPipelineExecution takes: its PipelineName is "the name or ARN" (botocore's pattern).
    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model(
        "StartPipelineExecution").input_shape
    assert re.fullmatch(shape.members["PipelineName"].metadata["pattern"], request["PipelineName"])
    assert set(request) <= set(shape.members) and set(shape.required_members) <= set(request)

    # The schedule fires: EventBridge Scheduler's substitution, then the call. moto 5.2 looks a pipeline up by name
    # only (moto/sagemaker/utils.py get_pipeline_from_name), so the ARN's name is given to it.
    fired = json.loads(target["Input"].replace(KEYWORD, FIRED))
    scheduled_arn = sagemaker.start_pipeline_execution(
        **{**fired, "PipelineName": fired["PipelineName"].rsplit("/", 1)[1]})["PipelineExecutionArn"]
    for arn, expected in ((scheduled_arn, "2025-01-06T04:00:00+00:00"), (handle.engine_run_id, None)):
        values = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
        execution_id = arn.rsplit("/", 1)[1]
        assert sorted(replay(definition, values, execution_id)) == ["stamp", "stamp_training"]
        shown = expected or "none"
        assert _stamps(root, execution_id) == {"stamp": (expected, shown),
                                               "stamp_training": (expected, f"{shown}|{shown}")}


def test_the_keyword_left_in_place_fails_the_step_clearly(monkeypatch):
    """Were EventBridge not to substitute it, the step refuses to run rather than read "no time"."""
    monkeypatch.setenv(LOGICAL_TIME_VAR, KEYWORD)
    with pytest.raises(ContextError, match=re.escape(f"still holds the engine placeholder '{KEYWORD}'")):
        logical_time_from_env()


def test_a_parameter_named_like_the_time_is_refused_and_unscheduled_pipelines_have_none():
    with pytest.raises(UnsupportedFeatureError, match="parameter 'pipecast_logical_time' is named "
                                                      "'pipecast_logical_time' in SageMaker"):
        compile_case("sagemaker", schedule_pipelines.sm_clash, golden=True)
    plain = compile_case("sagemaker", "quickstart", golden=True).bundle  # no schedule: no parameter, no variable
    assert "pipecast_logical_time" not in plain["quickstart.pipeline.json"]
    assert LOGICAL_TIME_VAR not in plain["quickstart.pipeline.json"]
