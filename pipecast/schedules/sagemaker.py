"""SageMaker schedules: the EventBridge Scheduler schedule that starts the pipeline, through boto3.

Submit creates it, or updates the one of that name in place (``UpdateSchedule``). A pipecast schedule is one in
the ``default`` group that starts a SageMaker pipeline and whose description names the pipecast pipeline
(``… (pipecast pipeline NAME)``, as emitted in ``NAME.schedule.json``); that is how it is found again. It starts
the pipeline through the universal target ``…:aws-sdk:sagemaker:startPipelineExecution`` with the pipeline in its
``Input`` (:mod:`pipecast.targets.sagemaker.schedule`); ListSchedules summaries carry only the target's ARN, so
each candidate is read with GetSchedule. A schedule of an older pipecast, whose target is the pipeline's ARN, is
found too. EventBridge Scheduler does not report a next run. Deleting it (``DeleteSchedule``) leaves the pipeline
and its executions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipecast.errors import SubmitError
from pipecast.schedules import Schedule
from pipecast.targets.base import Target
from pipecast.targets.sagemaker.schedule import START_PIPELINE_EXECUTION, started_pipeline

KEYS = ("region", "profile", "endpoint_url")
DESCRIPTION = re.compile(r"\(pipecast pipeline (?P<pipeline>.+)\)$")
TARGET_ARN = re.compile(r"^arn:[^:]+:sagemaker:[^:]*:[^:]*:pipeline/")  # the target of older pipecast schedules
UNIVERSAL_ARN = re.compile("^arn:[^:]+:" + re.escape(START_PIPELINE_EXECUTION.split(":", 2)[2]) + "$")


def _scheduler(config: Mapping[str, Any]) -> Any:
    from pipecast.targets.sagemaker.submit import _client, _session

    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise SubmitError(f"unknown --config key(s) {unknown!r} for the schedules of target 'sagemaker'; known: "
                          f"{list(KEYS)!r}")
    return _client(_session(config), "scheduler", config)


def started(target: Mapping[str, Any]) -> str | None:
    """The SageMaker pipeline (ARN or name) a schedule's target starts, or None for any other target."""
    arn = str(target.get("Arn") or "")
    return arn if TARGET_ARN.match(arn) else started_pipeline(target)


def _ours(scheduler: Any) -> list[tuple[str, dict[str, Any]]]:
    """(pipecast pipeline, GetSchedule answer) of every pipecast schedule in the default group."""
    from botocore.exceptions import BotoCoreError, ClientError

    found = []
    try:
        for page in scheduler.get_paginator("list_schedules").paginate(GroupName="default"):
            for summary in page.get("Schedules", []):
                arn = str((summary.get("Target") or {}).get("Arn", ""))
                if not (TARGET_ARN.match(arn) or UNIVERSAL_ARN.match(arn)):
                    continue  # the summary has no Input: a universal target's pipeline is read below
                schedule = scheduler.get_schedule(Name=summary["Name"], GroupName="default")
                match = DESCRIPTION.search(str(schedule.get("Description") or ""))
                if match and started(schedule["Target"]):
                    found.append((match["pipeline"], schedule))
    except (BotoCoreError, ClientError) as err:
        raise SubmitError(f"EventBridge Scheduler refused to list the schedules: {err}") from err
    return found


def list_schedules(target: Target, config: Mapping[str, Any]) -> list[Schedule]:
    """The EventBridge Scheduler schedules pipecast made for SageMaker pipelines."""
    rows = []
    for pipeline, schedule in _ours(_scheduler(config)):
        timezone = schedule.get("ScheduleExpressionTimezone")
        expression = str(schedule["ScheduleExpression"])
        rows.append(Schedule(pipeline=pipeline, target=target.name,
                             schedule=f"{expression} ({timezone})" if timezone else expression,
                             id=str(schedule.get("Arn") or schedule["Name"]),
                             state=str(schedule.get("State") or "").lower() or None))
    return rows


def delete_schedule(target: Target, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Delete the pipeline's schedule; the SageMaker pipeline and its executions stay."""
    from botocore.exceptions import BotoCoreError, ClientError

    scheduler = _scheduler(config)
    done = []
    for name_of, schedule in _ours(scheduler):
        if name_of != pipeline:
            continue
        try:
            scheduler.delete_schedule(Name=schedule["Name"], GroupName="default")
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise SubmitError(f"EventBridge Scheduler refused to delete {schedule['Name']!r}: {err}") from err
        except BotoCoreError as err:
            raise SubmitError(f"cannot delete schedule {schedule['Name']!r}: {err}") from err
        done.append(f"deleted EventBridge Scheduler schedule {schedule['Name']} (it started SageMaker pipeline "
                    f"{started(schedule['Target'])}, which stays)")
    return done
