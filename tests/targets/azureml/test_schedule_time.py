"""A scheduled run's time on Azure ML (issue 17): ``pipecast.context().logical_time``.

The schedule's ``create_job.inputs.pipecast_logical_time`` is ``${{creation_context.trigger_time}}``, which Azure
ML substitutes in a schedule's string job inputs ("Use supported expressions in schedules",
learn.microsoft.com/azure/machine-learning/how-to-schedule-pipeline-job); the pipeline job's own value is
``none``. The replay gives the schedule's job what :func:`~tests.targets.azureml.support.scheduled_inputs` says
Azure ML substitutes (only that macro) and runs each node's command with ``bash -c``. Azure ML documents no format
for the substituted text: these tests prove pipecast's wiring and its refusals, not Azure ML's format.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipecast import ParallelFor, pipeline
from pipecast.errors import UnsupportedFeatureError
from pipecast.runtime.artifacts import ArtifactStore, safe_segment
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.publish_azureml import NO_LOGICAL_TIME
from pipecast.targets.azureml.emit import LOGICAL_TIME_INPUT, RUN_ID_INPUT, schedule_file
from tests.helpers.cases import compile_case
from tests.helpers.replay import run_task
from tests.targets.azureml.flow_pipelines import best, rates, train
from tests.targets.azureml.support import (
    TRIGGER_TIME,
    order,
    reference_problems,
    resolve_command,
    scheduled_inputs,
    with_components,
)
from tests.targets.azureml.test_replay import run_job
from tests.targets.kfp.schedule_cases import clashing, scheduled, unscheduled

SETTINGS = {"image": "ghcr.io/acme/p:1"}


@pipeline(name="az_scheduled_map", schedule="0 4 * * 1")
def scheduled_map(count: int = 3, bias: float = 0.5):
    with ParallelFor(rates(count)) as lr:  # a body of two steps: a pipeline component of its own
        second = train(train(lr, bias), 1.0)
    best(second)  # the map's results, collected


def _compiled(tmp_path: Path, fn: Any = scheduled) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    compiled = compile_case("azureml", fn, settings={**SETTINGS, "artifact_root": f"local://{tmp_path}/store"})
    job = yaml.safe_load(compiled.main)
    assert reference_problems(job) == []
    name = schedule_file(compiled.pipeline)
    schedule = yaml.safe_load(compiled[name]) if name in compiled.files else None
    return job, schedule, f"file://{tmp_path}/store"


def _seen(root: str, run_id: str) -> dict[str, tuple[Any, Any]]:
    """Each step's (meta.json logical_time, what the step returned)."""
    store = ArtifactStore(root)
    return {step: (store.read_json(f"{store.step_dir('scheduled', run_id, step)}/meta.json").get("logical_time"),
                   load_outputs(root, "scheduled", run_id, step)["output"]) for step in ("stamp", "supervised")}


def test_a_scheduled_job_gives_every_step_its_trigger_time(tmp_path):
    job, schedule, root = _compiled(tmp_path)
    assert schedule is not None
    assert job["inputs"][LOGICAL_TIME_INPUT] == NO_LOGICAL_TIME  # never the macro: see the hand-made job below
    assert schedule["create_job"]["inputs"] == {RUN_ID_INPUT: TRIGGER_TIME, LOGICAL_TIME_INPUT: TRIGGER_TIME}
    trigger = "2025-01-06T04:00:00Z"
    inputs = scheduled_inputs(job, schedule, trigger)
    run_job(job, inputs)
    expected = "2025-01-06T04:00:00+00:00"
    # kept in meta.json and seen by the step, also in the child process a step with a timeout runs in
    assert _seen(root, safe_segment(trigger)) == {"stamp": (expected, expected),
                                                  "supervised": (expected, f"{expected}|{expected}")}


def test_a_submitted_job_has_no_logical_time(tmp_path):
    """``pipecast submit`` (and ``az ml job create``) sends the job's own ``none``: the steps read None."""
    job, _, root = _compiled(tmp_path)
    run_job(job, {**job["inputs"], RUN_ID_INPUT: "submitted-1"})
    assert _seen(root, "submitted-1") == {"stamp": (None, "none"), "supervised": (None, "none|none")}


def _failure(job: dict[str, Any], inputs: dict[str, Any]) -> str:
    """The first node's command fails: its stderr."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = run_task(["bash", "-c", resolve_command(job, order(job)[0], inputs)], env={"PATH": path}, check=False)
    assert result.returncode == 2  # pipecast's exit code for a clear error
    assert "Traceback" not in result.stderr
    return result.stderr


def test_an_unsubstituted_macro_fails_the_step_clearly(tmp_path):
    """A job made by hand with the schedule's inputs: Azure ML substitutes nothing, the runtime refuses the text."""
    job, _, _ = _compiled(tmp_path)
    stderr = _failure(job, {**job["inputs"], RUN_ID_INPUT: "by-hand-1", LOGICAL_TIME_INPUT: TRIGGER_TIME})
    assert "the logical time $PIPECAST_LOGICAL_TIME '${{creation_context.trigger_time}}' still holds the engine " \
           "placeholder" in stderr


def test_a_trigger_time_that_is_not_iso_8601_fails_the_step_clearly(tmp_path):
    """Azure ML does not document the substituted text's form: anything but ISO 8601 fails every step, saying so."""
    job, _, _ = _compiled(tmp_path)
    inputs = {**job["inputs"], RUN_ID_INPUT: "odd-1", LOGICAL_TIME_INPUT: "Monday 6 January 2025 4 AM"}
    stderr = _failure(job, inputs)
    assert "$PIPECAST_LOGICAL_TIME is 'Monday 6 January 2025 4 AM', not an ISO 8601 time" in stderr


def test_only_a_scheduled_pipeline_has_the_input(tmp_path):
    job, schedule, _ = _compiled(tmp_path, unscheduled)
    assert schedule is None and LOGICAL_TIME_INPUT not in str(job) and "--azureml-logical-time" not in str(job)


def test_a_parameter_named_like_the_input_is_refused(tmp_path):
    with pytest.raises(UnsupportedFeatureError, match="parameter 'pipecast_logical_time' uses the prefix "
                                                      "'pipecast_' that pipecast keeps for its own Azure ML inputs"):
        compile_case("azureml", clashing, settings={**SETTINGS, "artifact_root": f"file://{tmp_path}"})


def test_the_steps_of_a_map_body_get_the_input_too(tmp_path):
    compiled = compile_case("azureml", scheduled_map, settings={**SETTINGS, "artifact_root": "az://c/root",
                                                                   "control_flow_preview": "true"})
    job = with_components(yaml.safe_load(compiled.main), compiled.files)
    assert reference_problems(job) == []
    (body,) = [node for node in job["jobs"].values() if node["type"] == "pipeline"]
    assert body["inputs"][LOGICAL_TIME_INPUT] == f"${{{{parent.inputs.{LOGICAL_TIME_INPUT}}}}}"
    inner = body["component"]["jobs"]
    commands = [n["component"]["command"] for n in [*inner.values(), *job["jobs"].values()] if n["type"] == "command"]
    assert len(inner) == 2 and len(commands) == 4
    assert all(f"--azureml-logical-time '${{{{inputs.{LOGICAL_TIME_INPUT}}}}}'" in c for c in commands)
