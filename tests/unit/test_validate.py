"""Validation: every rule names the step and its file:line, and every problem is reported at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipecast.compiler.units import cron_problem, parse_duration, parse_quantity
from pipecast.errors import ValidationError
from tests.helpers.cases import ROOT
from tests.unit import bad_pipelines

line_of = bad_pipelines.line_of


@pytest.fixture(scope="module")
def problems():
    with pytest.raises(ValidationError) as err:
        bad_pipelines.everything_wrong.build()
    return err.value.problems


def find(problems, fragment):
    matches = [p for p in problems if fragment in p.message]
    assert matches, f"no problem mentions {fragment!r}: {[p.message for p in problems]}"
    return matches[0]


@pytest.mark.parametrize(("fragment", "line_fragment", "step"), [
    ("has no input 'c'", "unknown input 'c'", "needs_two"),
    ("required input 'b'", "missing input 'b'", "needs_two_2"),
    ("pipeline parameter 'label' is str", "parameter of the wrong type", "takes_int"),
    ("gets str '7'", "constant of the wrong type", "takes_int_2"),
    ("cannot be serialised to JSON", "not serialisable", "takes_int_3"),
    ("explicit step names must be unique", "duplicate explicit name", "fixed"),
    ("cpu 'two' is not a valid CPU quantity", "bad cpu", "badly_configured"),
    ("memory '4GB' is not a valid memory quantity", "bad cpu", "badly_configured"),
    ("retry delay 'soon' is not a duration", "bad cpu", "badly_configured"),
    ("timeout '1 hour' is not a duration", "bad cpu", "badly_configured"),
])
def test_each_rule_names_step_and_line(problems, fragment, line_fragment, step):
    problem = find(problems, fragment)
    assert problem.location == f"tests/unit/bad_pipelines.py:{line_of(line_fragment)}"
    assert problem.step == step


def test_cycle_through_after_is_reported(problems):
    problem = find(problems, "in a cycle")
    assert "tick" in problem.message and "tick_2" in problem.message


def test_invalid_cron_and_bad_default_are_reported(problems):
    assert "hour field '25': 25 is outside 0-23" in find(problems, "schedule").message
    assert find(problems, "default is str 'three'").location.startswith("tests/unit/bad_pipelines.py:")


def test_all_problems_come_at_once(problems):
    assert len(problems) >= 13


def test_cli_prints_every_problem_exits_2_without_traceback_or_files(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pipecast.cli", "compile", "tests/unit/bad_pipelines.py:everything_wrong",
         "--target", "local", "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("error:") >= 14
    assert "tests/unit/bad_pipelines.py:" in result.stderr and "fix:" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("1h30m", 5400), ("250ms", 0.25), (5, 5.0),
                                               ("1 hour", None), ("", None), ("-1s", None), (True, None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "value"), [("500m", 0.5), ("4Gi", 4 * 2**30), ("1G", 1e9), (2, 2.0),
                                             ("4GB", None), ("two", None)])
def test_quantities(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize(("expr", "ok"), [("0 3 * * *", True), ("*/5 * * * mon-fri", True), ("@daily", True),
                                          ("0 3 * *", False), ("60 * * * *", False), ("* * * * 8", False),
                                          ("5-1 * * * *", False), ("*/0 * * * *", False)])
def test_cron(expr, ok):
    assert (cron_problem(expr) is None) is ok
