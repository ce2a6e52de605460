"""How ``pipecast runs logs`` reads one try of an Airflow task: followed or read afterwards, the same lines.

The fake below answers the task-instance log endpoint as Airflow 3.3 does (``FileTaskHandler._read`` in
``airflow/utils/log/file_task_handler.py`` and ``get_log`` in ``api_fastapi/core_api/routes/public/log.py``):
a read without a token starts with a "Log message source details" group listing what it read (nothing while
the task is queued; the local file and the worker's log server while it runs; the local file once it is over),
a token carries ``log_pos`` (lines already returned) and a read with one returns only the lines after it, and
there is no token once the task instance is not running. The real endpoint is exercised end to end in
``tests/targets/airflow/test_logs.py``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from pipecast.runs.logs import Deadline
from pipecast.targets.airflow.logs import read_try

LOG = ["::group::Pre Execute", "DAG bundles loaded", "::endgroup::", "Tmp dir root location: /tmp", "Output:",
       "about to fail", "Command exited with return code 1", "Task failed with exception",
       "::group::Post Execute", "::endgroup::"]
SHOWN = ["Tmp dir root location: /tmp", "Output:", "about to fail", "Command exited with return code 1",
         "Task failed with exception"]


class FakeAirflow:
    """One task's try 1 going through ``timeline``: (state, lines of LOG written), one step per state query."""

    def __init__(self, timeline: list[tuple[str, int]]) -> None:
        self.timeline = timeline
        self.now = 0

    def get(self, path: str, **query: Any) -> SimpleNamespace:
        state, written = self.timeline[self.now]
        if "/logs/" not in path:  # the task instance: asking it is when time moves on
            self.now = min(self.now + 1, len(self.timeline) - 1)
            return SimpleNamespace(body={"try_number": 1, "state": state})
        running = state == "running"
        if "token" in query:
            start = json.loads(query["token"])["log_pos"]
            content = [{"event": e} for e in LOG[start:written]]
        else:
            sources = {"queued": [], "running": ["/logs/attempt=1.log", "http://worker:8793/log/attempt=1.log"]}
            header = ["::group::Log message source details",
                      *sources.get(state, ["/logs/attempt=1.log"] if written else []), "::endgroup::"]
            content = [{"event": e} for e in [*header, *LOG[:written]]]
        token = json.dumps({"log_pos": written}) if running else None
        return SimpleNamespace(body={"content": content, "continuation_token": token})


class NoWait(Deadline):
    """A follow's deadline whose waits between reads are skipped (the fake's time moves on per query)."""

    def sleep(self, seconds: float = 0.0) -> None:
        pass


def _read(service: FakeAirflow, deadline: Deadline | None) -> list[str]:
    run = SimpleNamespace(api=service, _path="/dags/chatter/dagRuns/r")
    return list(read_try(run, "explode", -1, 1, deadline))  # type: ignore[arg-type]


def test_a_followed_try_shows_the_lines_a_later_read_shows():
    # queued (no sources), running with its log growing (two sources), then failed (one source)
    timeline = [("queued", 0), ("queued", 0), ("running", 2), ("running", 4), ("running", 6), ("failed", 10)]
    followed = _read(FakeAirflow(timeline), NoWait(60))
    later = _read(FakeAirflow([("failed", 10)]), None)
    assert later == SHOWN
    assert followed == SHOWN  # no source line, nothing of the folded groups, the last line not missed


def test_a_follow_that_sees_the_try_end_between_reads_still_reads_it_to_the_end():
    # the try ends between the state query and the read (no token then): the next read from the start goes on
    timeline = [("running", 3), ("up_for_retry", 10)]
    assert _read(FakeAirflow(timeline), NoWait(60)) == SHOWN
    timeline = [("queued", 0), ("success", 10)]
    assert _read(FakeAirflow(timeline), NoWait(60)) == SHOWN
