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
    """One try's log lines; with a deadline, followed until the task instance says that try is over."""
    path = f"{run._path}/taskInstances/{quote_segment(task_id)}/logs/{number}"
    token = None
    seen = 0  # messages shown: a read from the start skips them
    while True:
        over = deadline is None or _try_over(run, task_id, map_index, number)  # before the read: nothing missed
        query: dict[str, Any] = {"map_index": map_index, **({"token": token} if token else {})}
        answer = run.api.get(path, **query).body
        content = list(answer.get("content") or [])
        fresh = content if token else content[seen:]
        seen = seen + len(fresh)
        yield from _lines(fresh)
        token = answer.get("continuation_token")
        if over or deadline is None or deadline.expired():
            return
        deadline.sleep()


def _try_over(run: AirflowRun, task_id: str, map_index: int, number: int) -> bool:
    suffix = f"/{map_index}" if map_index >= 0 else ""
    instance = run.api.get(f"{run._path}/taskInstances/{quote_segment(task_id)}{suffix}").body
    return int(instance.get("try_number") or 0) > number or str(instance.get("state")) in _TRY_OVER


def _lines(messages: list[Any]) -> Iterator[str]:
    """The text of log messages: a structured message's ``event`` (what the task wrote), or the text itself.

    The block Airflow's UI folds (``::group::`` to ``::endgroup::``: where the log was read from) is left out.
    """
    folded = False
    for message in messages:
        text = str(message.get("event", "") if isinstance(message, dict) else message)
        if text.startswith("::group::"):
            folded = True
        elif text.startswith("::endgroup::"):
            folded = False
        elif not folded:
            yield from text.splitlines() or [""]
