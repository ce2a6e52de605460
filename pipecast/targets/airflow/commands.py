"""The command a task runs and the templates Airflow renders for it: how values stay data.

Two rules keep values from escaping into code or templates (DESIGN §3):

* Airflow renders Jinja in templated fields (``bash_command``, ``env``, ``arguments``...). The DAG file
  wraps every pipeline value in ``literal()`` so it is never rendered. The only templates in the file are
  the ones written here: the run id, each parameter and each Airflow secret, all passed as environment
  variables, whose rendered values are data (Jinja does not render its own output again).
* The command never holds a rendered value. A local task's bash command refers to those variables as
  ``"$VAR"`` (bash does not re-parse an expanded variable); a pod's arguments refer to them as
  ``$(VAR)``, which Kubernetes expands, so every literal ``$`` there is written ``$$``.
"""

from __future__ import annotations

import re
import shlex

from pipecast.compiler import ir
from pipecast.runtime.command import EngineSyntax
from pipecast.targets.base import EmitContext
from pipecast.targets.lowering import RetryPlan, runtime_command

RUN_ID_VAR = "PIPECAST_RUN_ID"

# A placeholder for an environment variable inside a runtime argument while the command is built; NUL
# cannot occur in a command line, so it never collides with pipeline text.
_VAR = re.compile("\x00([A-Za-z0-9_]+)\x00")
_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Attributes of Airflow's ParamsDict and of dict: ``params.items`` would find the method, not the value.
_PARAMS_ATTRIBUTES = frozenset({
    "clear", "copy", "deserialize", "dump", "filter_params_by_source", "fromkeys", "get", "get_param", "items",
    "keys", "pop", "popitem", "serialize", "setdefault", "suppress_exception", "update", "validate", "values",
})


def runtime_argv(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, root: str, python: str,
                 variables: dict[str, str], plan: RetryPlan) -> list[str]:
    """The step's runtime command, with a placeholder for each variable (run id, parameters) in it."""
    syntax = EngineSyntax(run_id=_var(RUN_ID_VAR), parameter=lambda p: _var(variables[p.name]),
                          artifact_root=root, python=python)
    argv = runtime_command(pipeline, step, syntax, plan)
    for arg in argv:
        if "\x00" in _VAR.sub("", arg):
            context.error(f"the command of step {step.name!r} holds a NUL character, which no command line can carry",
                          step=step, fix="remove the NUL character from names and settings")
    return argv


def _var(name: str) -> str:
    return f"\x00{name}\x00"


def bash_command(argv: list[str]) -> str:
    """``argv`` as one bash command line: words quoted, variables as ``"$VAR"``, run with ``exec``."""
    words = []
    for arg in argv:
        pieces = _VAR.split(arg)
        word = "".join(f'"${piece}"' if i % 2 else shlex.quote(piece) if piece else ""
                       for i, piece in enumerate(pieces))
        words.append(word or "''")
    if words[-1].endswith((".sh", ".bash")):
        # BashOperator would take a command ending in .sh for the path of a script file.
        words[-1] = f"'{words[-1]}'"
    return "exec " + " ".join(words)


def pod_arguments(argv: list[str]) -> list[str]:
    """``argv`` for a container: variables as Kubernetes ``$(VAR)`` references, every other ``$`` as ``$$``."""
    return [_pod_word(arg) for arg in argv]


def _pod_word(arg: str) -> str:
    if "$" not in arg and "\x00" not in arg:  # most words: nothing to rewrite (and splitting costs)
        return arg
    return "".join(f"$({piece})" if i % 2 else piece.replace("$", "$$") for i, piece in enumerate(_VAR.split(arg)))


def param_vars(pipeline: ir.Pipeline) -> dict[str, str]:
    """The environment variable carrying each parameter (by position if its name is not ASCII)."""
    return {p.name: f"PIPECAST_PARAM_{p.name if _ASCII_NAME.fullmatch(p.name) else index}"
            for index, p in enumerate(pipeline.parameters)}


def param_template(param: ir.Parameter, *, dollar_escaped: bool) -> str:
    """The Jinja template that renders a parameter's value as the runtime reads it."""
    if _ASCII_NAME.fullmatch(param.name) and param.name not in _PARAMS_ATTRIBUTES:
        expression = f"params.{param.name}"
    else:
        expression = f"params['{param.name}']"
    if param.type in (ir.TypeName.BOOL, ir.TypeName.DICT, ir.TypeName.LIST, ir.TypeName.ANY):
        expression += " | tojson"
    # Only text can hold a '$': numbers and booleans need no escaping for Kubernetes.
    textual = param.type in (ir.TypeName.STR, ir.TypeName.DICT, ir.TypeName.LIST, ir.TypeName.ANY)
    return template(expression, dollar_escaped and textual)


def template(expression: str, dollar_escaped: bool) -> str:
    """``{{ expression }}``; for a pod, its output with every ``$`` doubled (Kubernetes reads ``$$`` as ``$``)."""
    if dollar_escaped:
        expression += " | replace('$', '$$')"
    return "{{ " + expression + " }}"
