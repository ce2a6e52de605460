"""Pipeline schedules as EventBridge Scheduler schedules that start the SageMaker pipeline.

SageMaker Pipelines has no schedule field in its definition; AWS schedules a pipeline with an
EventBridge Scheduler schedule. Its target is the *universal* target that calls StartPipelineExecution
(:data:`START_PIPELINE_EXECUTION`), whose ``Input`` is that call's request as JSON: EventBridge Scheduler
replaces the keyword ``<aws.scheduler.scheduled-time>`` in that payload with the time the schedule fired
for, e.g. ``2022-03-22T18:59:43Z`` (AWS, "Adding context attributes", managing-schedule-context-attributes.html),
and the request passes it as the pipeline parameter :data:`LOGICAL_TIME_PARAMETER`, which every step gets as
``$PIPECAST_LOGICAL_TIME``. The templated SageMaker target (the pipeline's ARN with
``SageMakerPipelineParameters``) is not used: AWS documents no keyword substitution in its parameter list.

EventBridge cron has six fields (``minute hour day-of-month month day-of-week year``), numbers days of
the week 1-7 from Sunday, and needs ``?`` in one of the two day fields, so a five-field Unix cron
expression is converted here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# The universal target calling SageMaker's StartPipelineExecution (managing-targets-universal.html).
START_PIPELINE_EXECUTION = "arn:{partition}:scheduler:::aws-sdk:sagemaker:startPipelineExecution"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"  # the keyword EventBridge Scheduler substitutes in Input
LOGICAL_TIME_PARAMETER = "pipecast_logical_time"  # a String parameter, default "": a run no schedule started

_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_WEEKDAY_NAMES = {name: number for number, name in enumerate("sun mon tue wed thu fri sat".split())}
_FIRST = (0, 0, 1, 1)  # where a "*/n" step starts in the minute, hour, day-of-month and month fields


def eventbridge_cron(expr: str) -> tuple[str | None, str]:
    """``cron(...)`` for a valid five-field Unix cron expression, or ``(None, why it cannot be expressed)``."""
    fields = _ALIASES.get(expr.strip(), expr).split()
    minute, hour, day, month, weekday = fields
    days = _weekdays(weekday)
    if days is not None and day != "*":
        return None, (f"{expr!r} names both days of the month ({day!r}) and days of the week ({weekday!r}); "
                      "cron runs on either, EventBridge cron can only use one of the two fields")
    converted = [_steps(value, first) for value, first in zip((minute, hour, day, month), _FIRST)]
    converted[3] = converted[3].upper()
    if days is None:
        weekday_field = "?"
    else:
        converted[2] = "?"
        weekday_field = ",".join(str(d + 1) for d in sorted(days))
    return f"cron({' '.join([*converted, weekday_field, '*'])})", ""


def _steps(value: str, first: int) -> str:
    """``*/n`` becomes ``first/n`` (the form AWS documents); other parts pass through unchanged."""
    return ",".join(f"{first}/{part[2:]}" if part.startswith("*/") else part for part in value.split(","))


def _weekdays(value: str) -> set[int] | None:
    """The days of the week (0 = Sunday) a Unix cron field names, or ``None`` for every day (``*``)."""
    if value == "*":
        return None
    days: set[int] = set()
    for part in value.lower().split(","):
        base, _, step = part.partition("/")
        stride = int(step) if step else 1
        if base == "*":
            low, high = 0, 6
        else:
            bounds = [_WEEKDAY_NAMES.get(b, int(b) if b.isdigit() else 0) for b in base.split("-")]
            low, high = bounds[0], bounds[-1]
            if step and len(bounds) == 1:
                high = 7
        days.update(d % 7 for d in range(low, high + 1, stride))
    return None if days == set(range(7)) else days


def start_input(pipeline: str, name: str) -> str:
    """The universal target's ``Input``: StartPipelineExecution of ``pipeline`` (name or ARN) with the time.

    ``ClientRequestToken`` is required by the API (32-128 characters): one per pipeline (``name``) and tick, so a
    start EventBridge Scheduler retries after a lost answer starts one execution (SageMaker's idempotency).
    """
    token = f"pipecast-schedule-{hashlib.sha256(name.encode()).hexdigest()[:16]}-{SCHEDULED_TIME}"
    request = {"PipelineName": pipeline,
               "PipelineParameters": [{"Name": LOGICAL_TIME_PARAMETER, "Value": SCHEDULED_TIME}],
               "ClientRequestToken": token}
    return json.dumps(request, separators=(",", ":"))


def started_pipeline(target: Any) -> str | None:
    """The pipeline (name or ARN) a schedule's ``Target`` starts through the universal target, else None."""
    arn = str((target or {}).get("Arn") or "")
    if not (arn.startswith("arn:") and arn.split(":", 2)[2] == START_PIPELINE_EXECUTION.split(":", 2)[2]):
        return None
    try:
        request = json.loads(str(target.get("Input") or ""))
    except ValueError:
        return None
    name = request.get("PipelineName") if isinstance(request, dict) else None
    return name if isinstance(name, str) and name else None
