r"""SageMaker pipeline functions in step arguments: ``{"Get": ...}`` and ``{"Std:Join": ...}``.

The runtime's command is built by :func:`pipecast.targets.lowering.runtime_command` with placeholder text
for the run id and each parameter. SageMaker substitutes values only through JSON functions, never in
text, and only in the fields where pipeline variables are accepted. The placeholders are delimited by
NUL, which no name, encoded constant or URI in a command can hold, so splitting on it is exact.

- A **processing** job takes pipeline functions in ``AppSpecification.ContainerArguments`` (AWS's
  pipeline-definition schema; the sagemaker SDK's ``Processor.run(arguments=...)``): each argument holding
  a placeholder becomes a ``Get`` (the whole argument) or a ``Std:Join`` of text and ``Get``\ s
  (:func:`to_expression`).
- A **training** job takes them in ``Environment`` only (the SDK's estimators and ``ModelTrainer`` accept
  pipeline variables in ``environment``, never in the container's arguments). So the run id and the
  parameters travel as environment variables (:func:`environment_name`), the arguments stay text with
  ``@{NAME}`` where a variable goes (:func:`to_launcher_text`, ``@`` written ``@@``), and a tiny Python
  launcher (:data:`LAUNCHER`, the container's entrypoint) puts the values in and execs the runtime.

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


# ``python -c LAUNCHER PROGRAM ARGS...``: each ``@{NAME}`` becomes the environment variable NAME, ``@@`` an ``@``;
# then PROGRAM runs with ARGS (exec: it becomes the container's main process). Fits one 256-character item.
LAUNCHER = ("import os,re,sys;a=[re.sub(r'@(@|\\{(\\w+)\\})',lambda m:os.environ[m[2]]if m[2]else'@',x)"
            "for x in sys.argv[1:]];os.execvp(a[0],a)")


def parameter_placeholder(name: str) -> str:
    """The text :class:`~pipecast.runtime.command.EngineSyntax` puts where parameter ``name`` goes."""
    return f"{_MARK}param:{name}{_MARK}"


def has_placeholder(text: str) -> bool:
    """Whether ``text`` holds a run-id or parameter placeholder (so it becomes a ``Get`` or ``Std:Join``)."""
    return _MARK in text


def to_expression(text: str, parameter_names: Mapping[str, str]) -> Any:
    r"""``text`` as SageMaker JSON: itself, a ``Get``, or a ``Std:Join`` of text and ``Get``\ s.

    ``parameter_names`` maps pipecast parameter names to their SageMaker names.
    """
    if _MARK not in text:
        return text
    values: list[Any] = []
    for index, part in enumerate(text.split(_MARK)):
        if index % 2 == 0:
            if part:
                values.append(part)
        else:
            values.append(token_expression(part, parameter_names))
    if len(values) == 1 and isinstance(values[0], dict):
        return values[0]
    return {"Std:Join": {"On": "", "Values": values}}


def environment_name(token: str) -> str:
    """The environment variable a training job gets a placeholder's value in (``run_id`` or ``param:<name>``)."""
    return "PIPECAST_RUN_ID" if token == RUN_ID_TOKEN else f"PIPECAST_PARAM_{token.removeprefix('param:')}"


def placeholders(text: str) -> list[str]:
    """The placeholder tokens in ``text``, in order."""
    return text.split(_MARK)[1::2]


def to_launcher_text(text: str) -> str:
    """``text`` for :data:`LAUNCHER`: ``@`` doubled, each placeholder as ``@{NAME}``."""
    parts = text.split(_MARK)
    return "".join(part.replace("@", "@@") if index % 2 == 0 else f"@{{{environment_name(part)}}}"
                   for index, part in enumerate(parts))


def token_expression(token: str, parameter_names: Mapping[str, str]) -> dict[str, str]:
    """The ``Get`` of one placeholder token."""
    if token == RUN_ID_TOKEN:
        return {"Get": EXECUTION_ID}
    return {"Get": f"Parameters.{parameter_names[token.removeprefix('param:')]}"}


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
