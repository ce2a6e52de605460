"""Task logs of an Airflow DAG run, from Airflow 3's REST API (``pipecast runs logs``).

Each task instance of the run has a log per try, served at
``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}`` (Airflow 3's
``v2-rest-api-generated.yaml``, operation ``get_log``). Its JSON answer holds ``content`` (structured log
messages, each with its text in ``event``) and a ``continuation_token`` while the task may still write more.
Airflow counts a try from the moment it queues it and answers "end of log" for a try that has not started, so
following a try reads until the task instance says the try is over (its state, or a later try), sending the
token back while Airflow gives one and otherwise reading the log again past what was shown. Airflow 2's v1 log
endpoint answers in a different shape (a Python repr of host/text pairs) that pipecast does not read: there it
says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipecast.compiler.naming import rule_for
from pipecast.errors import SubmitError
from pipecast.runs.logs import Deadline, StepLog, engine_logs
from pipecast.targets.airflow.rest import quote_segment

if TYPE_CHECKING:
    from pipecast.targets.airflow.submit import AirflowRun

# A try is over in these states (up_for_retry: the next try gets a new number).
_SOURCES = "::group::Log message source details"  # what FileTaskHandler._read puts first
_TRY_OVER = {"success", "failed", "skipped", "upstream_failed", "removed", "up_for_retry", "restarting"}


def task_logs(run: AirflowRun, step: str | None, follow: bool, timeout: float | None) -> Iterator[str]:
    """The run's task logs: ``step``'s (mapped to its task id), else every task's tries, in the order they ran."""
    if run.api.version == 1:
        raise SubmitError(f"pipecast reads task logs through Airflow 3's REST API (v2); Airflow at "
                          f"{run.api.root!r} serves v1 (Airflow 2): read them in its UI ({run.url})")
    task = rule_for("airflow").apply(step) if step is not None else None

    def listing() -> list[StepLog]:
        answer = run.api.get(f"{run._path}/taskInstances", limit=100).body
        instances = [i for i in answer.get("task_instances", []) if int(i.get("try_number") or 0) > 0]
        instances.sort(key=lambda i: (i.get("start_date") is None, i.get("start_date") or "", i["task_id"]))
        return [StepLog(key=f"{i['task_id']}[{i.get('map_index', -1)}]#{number}", step=i["task_id"],
                        note=f"try {number}", read=_reader(run, i, number))
                for i in instances for number in range(1, int(i["try_number"]) + 1)]

    return engine_logs(run.run_id, listing, lambda: run.fetch_status().finished, task, follow, timeout)


def _reader(run: AirflowRun, instance: dict[str, Any], number: int) -> Any:
    return lambda deadline: read_try(run, instance["task_id"], int(instance.get("map_index", -1)), number, deadline)


def read_try(run: AirflowRun, task_id: str, map_index: int, number: int, deadline: Deadline | None,
             ) -> Iterator[str]:
    """One try's log lines; with a deadline, followed until the task instance says that try is over.

    A read from the start begins with Airflow's "Log message source details" group (the files and URLs it read:
    the worker's log server while the task runs, the local file once it is over), whose length changes with
    the task's state: it is cut off each time, so ``seen`` counts only the task's own messages and a follow
    shows what a later read shows. Once the try is over, the log is read on while Airflow hands back a
    continuation token (it drops the token at the end of the log).
    """
    path = f"{run._path}/taskInstances/{quote_segment(task_id)}/logs/{number}"
    token = None
    seen = 0  # the task's own messages shown: a read from the start skips them
    folded = [False]  # inside a group the UI folds: carried across reads, as a read may end inside one
    while True:
        over = deadline is None or _try_over(run, task_id, map_index, number)  # before the read: nothing missed
        query: dict[str, Any] = {"map_index": map_index, **({"token": token} if token else {})}
        answer = run.api.get(path, **query).body
        content = list(answer.get("content") or [])
        fresh = content if token else _without_sources(content)[seen:]
        seen = seen + len(fresh)
        yield from _lines(fresh, folded)
        token = answer.get("continuation_token")
        if deadline is None or deadline.expired() or (over and not token):
            return
        if not over:
            deadline.sleep()


def _try_over(run: AirflowRun, task_id: str, map_index: int, number: int) -> bool:
    suffix = f"/{map_index}" if map_index >= 0 else ""
    instance = run.api.get(f"{run._path}/taskInstances/{quote_segment(task_id)}{suffix}").body
    return int(instance.get("try_number") or 0) > number or str(instance.get("state")) in _TRY_OVER


def _event(message: Any) -> str:
    return str(message.get("event", "") if isinstance(message, dict) else message)


def _without_sources(content: list[Any]) -> list[Any]:
    """A log read from the start without the group of its sources that Airflow puts first.

    ``FileTaskHandler._read`` (Airflow 3, ``airflow/utils/log/file_task_handler.py``) prepends
    ``::group::Log message source details``, one message per source, ``::endgroup::`` to a read without a
    continuation token, and nothing to a read with one.
    """
    if content and _event(content[0]).startswith(_SOURCES):
        for index, message in enumerate(content):
            if _event(message).startswith("::endgroup::"):
                return content[index + 1:]
        return []
    return content


def _lines(messages: list[Any], folded: list[bool]) -> Iterator[str]:
    """The text of log messages: a structured message's ``event`` (what the task wrote), or the text itself.

    Blocks Airflow's UI folds (``::group::`` to ``::endgroup::``: the task runner's pre- and post-execute
    steps) are left out; ``folded[0]`` says whether the previous read ended inside one.
    """
    for message in messages:
        text = _event(message)
        if text.startswith("::group::"):
            folded[0] = True
        elif text.startswith("::endgroup::"):
            folded[0] = False
        elif not folded[0]:
            yield from text.splitlines() or [""]
