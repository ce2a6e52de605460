"""Replay (DESIGN §4): run each job's script here in ``needs`` order, as GitHub would; get `pipecast run`'s outputs.

Every job runs in a fresh runner temp folder; data moves between jobs only through the simulated
artifact service (upload-artifact → download-artifact), or through the artifact root when it is remote.
"""

from __future__ import annotations

import dataclasses

import pytest

from pipecast.compiler.naming import engine_names
from pipecast.targets.github.syntax import artifact_name
from tests.helpers.cases import case, compile_case
from tests.helpers.replay import assert_same_outputs
from tests.targets.github.gh_pipelines import EVIL
from tests.targets.github.replay import ExpressionError, load_workflow, merge_artifacts, replay
from tests.targets.github.support import hostile_names_pipeline, workflow_file

RUN_ID = "4242"


def _replay_local(pipeline, tmp_path, *, event="workflow_dispatch", inputs=None, expected=None):
    """Replay a workflow whose artifacts travel as GitHub artifacts; compare with `pipecast run`."""
    text = workflow_file(compile_case("github", pipeline, golden=True))
    result = replay(text, tmp_path / "replay", event=event, inputs=inputs or {}, run_id=RUN_ID)
    jobs = engine_names("github", [s.name for s in pipeline.steps])
    assert result.jobs_run == list(load_workflow(text)["jobs"])
    root = merge_artifacts(result, pipeline.name, RUN_ID, {s: artifact_name(j) for s, j in jobs.items()},
                           tmp_path / "merged")
    parameters = {p.name: p.default for p in pipeline.parameters}
    parameters.update(expected or {})
    assert_same_outputs(pipeline, parameters, root, RUN_ID, tmp_path)
    return result


def test_quickstart_with_a_non_default_parameter(tmp_path):
    _replay_local(case("quickstart").build(), tmp_path, inputs={"n": "20", "label": "odd & even"},
                  expected={"n": 20, "label": "odd & even"})


def test_ml_training_dispatched(tmp_path):
    _replay_local(case("ml_training").build(), tmp_path, inputs={"samples": "80", "epochs": "5", "lr_large": "0.5"},
                  expected={"samples": 80, "epochs": 5, "lr_large": 0.5})


def test_diamond_with_an_after_edge(tmp_path):
    result = _replay_local(case("diamond_after").build(), tmp_path)
    order = result.jobs_run
    assert order.index("cleanup-tmp") > order.index("add") and order.index("add") > order.index("double_right")


def test_hostile_values_dispatched_explicitly_arrive_verbatim(tmp_path):
    data = '{"q": "\'\\"", "s": "${{ secrets.X }}", "t": "$(id)"}'
    _replay_local(case("hostile").build(), tmp_path, inputs={"text": EVIL + " again", "data": data},
                  expected={"text": EVIL + " again", "data": {"q": "'\"", "s": "${{ secrets.X }}", "t": "$(id)"}})


def test_hostile_defaults_of_a_dispatch_without_inputs(tmp_path):
    _replay_local(case("hostile").build(), tmp_path)


def test_hostile_defaults_of_a_scheduled_run(tmp_path):
    pipeline = dataclasses.replace(case("hostile").build(), schedule="0 3 * * *")
    _replay_local(pipeline, tmp_path, event="schedule")


def test_scheduled_run_uses_defaults(tmp_path):
    pipeline = dataclasses.replace(case("quickstart").build(), schedule="*/5 * * * *")
    result = _replay_local(pipeline, tmp_path, event="schedule")
    assert result.environments["make_numbers"]["PIPECAST_PARAM_N"] == ""  # no inputs: the script used the default


def test_remote_artifact_root_and_hostile_names(tmp_path):
    """A non-file root is read and written directly by every job (here fsspec's `local://`, under a hostile name)."""
    pipeline = hostile_names_pipeline()
    root = tmp_path / "store" / "${{ github.token }} $(id)"
    text = workflow_file(compile_case("github", pipeline, golden=True,
                                      settings={"artifact_root": f"local://{root}", "working_directory": "tests"}))
    assert "upload-artifact" not in text
    replay(text, tmp_path / "replay", event="schedule", run_id=RUN_ID, secrets={"API_TOKEN": "s3cret"})
    parameters = {p.name: p.default for p in pipeline.parameters}
    assert_same_outputs(pipeline, parameters, root, RUN_ID, tmp_path)


def test_the_workflow_env_is_evaluated_with_only_the_contexts_github_gives_it(tmp_path):
    """The replay is no more generous than GitHub: `runner` is not available in the workflow's `env`."""
    scheduled = dataclasses.replace(case("quickstart").build(), schedule="0 3 * * *")
    text = workflow_file(compile_case("github", scheduled, golden=True))
    assert "\nenv:\n" in text
    broken = text.replace("\nenv:\n", "\nenv:\n  WHERE: ${{ runner.temp }}\n", 1)
    with pytest.raises(ExpressionError, match="context 'runner' is not modelled"):
        replay(broken, tmp_path / "replay", event="schedule", run_id=RUN_ID)


def test_literal_lists_and_dicts_given_as_one_input(tmp_path):
    _replay_local(case("gather").build(), tmp_path, inputs={"n": "5", "lr": "0.25"}, expected={"n": 5, "lr": 0.25})
