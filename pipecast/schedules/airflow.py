"""Airflow schedules: a DAG's own ``schedule``, read and paused through the stable REST API (v2, or v1 on Airflow 2).

Airflow keeps no schedule apart from the DAG: submit writes the DAG file under a fixed name (``<dag_id>.dag.py``),
so the one schedule is updated in place when Airflow parses the file again. ``list`` asks for the DAGs tagged
``pipecast`` that have a schedule (``timetable_summary`` on v2, ``schedule_interval`` on v1) with Airflow's next
run. ``delete`` cannot remove a schedule from a file that Airflow only reads: it **pauses** the DAG (no run is
scheduled while paused; running ones go on) and says so; removing the DAG file deletes it for good.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pipecast.compiler.naming import rule_for
from pipecast.errors import SubmitError
from pipecast.schedules import Schedule
from pipecast.targets.base import Target

PAGE = 100
NO_SCHEDULE = (None, "", "None", "null")


def _api(config: Mapping[str, Any]) -> Any:
    from pipecast.targets.airflow.rest import AirflowApi
    from pipecast.targets.airflow.settings import AirflowConnection

    unknown = sorted(set(config) - set(AirflowConnection.spec()))
    if unknown:
        raise SubmitError(f"unknown Airflow config key(s) {unknown!r}; known: {sorted(AirflowConnection.spec())!r}")
    return AirflowApi.from_config(config)


def _dags(api: Any) -> Iterator[dict[str, Any]]:
    """Every DAG tagged ``pipecast``, page by page."""
    offset = 0
    while True:
        page = api.get("/dags", tags="pipecast", limit=PAGE, offset=offset).body or {}
        dags = list(page.get("dags") or [])
        yield from dags
        offset += len(dags)
        if not dags or offset >= int(page.get("total_entries") or 0):
            return


def _cron(api: Any, dag: Mapping[str, Any]) -> str | None:
    if api.version == 1:
        interval = dag.get("schedule_interval")
        value = interval.get("value") if isinstance(interval, dict) else interval
    else:
        value = dag.get("timetable_summary")
    return None if value in NO_SCHEDULE else str(value)


def list_schedules(target: Target, config: Mapping[str, Any]) -> list[Schedule]:
    """The scheduled DAGs pipecast wrote, with Airflow's next run."""
    from pipecast.targets.airflow.rest import quote_segment

    api = _api(config)
    rows = []
    for dag in _dags(api):
        cron = _cron(api, dag)
        if cron is None:
            continue
        dag_id = str(dag["dag_id"])
        after = ("next_dagrun_create_after", "next_dagrun") if api.version == 1 else (
            "next_dagrun_run_after", "next_dagrun_logical_date")
        page = f"{api.base_url}/dags/{quote_segment(dag_id)}" + ("/grid" if api.version == 1 else "")
        rows.append(Schedule(pipeline=dag_id, target=target.name, schedule=cron, id=dag_id,
                             next_run=next((str(dag[key]) for key in after if dag.get(key)), None),
                             state="paused" if dag.get("is_paused") else "active", url=page))
    return rows


def delete_schedule(target: Target, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Pause the pipeline's scheduled DAG (``PATCH /dags/{dag_id}`` ``is_paused: true``) and say what that means."""
    from pipecast.targets.airflow.rest import quote_segment

    api = _api(config)
    wanted = {pipeline, rule_for("airflow").apply(pipeline)}  # a dag_id setting is given as the PIPELINE itself
    done = []
    for dag in _dags(api):
        dag_id = str(dag["dag_id"])
        if dag_id not in wanted or _cron(api, dag) is None:
            continue
        api.request("PATCH", f"/dags/{quote_segment(dag_id)}", {"is_paused": True})
        done.append(f"paused DAG {dag_id!r}{' (it already was)' if dag.get('is_paused') else ''}: Airflow keeps a "
                    "DAG's schedule in its file, so pipecast pauses the DAG (nothing is scheduled while it is paused; "
                    f"running runs go on); to delete the schedule for good, remove {dag_id}.dag.py from the DAGs "
                    "folder, or submit the pipeline without schedule=")
    return done
