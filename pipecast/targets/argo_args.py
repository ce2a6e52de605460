"""Every container argument of an Argo Workflow within Linux's one-argument limit: at compile and at submit.

Argo substitutes a Workflow parameter's whole text into each container argument that names it
(``--param NAME=TYPE:{{workflow.parameters.NAME}}``), so a list, dict or text parameter over 128 KiB reaches a step
as one argument, and the pod fails to start (execve: ``argument list too long``) after the run began. Constants are
written into the arguments as they are. Here every argument the Argo target emits is measured as the pod gets it:
with the parameters' defaults at compile, with the run's values (:func:`check_run`) before anything is submitted.
``--argo-flow-param`` (the list a map iterates) is left to :mod:`pipecast.targets.map_limits`, which names the map.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import SubmitError
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import EmitContext
from pipecast.targets.kube.limits import MAX_ARG_STRLEN, argument_bytes_over

_INPUT = re.compile(r"\{\{inputs\.parameters\.([A-Za-z0-9_-]+)\}\}")
_TAG = re.compile(r"\{\{workflow\.parameters\.([A-Za-z0-9_-]+)\}\}")
_RULE = (f"Argo passes it to the step's container as one argument, and Linux takes at most {MAX_ARG_STRLEN} bytes "
         "per argument (MAX_ARG_STRLEN, with its NUL)")
PARAMETER_FIX = "pass large data as a step's output (or a file the step reads), not a parameter"
CONSTANT_FIX = "pass large values as a step's output (or a file the step reads), not a constant"


@dataclass(frozen=True)
class Oversized:
    """One container argument over the limit: the Argo task, the parameters in it (none: a constant), the problem."""

    task: str
    parameters: tuple[str, ...]
    message: str
    fix: str


def oversized_arguments(documents: Iterable[Mapping[str, Any]], texts: Mapping[str, str],
                        given: str) -> list[Oversized]:
    """Each container argument over the limit once ``texts`` are substituted (one per distinct problem).

    ``texts`` maps a parameter's name to its text as Argo substitutes it; ``given`` ('default' or 'value') names them.
    A container template shared by several tasks gets each task's ``arguments.parameters`` as its
    ``{{inputs.parameters.X}}`` (that is how constants reach it), so each calling task is measured.
    """
    problems: dict[str, Oversized] = {}
    for document in documents:
        spec = document.get("spec") or {}
        templates = {t["name"]: t for t in spec.get("templates", ())}
        callers: dict[str, list[tuple[str, dict[str, str]]]] = {name: [] for name in templates}
        for template in templates.values():
            for task in (template.get("dag") or {}).get("tasks", ()):
                arguments = (task.get("arguments") or {}).get("parameters", ())
                inputs = {p["name"]: str(p.get("value", "")) for p in arguments}
                callers.setdefault(task["template"], []).append((task["name"], inputs))
        for name, template in templates.items():
            container = template.get("container")
            if not container:
                continue
            words = [*container.get("command", ()), *container.get("args", ())]
            for task, inputs in callers[name] or [(name, {})]:
                for before, word in zip(["", *words], words, strict=False):
                    if before == "--argo-flow-param":
                        continue
                    word = _INPUT.sub(lambda m, inputs=inputs: inputs.get(m[1], m[0]), word)  # type: ignore[misc]
                    names = sorted(set(_TAG.findall(word)))
                    size = argument_bytes_over(_TAG.sub(lambda m: texts.get(m[1], m[0]), word))
                    if size is None:
                        continue
                    where = f"an argument of Argo task {task!r}"
                    if names:
                        which = ", ".join(repr(n) for n in names)
                        message = (f"{where} is {size} bytes with the {given} of parameter"
                                   f"{'s' * (len(names) > 1)} {which}; {_RULE}")
                        problems.setdefault(message, Oversized(task, tuple(names), message, PARAMETER_FIX))
                    else:
                        message = f"{where} is {size} bytes (a constant); {_RULE}"
                        problems.setdefault(message, Oversized(task, (), message, CONSTANT_FIX))
    return list(problems.values())


def parameter_texts(pipeline: ir.Pipeline, values: Mapping[str, Any]) -> dict[str, str]:
    """Each parameter's text as Argo substitutes it: the run's value, else its default."""
    texts = {}
    for param in pipeline.parameters:
        if param.name in values:
            texts[param.name] = render_parameter(param.type, values[param.name])
        elif not param.required:
            texts[param.name] = render_parameter(param.type, param.default)
    return texts


def check_run(pipeline: ir.Pipeline, documents: Iterable[Mapping[str, Any]], values: Mapping[str, Any]) -> None:
    """Raise SubmitError, before any request, when a run's parameter values make an argument too long."""
    problems = oversized_arguments(documents, parameter_texts(pipeline, values), "value")
    if problems:
        raise SubmitError("; ".join(p.message for p in problems)
                          + f"; nothing was submitted ({'; '.join(sorted({p.fix for p in problems}))})")


def report_defaults(pipeline: ir.Pipeline, documents: Iterable[Mapping[str, Any]], names: Mapping[str, str],
                    context: EmitContext) -> None:
    """Report each argument the defaults or constants make too long, at the user's line.

    A parameter's default points at the parameter (the pipeline's signature); a constant at the step's call,
    found from the task's name (``names``: step name to Argo task name).
    """
    steps = {task: step for step in pipeline.steps if (task := names.get(step.name))}
    for problem in oversized_arguments(documents, parameter_texts(pipeline, {}), "default"):
        step = steps.get(problem.task)
        if problem.parameters:
            param = pipeline.parameter(problem.parameters[0])
            location = param.location or pipeline.location
            context.error(problem.message, fix=problem.fix, location=str(location) if location else None)
        else:
            context.error(problem.message, fix=problem.fix, step=step,
                          location=None if step or not pipeline.location else str(pipeline.location))
