"""The step context: what a running step can ask about itself, and the metadata it records.

``pipecast.context()`` inside a step returns a :class:`StepContext` (run id, pipeline, step, attempt, the
parameters bound to the step, the engine's logical/schedule time when it has one, the step's artifact URI and a
logger). ``pipecast.log_metadata(**values)`` records JSON values for the step (``run=True``: for the run); the
executor writes them into the step's ``meta.json`` beside its outputs, where ``pipecast runs show`` reads them.

The context lives in a :class:`contextvars.ContextVar` set by the executor around each try, so steps that run in
threads of the local runner each see their own. A thread the step starts itself does not inherit it (Python
does not copy context variables into new threads); pass the values it needs, or use
``contextvars.copy_context().run``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from pipecast.errors import ContextError
from pipecast.runtime.checks import check_substituted

# The engine's logical (schedule) time of the run, ISO 8601, as the emitted task sets it; empty or unset: none.
LOGICAL_TIME_VAR = "PIPECAST_LOGICAL_TIME"
KFP_SCHEDULE_TIME = "{{$.pipeline_job_schedule_time_utc}}"  # kfp.dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER


@dataclass(frozen=True)
class StepContext:
    """What a running step knows about itself (``pipecast.context()``).

    Attributes:
        run_id: The run's id (the engine's run id on an engine).
        pipeline: The pipeline's name.
        step: The step's name.
        attempt: This try's number, from 1.
        parameters: The step's inputs bound to pipeline parameters, by input name (read-only).
        logical_time: The engine's logical/schedule time of the run (Airflow's ``data_interval_start``), or None
            where the engine has none (local runs, manual runs on most engines; see docs/step-context.md).
        artifact_uri: The URI of the step's folder in the artifact store (its outputs and ``meta.json``).
        logger: A logger named ``pipecast.step.<step>``.

    ``run_id``, ``step``, ``logical_time`` and ``artifact_uri`` differ between runs (or map items) that share a
    cache key, so reading one is recorded (:attr:`reads`): the cache reuses the step's outputs only where each
    value it read is the same (docs/step-context.md, "The cache and the context").
    """

    _run_id: str
    pipeline: str
    _step: str
    attempt: int
    parameters: Mapping[str, Any]
    _logical_time: datetime | None
    _artifact_uri: str
    logger: logging.Logger
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    run_metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    reads: dict[str, str | None] = field(default_factory=dict, repr=False)  # what the step read, as meta keeps it

    @property
    def run_id(self) -> str:
        """The run's id (the engine's run id on an engine)."""
        self.reads["run_id"] = self._run_id
        return self._run_id

    @property
    def step(self) -> str:
        """The step's name (a map item's carries its index)."""
        self.reads["step"] = self._step
        return self._step

    @property
    def logical_time(self) -> datetime | None:
        """The engine's logical/schedule time of the run, or None."""
        self.reads["logical_time"] = None if self._logical_time is None else self._logical_time.isoformat()
        return self._logical_time

    @property
    def artifact_uri(self) -> str:
        """The URI of the step's folder in the artifact store (it holds the run id and step name)."""
        self.reads["artifact_uri"] = self._artifact_uri
        return self._artifact_uri

    def log_metadata(self, *, run: bool = False, **values: Any) -> None:
        """Record JSON values for this step (``run=True``: for the run); later values replace earlier ones."""
        for key, value in values.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as err:
                raise ContextError(f"step {self._step!r}: metadata {key!r} is not JSON ({err}); log numbers, "
                                   "text, booleans, None, or lists and dicts of them") from None
        (self.run_metadata if run else self.metadata).update(values)


_CURRENT: ContextVar[StepContext | None] = ContextVar("pipecast_step_context", default=None)


def context() -> StepContext:
    """The context of the step running in this thread; ContextError outside a step."""
    current = _CURRENT.get()
    if current is None:
        raise ContextError("pipecast.context() was called outside a running step; call it inside a @step "
                           "function while the step runs (locally or on an engine)")
    return current


def log_metadata(*, run: bool = False, **values: Any) -> None:
    """Record JSON key/values for the running step (``run=True``: for the run); see ``pipecast runs show``."""
    current = _CURRENT.get()
    if current is None:
        raise ContextError("pipecast.log_metadata() was called outside a running step; call it inside a @step "
                           "function while the step runs")
    current.log_metadata(run=run, **values)


def logical_time_from_env() -> datetime | None:
    """The logical time the engine gave the task (``$PIPECAST_LOGICAL_TIME``), or None.

    A value that is not ISO 8601 is a bug in the emitted task, so it is refused rather than dropped.
    """
    text = os.environ.get(LOGICAL_TIME_VAR, "").strip()
    if not text or text == "None":  # Airflow 3 renders a manual run's missing data interval as ''/None
        return None
    check_substituted(f"the logical time ${LOGICAL_TIME_VAR}", text, "the step cannot know its run's logical "
                      "time", ContextError)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ContextError(f"${LOGICAL_TIME_VAR} is {text!r}, not an ISO 8601 time") from None


def set_engine_logical_time(text: str) -> None:
    """Hand the time an engine substituted to the step (``$PIPECAST_LOGICAL_TIME``); none when it gave none.

    KFP 2.16 substitutes ``""`` for ``{{$.pipeline_job_schedule_time_utc}}`` and older backends leave the
    placeholder in place (``pipecast/targets/kfpspec/schedule_time.py``): both mean the run has no logical time.
    """
    value = text.strip()
    if not value or value == KFP_SCHEDULE_TIME:  # only KFP's own placeholder means "no time": others are refused
        os.environ.pop(LOGICAL_TIME_VAR, None)
    else:
        os.environ[LOGICAL_TIME_VAR] = value


@contextmanager
def step_context(ctx: StepContext) -> Iterator[StepContext]:
    """Make ``ctx`` the current step's context for the duration of one try."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def new_context(*, run_id: str, pipeline: str, step: str, attempt: int, parameters: Mapping[str, Any],
                logical_time: datetime | None, artifact_uri: str) -> StepContext:
    """A fresh context for one try (metadata starts empty each try: a failed try's is not kept)."""
    return StepContext(_run_id=run_id, pipeline=pipeline, _step=step, attempt=attempt,
                       parameters=MappingProxyType(dict(parameters)), _logical_time=logical_time,
                       _artifact_uri=artifact_uri, logger=logging.getLogger(f"pipecast.step.{step}"))
