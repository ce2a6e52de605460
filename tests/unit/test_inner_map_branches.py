"""`pipecast run`: a map inside a branch inside a map runs only for the outer items whose branch runs.

KFP, Argo and Azure ML skip the whole sub-DAG (or ``if_else`` block) of a branch that did not run, so an inner
loop in it never expands for that outer item. The expected values below are worked out by hand from the
pipelines in tests/unit/flow_pipelines.py, not taken from a run.
"""

from __future__ import annotations

from io import StringIO

import pytest

from pipecast.compiler.graph import topological_order
from pipecast.runs.store import RunStore
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.command import invocation_for
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.inline_flow import InlineStep
from pipecast.runtime.process import Cancellation
from pipecast.runtime.progress import PlainProgress
from tests.unit import flow_pipelines as flows

_SKIPPED_BRANCH = "if branch 'condition_1': `item of map_1 > threshold` is false"


def test_an_inner_map_over_a_list_the_branch_makes_is_skipped_where_the_branch_is(tmp_path):
    out = StringIO()
    store = RunStore(str(tmp_path / "runs.db"))
    run = flows.map_in_branch_in_map.run({"xs": [1, 3], "threshold": 2}, progress=PlainProgress(out), store=store)
    # xs[0] = 1 is not above 2: no list, no inner loop. xs[1] = 3: numbers(3) = [0, 1, 2], add 3, squared.
    assert run.status == "succeeded"
    assert run.outputs == {"output": [0, 9 + 16 + 25]}  # the outer item that skipped gives an empty list
    assert run.step_outputs("total") == {"output": [50]}  # the inner fan-in: only the outer item that ran
    for name in ("numbers[0]", "add[0]", "square[0]", "total[0]"):
        assert (run.steps[name].status, run.steps[name].error) == ("skipped", _SKIPPED_BRANCH), name
    assert not [name for name in run.steps if name.startswith(("add[0][", "square[0]["))]
    assert {run.steps[f"add[1][{j}]"].status for j in range(3)} <= {"done", "cached"}
    assert f"skipped   add[0]: {_SKIPPED_BRANCH}" in out.getvalue()
    recorded = {row["step"]: (row["status"], row["error"]) for row in store.get(run.id)["steps"]}
    assert recorded["square[0]"] == ("skipped", _SKIPPED_BRANCH) and recorded["square[1][2]"][0] == "done"


def test_every_outer_item_skipping_its_branch_skips_the_inner_steps_and_their_fan_in():
    run = flows.map_in_branch_in_map.run({"xs": [1, 2], "threshold": 5}, raise_on_failure=False)
    assert run.status == "succeeded"
    assert {run.steps[n].status for n in ("numbers", "add", "square", "total", "nested_total")} == {"skipped"}
    assert run.outputs == {"output": None}


def test_inner_maps_in_an_if_elif_else_chain_and_a_branch_inside_a_branch():
    run = flows.maps_in_a_branch_chain.run()
    # xs = [0, 1, 2, 7], squares 0, 1, 4, 49: item 0 takes the If (numbers(0 + 2) = [0, 1], plus 100), item 1 the
    # Elif (ys = [5, 6] plus 1; numbers(2) = [0, 1] plus 10), items 2 and 3 the Else, whose inner If (x > 5) only
    # item 3 takes (numbers(7), squared).
    assert run.outputs == {"first": [100 + 101, 0, 0, 0], "second": [0, 6 + 7, 0, 0], "third": [0, 10 + 11, 0, 0],
                           "fourth": [0, 0, 0, sum(d * d for d in range(7))]}
    steps = run.steps
    assert steps["add_2[1]"].error == "if branch 'condition_1': `square.output == 0` is false"
    assert steps["add_3[0]"].error == "elif branch 'condition_2': `square.output == 1` is false"
    assert steps["add_4[3]"].error == "elif branch 'condition_2': `square.output == 1` is false"
    assert steps["square_2[1]"].error == "else branch 'condition_3': an earlier branch ran"
    assert steps["square_2[2]"].error == "if branch 'condition_4': `item of map_1 > 5` is false"
    inner = {name for name in steps if name.count("[") == 2}
    assert inner == {"add_2[0][0]", "add_2[0][1]", "add_3[1][0]", "add_3[1][1]", "add_4[1][0]", "add_4[1][1]"} | {
        f"square_2[3][{d}]" for d in range(7)}
    assert {steps[name].status for name in inner} <= {"done", "cached"}  # equal inputs share a cache entry


def _inline_results(pipeline, parameters: dict, root) -> dict[str, tuple[str, object]]:
    """Run each step through its control-flow runtime (pipecast.runtime.inline_flow), one after the other in
    dependency order as Compose starts services; every step's and instance's status and outputs from its record."""
    plan = pipeline.build()
    values = {p.name: parameters.get(p.name, p.default) for p in plan.parameters}
    store, results = ArtifactStore(f"file://{root}"), {}
    for name in topological_order(plan):
        base = invocation_for(plan, plan.step(name), "run-1", f"file://{root}", values)
        assert InlineStep(plan, values, base, Cancellation()).run() == 0, name
        meta = store.read_json(f"{store.step_dir(plan.name, 'run-1', name)}/meta.json")
        for instance in meta.get("instances", [name]):
            record = store.read_json(f"{store.step_dir(plan.name, 'run-1', instance)}/meta.json")
            ran = record["status"] == "succeeded" and "instances" not in record
            results[instance] = (record["status"], load_outputs(f"file://{root}", plan.name, "run-1", instance)
                                 if ran else None)
    return results


@pytest.mark.parametrize("name", ["map_in_branch_in_map", "maps_in_a_branch_chain"])
def test_the_compose_and_skypilot_runtime_skips_the_same_inner_maps(name, tmp_path):
    pipeline = getattr(flows, name)
    inline = _inline_results(pipeline, {}, tmp_path / "inline")
    run = pipeline.run()
    local = {n: ("succeeded" if s.status in ("done", "cached") else s.status,
                 run.step_outputs(n) if s.status in ("done", "cached") and s.items is None else None)
             for n, s in run.steps.items() if s.items is None}
    assert {n: v for n, v in inline.items() if n in local} == local
    assert set(local) <= set(inline)
    if name == "map_in_branch_in_map":  # hand-derived, as in the first test
        assert inline["nested_total"] == ("succeeded", {"output": [0, 50]})
        assert inline["square[0]"][0] == "skipped" and inline["square[1][2]"] == ("succeeded", {"output": 25})
    else:
        assert inline["nested_total"] == ("succeeded", {"output": [201, 0, 0, 0]})
        assert inline["nested_total_4"] == ("succeeded", {"output": [0, 0, 0, 91]})
        assert inline["add_3[0]"][0] == "skipped" and inline["add_3[1][1]"] == ("succeeded", {"output": 7})
