"""The IR: frozen plain data that round-trips exactly through JSON."""

from __future__ import annotations

import dataclasses

import pytest

from pipecast.compiler import ir
from pipecast.errors import LoadError
from tests.helpers.cases import ALL_CASE_IDS, ALL_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=ALL_CASE_IDS)
def test_round_trip_is_exact(case):
    built = case.build()
    text = built.to_json()
    again = ir.Pipeline.from_json(text)
    assert again == built
    assert again.to_json() == text


def test_ir_is_frozen_and_slotted():
    location = ir.Location(file="a.py", line=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        location.line = 2  # type: ignore[misc]
    assert not hasattr(location, "__dict__")


def test_other_ir_versions_are_refused():
    text = ir.Pipeline(name="p").to_json().replace('"ir_version": "1"', '"ir_version": "99"')
    with pytest.raises(LoadError, match="IR version '99'"):
        ir.Pipeline.from_json(text)


def test_retry_delays_grow_by_backoff_up_to_the_cap():
    policy = ir.RetryPolicy(attempts=5, delay_seconds=10, backoff=2.0, max_delay_seconds=30)
    assert [policy.delay_before(n) for n in range(2, 6)] == [10, 20, 30, 30]
    assert policy.retries == 4


def test_group_operands_are_its_items_then_its_condition_depth_first():
    here = ir.Location(file="p.py", line=1)
    param = ir.Operand(kind=ir.BindingKind.PARAMETER, parameter="n")
    output = ir.Operand(kind=ir.BindingKind.OUTPUT, step="count", output="total")
    const = ir.Operand(kind=ir.BindingKind.CONSTANT, value_json="3")
    item = ir.Operand(kind=ir.BindingKind.ITEM, group="map_1", index=0)
    zipped = ir.Group(name="map_1", kind=ir.GroupKind.MAP, location=here, items=(param, output),
                      combine=ir.Combine.ZIP)
    assert list(zipped.all_operands()) == [param, output]
    # (item > 3) and not (count.total == n): the nested term's operands come after the first term's
    first = ir.Condition(op=ir.Comparison.GT, operands=(item, const))
    second = ir.Condition(op=ir.Comparison.NOT, terms=(ir.Condition(op=ir.Comparison.EQ, operands=(output, param)),))
    condition = ir.Condition(op=ir.Comparison.AND, terms=(first, second))
    branch = ir.Group(name="condition_2", kind=ir.GroupKind.CONDITION, location=here, parent="map_1",
                      condition=condition, chain="condition_2")
    assert list(branch.all_operands()) == list(condition.all_operands()) == [item, const, output, param]
    # an else reads nothing of its own (its chain's earlier conditions belong to those branches)
    other = ir.Group(name="condition_3", kind=ir.GroupKind.CONDITION, location=here, parent="map_1",
                     chain="condition_2", branch=1, label="else")
    assert list(other.all_operands()) == []
