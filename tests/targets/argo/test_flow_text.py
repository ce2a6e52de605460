"""Text conditions on Argo (issue 16): a chain with a comparison govaluate would read differently from Python is
decided by its publisher, which publishes only the number of the branch that runs, which ``when`` reads; replays
equal ``pipecast run``.

``pytest --update-goldens`` rewrites ``data/flow/argo_text_if.yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipecast import Elif, Else, If, OneOf, is_in, pipeline, step
from pipecast.runtime import publish_argo
from pipecast.runtime.params import encode_constant
from tests.helpers.cases import compile_case
from tests.targets.argo.flow_replay import govaluate, replay_flow
from tests.targets.argo.support import schema_errors
from tests.targets.argo.test_flow import SETTINGS, _argo_params, _assert_same_as_local, _local
from tests.targets.github import flow_pipelines as gh

GOLDEN = Path(__file__).parent / "data" / "flow" / "argo_text_if.yaml"
HOSTILE = "x) || (1 == 1"


@step
def echo(text: str) -> str:
    return text


@pipeline(name="argo_text_if")
def text_if(word: str = "2024-01-01", stage: str = "prod", scale: float = 1.0):
    """Text comparisons (one date-like), membership in a text list, mixed with a numeric test, and OneOf."""
    said = echo(word)
    with If((said == "2024-01-01") & (scale > 0.5)):
        first = gh.announce(said)
    with Elif(is_in(stage, ["prod", HOSTILE]) & ~(said == stage)):
        second = gh.announce(stage)
    with Else():
        third = gh.announce("neither")
    return gh.announce(OneOf(first, second, third))


def _workflow() -> tuple[dict[str, str], str]:
    files = compile_case("argo", text_if.build(), golden=True, settings=SETTINGS).files
    (text,) = [t for p, t in files.items() if p.endswith("-workflow.yaml")]
    return files, text


def test_golden_schema_and_whens_that_read_only_verdicts(request):
    _, text = _workflow()
    if request.config.getoption("--update-goldens"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), "differs from its golden (pytest --update-goldens)"
    workflow = yaml.safe_load(text)
    assert schema_errors(workflow) == []
    whens = [t["when"] for tpl in workflow["spec"]["templates"] for t in tpl.get("dag", {}).get("tasks", [])
             if "when" in t]
    assert whens, "the branches are tested by `when`"
    for when in whens:  # only the publisher's outputs and numbers: no text of the pipeline's reaches govaluate
        assert "prod" not in when and "2024" not in when and HOSTILE not in when, when
    assert HOSTILE not in json.dumps(workflow["spec"]["templates"])  # the constant is percent-encoded in argv


@pytest.mark.parametrize(("params", "branch"), [
    ({}, "announce"),  # date-like text equal as text
    ({"word": "2024-1-1", "stage": HOSTILE}, "announce_2"),  # a date govaluate would equate; hostile membership
    ({"word": "Succeeded", "stage": "Prod"}, "announce_3"),  # text compares with case, as Python does
    ({"word": "prod", "stage": "prod"}, "announce_3"),  # not (said == stage) is false
])
def test_text_branches_run_as_pipecast_run_does(params, branch, tmp_path):
    pipeline_ir = text_if.build()
    files, _ = _workflow()
    run = replay_flow(files, "text-x1", _argo_params(pipeline_ir, params), store=tmp_path / "store",
                      scratch=tmp_path / "pods")
    assert run.phase == "Succeeded", run.logs
    ran = {k.split("/")[-1]: v for k, v in run.phases.items()}
    assert [b for b in ("announce", "announce-2", "announce-3") if ran[b] == "Succeeded"] == \
        [branch.replace("_", "-")]
    (verdict,) = [out for node, out in run.outputs.items() if node.endswith("condition-1-values")]
    assert verdict == {"branch": str(["announce", "announce_2", "announce_3"].index(branch))}
    _assert_same_as_local(pipeline_ir, params, tmp_path / "store", "text-x1",
                          _local(pipeline_ir, params, tmp_path / "local"))


def _publish(tmp_path: Path, left: object, op: str, right: object, *later: str) -> int:
    condition = {"op": op, "operands": [{"kind": "constant", "value_json": json.dumps(v)} for v in (left, right)]}
    return publish_argo.main(["--pipeline", "p", "--run-id", "r", "--artifact-root", f"file://{tmp_path}",
                              "--out", str(tmp_path / "out"),
                              "--branch", f"0={encode_constant(json.dumps(condition))}", *later])


@pytest.mark.parametrize(("left", "op", "right", "verdict"), [
    ("2024-01-01", "==", "2024-1-1", "-1"), ("Succeeded", "!=", "succeeded", "0"),
    (HOSTILE, "in", ["prod", HOSTILE], "0"), ("b", "<", "a", "-1"), ([1, "a"], "==", [1, "a"], "0"),
    ("z", "not in", "banana", "0"), (1, "==", 1.0, "0"),
])
def test_the_publisher_tests_with_python_semantics_and_writes_only_a_number(left, op, right, verdict, tmp_path):
    assert _publish(tmp_path, left, op, right) == 0
    assert (tmp_path / "out" / "branch").read_text(encoding="utf-8") == verdict
    assert govaluate(f"{verdict} == 0") is (verdict == "0")


def test_a_comparison_python_cannot_make_fails_the_publisher_with_one_line(tmp_path, capsys):
    assert _publish(tmp_path, "a", "<", 1) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot compare 'a' with 1" in err
    assert not (tmp_path / "out" / "branch").exists()
