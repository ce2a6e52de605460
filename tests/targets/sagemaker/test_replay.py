"""Replay (DESIGN §4): the emitted definition's steps, run here as SageMaker would, give `pipecast run`'s outputs.

The parameter values reach the replay exactly as ``submit`` sends them (``execution_parameters``), so
this also proves the text SageMaker receives decodes back to the same values in the runtime.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipecast.runtime.params import resolve_parameters
from pipecast.targets.sagemaker.submit import execution_parameters
from tests.helpers.cases import case, compile_case
from tests.helpers.replay import assert_same_outputs
from tests.targets.sagemaker.replay import order_steps, replay

EXECUTION_ID = "r3play0exec1"  # SageMaker execution ids are 12 lower-case alphanumerics


def _replay_case(name: str, given: dict[str, Any], tmp_path, **settings: Any) -> list[str]:
    pipeline = case(name).build()
    values = resolve_parameters(pipeline, given)
    root = tmp_path / "replay"
    bundle = compile_case("sagemaker", pipeline, golden=True,
                          settings={"artifact_root": f"local://{root}", **settings}).bundle  # a store every job reaches
    ran = replay(bundle[bundle.main_file], execution_parameters(pipeline, values), EXECUTION_ID)
    assert sorted(ran) == sorted(s.name for s in pipeline.steps)
    assert_same_outputs(pipeline, values, root, EXECUTION_ID, tmp_path)
    return ran


def test_quickstart_with_non_default_parameters(tmp_path):
    ran = _replay_case("quickstart", {"n": 20, "seed": 3, "label": "odd & even 'numbers'"}, tmp_path)
    assert ran.index("make_numbers") < ran.index("split") < ran.index("total") < ran.index("report")


def test_ml_training_as_processing_steps(tmp_path):
    _replay_case("ml_training", {"samples": 120, "epochs": 5, "lr_small": 0.05, "test_fraction": 0.3}, tmp_path)


def test_ml_training_as_training_steps(tmp_path):
    """Training steps run the same command through AlgorithmSpecification."""
    _replay_case("ml_training", {"samples": 80, "epochs": 3}, tmp_path, step_type="training")


def test_diamond_after_respects_the_ordering_edge(tmp_path):
    ran = _replay_case("diamond_after", {}, tmp_path)
    assert ran.index("add") < ran.index("cleanup-tmp")


def test_hostile_values_survive_the_join_and_the_environment(tmp_path):
    _replay_case("hostile", {"text": "x'\"{{ y }}\n$(z)", "data": {"a": ["${{ b }}"]}}, tmp_path)


def test_order_steps_rejects_a_dependency_on_an_unknown_step():
    with pytest.raises(AssertionError):
        order_steps({"Steps": [{"Name": "a", "DependsOn": ["missing"]}]})


def test_hostile_values_as_training_steps_pass_the_launcher_unchanged(tmp_path):
    """In a training job values travel in Environment and the launcher puts them in: `@{…}`, `@@` stay text."""
    _replay_case("hostile", {"text": "@{PIPECAST_RUN_ID} @@ @ x'\"{{ y }}\n$(z)", "data": {"a": ["@{HOME}"]}},
                 tmp_path, step_type="training")


def test_literal_lists_and_dicts_given_as_one_input(tmp_path):
    _replay_case("gather", {"n": 5, "lr": 0.25}, tmp_path)
