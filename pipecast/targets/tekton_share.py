"""One Tekton ``Task`` object per distinct step shape, referenced by ``taskRef`` from every pipeline task with it.

A 5,000-step pipeline calling one function with the same image, resources and settings needs one Task, not
5,000 inline ``taskSpec`` blocks (each about 600 bytes of the Pipeline, one object that pipecast keeps to 1 MiB:
:mod:`pipecast.targets.kube.limits`). What differs between such tasks is the runtime's ``--step``, ``--const`` and
``--upstream`` values: they become Task params, and each pipeline task passes its own. Three facts of Tekton make
this work:

- A referenced Task sees only its own params and the Task contexts (``context.taskRun.*``, ``context.task.*``);
  ``context.pipelineRun.name`` is a Pipeline variable (docs/variables.md, "Variables available in a Task").
  So the run id comes from the pod's ``tekton.dev/pipelineRun`` label, which Tekton puts on every TaskRun and
  pod of a PipelineRun (docs/labels.md, "Automatic labeling"), read through the downward API into
  :data:`RUN_ENV`; the args say ``$(PIPECAST_TEKTON_RUN)``, which the kubelet expands (Tekton leaves a
  ``$(…)`` it does not know as written).
- A Task's labels and annotations propagate to its TaskRuns and their pods (docs/labels.md "Label propagation";
  tektoncd/pipeline#4478 for annotations), so the env annotations and the settings' pod metadata stay on it.
- The step's pod is found by ``tekton.dev/pipelineTask`` (the pipeline task's name, docs/labels.md), so the
  shared Task carries no per-step label.

A value holding ``$(`` (a map item's ``step[$(params.index)]``) stays in the Task: it is not a constant.
Task names are the pipeline's name and the function's (``ladder-work``, then ``ladder-work-2`` for its next
distinct shape), at most 63 characters (Tekton copies the name into the ``tekton.dev/task`` label).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.kfpspec.sharing import base_name, unique

RUN_ENV = "PIPECAST_TEKTON_RUN"
RUN_ID = f"$({RUN_ENV})"  # the kubelet expands it from the container's env
RUN_LABEL = "tekton.dev/pipelineRun"
TASK_LABEL = "tekton.dev/pipelineTask"
# The Task params of the per-task values: ``step``, and the function input's name for a constant or an upstream
# output (one option per input). A name the Task already has (a pipeline parameter it reads) gets "-2".
STEP_PARAM = "step"
_PER_TASK = frozenset({"--step", "--const", "--upstream"})
# Tekton param names: letters, digits, '_', '-' and '.', starting with a letter or '_' (docs/tasks.md "Specifying
# Parameters"; task_validation.go stringAndArrayVariableNameFormat). '.' is left out too: a name with one needs the
# bracket form of reference. A fan-in's "values#1" becomes "values-1".
_NOT_IN_NAME = re.compile(r"[^-A-Za-z0-9_]")
_LABEL_LIMIT = 63


def run_env() -> dict[str, Any]:
    """The env item that gives the step the PipelineRun's name, from the pod's label."""
    return {"name": RUN_ENV, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{RUN_LABEL}']"}}}


def _parameterize(args: list[str], taken: set[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``args`` with each constant per-task value replaced by a Task param reference, and the values by name."""
    shared: list[str] = []
    values: list[tuple[str, str]] = []
    option: str | None = None
    for arg in args:
        if option is None or "$(" in arg:
            shared.append(arg)
            option = arg if arg in _PER_TASK else None
            continue
        if option == "--step":
            name, prefix, value = unique(STEP_PARAM, taken), "", arg
        else:
            key, _, value = arg.partition("=")
            name, prefix = unique(_NOT_IN_NAME.sub("-", key), taken), f"{key}="
        taken.add(name)
        values.append((name, value))
        shared.append(f"{prefix}$(params.{name})")
        option = None
    return shared, values


class SharedTasks:
    """The Task objects of one pipeline, in first-use order."""

    def __init__(self, base: str, metadata: dict[str, Any]) -> None:
        self._base = base
        self._metadata = metadata  # namespace and pipecast's labels, shared by every Task
        self._by_shape: dict[str, dict[str, Any]] = {}

    def share(self, step: ir.Step | None, task: dict[str, Any]) -> dict[str, Any]:
        """``task`` with its inline ``taskSpec`` replaced by a ``taskRef`` to the Task of the same shape."""
        if "taskSpec" not in task:
            return task
        spec = dict(task["taskSpec"])
        (container,) = spec["steps"]
        taken = {p["name"] for p in spec.get("params", [])}
        args, values = _parameterize(container["args"], taken)
        params = [*spec.get("params", []), *({"name": n, "type": "string"} for n, _ in values)]
        spec = {**({"params": params} if params else {}), **{k: v for k, v in spec.items() if k != "params"},
                "steps": [{**container, "args": args}]}
        shape = json.dumps(spec, sort_keys=True)
        found = self._by_shape.get(shape)
        if found is None:
            found = self._by_shape[shape] = self._task(step, task["name"], spec)
        shared = {k: v for k, v in task.items() if k != "taskSpec"}
        params = [*task.get("params", []), *({"name": n, "value": v} for n, v in values)]
        if params:
            shared["params"] = params
        shared["taskRef"] = {"name": found["metadata"]["name"]}
        return _ordered(shared)

    def _task(self, step: ir.Step | None, task_name: str, spec: dict[str, Any]) -> dict[str, Any]:
        word = base_name(step) if step is not None else task_name
        taken = {t["metadata"]["name"] for t in self._by_shape.values()}
        name = unique(f"{self._base}-{word}"[:_LABEL_LIMIT - 4].rstrip("-"), taken)
        metadata = {"name": name, **self._metadata}
        own = spec.pop("metadata", {})
        for key in ("labels", "annotations"):
            if own.get(key):
                metadata[key] = {**metadata.get(key, {}), **own[key]}
        return {"apiVersion": "tekton.dev/v1", "kind": "Task", "metadata": metadata, "spec": spec}

    def documents(self) -> list[dict[str, Any]]:
        """Every Task, in the order of first use."""
        return list(self._by_shape.values())


_ORDER = ("name", "displayName", "runAfter", "retries", "timeout", "params", "matrix", "when", "workspaces",
          "taskRef")


def _ordered(task: dict[str, Any]) -> dict[str, Any]:
    """The pipeline task's fields in the order the inline form wrote them (``taskRef`` where ``taskSpec`` was)."""
    known = {k: task[k] for k in _ORDER if k in task}
    return {**known, **{k: v for k, v in task.items() if k not in known}}
