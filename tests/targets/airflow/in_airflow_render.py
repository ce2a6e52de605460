"""Render every task of a folder of DAG files exactly as an Airflow 3 worker does, and write what it would run.

Run in a child process with a temporary ``AIRFLOW_HOME``::

    python in_airflow_render.py DAGS_DIR RUNS.json OUT.json

``RUNS.json`` maps a DAG id to ``{"run_id": ..., "conf": {...}}``. Variables and connections come from the
secrets backend the environment configures (the tests use Airflow's ``LocalFilesystemBackend``), read through
Airflow's own ``var``/``conn`` accessors.

Nothing here substitutes a template: the context is the one Airflow builds for a task
(``RuntimeTaskInstance.get_template_context``, from a ``TIRunContext`` as the API server sends it to a
worker; the same construction as ``airflow tasks render``, ``_get_template_context`` in
``airflow/cli/commands/task_command.py``), params are validated and merged with the run's conf by Airflow
(``process_params``), and the fields are rendered by ``RuntimeTaskInstance.render_templates``, which the task
runner calls before ``execute``. The output holds what the operator then runs: a BashOperator's rendered
``bash_command``, ``env`` (``append_env``) and ``cwd``; for a KubernetesPodOperator, the pod it would create
(``build_pod_request_obj``), whose ``$(VAR)`` references the kubelet expands later (the replay does that).
"""

from __future__ import annotations

import json
import sys
import traceback
import uuid
from datetime import datetime, timezone
from typing import Any


def template_context(task: Any, run_id: str, conf: dict[str, Any]) -> tuple[Any, Any]:
    """The runtime task instance and the template context Airflow gives ``task`` in a manual run."""
    from airflow.api_fastapi.execution_api.datamodels.taskinstance import DagRun, TaskInstance, TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    now = datetime.now(timezone.utc)
    dag_run = DagRun.model_validate({
        "dag_id": task.dag_id, "run_id": run_id, "logical_date": None, "data_interval_start": None,
        "data_interval_end": None, "run_after": now, "start_date": now, "end_date": None, "run_type": "manual",
        "state": "running", "conf": conf, "consumed_asset_events": [], "partition_key": None,
    })
    instance = TaskInstance.model_validate({
        "id": uuid.uuid4(), "task_id": task.task_id, "dag_id": task.dag_id, "run_id": run_id, "try_number": 1,
        "dag_version_id": uuid.uuid4(),
    })
    runtime_ti = RuntimeTaskInstance.model_construct(
        **instance.model_dump(exclude_unset=True),
        task=task,
        _ti_context_from_server=TIRunContext(dag_run=dag_run, max_tries=task.retries, variables=[], connections=[],
                                             xcom_keys_to_clear=[]),
    )
    return runtime_ti, runtime_ti.get_template_context()


def rendered_task(task: Any, run_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    """What ``task`` runs once Airflow has rendered it for the run (or the error rendering raised)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.standard.operators.bash import BashOperator

    try:
        runtime_ti, context = template_context(task, run_id, conf)
        runtime_ti.render_templates(context=context)
    except Exception as error:  # what the worker would report as the task's failure
        return {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    if isinstance(task, BashOperator):
        return {"type": "bash", "bash_command": task.bash_command, "env": task.env, "append_env": task.append_env,
                "cwd": task.cwd, "upstream": sorted(task.upstream_task_ids)}
    if isinstance(task, KubernetesPodOperator):
        from kubernetes.client import ApiClient

        pod = ApiClient().sanitize_for_serialization(task.build_pod_request_obj())
        return {"type": "pod", "pod": pod, "upstream": sorted(task.upstream_task_ids)}
    raise TypeError(f"unexpected operator {type(task).__name__}")


def render(folder: str, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(folder)
    result: dict[str, Any] = {"import_errors": dict(bag.import_errors), "dags": {}}
    for dag_id, run in runs.items():
        dag = bag.dags[dag_id]
        result["dags"][dag_id] = {task.task_id: rendered_task(task, run["run_id"], run["conf"])
                                  for task in dag.tasks}
    return result


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as request:
        wanted = json.load(request)
    with open(sys.argv[3], "w", encoding="utf-8") as out:
        json.dump(render(sys.argv[1], wanted), out, default=str, indent=1)
