"""pipecast run decides the branch around a map before it makes the map's list (found by af-fail, stop 34)."""

from __future__ import annotations

import pytest

from pipecast.errors import RunFailedError
from tests.unit.branch_map_pipelines import branch_map


def test_a_map_in_a_branch_that_does_not_run_is_skipped_whole_and_its_list_never_made():
    run = branch_map.run({"flag": False, "n": 3})  # lists of lengths 3 and 2 do not zip, but the branch is off
    assert run.steps["weigh"].status == "skipped"
    assert "`flag == true` is false" in (run.steps["weigh"].error or "")
    assert "weigh[0]" not in run.steps  # no instance: the engines never expand a skipped branch's loop
    assert run.steps["add_up"].status == "skipped"


def test_the_same_map_in_a_branch_that_runs_fails_on_its_list():
    with pytest.raises(RunFailedError):
        branch_map.run({"flag": True, "n": 3})
    assert branch_map.run({"flag": True, "n": 2}).step_outputs("add_up") == {"output": 0 + (2 * 1 + 1)}
