"""Replay a DAG with control flow whose steps run in pods, task by task, as Airflow 3 runs it; print each task
instance's state as JSON.

Run in a child process (``python in_airflow_flow_replay.py DAGS_DIR DAG_ID RUN.json OUT.json``) with a temporary
``AIRFLOW_HOME`` and the replay object store's environment (``tests/helpers/replay/store.py``). Airflow's own code
does what Airflow does: ``DagBag`` loads the file; a TaskFlow task (publisher, branch task) runs its own
``python_callable`` with the context keys it reads; a pod task, mapped or not, is rendered by
``MappedOperator.render_template_fields`` / ``RuntimeTaskInstance.render_templates`` (which expand a mapped
operator's arguments from its publisher's XCom and ``map_index``, through the file's ``pod_item``) and becomes the
pod of ``build_pod_request_obj``, whose container then runs here after the kubelet's ``$(VAR)`` expansion. A pod
inside a mapped task group is one operator for every item: each instance renders a fresh copy of it (a worker
parses the file for each task instance), with the instance's context (its group's ``MappedArgument`` resolved for
its ``map_index``) and its pod's labels, which the Downward API (a ``fieldRef`` to ``metadata.labels['k']``) reads.

What stands in for Airflow's scheduler and XCom table (only its documented rules): an instance runs when its
trigger rule holds over its upstream instances (in a mapped task group, item ``i`` of a task of the same group
only: ``_get_relevant_map_indexes``) (``all_success``; ``none_failed_min_one_success``; a teardown's
``all_done_setup_success`` with no setup: all done), else it is ``upstream_failed`` (an upstream failed) or
``skipped``; a branch task's ``skip_all_except`` skips the tasks right after it that neither it follows nor come
after one it follows; a task
whose python_callable or pod exits with its ``skip_on_exit_code`` is ``skipped``; XComs are kept per instance
(``xcom_pull`` of a mapped task gives its instances' values in ``map_index`` order).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

XCOMS: dict[str, Any] = {}


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$$`` is ``$``, a defined ``$(NAME)`` its value, anything else as is."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        end = text.find(")", i + 2) if text.startswith("$(", i) else -1
        if end != -1 and text[i + 2:end] in env:
            out.append(env[text[i + 2:end]])
            i = end + 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _runtime_ti(task: Any, run_id: str, conf: dict[str, Any], map_index: int) -> tuple[Any, Any]:
    """The runtime task instance and template context Airflow gives ``task`` (instance ``map_index``)."""
    from airflow.api_fastapi.execution_api.datamodels.taskinstance import DagRun, TaskInstance, TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    class ReplayTaskInstance(RuntimeTaskInstance):
        def xcom_pull(self, task_ids: Any = None, *args: Any, **kwargs: Any) -> Any:  # the XCom table
            return XCOMS.get(task_ids)

    now = datetime.now(timezone.utc)
    dag_run = DagRun.model_validate({
        "dag_id": task.dag_id, "run_id": run_id, "logical_date": None, "data_interval_start": None,
        "data_interval_end": None, "run_after": now, "start_date": now, "end_date": None, "run_type": "manual",
        "state": "running", "conf": conf, "consumed_asset_events": [], "partition_key": None,
    })
    instance = TaskInstance.model_validate({
        "id": uuid.uuid4(), "task_id": task.task_id, "dag_id": task.dag_id, "run_id": run_id, "try_number": 1,
        "dag_version_id": uuid.uuid4(), "map_index": map_index,
    })
    ti = ReplayTaskInstance.model_construct(
        **instance.model_dump(exclude_unset=True), task=task,
        _ti_context_from_server=TIRunContext(dag_run=dag_run, max_tries=task.retries, variables=[], connections=[],
                                             xcom_keys_to_clear=[]),
    )
    return ti, ti.get_template_context()


def run_pod(task: Any, run_id: str, conf: dict[str, Any], map_index: int, volumes: Path) -> tuple[str, Any]:
    """Render the pod of one instance with Airflow and run its container here: (state, the sidecar's XCom)."""
    from kubernetes.client import ApiClient

    grouped = task.get_closest_mapped_task_group() is not None
    if grouped:
        task = copy.deepcopy(task)  # this instance's own operator, as a worker's fresh parse gives it
    ti, context = _runtime_ti(task, run_id, conf, map_index)
    if map_index >= 0 and not grouped:
        task.render_template_fields(context)  # expands the mapped operator, renders the unmapped one
        task = context["task"]
    else:
        ti.render_templates(context=context)
    # With the context, the operator adds the instance's labels (dag_id, task_id, run_id, map_index...).
    pod = ApiClient().sanitize_for_serialization(task.build_pod_request_obj(context if grouped else None))
    labels = pod["metadata"].get("labels") or {}
    container = pod["spec"]["containers"][0]
    env: dict[str, str] = {}
    for item in container["env"]:
        field = (item.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath", "")
        if field.startswith("metadata.labels['"):  # the Downward API: the pod's label (absent: empty)
            env[item["name"]] = labels.get(field[len("metadata.labels['"):-2], "")
        else:
            env[item["name"]] = _expand(item.get("value", ""), env)
    folder = volumes / f"{task.task_id}-{map_index}"
    folder.mkdir(parents=True)
    # The XCom volume is a folder here (a process here cannot write /airflow/xcom).
    env = {k: str(folder) + v[len("/airflow/xcom"):] if v.startswith("/airflow/xcom/") else v for k, v in env.items()}
    argv = [_expand(a, env) for a in container["command"] + container["args"]]
    argv[0] = sys.executable if argv[0] == "python" else argv[0]
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    sys.stderr.write(done.stdout + done.stderr)
    if done.returncode in task.skip_on_exit_code:
        return "skipped", None
    result = folder / "return.json"
    xcom = json.loads(result.read_text()) if result.exists() and result.stat().st_size else None
    return ("success" if done.returncode == 0 else "failed"), xcom


def run_python(task: Any, run_id: str, conf: dict[str, Any]) -> tuple[str, Any]:
    """A TaskFlow task (publisher, branch task): its python_callable with the context keys it reads."""
    from airflow.sdk.exceptions import AirflowSkipException

    ti, _ = _runtime_ti(task, run_id, conf, -1)
    try:
        return "success", task.python_callable(*task.op_args, **task.op_kwargs, ti=ti, run_id=run_id,
                                               params={**task.dag.params.dump(), **conf}, logical_date=None)
    except AirflowSkipException:
        return "skipped", None
    except Exception as error:  # the task fails
        sys.stderr.write(f"{task.task_id} failed: {error!r}\n")
        return "failed", None


def _gate(rule: str, states: list[str]) -> str | None:
    """None when the trigger rule lets the instance run, else the state it gets."""
    if rule in ("all_done", "all_done_setup_success"):
        return None
    if any(s in ("failed", "upstream_failed") for s in states):
        return "upstream_failed"
    if rule == "none_failed":  # TriggerRuleDep (ti_deps/deps/trigger_rule_dep.py): a skipped upstream does not skip it
        return None
    if rule == "none_failed_min_one_success":
        return None if "success" in states else "skipped"
    return "skipped" if "skipped" in states else None


def replay(folder: str, dag_id: str, run_id: str, conf: dict[str, Any], volumes: Path) -> dict[str, list[str]]:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(folder).dags[dag_id]
    tasks = {t.task_id: t for t in dag.tasks}
    states: dict[str, list[str]] = {}
    branch_skipped: set[str] = set()
    for task_id in TopologicalSorter({t: tasks[t].upstream_task_ids for t in tasks}).static_order():
        task = tasks[task_id]
        upstream = [s for u in sorted(task.upstream_task_ids) for s in states[u]]
        rule = str(getattr(task.trigger_rule, "value", task.trigger_rule))
        gate = "skipped" if task_id in branch_skipped else _gate(rule, upstream)
        group = task.get_closest_mapped_task_group()
        if group is not None:  # one instance per item; item i waits for item i of the same group's tasks
            (publisher,) = {t.task_id for t in group.iter_mapped_dependencies()}
            states[task_id], XCOMS[task_id] = [], []
            for i in range(len(XCOMS[publisher])):
                upstream = [s for u in sorted(task.upstream_task_ids) for s in (
                    [states[u][i]] if tasks[u].get_closest_mapped_task_group() is group else states[u])]
                gate = _gate(rule, upstream)
                state, xcom = (gate, None) if gate else run_pod(task, run_id, conf, i, volumes)
                states[task_id].append(state)
                XCOMS[task_id].append(xcom)
        elif gate:
            states[task_id] = [gate]
        elif "MappedOperator" in type(task).__name__:
            (publisher,) = [t for t, _ in task.expand_input.iter_references()]
            results = [run_pod(task, run_id, conf, i, volumes) for i in range(len(XCOMS[publisher.task_id]))]
            states[task_id] = [state for state, _ in results]
            XCOMS[task_id] = [xcom for _, xcom in results]
        elif hasattr(task, "python_callable"):
            state, XCOMS[task_id] = run_python(task, run_id, conf)
            states[task_id] = [state]
            if state == "success" and "Branch" in type(task).__name__:
                # SkipMixin.skip_all_except (providers/standard/utils/skipmixin.py): the tasks right after the branch
                # task, but those it follows and every task downstream of them (a join after an empty branch).
                followed = set(XCOMS[task_id])
                for name in list(followed):
                    followed |= tasks[name].get_flat_relative_ids(upstream=False)
                branch_skipped |= task.downstream_task_ids - followed
        else:
            state, XCOMS[task_id] = run_pod(task, run_id, conf, -1, volumes)
            states[task_id] = [state]
    return states


if __name__ == "__main__":
    wanted = json.loads(Path(sys.argv[3]).read_text())
    found = replay(sys.argv[1], sys.argv[2], wanted["run_id"], wanted["conf"], Path(wanted["volumes"]))
    Path(sys.argv[4]).write_text(json.dumps({"states": found, "xcoms": XCOMS}, default=str, indent=1))
