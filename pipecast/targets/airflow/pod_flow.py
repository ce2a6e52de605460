"""Steps of the control flow in pods: a KubernetesPodOperator per step, mapped with Airflow's own partial/expand.

A mapped step is ``KubernetesPodOperator.partial(...).expand(arguments=<publisher>.output.map(pod_item))``.

The pod runs ``python -m pipecast.runtime.publish_airflow --pod [ITEM]``, the entry a TaskFlow task's runtime has,
with its payload from the pod instead of stdin: the task's spec (data, in the environment), the run id, logical
time and parameters as every pod task gets them (templates in ``env_vars``), and what only Airflow knows per
instance, as templates Airflow renders for each instance: ``{{ ti.map_index }}``, the map sizes (the length of
each publisher's XCom) and, with a nested map, the inner publishers' flat lists of pairs (their XComs, each ``$``
doubled) that a step collecting an inner map or a handler covering one reads. The item of a mapped instance is its
argument, the map list's element run through ``pod_item`` by Airflow's ``XComArg.map``; Airflow does not render
values it resolved from an XCom (the ``resolved_oids`` of ``DictOfListsExpandInput.resolve``,
``airflow/sdk/definitions/_internal/expandinput.py``), and ``pod_item`` doubles each ``$`` so the kubelet's
``$(VAR)`` expansion leaves the item as it was.
A skipped instance (a hook whose event did not happen) exits ``SKIP``, the operator's ``skip_on_exit_code``.
"""

from __future__ import annotations

from typing import Any

from pipecast.runtime.airflow_nested import POD_PAIRS_VAR
from pipecast.runtime.publish_airflow import POD_COUNTS_VAR, POD_MAP_INDEX_VAR, POD_SPEC_VAR
from pipecast.targets.airflow.commands import template
from pipecast.targets.airflow.secrets import jinja_string

__all__ = ["MAP_INDEX_LABEL", "POD_COUNTS_VAR", "POD_FLOW_KEYS", "POD_MAP_INDEX_VAR", "POD_PAIRS_VAR", "POD_SPEC_VAR",
           "pod_templates"]
# A pod of a mapped task group reads its map index from its own ``map_index`` label, which KubernetesPodOperator
# writes for each instance (``_get_ti_pod_labels``, cncf-kubernetes operators/pod.py), through the Downward API.
# Not a ``{{ ti.map_index }}`` template: one operator object is every item's task (it is not expanded), and
# Airflow renders a pod's env in place (the V1EnvVar objects), so where one process runs several instances
# (``airflow dags test``) every item after the first would read the first one's index.
MAP_INDEX_LABEL = "metadata.labels['map_index']"
# The keys of a TaskFlow entry a pod's entry keeps (the mapping, its mapped task group, bounds, trigger rule and
# teardown).
POD_FLOW_KEYS = ("map", "group", "max_active_tis_per_dagrun", "trigger_rule", "teardown")


def pod_templates(lowered: dict[str, Any]) -> dict[str, str]:
    """The templates of a pod's environment that Airflow renders per instance: map index and map sizes."""
    templated: dict[str, str] = {}
    if "map" in lowered and "group" not in lowered:  # in a mapped task group: the pod's label (MAP_INDEX_LABEL)
        templated[POD_MAP_INDEX_VAR] = "{{ ti.map_index }}"
    counts = lowered.get("counts", {})
    if counts:
        pairs = ", ".join(f"{jinja_string(group)}: (ti.xcom_pull(task_ids={jinja_string(task)}) or []) | length"
                          for group, task in counts.items())
        templated[POD_COUNTS_VAR] = template("{" + pairs + "} | tojson", True)
    flat = lowered.get("pairs", {})
    if flat:  # a nested map's flat lists of pairs, as a TaskFlow task's payload has them (None: not published)
        lists = ", ".join(f"{jinja_string(group)}: ti.xcom_pull(task_ids={jinja_string(task)})"
                          for group, task in flat.items())
        templated[POD_PAIRS_VAR] = template("{" + lists + "} | tojson", True)
    return templated
