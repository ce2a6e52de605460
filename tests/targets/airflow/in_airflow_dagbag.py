"""Load a folder of DAG files with Airflow's own DagBag and describe what Airflow made of them, as JSON.

Run in a child process (``python in_airflow_dagbag.py DAGS_DIR OUT.json``) with a temporary ``AIRFLOW_HOME``, so
Airflow's configuration never leaks into the test process. For every DAG it records the import errors,
whether the dag-processor's serializer accepts it, the schedule, params and tasks, and each task's
templated fields rendered as Airflow renders them for a run: BashOperator env and command, and the pod
KubernetesPodOperator would create (``build_pod_request_obj``). Variables and connections are read through
Airflow's own accessors from the secrets backend the caller configures (``helpers.probe``).
"""

from __future__ import annotations

import json
import sys
import traceback
from datetime import timedelta
from typing import Any

RUN_ID = "probe__2026-01-01"


def _accessors() -> dict[str, Any]:
    """Airflow's own ``var`` and ``conn`` template accessors (values from the secrets backend ``probe`` sets)."""
    try:
        from airflow.sdk.execution_time.context import ConnectionAccessor, VariableAccessor
    except ImportError:  # Airflow 2.10
        from airflow.utils.context import ConnectionAccessor, VariableAccessor  # type: ignore[no-redef]
    return {"var": {"value": VariableAccessor(deserialize_json=False), "json": VariableAccessor(deserialize_json=True)},
            "conn": ConnectionAccessor()}


class ProbeTaskInstance:
    """What templates read of the task instance here: an unmapped instance, and every XCom a two-item list."""

    map_index = -1

    def xcom_pull(self, task_ids: str, **_: Any) -> list[str]:
        return [f"{task_ids}-0", f"{task_ids}-1"]


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


# Operator attributes the operator_kwargs tests read back (arguments the operator keeps under their own name).
ATTRIBUTES = ("owner", "email", "email_on_failure", "pool", "pool_slots", "queue", "priority_weight",
              "max_active_tis_per_dag", "output_encoding", "startup_timeout_seconds", "on_finish_action",
              "get_logs", "random_name_suffix", "name", "sla", "weight_rule", "termination_grace_period",
              "priority_class_name")


def _attribute(value: Any) -> Any:
    """An operator attribute as JSON: enums by value, durations in seconds, anything else as itself."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return getattr(value, "value", value)


def describe_task(task: Any, params: dict[str, Any]) -> dict[str, Any]:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    try:
        from airflow.providers.standard.operators.bash import BashOperator
    except ImportError:  # Airflow 2.10
        from airflow.operators.bash import BashOperator  # type: ignore[no-redef]

    info: dict[str, Any] = {
        "type": type(task).__name__,
        "upstream": sorted(task.upstream_task_ids),
        "retries": task.retries,
        "retry_delay": _seconds(task.retry_delay),
        "retry_exponential_backoff": task.retry_exponential_backoff,
        "max_retry_delay": _seconds(task.max_retry_delay),
        "execution_timeout": _seconds(task.execution_timeout),
        "doc_md": task.doc_md,
        "attributes": {name: _attribute(getattr(task, name)) for name in ATTRIBUTES if hasattr(task, name)},
        "trigger_rule": str(getattr(task.trigger_rule, "value", task.trigger_rule)),
        "is_teardown": bool(getattr(task, "is_teardown", False)),
        "max_active_tis_per_dagrun": task.max_active_tis_per_dagrun,
        "outlets": [{"type": type(o).__name__, "uri": o.uri, "extra": o.extra} for o in task.outlets or []],
        "post_execute": getattr(task, "_post_execute_hook", None) is not None,
        "do_xcom_push": getattr(task, "do_xcom_push", None),  # a mapped operator has it per instance
    }
    if "MappedOperator" in type(task).__name__:  # rendered per instance, at run time
        if "op_kwargs" in task.partial_kwargs:  # a TaskFlow task's arguments shared by every instance
            info["partial_op_kwargs"] = task.partial_kwargs["op_kwargs"]
        else:  # an operator's: those the mapped tests read, and what each instance is expanded over
            info["partial_kwargs"] = {"skip_on_exit_code": task.partial_kwargs.get("skip_on_exit_code")}
            info["expand_input"] = {k: repr(v) for k, v in task.expand_input.value.items()}
        return info
    group = task.get_closest_mapped_task_group()
    if group is not None:  # a task of a mapped task group: its item is the group's, resolved per instance
        if hasattr(task, "op_kwargs"):
            item = task.op_kwargs.pop("item")
        else:  # a pod: its arguments are the group's (resolved per instance), the rest renders as any pod's
            item, task.arguments = task.arguments, ["--pod", "<item>"]
        value = group._expand_input.value  # expand(): a dict of lists; expand_kwargs(): one XComArg of dicts
        info["mapped_task_group"] = {"group_id": group.group_id,
                                     "expand_input": {k: repr(v) for k, v in value.items()}
                                     if isinstance(value, dict) else repr(value),
                                     "item": type(item).__name__}
    context = {"params": params, "run_id": RUN_ID, "ti": ProbeTaskInstance(), **_accessors()}
    task.render_template_fields(context)
    if hasattr(task, "op_kwargs"):  # a TaskFlow task: its arguments as Airflow rendered them
        info["op_kwargs"] = task.op_kwargs
    if isinstance(task, BashOperator):
        info.update(bash_command=task.bash_command, env=task.env, append_env=task.append_env, cwd=task.cwd,
                    skip_on_exit_code=list(task.skip_on_exit_code))
    elif isinstance(task, KubernetesPodOperator):
        from kubernetes.client import ApiClient

        pod = task.build_pod_request_obj()
        info["pod"] = ApiClient().sanitize_for_serialization(pod)
    return info


def describe(folder: str) -> dict[str, Any]:
    try:
        from airflow.dag_processing.dagbag import DagBag
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # Airflow 2.10
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
        from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization

    bag = DagBag(folder)  # AIRFLOW__CORE__LOAD_EXAMPLES=False: no example DAGs
    result: dict[str, Any] = {"import_errors": dict(bag.import_errors), "dags": {}}
    for dag_id, dag in sorted(bag.dags.items()):
        try:
            DagSerialization.to_dict(dag)
            serialization_error = None
        except Exception:  # what the dag-processor would record as an import error
            serialization_error = traceback.format_exc()
        params = {name: dag.params[name] for name in dag.params}
        result["dags"][dag_id] = {
            "file": dag.fileloc,
            "serialization_error": serialization_error,
            "schedule": dag.schedule if hasattr(dag, "schedule") else dag.schedule_interval,  # Airflow 3 : 2
            "timetable": type(dag.timetable).__name__,
            "catchup": dag.catchup,
            "max_active_tasks": dag.max_active_tasks,
            "tags": sorted(dag.tags),
            "description": dag.description,
            "params": {name: {"value": value, "schema": dag.params.get_param(name).schema}
                       for name, value in params.items()},
            "task_ids": [t.task_id for t in dag.tasks],
            "tasks": {t.task_id: describe_task(t, params) for t in dag.tasks},
        }
    return result


if __name__ == "__main__":
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        json.dump(describe(sys.argv[1]), out, default=str, indent=1)
