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
