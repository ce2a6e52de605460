"""Secrets as references (DESIGN §3): Airflow connections and variables, or Kubernetes secrets in pods.

Each store has its own rule, checked at compile with one message per rule:

* ``secret_store=kubernetes`` (pods): the rule of every Kubernetes-based target, :func:`kube.secret_ref_problem`.
* ``secret_store=airflow``: Airflow's own rules for the names — a connection id is what Airflow's
  ``sanitize_conn_id`` keeps (``airflow/models/connection.py``), a variable key fits its 250-character column —
  and a name the template can reach. The task's template reads ``conn[NAME]`` / ``var.value[NAME]``; the
  accessors behind them (``airflow/sdk/execution_time/context.py`` on Airflow 3, ``airflow/utils/context.py``
  on 2.10) have no ``__getitem__``, so Jinja falls back to ``getattr`` and a name that is one of the accessor's
  own attributes (``get``; ``var`` on Airflow 2) gives that attribute instead of the secret, and Airflow's
  sandbox refuses names starting with ``_``.
"""

from __future__ import annotations

import re

from pipecast.compiler import ir
from pipecast.targets import kube
from pipecast.targets.airflow.commands import template
from pipecast.targets.base import EmitContext

# airflow/models/connection.py: RE_SANITIZE_CONN_ID and CONN_ID_MAX_LEN; ID_LEN (airflow/models/base.py) for keys.
CONNECTION_ID = re.compile(r"[\w#!()\-.:/\\]{1,250}")
_VARIABLE_KEY_LIMIT = 250
_CONNECTION_FIELDS = frozenset({"conn_type", "host", "login", "password", "schema", "port", "extra"})
# Attributes of Airflow's template accessors, by Airflow major version (see the module docstring).
_ACCESSOR_ATTRIBUTES = {3: frozenset({"get"}), 2: frozenset({"get", "var"})}
# Characters a Jinja string literal holds as they are; every other one is written as an escape.
_PLAIN = re.compile(r"[A-Za-z0-9_.-]")


def airflow_secret_template(secret: ir.SecretRef, step: ir.Step, context: EmitContext, *, dollar_escaped: bool,
                            version: int) -> str:
    """A reference to an Airflow variable (no key) or a connection's field (key), rendered at run time."""
    problem = airflow_secret_problem(secret, version)
    if problem:
        context.error(problem[0], step=step, fix=problem[1])
        return ""
    if secret.key is None:
        return template(f"var.value[{jinja_string(secret.name)}]", dollar_escaped)
    # A connection's own fields by name; any other key is read from its JSON extra.
    field = f".{secret.key}" if secret.key in _CONNECTION_FIELDS else f".extra_dejson[{jinja_string(secret.key)}]"
    return template(f"conn[{jinja_string(secret.name)}]{field}", dollar_escaped)


def airflow_secret_problem(secret: ir.SecretRef, version: int) -> tuple[str, str] | None:
    """``(message, fix)`` when ``secret`` cannot name an Airflow variable or connection that a template reads."""
    name = secret.name
    kind, accessor = ("connection", "conn") if secret.key is not None else ("variable", "var.value")
    if secret.key is None and not 0 < len(name) <= _VARIABLE_KEY_LIMIT:
        return (f"secret {name!r} cannot name an Airflow variable: a variable key holds 1 to "
                f"{_VARIABLE_KEY_LIMIT} characters", "rename the variable in Airflow and in the pipeline")
    if secret.key is not None and not CONNECTION_ID.fullmatch(name):
        return (f"secret {name!r} (key {secret.key!r}) cannot name an Airflow connection: a connection id holds 1 "
                "to 250 letters, digits and '_', '-', '.', ':', '/', '\\', '#', '!', '(' or ')' (Airflow's own rule)",
                "rename the connection in Airflow and in the pipeline")
    if name in _ACCESSOR_ATTRIBUTES[version] or name.startswith("_"):
        return (f"secret {name!r} cannot be read in an Airflow template: {accessor}[{name!r}] gives the "
                f"accessor's own attribute {name!r} (or is refused by Airflow's sandbox), not the {kind}",
                f"rename the {kind} in Airflow and in the pipeline")
    return None


def jinja_string(text: str) -> str:
    r"""``text`` as a Jinja string literal that reads back exactly, whatever it holds.

    Letters, digits, ``_``, ``.`` and ``-`` are written as they are and every other character as a
    ``\xHH``/``\uHHHH``/``\UHHHHHHHH`` escape, which Jinja's lexer decodes (it reads string literals with
    Python's ``unicode-escape``): no quote, brace or backslash of the name reaches the template's text.
    """
    escaped = []
    for char in text:
        code = ord(char)
        if _PLAIN.fullmatch(char):
            escaped.append(char)
        elif code <= 0xFF:
            escaped.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            escaped.append(f"\\u{code:04x}")
        else:
            escaped.append(f"\\U{code:08x}")
    return "'" + "".join(escaped) + "'"


def kubernetes_secret(secret: ir.SecretRef, step: ir.Step, context: EmitContext) -> list[str]:
    """``[secret name, key]`` of a Kubernetes secret reference (the key defaults to the env var's name)."""
    problem = kube.secret_ref_problem(secret)
    if problem:
        context.error(problem[0], step=step, fix=problem[1])
    return [secret.name, secret.key or secret.env]
