"""A nested map on Airflow (pipecast/targets/airflow/nested.py): what the flattening refuses, one clear error each,
and the inner publisher's flat list in ``pipecast run``'s order (the DAG itself is a golden:
``data/golden_flow/nested_map.airflow*.py.golden``)."""

from __future__ import annotations

import json

import pytest

from pipecast import ExitHandler, If, ParallelFor, pipeline, step
from pipecast.errors import PipecastError
from pipecast.runtime import airflow_nested
from tests.helpers.cases import compile_case
from tests.targets.airflow.flow_pipelines import nested_map


@step
def echo(x: int) -> int:
    return x


@pipeline(name="condition_in_outer")
def condition_in_outer(rows: list = [[1]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with ParallelFor(row) as x:
            echo(x)
        with If(echo(1) > 0):
            echo(2)


@pipeline(name="map_in_branch_in_map")
def map_in_branch_in_map(rows: list = [[1]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row, If(echo(1) > 0), ParallelFor(row) as x:
        echo(x)


@step
def report(status: dict, values: list) -> str:
    return str(status["status"])


@pipeline(name="third_level")
def third_level(cubes: list = [[[1]]]):  # noqa: B006 - never mutated
    with ParallelFor(cubes) as cube, ParallelFor(cube) as row, ParallelFor(row) as x:
        echo(x)


@pipeline(name="handler_collecting_nested")
def handler_collecting_nested(rows: list = [[1]]):  # noqa: B006 - never mutated
    with ParallelFor(rows) as row:
        with ExitHandler() as group, ParallelFor(row) as x:
            echoed = echo(x)
        report(status=group.status, values=echoed)


@pytest.mark.parametrize("build", [condition_in_outer.build, map_in_branch_in_map.build,
                                   handler_collecting_nested.build])
def test_conditions_and_handlers_around_an_inner_map_compile(build):
    dag = compile_case("airflow", build(), settings={"ship_code": False}).bundle.files[0][1]
    assert '"outer"' in dag  # an inner publisher of flat pairs


@pytest.mark.parametrize(("build", "message"), [
    (third_level.build, "one level deep"),  # the IR itself refuses a third level
])
def test_what_the_flattening_does_not_express_is_one_clear_error(build, message):
    with pytest.raises(PipecastError) as raised:
        compile_case("airflow", build(), settings={"ship_code": False})
    assert message in str(raised.value)


def test_the_inner_publisher_flattens_pairs_in_pipecast_runs_order_skipping_empty_rows():
    text = compile_case("airflow", nested_map.build(), settings={"ship_code": False}).bundle.files[0][1]
    table = json.loads(text[text.index('r"""') + 4:text.index('""")')])
    spec = table["map_2_items"]["spec"]
    payload = {"params": {"rows": [[1, 2], [], [4]]}, "run_id": "r"}
    assert airflow_nested.pairs(spec, payload) == [[0, 0, [1, 2], 1], [0, 1, [1, 2], 2], [2, 0, [4], 4]]
    assert table["invert"]["map"] == "map_2_items" and table["invert"]["group"] == "map_2_group"
    assert table["pair"]["max_active_tis_per_dagrun"] == 1  # the inner map's bound, across every row
    assert table["row_sum"]["trigger_rule"] == "none_failed"  # runs when Airflow skipped an empty inner map
