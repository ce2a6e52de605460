"""Rendering a :class:`~pipecast.targets.airflow.lowering.DagModel` into a DAG file with Jinja2.

The template is ``pipecast/templates/airflow_dag.py.j2``. Values reach the file only through two filters
that write literals: ``pyrepr`` writes JSON-like data as a Python literal, and ``pyjson`` writes the task
table as JSON inside one raw string literal (see :func:`json_table_literal` for why). No value can change
the file's structure (DESIGN §2, §3).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
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


def json_table_literal(table: Mapping[str, Mapping[str, Any]]) -> str:
    """``table`` (name → entry) as JSON in a raw triple-quoted string: one line per entry's field.

    Airflow re-parses a DAG file all the time, and CPython compiles a dict display of a thousand entries
    (~10 ms) about ten times slower than ``json.loads`` reads the same data from one string constant; that
    compile time alone made a 1,000-task DAG parse 1.1-1.3x slower than a hand-written loop.

    The raw string holds the JSON text unchanged: JSON escapes every quote, backslash and control character
    inside its strings (and ``ensure_ascii`` everything else), so the text never holds three quotes in a row,
    and a newline stands before the closing quotes. Checked anyway: a mistake here would change the file.
    """
    lines = ["{"]
    for number, (name, entry) in enumerate(table.items()):
        lines.append(f"    {_json(name)}: {{")
        fields = [f"        {_json(key)}: {_json(value)}" for key, value in entry.items()]
        lines.append(",\n".join(fields))
        lines.append("    }," if number < len(table) - 1 else "    }")
    lines.append("}")
    text = "\n".join(lines)
    if '"""' in text:
        raise ValueError("the task table cannot be written as a raw string literal")
    return f'r"""\n{text}\n"""'


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=True, allow_nan=False)
    except ValueError as error:  # NaN or infinity
        raise TypeError(f"{value!r} has no literal in a DAG file") from error


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja2 environment of Python-source templates: strict, and only the literal-writing filters."""
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
    env.filters["pyjson"] = json_table_literal
    return env


def render_dag(model: DagModel) -> str:
    """The DAG file's text."""
    return environment().get_template(TEMPLATE).render(dag=model)
