"""The Airflow escape hatch ``operator_kwargs``: checked at compile against tables of the operators' arguments
(checked against the installed Airflow's signatures), refused with one clear error when pipecast owns a
key or the operator lacks it, written as data (goldens); ``test_dagbag`` loads the DAG in Airflow 3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipecast.errors import ValidationError
from pipecast.targets.airflow import kwargs as table
from tests.helpers.cases import ROOT, compile_case, read_tree, write_tree
from tests.helpers.slow import slow_fixture
from tests.targets.airflow import pipelines
from tests.targets.airflow.support import airflow_env

DATA = Path(__file__).parent / "data" / "operator_kwargs"
BASE = {"artifact_root": "s3://acme/artifacts"}

SIGNATURES = """
import inspect, json, sys
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.pod_manager import OnFinishAction
try:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import BaseOperator
    from airflow.task.weight_rule import WeightRule
except ImportError:  # Airflow 2.10
    from airflow.models.baseoperator import BaseOperator
    from airflow.operators.bash import BashOperator
    from airflow.utils.weight_rule import WeightRule
out = {c.__name__: {"params": [n for n in inspect.signature(c.__init__).parameters if n not in ("self", "kwargs")],
                    "templated": list(c.template_fields)} for c in (BaseOperator, KubernetesPodOperator, BashOperator)}
out["weight_rule"] = [rule.value for rule in WeightRule]
out["on_finish_action"] = [action.value for action in OnFinishAction]
json.dump(out, open(sys.argv[1], "w"))
"""


def _signatures(python: Path, base: Path) -> dict[str, Any]:
    """The operator signatures and templated fields of ``python``'s Airflow (read in a child process)."""
    out = base / "out.json"
    result = subprocess.run([str(python), "-c", SIGNATURES, str(out)], capture_output=True, text=True,
                            env=airflow_env(base / "home", bin_dir=python.parent), timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return dict(json.loads(out.read_text()))


@pytest.fixture(scope="module")
@slow_fixture
def signatures(tmp_path_factory) -> dict[str, Any]:
    """Airflow 3.3's (this virtualenv's)."""
    return _signatures(Path(sys.executable), tmp_path_factory.mktemp("signatures"))


@pytest.fixture(scope="module")
@slow_fixture
def signatures2(tmp_path_factory) -> dict[str, Any]:
    """Airflow 2.10.5's (its own virtualenv, as test_airflow2 uses)."""
    from tests.targets.airflow.airflow2_venv import airflow2_python

    return _signatures(airflow2_python(), tmp_path_factory.mktemp("signatures2"))


def test_the_tables_are_the_operators_arguments(signatures):
    base, pod, bash = (set(signatures[name]["params"]) for name in
                       ("BaseOperator", "KubernetesPodOperator", "BashOperator"))
    assert set(table.BASE_ARGS) <= base and set(table.POD_ARGS) <= pod and set(table.BASH_ARGS) <= bash
    assert set(table.OWNED) <= base | pod | bash  # every refusal names a real argument
    # every argument is either passed or refused with a reason: a new Airflow argument shows up here
    assert base | pod | bash == set(table.ALL_ARGS) | set(table.OWNED)
    assert not set(table.ALL_ARGS) & set(table.OWNED)
    assert set(table.BASE_ARGS["weight_rule"].choices) == set(signatures["weight_rule"])
    assert set(table.POD_ARGS["on_finish_action"].choices) == set(signatures["on_finish_action"])


def test_airflow_2_takes_every_argument_passed_with_the_same_choices(signatures2):
    base, pod, bash = (set(signatures2[name]["params"]) for name in
                       ("BaseOperator", "KubernetesPodOperator", "BashOperator"))
    assert set(table.BASE_ARGS) <= base and set(table.POD_ARGS) <= pod and set(table.BASH_ARGS) <= bash
    assert set(table.BASE_ARGS["weight_rule"].choices) == set(signatures2["weight_rule"])
    assert set(table.POD_ARGS["on_finish_action"].choices) == set(signatures2["on_finish_action"])
    unknown = (base | pod | bash) - set(table.ALL_ARGS) - set(table.OWNED)
    # Arguments only Airflow 2.10 or its older cncf-kubernetes provider has (deprecated aliases, a callable, a
    # trigger's and a log-prefix switch that KubernetesPodOperator 10.5 lacks) are not passed: unknown keys.
    assert unknown == {"task_concurrency", "skip_exit_code", "log_formatter", "trigger_kwargs",
                       "container_name_log_prefix_enabled"}


@pytest.mark.parametrize("airflow", ["signatures", "signatures2"])
def test_no_passed_argument_is_rendered_as_a_template_unless_no_delimiter_fits(airflow, request):
    found = request.getfixturevalue(airflow)
    templated = {name for operator in ("BaseOperator", "KubernetesPodOperator", "BashOperator")
                 for name in found[operator]["templated"]}
    passed = set(table.ALL_ARGS) & templated
    assert passed == {"name", "hostname"} and all(table.ALL_ARGS[name].kind == "dns" for name in passed)


def test_dag_file_golden(request):
    """The hatch's DAG for Airflow 3 and Airflow 2.10, byte for byte (Airflow 3 loads it in test_dagbag)."""
    files = {f"airflow{version}.dag.py.golden": compile_case("airflow", pipelines.operator_kwargs,
                                                      settings={"airflow_version": version}).main
             for version in (3, 2)}
    if request.config.getoption("--update-goldens"):
        write_tree(DATA, files)
    assert files == read_tree(DATA)


def _problems(pipeline: Any = "quickstart", **settings: Any) -> list[Any]:
    with pytest.raises(ValidationError) as info:
        compile_case("airflow", pipeline, settings={**BASE, **settings})
    return list(info.value.problems)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"retries": 3}, "sets 'retries', which pipecast cannot pass (use @step(retry=Retry("),
    ({"execution_timeout": 60}, "use @step(timeout=...)"),
    ({"task_id": "x"}, "pipecast names each task after its step"),
    ({"trigger_rule": "all_done"}, "only when every upstream step succeeded"),
    ({"on_failure_callback": "notify"}, "takes a Python object"),
    ({"cmds": ["sh"]}, "pipecast's runtime command runs the step"),
    ({"volumes": []}, "use the pod_spec_patch or container_patch setting"),
    ({"namespace": "x"}, "use the namespace setting"),
    ({"pol": "ml"}, "'pol', which is not an argument of BaseOperator, KubernetesPodOperator or BashOperator"),
    ({"priority_weight": "high"}, "'priority_weight' that is not a whole number"),
    ({"priority_weight": True}, "'priority_weight' that is not a whole number"),
    ({"pool_slots": 0}, "'pool_slots' below 1"),
    ({"weight_rule": "biggest"}, "'weight_rule' 'biggest', which is none of"),
    ({"email": ["a", 1]}, "'email' that is not text or a list of text"),
    ({"name": "{{ x }}"}, "'name' that is not a DNS-1123 name"),
])
def test_a_key_pipecast_owns_or_the_operators_lack_is_one_clear_error(kwargs, expected):
    (problem,) = _problems(operator_kwargs=kwargs)
    assert "'operator_kwargs'" in problem.message and expected in problem.message, problem.message
    assert problem.fix and "operator_kwargs=" in problem.fix


