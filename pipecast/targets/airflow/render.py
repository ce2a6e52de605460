"""Rendering a :class:`~pipecast.targets.airflow.lowering.DagModel` into a DAG file with Jinja2.

The template is ``pipecast/templates/airflow_dag.py.j2``. Values reach the file only through the
``pyrepr`` filter, which writes JSON-like data as a Python literal, so no value can change the file's
structure (DESIGN §2, §3).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import jinja2

from pipecast.targets.airflow.lowering import DagModel

TEMPLATE = "airflow_dag.py.j2"


def python_literal(value: Any) -> str:
    """``value`` (None, bool, int, float, str, list, tuple, dict with str keys) as a Python literal."""
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{value!r} has no literal in a DAG file")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"dict keys must be strings in a DAG file: {list(value)!r}")
        return "{" + ", ".join(f"{_string(k)}: {python_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} {value!r} has no literal in a DAG file")


def _string(text: str) -> str:
    """``repr`` with double quotes when the text holds no quote at all (as a person would write it)."""
    written = repr(text)
    if written[0] == "'" and "'" not in text and '"' not in text:
        return f'"{written[1:-1]}"'
    return written


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja2 environment of Python-source templates: strict, and ``pyrepr`` as the only value filter."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipecast", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.clear()  # Jinja's own filters could write text that is not a literal
    env.filters["pyrepr"] = python_literal
    return env


def render_dag(model: DagModel) -> str:
    """The DAG file's text."""
    return environment().get_template(TEMPLATE).render(dag=model)
