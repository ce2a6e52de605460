"""The cache and the step context: a step that read the logical time (or the run id) is reused only where it is equal.

Each test runs real steps through the executor (``execute_step``, what ``pipecast run`` and every engine task
call) against a local artifact root, one invocation per run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipecast.runtime import cache_context
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.executor import StepInvocation, execute_step, load_outputs

T1 = "2025-01-06T04:00:00+00:00"
T1_PARIS = "2025-01-06T05:00:00+01:00"  # the same instant, as a CronJob with timeZone Europe/Paris writes it
T2 = "2025-01-07T04:00:00+00:00"


def run(root: Path, monkeypatch: pytest.MonkeyPatch, function: str, run_id: str,
        logical_time: str | None) -> tuple[Any, dict[str, Any]]:
    """Run one step as run ``run_id`` at ``logical_time``; its output and its ``meta.json``."""
    if logical_time is None:
        monkeypatch.delenv(LOGICAL_TIME_VAR, raising=False)
    else:
        monkeypatch.setenv(LOGICAL_TIME_VAR, logical_time)
    inv = StepInvocation(function=f"tests.unit.cache_time_steps:{function}", pipeline="timed", step=function,
                         run_id=run_id, artifact_root=str(root), values={"n": 1}, outputs=("output",))
    result = execute_step(inv)
    meta = json.loads((root / "timed" / "runs" / run_id / function / "meta.json").read_text())
    assert meta["cached"] is result.cached
    return load_outputs(str(root), "timed", run_id, function)["output"], meta


def test_a_step_that_read_the_logical_time_hits_only_at_the_same_instant(tmp_path, monkeypatch):
    first, meta = run(tmp_path, monkeypatch, "stamp", "r1", T1)
    assert first == f"1 for {T1}" and not meta["cached"]
    assert meta[cache_context.RECORD] == {"logical_time": T1} and "cache_miss" not in meta

    same, meta = run(tmp_path, monkeypatch, "stamp", "r2", T1_PARIS)  # another run, the same tick
    assert same == first and meta["cached"] and meta["cached_from"] == {"run_id": "r1", "step": "stamp"}

    later, meta = run(tmp_path, monkeypatch, "stamp", "r3", T2)  # the next tick: runs again, and says why
    assert later == f"1 for {T2}" and not meta["cached"]
    assert meta["cache_miss"] == (f"the cached result of run 'r1' step 'stamp' does not apply: it read "
                                  f"logical_time '{T1}' and this step's is '{T2}'")

    manual, meta = run(tmp_path, monkeypatch, "stamp", "r4", None)  # a run without a logical time
    assert manual == "1 for None" and not meta["cached"]
    assert meta["cache_miss"].endswith(f"it read logical_time '{T2}' and this step's is None")
    assert meta[cache_context.RECORD] == {"logical_time": None}
    assert run(tmp_path, monkeypatch, "stamp", "r5", None)[1]["cached"]  # None read, None now: equal

    assert run(tmp_path, monkeypatch, "stamp", "r6", T1)[0] == first  # a miss again (the entry is r5's): runs


def test_a_step_that_read_no_run_value_hits_across_times(tmp_path, monkeypatch):
    first, meta = run(tmp_path, monkeypatch, "plain", "r1", T1)
    assert first == 2 and not meta["cached"] and cache_context.RECORD not in meta
    for run_id, when in (("r2", T2), ("r3", None)):
        value, meta = run(tmp_path, monkeypatch, "plain", run_id, when)
        assert value == 2 and meta["cached"] and meta["cached_from"]["run_id"] == "r1"
        assert meta.get("logical_time") == when and "cache_miss" not in meta


def test_a_step_that_read_the_run_id_is_reused_only_in_that_run(tmp_path, monkeypatch):
    assert run(tmp_path, monkeypatch, "tagged", "r1", None)[0] == "r1:1"
    value, meta = run(tmp_path, monkeypatch, "tagged", "r2", None)
    assert value == "r2:1" and not meta["cached"]
    assert meta["cache_miss"].endswith("it read run_id 'r1' and this step's is 'r2'")
    again, meta = run(tmp_path, monkeypatch, "tagged", "r2", None)  # the same run once more (an engine's retry)
    assert again == "r2:1" and meta["cached"]


def test_an_entry_from_before_the_record_still_hits(tmp_path, monkeypatch):
    """A ``meta.json`` without ``context_read`` (an older pipecast) is reused as before."""
    first, _ = run(tmp_path, monkeypatch, "stamp", "r1", T1)
    path = tmp_path / "timed" / "runs" / "r1" / "stamp" / "meta.json"
    meta = json.loads(path.read_text())
    del meta[cache_context.RECORD]
    path.write_text(json.dumps(meta))
    value, meta = run(tmp_path, monkeypatch, "stamp", "r2", T2)
    assert value == first and meta["cached"]


@pytest.mark.parametrize(("recorded", "why"), [
    ({"logical_time": T1}, None),
    ({"logical_time": T1_PARIS}, None),
    ({"logical_time": "2025-01-06T04:00:00"}, "it read logical_time"),  # naive: not comparable to an instant
    ({"logical_time": "not a time"}, "it read logical_time"),
    ({"logical_time": None}, "it read logical_time None"),
    ({"run_id": "r1", "step": "s", "artifact_uri": "file:///a/r1/s"}, None),
    ({"artifact_uri": "file:///a/r0/s"}, "it read artifact_uri"),
    ({"region": "eu"}, "it read the context's 'region', which this runtime cannot compare"),
    (["logical_time"], "record is not a mapping"),
])
def test_mismatch_compares_what_was_read(recorded, why):
    values = cache_context.current(run_id="r1", step="s", logical_time=None, artifact_uri="file:///a/r1/s")
    values["logical_time"] = T1
    found = cache_context.mismatch(recorded, values)
    assert found is None if why is None else why in (found or "")


def test_a_local_run_reruns_a_supervised_step_that_read_the_time_at_each_new_tick(pipecast_home, monkeypatch):
    """The local runner; the step with a timeout reads the time in its child process, which records the read."""
    from pipecast.runtime.local_runner import run_pipeline
    from tests.helpers.cases import ROOT
    from tests.unit.cache_time_steps import timed_run

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the supervised child imports the steps
    built = timed_run.build()
    states = {}
    for when in (T1, T2, T2):
        monkeypatch.setenv(LOGICAL_TIME_VAR, when)
        done = run_pipeline(built, {})
        assert done.step_outputs("stamp_supervised") == {"output": f"1 for {when}"}
        states[when] = states.get(when, []) + [{name: s.status for name, s in done.steps.items()}]
    assert states[T1] == [{"stamp_supervised": "done", "plain": "done"}]
    assert states[T2] == [{"stamp_supervised": "done", "plain": "cached"},
                          {"stamp_supervised": "cached", "plain": "cached"}]
