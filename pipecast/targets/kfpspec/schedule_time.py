"""A scheduled run's time on KFP and Vertex AI: ``pipecast.context().logical_time``.

The time reaches a task the only way job placeholders do (see ``RUN_ID_INPUT`` in :mod:`.builder`): a component
input whose task argument is the runtime constant ``{{$.pipeline_job_schedule_time_utc}}``
(``kfp.dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER``), given to the runtime as ``--kfp-logical-time``. What
the backend puts there (kubeflow/pipelines, ``backend/src/v2/driver/resolve.go`` and ``cmd/driver/main.go``):

- KFP 2.17: for a run a recurring run started, the ``workflowEpoch`` label its ScheduledWorkflow controller set
  (the cron tick), as RFC 3339 UTC (``resolvePipelineJobScheduleTimeUTCFromWorkflow``); for any other run the
  Workflow's creation time, the same value as ``{{$.pipeline_job_create_time_utc}}``;
- KFP 2.16: ``""`` (``driver.Options.PipelineJobScheduleTimeUTC`` exists but is never set);
- KFP 2.15 and older: the placeholder itself (``resolveInputParameter``'s ``default: v = val``).

Vertex AI documents the placeholder as kfp does ("the time for which a pipeline job is scheduled") and says
nothing of a run no schedule started. The runtime reads ``""`` and a placeholder left in place as "no logical
time" (:func:`pipecast.runtime.context.set_engine_logical_time`). Only a pipeline with a schedule gets the input:
the others' tasks stay as small as before, and KFP 2.17's driver reads the Workflow object only for a task that
asks for the time.
"""

from __future__ import annotations

from collections.abc import Callable

from pipecast.runtime.context import KFP_SCHEDULE_TIME

INPUT = "pipecast_logical_time"
PLACEHOLDER = KFP_SCHEDULE_TIME  # kfp.dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER; the runtime reads it as no time


def args(placeholder: Callable[[str], str]) -> list[str]:
    """The runtime's option reading the input (``placeholder``: the input's placeholder in the args)."""
    return ["--kfp-logical-time", placeholder(INPUT)]
