"""The typed settings framework: conversion, layers, unknown keys, step scope, generated help."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from pipecast.errors import Problem
from pipecast.targets.settings import Duration, Json, Layer, Settings, convert, setting, settings_table


@dataclass(frozen=True)
class Pair:
    key: str
    weight: int = 1
    aliases: ClassVar[Mapping[str, str]] = {"keyName": "key"}

    def problem(self) -> str | None:
        return "weight must be positive" if self.weight <= 0 else None


@dataclass(frozen=True, kw_only=True)
class Demo(Settings):
    renamed: ClassVar[Mapping[str, str]] = {"workdir": "working_directory"}
    image: str | None = setting(None, "container image")
    pairs: tuple[Pair, ...] = setting([], "pairs")
    labels: Mapping[str, str] = setting({}, "labels")
    embed: bool = setting(False, "one file", step=False)
    timeout: Duration | None = setting(None, "a deadline")
    policy: Literal["Always", "OnFailure"] = setting("Always", "when to retry")
    working_directory: str = setting(".", "where to run")
    runs_on: str | tuple[str, ...] = setting("ubuntu-latest", "runner labels")
    extra: Json = setting(None, "passed through")


def parse(*layers: Layer) -> tuple[Demo, list[Problem]]:
    problems: list[Problem] = []
    return Demo.parse(list(layers), target="demo", report=problems.append), problems


def test_defaults_then_layers_in_order():
    settings, problems = parse(Layer("pipeline", {"image": "a", "embed": True}, "p.py:3"),
                               Layer("--set", {"image": "b"}))
    assert problems == []
    assert settings.image == "b" and settings.embed is True and settings.policy == "Always"


@pytest.mark.parametrize(("kind", "raw", "expected"), [
    (bool, "true", True), (bool, "No", False), (bool, False, False),
    (int, 3, 3), (int, "12", 12),
    (float, 2, 2.0),
    (str, "x", "x"), (str, 2024, "2024"),
    (Duration, "1h30m", 5400.0), (Duration, 90, 90.0),
    (tuple[str, ...], ["a", "b"], ("a", "b")),
    (str | tuple[str, ...], ["self-hosted", "gpu"], ("self-hosted", "gpu")),
    (str | tuple[str, ...], "ubuntu-latest", "ubuntu-latest"),
    (Json, {"any": [1]}, {"any": [1]}),
])
def test_values_convert_to_the_declared_type(kind, raw, expected):
    assert convert(kind, raw) == expected


@pytest.mark.parametrize(("kind", "raw", "needle"), [
    (bool, "maybe", "true or false"), (bool, 1, "true or false"),
    (int, True, "whole number"), (int, 1.5, "whole number"),
    (str, "", "non-empty text"), (str, True, "non-empty text"),
    (Duration, "4 hours", "duration"),
    (tuple[str, ...], "a", "list of text"),
    (Mapping[str, str], ["a"], "mapping of text to text"),
    (Literal["A", "B"], "C", "one of ['A', 'B']"),
])
def test_wrong_values_say_what_was_expected(kind, raw, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        convert(kind, raw)


def test_every_problem_is_reported_at_once_with_location_did_you_mean_and_fix():
    _, problems = parse(Layer("the pipeline's settings", {"imgae": "x", "policy": "Never"}, "p.py:3"),
                        Layer("--set", {"workdir": "/src", "timeout": "soon"}))
    text = "\n".join(p.render() for p in problems)
    assert len(problems) == 4
    assert ("p.py:3: target 'demo': unknown setting 'imgae' for target 'demo' in the pipeline's settings; did you "
            "mean 'image'?") in text
    assert "setting 'policy' (in the pipeline's settings): must be one of ['Always', 'OnFailure'], got 'Never'" in text
    assert "setting 'workdir' (in --set) is now called 'working_directory'" in text
    assert "fix: e.g. --set timeout=30m" in text


def test_records_take_engine_aliases_and_check_themselves():
    settings, problems = parse(Layer("--set", {"pairs": [{"keyName": "gpu", "weight": 2}]}))
    assert settings.pairs == (Pair("gpu", 2),) and not problems
    _, problems = parse(Layer("--set", {"pairs": [{"key": "gpu", "weight": 0}]}))
    assert "weight must be positive" in problems[0].message
    _, problems = parse(Layer("--set", {"pairs": [{"key": "gpu", "colour": "red"}]}))
    assert "has no key 'colour'" in problems[0].message


def test_a_step_layer_applies_only_to_step_scoped_settings():
    base, _ = parse(Layer("--set", {"image": "a"}))
    problems: list[Problem] = []
    mine = base.replace_layer(Layer("the settings of step 'train'", {"image": "gpu", "embed": True}, "p.py:9",
                                    step="train"), target="demo", report=problems.append)
    assert mine.image == "gpu" and mine.embed is False and base.image == "a"
    assert problems[0].step == "train" and "applies to the whole pipeline" in problems[0].message


def test_settings_are_frozen_and_defaults_are_not_shared():
    first, _ = parse()
    second, _ = parse()
    assert first.labels == second.labels == {}
    with pytest.raises(AttributeError):
        first.image = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        first.labels["a"] = "b"  # type: ignore[index]


def test_the_table_is_generated_from_the_fields():
    table = settings_table(Demo)
    assert "| `embed` | true/false | `false` | no | one file |" in table
    assert '| `policy` | "Always" &#124; "OnFailure" | `Always` | yes | when to retry |' in table
    assert "| `labels` | mapping of text to text | — | yes | labels |" in table
