"""Requirement specifiers: read from a requirements file or ``pyproject.toml``, and checked (PEP 508).

pipecast takes what ``pip install`` takes as a requirement — ``pandas==2.2.3``, ``torch>=2; sys_platform ==
"linux"``, ``mylib @ https://host/mylib-1.0-py3-none-any.whl`` — and nothing else: pip options (``-e``,
``--index-url``, ``-c``) would change how everything else installs, so they are refused where they are written.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipecast.errors import Problem

REQUIREMENTS_FIX = ("write requirements as pip does: 'pandas==2.2.3', 'scikit-learn>=1.5,<2', "
                    "'mylib @ https://host/mylib-1.0-py3-none-any.whl'")


def requirement_problem(text: str) -> str | None:
    """Why ``text`` is not a requirement specifier (PEP 508); None when it is one."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(text)
    except InvalidRequirement as err:
        first = str(err).splitlines()[0]
        return f"{text!r} is not a requirement specifier ({first})"
    return None


def parse_requirement_lines(text: str, shown: str, problems: list[Problem]) -> tuple[str, ...]:
    """The requirements in a requirements file's text; ``-r`` includes, options and bad lines become problems."""
    found: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        where = f"{shown}:{number}"
        if line.startswith("-"):
            problems.append(Problem(f"{line!r} is a pip option; pipecast's requirements are requirement "
                                    "specifiers only (the image's pip is configured by pipecast)", location=where,
                                    fix="remove it; give a package index with PIP_INDEX_URL in the build's "
                                        "environment, or list the requirements of an included file here"))
            continue
        problem = requirement_problem(line)
        if problem:
            problems.append(Problem(problem, location=where, fix=REQUIREMENTS_FIX))
            continue
        found.append(line)
    return tuple(found)


def read_requirements_file(path: str, pipeline_file: str, where: str, problems: list[Problem]) -> tuple[str, ...]:
    """The requirements in ``path`` (relative to the folder of ``pipeline_file``); a missing file is a problem."""
    full = Path(os.path.dirname(os.path.abspath(pipeline_file))) / path
    try:
        text = full.read_text(encoding="utf-8")
    except OSError as err:
        problems.append(Problem(f"requirements file {path!r} cannot be read: {err.strerror or err}", location=where,
                                fix="give the path relative to the pipeline's file, or a list of requirement "
                                    "specifiers"))
        return ()
    return parse_requirement_lines(text, path, problems)


def pyproject_dependencies(path: Path, problems: list[Problem]) -> tuple[str, ...]:
    """``[project].dependencies`` of a ``pyproject.toml``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        problems.append(Problem(f"{path.name} cannot be read: {err}", location=str(path)))
        return ()
    dependencies = data.get("project", {}).get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        problems.append(Problem("[project].dependencies is not a list of strings", location=str(path)))
        return ()
    found = []
    for item in dependencies:
        problem = requirement_problem(item)
        if problem:
            problems.append(Problem(problem, location=str(path), fix=REQUIREMENTS_FIX))
        else:
            found.append(item.strip())
    return tuple(found)
