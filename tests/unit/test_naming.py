"""Engine name rules with collision detection."""

from __future__ import annotations

import pytest

from pipecast.compiler.naming import engine_names, rule_for
from pipecast.errors import ValidationError


@pytest.mark.parametrize(("engine", "name", "expected"), [
    ("kubernetes", "Load_Data_2", "load-data-2"),
    ("tekton", "__x__", "x"),
    ("airflow", "load data!", "load_data_"),
    ("github", "2nd-step", "_2nd-step"),
    ("sagemaker", "a.b", "a-b"),
    ("azureml", "Train-Model", "train_model"),
])
def test_rules(engine, name, expected):
    assert rule_for(engine).apply(name) == expected


def test_long_names_are_cut_with_a_stable_hash():
    long = "x" * 100
    first = rule_for("kubernetes").apply(long)
    assert len(first) == 63 and first == rule_for("kubernetes").apply(long)
    assert first != rule_for("kubernetes").apply("x" * 99)


def test_collisions_are_errors_not_merges():
    with pytest.raises(ValidationError) as err:
        engine_names("kubernetes", ["load_data", "load-data", "ok"], locations={"load-data": "f.py:3"})
    (problem,) = err.value.problems
    assert "'load_data' and 'load-data' both become 'load-data'" in problem.message
    assert problem.location == "f.py:3" and problem.fix
    assert engine_names("github", ["a", "b"]) == {"a": "a", "b": "b"}
