"""The refusal of a SageMaker if/elif chain nested past pipecast's MAX_DEPTH says why the bound exists (the
definition's JSON nesting and Python's json recursion limit) and what to write instead."""

from __future__ import annotations

import json

import pytest

from pipecast.errors import ValidationError
from pipecast.targets.sagemaker.flow import MAX_DEPTH
from tests.helpers.cases import compile_case


def _json_depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_json_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_json_depth, value), default=0)
    return 0


def test_the_reason_in_the_message_holds():
    from benchmarks.control_flow import branches

    bundle = compile_case("sagemaker", branches(100), golden=True).bundle  # an if, 98 elifs and an else: 99 levels
    depth = _json_depth(json.loads(bundle[bundle.main_file]))
    assert 3 * 99 <= depth < 4 * 99  # three JSON levels per condition step, as the message says
    assert 3 * (MAX_DEPTH + 10) < 1000  # the bound leaves a wide margin below json's recursion limit


def test_past_the_bound_the_error_says_why_and_what_to_do():
    from benchmarks.control_flow import branches

    with pytest.raises(ValidationError) as err:
        compile_case("sagemaker", branches(MAX_DEPTH + 2), golden=True)
    (problem,) = err.value.problems
    assert f"is a condition step nested {MAX_DEPTH + 1} deep" in problem.message
    assert (f"pipecast writes at most {MAX_DEPTH} levels: each level nests the pipeline definition's JSON three "
            "levels deeper, and Python's json module, which writes and reads that file, stops at 1,000 levels (a "
            "RecursionError); SageMaker itself documents no depth limit") in problem.message
    assert problem.fix.startswith("write the chain as independent If blocks whose conditions exclude each other "
                                  "(`with If(x == 1):` ... `with If(x == 2):`")
    assert problem.location and problem.location.split(":")[-1].isdigit()