def test_a_step_setting_is_refused_at_the_line_it_was_written():
    (problem,) = _problems(pipelines.bad_kwargs)
    assert problem.step == "refused_kwargs" and "use @step(retry=Retry(" in problem.message
    assert problem.location and problem.location.startswith("tests/targets/airflow/pipelines.py:")


def test_an_argument_of_the_other_operator_is_refused_for_the_task():
    """A pod argument on a task that runs on the worker (and a worker's on a pod) names the step."""
    (problem,) = _problems(operator_kwargs={"get_logs": True}, mode="local")  # the pipeline's: reported once
    assert "['get_logs'] are not arguments of BashOperator" in problem.message
    assert problem.location and "quickstart.py:" in problem.location
    (problem,) = _problems(operator_kwargs={"output_encoding": "utf-8"}, mode="kubernetes", image="ghcr.io/a/p:1")
    assert "['output_encoding'] are not arguments of KubernetesPodOperator" in problem.message
    (problem,) = _problems(pipelines.operator_kwargs, mode="kubernetes", image="ghcr.io/a/p:1")  # a step's own
    assert problem.step == "tuned_worker" and "['output_encoding']" in problem.message


def test_sla_is_seconds_in_airflow_2_and_refused_in_airflow_3():
    (problem,) = _problems(operator_kwargs={"sla": 3600})
    assert "'sla' does nothing in Airflow 3" in problem.message
    text = compile_case("airflow", "quickstart", settings={**BASE, "airflow_version": 2,
                                                           "operator_kwargs": {"sla": 3600}}).main
    assert '"operator_kwargs": {"sla": 3600}' in text and 'timedelta(seconds=value) if key == "sla"' in text


def test_the_cli_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    from pipecast.cli import main

    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", "examples/quickstart.py", "-t", "airflow", "--out", str(out),
                                       "--set", "artifact_root=s3://a/b", "--set",
                                       'operator_kwargs={"pool": "ml", "retries": 2}'])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "sets 'retries', which pipecast cannot pass" in result.output
    assert not out.exists()
