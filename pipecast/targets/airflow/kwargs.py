"""The Airflow escape hatch: ``operator_kwargs``, extra keyword arguments of the operator a task is built with.

Checked at compile with no Airflow import: every key must be an argument of the operator the task uses
(``BaseOperator``'s for every task, ``KubernetesPodOperator``'s in pod mode, ``BashOperator``'s on the worker)
holding the type Airflow expects. The tables below are read from the signatures of Airflow 3.3's
``airflow.sdk.BaseOperator``, cncf-kubernetes 10.5's ``KubernetesPodOperator`` and standard 1.21's
``BashOperator`` (all Apache-2.0), which Airflow 2.10 shares; the tests check them against the installed Airflow.

Arguments pipecast writes itself are refused with the pipecast setting to use instead, and so are those that
take a Python object (callbacks, Kubernetes models): a DAG file pipecast writes holds only literals. The values
travel in the DAG file's JSON task table, so no value can change the file's structure; no argument here is one
of the operator's templated fields except ``name`` and ``hostname``, which must be DNS names (no template
delimiter fits), so Airflow never renders a value as a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipecast.targets.kube.pod import is_dns_subdomain

_INT32 = 2**31 - 1  # Airflow keeps priority weights in a 32-bit column


@dataclass(frozen=True, slots=True)
class Arg:
    """One operator argument the hatch passes: its JSON kind, allowed values, bounds."""

    kind: str  # "text", "whole", "number", "bool", "texts" (text or a list of text), "dns"
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    duration: bool = False  # seconds in the task table, a timedelta for the operator


_TRIGGER = "pipecast runs a step only when every upstream step succeeded, so its inputs exist"

# airflow.sdk.BaseOperator (Airflow 3.3; Airflow 2.10 has the same arguments): every task's operator.
BASE_ARGS: dict[str, Arg] = {
    "owner": Arg("text"), "email": Arg("texts"), "email_on_retry": Arg("bool"), "email_on_failure": Arg("bool"),
    "depends_on_past": Arg("bool"), "ignore_first_depends_on_past": Arg("bool"),
    "wait_for_past_depends_before_skipping": Arg("bool"), "wait_for_downstream": Arg("bool"),
    "priority_weight": Arg("whole", minimum=-_INT32 - 1, maximum=_INT32),
    "weight_rule": Arg("text", choices=("downstream", "upstream", "absolute")),
    "queue": Arg("text"), "pool": Arg("text"), "pool_slots": Arg("whole", minimum=1),
    "sla": Arg("number", minimum=0, duration=True),
    "run_as_user": Arg("text"), "max_active_tis_per_dag": Arg("whole", minimum=1),
    "max_active_tis_per_dagrun": Arg("whole", minimum=1), "executor": Arg("text"),
    "task_display_name": Arg("text"), "logger_name": Arg("text"),
}
# KubernetesPodOperator (cncf-kubernetes 10.5): pod-mode tasks.
POD_ARGS: dict[str, Arg] = {
    "name": Arg("dns"), "hostname": Arg("dns"), "random_name_suffix": Arg("bool"), "in_cluster": Arg("bool"),
    "reattach_on_restart": Arg("bool"), "startup_timeout_seconds": Arg("whole", minimum=1),
    "startup_check_interval_seconds": Arg("whole", minimum=1), "schedule_timeout_seconds": Arg("whole", minimum=1),
    "get_logs": Arg("bool"), "container_logs": Arg("bool"), "base_container_status_polling_interval": Arg("number"),
    "log_events_on_failure": Arg("bool"), "log_pod_spec_on_failure": Arg("bool"),
    "automount_service_account_token": Arg("bool"), "hostnetwork": Arg("bool"),
    "dnspolicy": Arg("text", choices=("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")),
    "subdomain": Arg("dns"), "schedulername": Arg("text"), "priority_class_name": Arg("dns"),
    "termination_grace_period": Arg("whole", minimum=0), "configmaps": Arg("texts"), "deferrable": Arg("bool"),
    "poll_interval": Arg("number", minimum=0), "logging_interval": Arg("whole", minimum=1),
    "on_finish_action": Arg("text", choices=("delete_pod", "delete_succeeded_pod", "keep_pod")),
    "termination_message_policy": Arg("text", choices=("File", "FallbackToLogsOnError")),
}
# BashOperator (standard provider 1.21): tasks on the worker.
BASH_ARGS: dict[str, Arg] = {"output_encoding": Arg("text")}

_RETRY = "use @step(retry=Retry(attempts=, delay=, backoff=, max_delay=))"
_POD = "use the pod_spec_patch or container_patch setting"
_LITERAL = "it takes a Python object, and a DAG file pipecast writes holds only literals"
# Arguments pipecast writes itself (or that take no literal), and what to use instead.
OWNED: dict[str, str] = {
    "task_id": "pipecast names each task after its step", "dag": "pipecast writes the DAG",
    "default_args": "pipecast writes the DAG's default_args", "task_group": "pipecast's tasks are in no group",
    "params": "the DAG's params are the pipeline's parameters", "retries": _RETRY, "retry_delay": _RETRY,
    "retry_exponential_backoff": _RETRY, "max_retry_delay": _RETRY, "retry_policy": _RETRY,
    "execution_timeout": "use @step(timeout=...)", "start_date": "use the start_date setting",
    "end_date": "remove the DAG's schedule or pause it instead", "trigger_rule": _TRIGGER,
    "resources": "use @step(resources=Resources(cpu=, memory=, gpu=))",
    "doc": "write the step's docstring", "doc_md": "write the step's docstring", "doc_json": "write the step's "
    "docstring", "doc_yaml": "write the step's docstring", "doc_rst": "write the step's docstring",
    "do_xcom_push": "a task's XCom is its step's artifact URI", "multiple_outputs": "outputs travel through the "
    "artifact root", "map_index_template": "pipecast maps no task", "executor_config": _LITERAL + " (pod_override)",
    "render_template_as_native_obj": "pipecast renders no template but its own",
    "allow_nested_operators": "pipecast's tasks call no operator",
    **dict.fromkeys(("on_execute_callback", "on_failure_callback", "on_success_callback", "on_retry_callback",
                     "on_skipped_callback", "pre_execute", "post_execute", "inlets", "outlets", "callbacks",
                     "progress_callback", "output_processor"), _LITERAL),
    # KubernetesPodOperator
    "image": "use @step(image=...) or the image setting", "cmds": "pipecast's runtime command runs the step",
    "arguments": "pipecast's runtime command runs the step", "env_vars": "use @step(env=...) or secrets=",
    "secrets": "use secrets=", "env_from": _POD, "container_resources": "use @step(resources=...) and the "
    "cpu_limit/memory_limit settings", "node_selector": "use the node_selector setting",
    "image_pull_secrets": "use the image_pull_secrets setting", "labels": "use the pod_labels setting",
    "annotations": "use the pod_annotations setting", "affinity": "use the affinity setting",
    "security_context": "use the security_context setting", "container_security_context": _POD,
    "pod_template_dict": _POD, "pod_template_file": _POD, "full_pod_spec": _POD, "volumes": _POD,
    "volume_mounts": _POD, "ports": _POD, "init_containers": _POD, "host_aliases": _POD, "dns_config": _POD,
    "pod_runtime_info_envs": _POD, "base_container_name": "pipecast's container is the operator's 'base'",
    "init_container_logs": "pipecast's pods have no init containers", "namespace": "use the namespace setting",
    "service_account_name": "use the service_account setting", "image_pull_policy": "use the image_pull_policy "
    "setting", "kubernetes_conn_id": "use the kubernetes_conn_id setting", "tolerations": "use the tolerations "
    "setting", "cluster_context": "use the kubernetes_conn_id setting (the connection names the context)",
    "config_file": "use the kubernetes_conn_id setting (the connection holds the kube config)",
    "active_deadline_seconds": "use @step(timeout=...)", "is_delete_operator_pod": "use on_finish_action",
    "skip_on_exit_code": "every non-zero exit fails a pipecast task",
    # BashOperator
    "bash_command": "pipecast's runtime command runs the step", "env": "use @step(env=...) or secrets=",
    "append_env": "pipecast keeps the worker's environment", "cwd": "use the working_directory setting",
}
ALL_ARGS: dict[str, Arg] = {**BASE_ARGS, **POD_ARGS, **BASH_ARGS}
_KIND_NAMES = {"text": "text", "whole": "a whole number", "number": "a number", "bool": "true or false",
               "texts": "text or a list of text", "dns": "a DNS-1123 name (lower-case letters, digits, '-', '.')"}


def _fits(value: Any, arg: Arg) -> bool:
    if arg.kind == "bool":
        return isinstance(value, bool)
    if arg.kind in ("whole", "number"):
        kinds = (int,) if arg.kind == "whole" else (int, float)
        return isinstance(value, kinds) and not isinstance(value, bool)
    if arg.kind == "texts":
        return isinstance(value, str) or (isinstance(value, list | tuple) and all(isinstance(v, str) for v in value))
    if arg.kind == "dns":
        return isinstance(value, str) and is_dns_subdomain(value)
    return isinstance(value, str)


def value_problem(key: str, value: Any, arg: Arg) -> str | None:
    """Why ``value`` cannot be the argument ``key``, or None."""
    if not _fits(value, arg):
        return f"has {key!r} that is not {_KIND_NAMES[arg.kind]}"
    if arg.choices and value not in arg.choices:
        return f"has {key!r} {value!r}, which is none of {list(arg.choices)!r}"
    if arg.minimum is not None and value < arg.minimum:
        return f"has {key!r} below {arg.minimum}"
    if arg.maximum is not None and value > arg.maximum:
        return f"has {key!r} above {arg.maximum}"
    return None


def operator_kwargs_problem(value: Any) -> str | None:
    """Why ``value`` cannot be ``operator_kwargs`` of any task (the setting's check), or None."""
    if not isinstance(value, Mapping):
        return "is not a mapping of operator arguments"
    for key, item in value.items():
        if key in OWNED:
            return f"sets {key!r}, which pipecast cannot pass ({OWNED[key]})"
        if key not in ALL_ARGS:
            return (f"has {key!r}, which is not an argument of BaseOperator, KubernetesPodOperator or BashOperator "
                    "that pipecast passes")
        problem = value_problem(key, item, ALL_ARGS[key])
        if problem:
            return problem
    return None


def task_problem(kwargs: Mapping[str, Any], mode: str, version: int) -> str | None:
    """Why ``kwargs`` (already checked) cannot go to a task of ``mode`` in a DAG for Airflow ``version``, or None."""
    own, operator = (POD_ARGS, "KubernetesPodOperator") if mode == "kubernetes" else (BASH_ARGS, "BashOperator")
    foreign = [key for key in kwargs if key not in BASE_ARGS and key not in own]
    if foreign:
        return f"operator_kwargs {foreign!r} are not arguments of {operator}, which runs a {mode} step's task"
    if "sla" in kwargs and version >= 3:
        return "operator_kwargs 'sla' does nothing in Airflow 3 (SLAs were removed; Airflow 3.1 has Deadline Alerts)"
    return None


def durations(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys among ``kwargs`` that the DAG file passes as a timedelta."""
    return tuple(key for key in kwargs if ALL_ARGS[key].duration)
