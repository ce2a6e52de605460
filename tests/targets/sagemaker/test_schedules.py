"""``pipecast schedules list|delete`` on SageMaker: boto3 against moto_server's EventBridge Scheduler."""

from __future__ import annotations

import json

from click.testing import CliRunner

from pipecast.cli import main
from pipecast.flow import submit_pipeline
from tests.helpers.cases import case
from tests.targets.sagemaker import test_submit as submit_tests

aws_env, moto_url, moto = submit_tests.aws_env, submit_tests.moto_url, submit_tests.moto


def cli(*args):
    return CliRunner().invoke(main, ["schedules", *args])


def test_the_pipelines_schedule_is_listed_once_and_deleted(moto):
    scheduler = submit_tests._client(moto, "scheduler")
    for settings in (submit_tests.SETTINGS, {**submit_tests.SETTINGS, "timezone": "Europe/Paris"}):
        submit_pipeline(case("ml_training").build(), "sagemaker", {}, settings, submit_tests._config(moto))
    # A schedule pipecast did not make, targeting the same pipeline: not listed, not deleted.
    arn = scheduler.get_schedule(Name="ml-training")["Target"]["Arn"]
    scheduler.create_schedule(Name="by-hand", ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": arn, "RoleArn": submit_tests.SETTINGS["role_arn"]})
    config = ["-c", f"endpoint_url={moto}", "-c", f"region={submit_tests.REGION}"]
    listed = cli("list", "-t", "sagemaker", *config, "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert (row["pipeline"], row["schedule"], row["state"]) == ("ml_training", "cron(0 4 ? * 2 *) (Europe/Paris)",
                                                                 "enabled")
    assert row["id"].endswith(":schedule/default/ml-training")
    deleted = cli("delete", "ml_training", "-t", "sagemaker", *config)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.output.startswith("deleted EventBridge Scheduler schedule ml-training (it started SageMaker ")
    assert [s["Name"] for s in scheduler.list_schedules()["Schedules"]] == ["by-hand"]
    assert cli("delete", "ml_training", "-t", "sagemaker", *config).exit_code == 2
    unknown = cli("list", "-t", "sagemaker", "-c", "host=x")
    assert unknown.exit_code == 2 and "unknown --config key(s) ['host']" in unknown.output
