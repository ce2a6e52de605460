"""Reference checks on a KFP IR document: what the PipelineSpec protobuf accepts but the engine rejects.

The protobuf types every field, yet a task may name a component that does not exist, a component an
executor that is missing, a ``dependentTasks`` entry or ``producerTask`` no task, or a command a
``{{$.inputs.parameters['x']}}`` its component does not declare. Every compile runs these checks on the
documents it built, and the tests run them on every golden.
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
    problems += _component_executors(components, executors)
    problems += _dag_problems(root.get("dag") or {}, "root", components, _parameters(root))
    for name, component in components.items():
        if "dag" in component:
            problems += _dag_problems(component["dag"], name, components, _parameters(component))
    problems += _executor_problems(components, executors)
    problems += _platform_problems(platform, executors)
    return problems


def _parameters(owner: Mapping[str, Any]) -> Mapping[str, Any]:
    """The input parameters a component (or the root) declares."""
    return ((owner.get("inputDefinitions") or {}).get("parameters")) or {}


def _component_executors(components: Mapping[str, Any], executors: Mapping[str, Any]) -> list[str]:
    return [f"component {name!r}: executorLabel {label!r} is not in deploymentSpec.executors"
            for name, component in components.items()
            if (label := component.get("executorLabel")) is not None and label not in executors]


def _executor_problems(components: Mapping[str, Any], executors: Mapping[str, Any]) -> list[str]:
    """Executors no component uses, and input placeholders in a command their component does not declare."""
    users: dict[str, list[str]] = {}
    for name, component in components.items():
        if component.get("executorLabel"):
            users.setdefault(component["executorLabel"], []).append(name)
    problems = []
    for label, executor in executors.items():
        if label not in users:
            problems.append(f"executor {label!r} is used by no component")
        container = executor.get("container") or {}
        referenced = {name for text in [*(container.get("command") or []), *(container.get("args") or [])]
                      for name in _INPUT_PLACEHOLDER.findall(str(text))}
        for component_name in users.get(label, []):
            declared = _parameters(components[component_name])
            problems += [f"executor {label!r} substitutes input {name!r}, which component {component_name!r} does "
                         "not declare" for name in sorted(referenced) if name not in declared]
    return problems


def _platform_problems(platform: Mapping[str, Any] | None, executors: Mapping[str, Any]) -> list[str]:
    configured = (((platform or {}).get("platforms") or {}).get("kubernetes") or {}).get(
        "deploymentSpec", {}).get("executors", {})
    return [f"platform spec configures executor {label!r}, which deploymentSpec does not define"
            for label in configured if label not in executors]


def _dag_problems(dag: Mapping[str, Any], owner: str, components: Mapping[str, Any],
                  inputs: Mapping[str, Any]) -> list[str]:
    """Each task's component, upstream tasks and inputs resolve, and ``dependentTasks`` have no cycle."""
    tasks = dag.get("tasks") or {}
    problems = []
    for task_name, task in tasks.items():
        where = f"{owner} task {task_name!r}"
        ref = (task.get("componentRef") or {}).get("name")
        component = components.get(ref) if ref else None
        if component is None:
            problems.append(f"{where}: componentRef {ref!r} is not in components")
        problems += [f"{where}: dependentTasks names {upstream!r}, which is not a task of {owner}"
                     for upstream in task.get("dependentTasks") or [] if upstream not in tasks]
        problems += _task_input_problems(where, task, ref, component, owner, tasks, components, inputs)
    stuck = _not_orderable({name: list(task.get("dependentTasks") or []) for name, task in tasks.items()})
    if stuck:
        problems.append(f"{owner}: dependentTasks form a cycle through {stuck!r}")
    return problems


def _task_input_problems(where: str, task: Mapping[str, Any], ref: str | None, component: Mapping[str, Any] | None,
                         owner: str, tasks: Mapping[str, Any], components: Mapping[str, Any],
                         inputs: Mapping[str, Any]) -> list[str]:
    """A task's inputs: declared by its component, read from declared sources, every required one given."""
    declared = _parameters(component or {})
    given = ((task.get("inputs") or {}).get("parameters")) or {}
    problems = []
    for name, source in given.items():
        if component is not None and name not in declared:
            problems.append(f"{where}: input {name!r} is not declared by component {ref!r}")
        parent = source.get("componentInputParameter")
        if parent is not None and parent not in inputs:
            problems.append(f"{where}: input {name!r} reads {owner} input {parent!r}, which is not declared")
        output = source.get("taskOutputParameter")
        if output is not None:
            problems += _task_output_problems(where, name, output, task, tasks, components)
    iterator = task.get("parameterIterator") or {}
    looped = {iterator["itemInput"]} if iterator.get("itemInput") else set()  # the driver gives each iteration it
    problems += [f"{where}: parameterIterator names input {name!r}, which component {ref!r} does not declare"
                 for name in (*looped, (iterator.get("items") or {}).get("inputParameter"))
                 if name is not None and component is not None and name not in declared]
    problems += [f"{where}: required input {name!r} of component {ref!r} is not given"
                 for name, spec in declared.items()
                 if name not in given and name not in looped and not spec.get("isOptional")
                 and "defaultValue" not in spec]
    return problems


def _task_output_problems(where: str, name: str, output: Mapping[str, Any], task: Mapping[str, Any],
                          tasks: Mapping[str, Any], components: Mapping[str, Any]) -> list[str]:
    """An input read from another task's output: the task exists, declares the output, and runs first."""
    producer = str(output.get("producerTask"))
    if producer not in tasks:
        return [f"{where}: input {name!r} reads producerTask {producer!r}, which is not a task"]
    producer_ref = (tasks[producer].get("componentRef") or {}).get("name")
    outputs = ((components.get(producer_ref or "") or {}).get("outputDefinitions") or {}).get("parameters") or {}
    problems = []
    if output.get("outputParameterKey") not in outputs:
        problems.append(f"{where}: input {name!r} reads output {output.get('outputParameterKey')!r} that task "
                        f"{producer!r} does not declare")
    if producer not in (task.get("dependentTasks") or []):
        problems.append(f"{where}: reads an output of {producer!r} without depending on it")
    return problems


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
