"""Replay (DESIGN §4): run the emitted Azure ML job's commands here and get ``pipecast run``'s outputs.

The replayer reads the YAML back, orders the nodes by their ``${{parent.jobs.X.outputs…}}`` inputs,
gives the pipeline inputs their values (the YAML's, or the ones ``pipecast submit`` would send, or the ones
a schedule's job gets: only ``${{creation_context.trigger_time}}`` is substituted there, see
:func:`~tests.targets.azureml.support.scheduled_inputs`), pastes each node's bound values into its command
where it says ``${{inputs.x}}`` (Azure ML's documented textual substitution) and runs the result with
``bash -c``, as Azure ML runs a command, with the node's ``environment_variables``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipecast.runtime.artifacts import safe_segment
from pipecast.targets.azureml.emit import LOGICAL_TIME_INPUT, RUN_ID_INPUT, input_value, schedule_file
from tests.helpers.cases import CompiledCase, compile_case
from tests.helpers.replay import assert_same_outputs, run_task
from tests.targets.azureml.support import order, reference_problems, resolve_command, scheduled_inputs

RUN_ID = "azureml-replay-1"


def checked_job(compiled: CompiledCase) -> dict[str, Any]:
    """The compiled pipeline job, which must pass Azure ML's own reference checks."""
    job = yaml.safe_load(compiled.main)
    assert reference_problems(job) == []
    return job


def replay_settings(root: Path) -> dict[str, str]:
    return {"artifact_root": f"local://{root}", "image": "ghcr.io/acme/pipecast:1.0"}


def run_job(job: dict[str, Any], inputs: dict[str, Any]) -> None:
    """Every node's command in order, with Azure ML's substitution of the pipeline's input values."""
    # `python` in a command is the image's interpreter: here, the one running the tests.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    for name in order(job):
        node = job["jobs"][name]
        command = resolve_command(job, name, inputs)
        run_task(["bash", "-c", command], env={**(node.get("environment_variables") or {}), "PATH": path})


def replay(case_name: str, parameters: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "replay-store"
    compiled = compile_case("azureml", case_name, settings=replay_settings(root))
    pipeline, job = compiled.pipeline, checked_job(compiled)
    # The values a submit sends: the YAML's defaults, the given parameters in the same encoding, the run id.
    inputs = dict(job["inputs"])
    for name, value in parameters.items():
        inputs[name] = input_value(pipeline.parameter(name), value)
    inputs[RUN_ID_INPUT] = RUN_ID
    run_job(job, inputs)
    assert_same_outputs(pipeline, parameters, root, RUN_ID, tmp_path)


def test_quickstart_with_a_non_default_parameter(tmp_path):
    replay("quickstart", {"n": 20, "label": "it's $(id) ${{ x }}"}, tmp_path)


def test_ml_training(tmp_path):
    replay("ml_training", {"epochs": 5, "lr_large": 2.5}, tmp_path)


def test_diamond_after(tmp_path):
    replay("diamond_after", {}, tmp_path)


def test_hostile_values_reach_the_steps_verbatim(tmp_path):
    """The hostile defaults pass Azure ML's substitution and the shell unchanged (outputs equal)."""
    replay("hostile", {}, tmp_path)


def test_hostile_values_given_at_submit_reach_the_steps_verbatim(tmp_path):
    evil = "'; touch /tmp/pwned-azureml; echo '\n$[[x]] ${{inputs.data}} $(id) `id` \\'"
    replay("hostile", {"text": evil, "data": {"'": evil}}, tmp_path)
    assert not Path("/tmp/pwned-azureml").exists()


@pytest.mark.parametrize("case_name", ["quickstart", "hostile"])
def test_the_replay_fails_when_a_value_is_pasted_unquoted(case_name, tmp_path):
    """The replay can fail: the same hostile text pasted without pipecast's encoding breaks the command."""
    compiled = compile_case("azureml", case_name, settings={"artifact_root": f"local://{tmp_path}", "image": "x"})
    job = yaml.safe_load(compiled.main)
    name = next(n for n in order(job) if "text" in job["jobs"][n]["inputs"] or "label" in job["jobs"][n]["inputs"])
    key = "text" if "text" in job["inputs"] else "label"
    inputs = {**job["inputs"], key: "a'b", RUN_ID_INPUT: RUN_ID}
    with pytest.raises(AssertionError, match="task failed"):
        run_task(["bash", "-c", resolve_command(job, name, inputs)], timeout=30)


def test_each_run_a_schedule_starts_has_its_own_run_id(tmp_path):
    """Two triggers of the schedule: two run folders, each with ``pipecast run``'s outputs.

    The schedule's job gets only what Azure ML documents for it: the trigger time in a string input.
    """
    root = tmp_path / "replay-store"
    compiled = compile_case("azureml", "ml_training", settings=replay_settings(root))
    pipeline, job = compiled.pipeline, checked_job(compiled)
    schedule = yaml.safe_load(compiled[schedule_file(pipeline)])
    triggers = ["2025-01-06T04:00:00Z", "2025-01-13T04:00:00Z"]
    for trigger in triggers:
        inputs = scheduled_inputs(job, schedule, trigger)
        assert inputs[RUN_ID_INPUT] == trigger
        assert inputs[LOGICAL_TIME_INPUT] == trigger  # what the steps read is in test_schedule_time.py
        run_job(job, inputs)
        assert_same_outputs(pipeline, {}, root, trigger, tmp_path / trigger.replace(":", "-"))
    runs = sorted(p.name for p in (root / pipeline.name / "runs").iterdir())
    assert runs == sorted(safe_segment(t) for t in triggers)


def test_a_job_created_by_hand_keeps_the_macro_text_as_its_run_id(tmp_path):
    """Outside a schedule nothing substitutes the trigger-time macro: the runtime gets its text.

    (The runtime refuses a run id that still holds an engine placeholder; the docs say to pass
    ``--set inputs.pipecast_run_id=<id>`` to ``az ml job create``.)
    """
    job = checked_job(compile_case("azureml", "quickstart", settings=replay_settings(tmp_path)))
    first = order(job)[0]
    command = resolve_command(job, first, job["inputs"])
    assert "--run-id '${{creation_context.trigger_time}}'" in command


def test_replay_of_literal_lists_and_dicts_given_as_one_input(tmp_path):
    replay("gather", {"n": 5, "lr": 0.25}, tmp_path)
