"""SageMaker pipeline functions in step arguments: ``{"Get": ...}`` and ``{"Std:Join": ...}``.

The runtime's command is built by :func:`pipecast.runtime.command.step_command` with placeholder text
for the run id and each parameter. SageMaker substitutes values only through JSON functions, never in
text, so each argument holding a placeholder becomes a ``Get`` (the whole argument) or a ``Std:Join`` of
literal text and ``Get``\\ s. The placeholders are delimited by NUL, which no name, encoded constant or
URI in a command can hold, so splitting on it is exact.

:func:`resolve` evaluates these functions the way SageMaker documents them, for the limits checked
before a submit (argument and environment-value lengths once the real values are in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MARK = "\x00"
RUN_ID_TOKEN = "run_id"
RUN_ID_PLACEHOLDER = f"{_MARK}{RUN_ID_TOKEN}{_MARK}"
EXECUTION_ID = "Execution.PipelineExecutionId"


def parameter_placeholder(name: str) -> str:
    """The text :class:`~pipecast.runtime.command.EngineSyntax` puts where parameter ``name`` goes."""
    return f"{_MARK}param:{name}{_MARK}"


def has_placeholder(text: str) -> bool:
    """Whether ``text`` holds a run-id or parameter placeholder (so it becomes a ``Get`` or ``Std:Join``)."""
    return _MARK in text


def to_expression(text: str, parameter_names: Mapping[str, str]) -> Any:
    """``text`` as SageMaker JSON: itself, a ``Get``, or a ``Std:Join`` of text and ``Get``\\ s.

    ``parameter_names`` maps pipecast parameter names to their SageMaker names.
    """
    if _MARK not in text:
        return text
    values: list[Any] = []
    for index, part in enumerate(text.split(_MARK)):
        if index % 2 == 0:
            if part:
                values.append(part)
        elif part == RUN_ID_TOKEN:
            values.append({"Get": EXECUTION_ID})
        else:
            values.append({"Get": f"Parameters.{parameter_names[part.removeprefix('param:')]}"})
    if len(values) == 1 and isinstance(values[0], dict):
        return values[0]
    return {"Std:Join": {"On": "", "Values": values}}


def resolve(value: Any, parameters: Mapping[str, str], execution_id: str) -> str:
    """Evaluate a string, ``Get`` or ``Std:Join`` with parameter values given as SageMaker's text."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Get" in value:
        path = value["Get"]
        if path == EXECUTION_ID:
            return execution_id
        if isinstance(path, str) and path.startswith("Parameters."):
            return parameters[path.removeprefix("Parameters.")]
        raise KeyError(path)
    if isinstance(value, dict) and "Std:Join" in value:
        join = value["Std:Join"]
        return str(join.get("On", "")).join(resolve(v, parameters, execution_id) for v in join["Values"])
    raise TypeError(f"not a SageMaker string expression: {value!r}")
