"""One Argo container template per distinct step shape, shared by the DAG tasks that have it.

A 5,000-step pipeline calling one function with the same image, resources and settings needs one container
template, not 5,000 (each about 500 bytes of the WorkflowTemplate, which Kubernetes stores as one object of at
most 1 MiB). What differs between such tasks is the runtime's ``--step``, ``--const`` and ``--upstream``
values and the step label: they become the template's ``inputs.parameters``, and each DAG task passes its own
as ``arguments.parameters``. Argo substitutes ``{{inputs.parameters.x}}`` over the whole template, container
and ``metadata`` labels alike (workflow/common/util.go ``ProcessArgs`` → ``SubstituteParams``, which
marshals the template to JSON and replaces the inputs in that text). Template names are the function's
(``train``, then ``train-2`` for its next distinct shape).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.kfpspec.sharing import base_name, unique

STEP_INPUT = "step"  # the runtime's --step (the IR step name)
TASK_INPUT = "task"  # the step label's value (the DAG task name), when the step's name cannot be one
# A Kubernetes label value (apimachinery validation IsValidLabelValue): at most 63 characters, alphanumerics at
# both ends, '-', '_' and '.' between.
_LABEL_VALUE = re.compile(r"(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_NOT_IN_NAME = re.compile(r"[^-A-Za-z0-9_]")  # validate.go paramOrArtifactNameRegex: ^[-a-zA-Z0-9_]+$
# The runtime's options whose value is the task's own (pipecast/runtime/command.py): --step, and the INPUT=VALUE
# options, one input parameter each, named after the INPUT.
_OPTIONS = frozenset({"--step", "--const", "--upstream", "--argo-status"})  # --argo-status: the engine's phase


def placeholder(name: str) -> str:
    """Argo's reference to the template's input ``name``."""
    return f"{{{{inputs.parameters.{name}}}}}"


def parameterize(template: dict[str, Any], step_label: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """``template`` with the task's own values replaced by input placeholders, and the arguments that set them.

    The values are taken from the args as emitted (already escaped for the kubelet), so substituting them back
    gives the text a per-task template would have had.
    """
    container = template["container"]
    args: list[str] = []
    values: dict[str, str] = {}
    previous = ""
    for arg in container["args"]:
        if previous not in _OPTIONS:
            args.append(arg)
            previous = arg
            continue
        if previous == "--step":
            values[STEP_INPUT] = arg
            args.append(placeholder(STEP_INPUT))
        else:
            key, _, value = arg.partition("=")
            name = unique(_NOT_IN_NAME.sub("_", key) or "input", values)
            values[name] = value
            args.append(f"{key}={placeholder(name)}")
        previous = ""  # a value, never an option
    if _LABEL_VALUE.fullmatch(values.get(STEP_INPUT, "")):
        # The step's name is a valid label value: the label reads the --step input, and the task passes nothing
        # more (logs map it to the task's DNS name). An item's name (step[i]) is not: it passes the task name.
        labels = {**template["metadata"]["labels"], step_label: placeholder(STEP_INPUT)}
    else:
        task = unique(TASK_INPUT, values)
        values[task] = template["metadata"]["labels"][step_label]
        labels = {**template["metadata"]["labels"], step_label: placeholder(task)}
    shared = {"name": template["name"], "inputs": {"parameters": [{"name": name} for name in values]}}
    shared.update({**template, "metadata": {**template["metadata"], "labels": labels},
                   "container": {**container, "args": args}})
    return shared, [{"name": name, "value": value} for name, value in values.items()]


class Templates:
    """The shared templates of a workflow, in first-use order, named after their function."""

    def __init__(self) -> None:
        self._by_shape: dict[str, dict[str, Any]] = {}
        self.reserved: set[str] = set()  # names other templates (DAGs, publishers) already hold

    def add(self, step: ir.Step, template: dict[str, Any]) -> str:
        """The name of the template equal to ``template`` (its name aside), added if new."""
        shape = json.dumps({k: v for k, v in template.items() if k != "name"}, sort_keys=True)
        found = self._by_shape.get(shape)
        if found is None:
            taken = {t["name"] for t in self._by_shape.values()} | self.reserved
            name = unique(base_name(step)[:63].rstrip("-") or "step", taken)
            found = self._by_shape[shape] = {"name": name, **{k: v for k, v in template.items() if k != "name"}}
        return str(found["name"])

    def all(self) -> list[dict[str, Any]]:
        """Every shared template, in the order of first use."""
        return list(self._by_shape.values())
