"""If/elif/else chains on Argo (issue 16): the chain's publisher picks the branch with ``pipecast run``'s rules and
publishes its number, and each branch's ``when`` is one test of it, so the Workflow grows linearly with the
branches; replays (flow_replay.py, Argo's own rules) equal ``pipecast run`` for every branch taken and for none.

``pytest --update-goldens`` rewrites ``data/flow/argo_elif.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipecast import Elif, Else, If, OneOf, is_in, pipeline, step
from pipecast.runtime import publish_argo
from pipecast.runtime.params import encode_constant
from tests.helpers.cases import compile_case
from tests.targets.argo.flow_replay import replay_flow
from tests.targets.argo.support import schema_errors
from tests.targets.argo.test_flow import SETTINGS, _argo_params, _assert_same_as_local, _local

GOLDEN = Path(__file__).parent / "data" / "flow" / "argo_elif.yaml"
HOSTILE = "x) || (1 == 1"
TEMPLATED = "{{tasks.pick.outputs.result}}"  # Argo would substitute it if it reached the file as written
_BRANCH = re.compile(r"^\{\{tasks\.condition-\d+-values\.outputs\.parameters\.branch\}\} == \d+$")


@step
def pick(x: int) -> int:
    return x


@step
def tag(text: str) -> str:
    return text


@pipeline(name="argo_elif")
def elif_chain(x: int = 0, word: str = "a"):
    """Four branches (numbers, hostile text, membership), a lone numeric if nested in the else, a step after one
    branch (skipped with it), and a OneOf over the branches."""
    n = pick(x)
    with If(n == 0):
        first = tag("first")
    with Elif((n == 1) | (word == HOSTILE)):
        second = tag("second")
    with Elif(is_in(word, ["b", TEMPLATED])):
        third = tag("third")
    with Else():
        other = tag("else")
        with If(n > 100):
            tag("big")
    tag(second)
    return tag(OneOf(first, second, third, other))


@pipeline(name="argo_elif_none")
def no_else(x: int = 0):
    """No else: when no condition holds no branch runs, and neither does the step after one."""
    n = pick(x)
    with If(n == 0):
        tag("first")
    with Elif(n == 1):
        second = tag("second")
    with Elif(n > 10):
        tag("third")
    tag(second)


def _chain(count: int, text: str = "b") -> Any:
    """An if/elif chain of ``count`` branches on an output, text compared in the last elif."""

    @pipeline(name=f"argo_chain_{count}")
    def generated(x: int = 0, word: str = "a"):
        n = pick(x)
        with If(n == 0):
            tag("b0")
        for k in range(1, count - 1):
            with Elif(n == k):
                tag(f"b{k}")
        with Elif(word == text):
            tag("text")

    return generated


def _workflow(definition: Any) -> tuple[dict[str, str], str]:
    files = compile_case("argo", definition.build(), golden=True, settings=SETTINGS).files
    (text,) = [t for p, t in files.items() if p.endswith("-workflow.yaml")]
    return files, text


def _whens(workflow: dict[str, Any]) -> list[str]:
    return [t["when"] for tpl in workflow["spec"]["templates"] for t in tpl.get("dag", {}).get("tasks", [])
            if "when" in t]


def test_golden_schema_and_one_number_test_per_branch(request):
    _, text = _workflow(elif_chain)
    if request.config.getoption("--update-goldens"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), "differs from its golden (pytest --update-goldens)"
    workflow = yaml.safe_load(text)
    assert schema_errors(workflow) == []
    whens = _whens(workflow)
    assert [w for w in whens if _BRANCH.match(w)] == [
        f"{{{{tasks.condition-1-values.outputs.parameters.branch}}}} == {k}" for k in range(4)]
    # the nested lone if keeps its numeric comparison, under the else's number
    assert "({{tasks.condition-1-values.outputs.parameters.branch}} == 3) && " \
           "(({{tasks.condition-5-values.outputs.parameters.v0}} > 100))" in whens
    assert HOSTILE not in text and TEMPLATED not in text  # constants only percent-encoded in the publisher's argv


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def test_hostile_text_does_not_change_the_workflows_structure():
    plain = yaml.safe_load(_workflow(_chain(4, "b"))[1])
    hostile = yaml.safe_load(_workflow(_chain(4, f"{HOSTILE}' && {TEMPLATED} \"\n- x: [}}"))[1])
    assert _shape(hostile) == _shape(plain)
    assert _whens(hostile) == _whens(plain)


def test_a_chain_grows_linearly_with_its_branches():
    """Bytes, not time: 100 branches take about twice what 50 take (the negations made it about four times)."""
    sizes = {n: len(_workflow(_chain(n))[1].encode("utf-8")) for n in (50, 100)}
    assert 1.8 < sizes[100] / sizes[50] < 2.2, sizes
    assert sizes[100] < 100_000, sizes  # 368 KB when each elif repeated the earlier conditions


def _ran(run: Any, names: tuple[str, ...]) -> list[str]:
    phases = {k.split("/")[-1]: v for k, v in run.phases.items()}
    return [n for n in names if phases.get(n) == "Succeeded"]


@pytest.mark.parametrize(("params", "branch", "ran"), [
    ({}, 0, ["tag"]),  # the first branch
    ({"x": 7, "word": HOSTILE}, 1, ["tag-2", "tag-6"]),  # a middle elif (hostile text equal as text) and the step after
    ({"x": 7, "word": TEMPLATED}, 2, ["tag-3"]),  # the last elif: membership
    ({"x": 200}, 3, ["tag-4", "tag-5"]),  # the else and the lone if nested in it
])
def test_each_branch_runs_as_pipecast_run_does(params, branch, ran, tmp_path):
    pipeline_ir = elif_chain.build()
    files, _ = _workflow(elif_chain)
    run = replay_flow(files, "elif-x1", _argo_params(pipeline_ir, params), store=tmp_path / "store",
                      scratch=tmp_path / "pods")
    assert run.phase == "Succeeded", run.logs
    assert run.outputs["elif-x1/condition-1-values"] == {"branch": str(branch)}
    assert _ran(run, ("tag", "tag-2", "tag-3", "tag-4", "tag-5", "tag-6")) == ran
    assert _ran(run, ("tag-7",)) == ["tag-7"]  # the OneOf reader: one branch always runs
    _assert_same_as_local(pipeline_ir, params, tmp_path / "store", "elif-x1",
                          _local(pipeline_ir, params, tmp_path / "local"))


@pytest.mark.parametrize(("x", "branch", "ran"), [(11, "2", ["tag-3"]), (5, "-1", [])])
def test_no_branch_runs_when_no_condition_holds(x, branch, ran, tmp_path):
    pipeline_ir = no_else.build()
    files, _ = _workflow(no_else)
    params = {"x": x}
    run = replay_flow(files, "none-x1", _argo_params(pipeline_ir, params), store=tmp_path / "store",
                      scratch=tmp_path / "pods")
    assert run.phase == "Succeeded", run.logs
    assert run.outputs["none-x1/condition-1-values"] == {"branch": branch}
    assert _ran(run, ("tag", "tag-2", "tag-3", "tag-4")) == ran
    _assert_same_as_local(pipeline_ir, params, tmp_path / "store", "none-x1",
                          _local(pipeline_ir, params, tmp_path / "local"))


def _condition(op: str, left: object, right: object) -> str:
    import json

    return encode_constant(json.dumps({"op": op, "operands": [{"kind": "constant", "value_json": json.dumps(v)}
                                                              for v in (left, right)]}))


def test_the_publisher_stops_at_the_first_branch_that_holds_as_pipecast_run_does(tmp_path, capsys):
    """A later branch Python cannot compare is never tested once an earlier one holds; reached, it fails."""
    base = ["--pipeline", "p", "--run-id", "r", "--artifact-root", f"file://{tmp_path}"]
    bad = _condition("<", "a", 1)
    assert publish_argo.main([*base, "--out", str(tmp_path / "a"), "--branch", f"0={_condition('==', 1, 1)}",
                              "--branch", f"1={bad}"]) == 0
    assert (tmp_path / "a" / "branch").read_text(encoding="utf-8") == "0"
    assert publish_argo.main([*base, "--out", str(tmp_path / "b"), "--param", "n=int:3",
                              "--branch", f"0={_condition('==', 1, 2)}", "--branch", f"1={bad}",
                              "--branch", "2=-"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot compare 'a' with 1" in err
    assert not (tmp_path / "b" / "branch").exists()
