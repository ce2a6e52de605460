"""Validation: every rule names the step and its file:line, and every problem is reported at once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from pipecast.compiler import ir
from pipecast.compiler.units import cron_problem, parse_duration, parse_quantity
from pipecast.errors import ParameterError, UnsupportedFeatureError, ValidationError
from pipecast.flow import submit_pipeline
from pipecast.targets.registry import get_target, target_paths
from tests.helpers.cases import ROOT, case, compile_case
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


# Checks every target shares, made once in compile_pipeline (the framework), not by each target.

ENGINE_TARGETS = sorted(name for name in target_paths() if not get_target(name).carries_null_parameters)


def test_only_the_local_target_carries_none():
    assert sorted(set(target_paths()) - set(ENGINE_TARGETS)) == ["local"]


def test_a_none_default_is_refused_by_every_engine_target_with_one_message():
    built = bad_pipelines.defaults_to_none.build()
    assert compile_case("local", built).bundle.files  # JSON carries None, and so does `pipecast run`
    assert bad_pipelines.defaults_to_none.run().outputs == {"maybe": {"output": 0}}  # None reached the step
    where = f"tests/unit/bad_pipelines.py:{line_of('a None default')}"
    seen = set()
    for target in ENGINE_TARGETS:
        with pytest.raises(UnsupportedFeatureError) as err:
            compile_case(target, built, golden=True)
        (problem,) = [p for p in err.value.problems if "passes parameters as typed text" in p.message]
        assert problem.location == where, target
        seen.add((problem.message.replace(target, "<target>"), problem.fix))
    (message, fix), = seen  # the same words on every target
    assert message == ("pipeline parameter 'limit' defaults to None: <target> passes parameters as typed text, and "
                       "engines have no common 'no value' (None would arrive as 'null' or 'false', or be refused)")
    assert fix is not None and fix.startswith("give it a real default of its type (e.g. limit: int = 0)")


def test_none_given_at_submit_is_refused_before_anything_is_sent_or_recorded(pipecast_home):
    built = case("quickstart").build()
    with pytest.raises(ParameterError, match="parameter 'n' given as None: airflow passes parameters as typed text"):
        submit_pipeline(built, "airflow", {"n": None}, {}, {"base_url": "http://127.0.0.1:9", "dags_folder": "/no"})
    assert not pipecast_home.exists()


@pytest.mark.parametrize("target", sorted(target_paths()))
def test_unknown_settings_are_refused_at_every_level_once(target):
    built = case("quickstart").build()
    typo = (ir.Setting(target=target, key="imagee", value_json='"x"'),)
    misspelt = dataclasses.replace(built, settings=typo,
                                   steps=(dataclasses.replace(built.steps[0], settings=typo), *built.steps[1:]))
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case(target, misspelt, golden=True, settings={"imagee": "x"})
    found = [(p.step, p.location, p.message) for p in err.value.problems if "'imagee'" in p.message]
    hint = "" if target == "local" else "; did you mean 'image'?"
    head = f"unknown setting 'imagee' for target {target!r} in"
    assert sorted(found, key=repr) == sorted([  # typed targets report in layer order: pipeline, --set, step
        (None, None, f"{head} --set{hint}"),
        (None, str(built.location), f"{head} the pipeline's settings={hint}"),
        (built.steps[0].name, str(built.steps[0].location), f"{head} the step's settings={hint}"),
    ], key=repr)
    known = sorted(get_target(target).settings_class.spec())
    fixes = {p.fix for p in err.value.problems if "'imagee'" in p.message}
    assert fixes <= {f"known settings of {target!r}: {', '.join(known)}",
                     f"target {target!r} takes no settings; remove it"}


def test_a_connection_setting_given_with_set_says_to_pass_it_with_c():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("kubeflow", "quickstart", golden=True, settings={"host": "https://kfp"})
    (problem,) = err.value.problems
    assert problem.message == "setting 'host' given with --set is a connection setting of 'kubeflow'"
    assert problem.fix == "pass it to submit with -c host=..."


def test_connection_settings_are_declared_once_and_checked_like_settings():
    """Airflow's connection keys (its connection class) are refused with --set and unknown in settings=, where
    its submit never reads them; Kubeflow's submit reads them from settings=, so they are accepted there."""
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("airflow", "quickstart", golden=True, settings={"dags_folder": "/dags"})
    (problem,) = err.value.problems
    assert problem.message == "setting 'dags_folder' given with --set is a connection setting of 'airflow'"
    built = case("quickstart").build()
    written = (ir.Setting(target="airflow", key="dags_folder", value_json='"/dags"'),)
    with pytest.raises(UnsupportedFeatureError, match="unknown setting 'dags_folder' for target 'airflow' in the "
                                                      "pipeline's settings="):
        compile_case("airflow", dataclasses.replace(built, settings=written), golden=True)
    host = (ir.Setting(target="kubeflow", key="host", value_json='"https://kfp"'),)
    assert compile_case("kubeflow", dataclasses.replace(built, settings=host), golden=True).files


def test_settings_for_a_misspelt_target_name_are_refused():
    built = case("quickstart").build()
    misspelt = dataclasses.replace(built, settings=(ir.Setting(target="airflwo", key="mode", value_json='"x"'),))
    with pytest.raises(UnsupportedFeatureError, match="the pipeline's settings= names target 'airflwo', which does "
                                                      "not exist; did you mean 'airflow'"):
        compile_case("local", misspelt)
    unknown_plugin = dataclasses.replace(built, settings=(ir.Setting(target="nomad", key="x", value_json="1"),))
    assert compile_case("local", unknown_plugin).bundle.files  # may belong to a target installed elsewhere
