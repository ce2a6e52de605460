"""Reference checks on a KFP IR document: what the PipelineSpec protobuf accepts but the engine rejects.

The protobuf types every field, yet a task may name a component that does not exist, a component an
executor that is missing, a ``dependentTasks`` entry or ``producerTask`` no task, or a command a
``{{$.inputs.parameters['x']}}`` its component does not declare. The submit path runs these checks
before anything is sent, and the tests run them on every golden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']*)'\]\}\}")


def check_references(spec: Mapping[str, Any], platform: Mapping[str, Any] | None = None) -> list[str]:
    """Every dangling reference in ``spec`` (and its Kubernetes platform spec), as messages; empty if none."""
    problems: list[str] = []
    components = spec.get("components") or {}
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    root = spec.get("root") or {}
    root_inputs = ((root.get("inputDefinitions") or {}).get("parameters")) or {}
    for name, component in components.items():
        label = component.get("executorLabel")
        if label is not None and label not in executors:
            problems.append(f"component {name!r}: executorLabel {label!r} is not in deploymentSpec.executors")
    _check_dag(root.get("dag") or {}, "root", components, root_inputs, problems)
    for name, component in components.items():
        if "dag" in component:
            inputs = ((component.get("inputDefinitions") or {}).get("parameters")) or {}
            _check_dag(component["dag"], name, components, inputs, problems)
    users: dict[str, list[str]] = {}
    for name, component in components.items():
        if component.get("executorLabel"):
            users.setdefault(component["executorLabel"], []).append(name)
    for label, executor in executors.items():
        if label not in users:
            problems.append(f"executor {label!r} is used by no component")
        container = executor.get("container") or {}
        for text in [*(container.get("command") or []), *(container.get("args") or [])]:
            for referenced in _INPUT_PLACEHOLDER.findall(str(text)):
                for component_name in users.get(label, []):
                    declared = ((components[component_name].get("inputDefinitions") or {}).get("parameters")) or {}
                    if referenced not in declared:
                        problems.append(f"executor {label!r} substitutes input {referenced!r}, which component "
                                        f"{component_name!r} does not declare")
    for label in (((platform or {}).get("platforms") or {}).get("kubernetes") or {}).get(
            "deploymentSpec", {}).get("executors", {}):
        if label not in executors:
            problems.append(f"platform spec configures executor {label!r}, which deploymentSpec does not define")
    return problems


def _check_dag(dag: Mapping[str, Any], owner: str, components: Mapping[str, Any], inputs: Mapping[str, Any],
               problems: list[str]) -> None:
    tasks = dag.get("tasks") or {}
    for task_name, task in tasks.items():
        where = f"{owner} task {task_name!r}"
        ref = (task.get("componentRef") or {}).get("name")
        component = components.get(ref) if ref else None
        if component is None:
            problems.append(f"{where}: componentRef {ref!r} is not in components")
        for upstream in task.get("dependentTasks") or []:
            if upstream not in tasks:
                problems.append(f"{where}: dependentTasks names {upstream!r}, which is not a task of {owner}")
        declared = ((component or {}).get("inputDefinitions") or {}).get("parameters") or {}
        given = ((task.get("inputs") or {}).get("parameters")) or {}
        for name, source in given.items():
            if component is not None and name not in declared:
                problems.append(f"{where}: input {name!r} is not declared by component {ref!r}")
            parent = source.get("componentInputParameter")
            if parent is not None and parent not in inputs:
                problems.append(f"{where}: input {name!r} reads {owner} input {parent!r}, which is not declared")
            output = source.get("taskOutputParameter")
            if output is not None:
                producer = output.get("producerTask")
                if producer not in tasks:
                    problems.append(f"{where}: input {name!r} reads producerTask {producer!r}, which is not a task")
                else:
                    producer_ref = (tasks[producer].get("componentRef") or {}).get("name")
                    outputs = ((components.get(producer_ref or "") or {}).get("outputDefinitions") or {}).get(
                        "parameters") or {}
                    if output.get("outputParameterKey") not in outputs:
                        problems.append(f"{where}: input {name!r} reads output {output.get('outputParameterKey')!r} "
                                        f"that task {producer!r} does not declare")
                    if producer not in (task.get("dependentTasks") or []):
                        problems.append(f"{where}: reads an output of {producer!r} without depending on it")
        for name, spec in declared.items():
            if name not in given and not spec.get("isOptional") and "defaultValue" not in spec:
                problems.append(f"{where}: required input {name!r} of component {ref!r} is not given")
    stuck = _not_orderable({name: list(task.get("dependentTasks") or []) for name, task in tasks.items()})
    if stuck:
        problems.append(f"{owner}: dependentTasks form a cycle through {stuck!r}")


def _not_orderable(edges: Mapping[str, list[str]]) -> list[str]:
    """Tasks no topological order reaches (those on or behind a cycle), by Kahn's algorithm."""
    waiting = {name: len({u for u in upstream if u in edges}) for name, upstream in edges.items()}
    downstream: dict[str, list[str]] = {}
    for name, upstream in edges.items():
        for u in {u for u in upstream if u in edges}:
            downstream.setdefault(u, []).append(name)
    ready = [name for name, count in waiting.items() if count == 0]
    while ready:
        for nxt in downstream.get(ready.pop(), []):
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    return sorted(name for name, count in waiting.items() if count > 0)
