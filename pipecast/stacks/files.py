"""Where stacks live: the user's ``stacks.toml``, a project's ``pipecast.toml``, and which one is active.

Precedence, lowest first: the built-in ``local`` stack, the user's file (``$XDG_CONFIG_HOME/pipecast/stacks.toml``,
default ``~/.config/pipecast/stacks.toml``), then the project's ``pipecast.toml`` (the nearest one from the working
folder up): a project stack replaces a user stack of the same name whole. The active stack is the one named by
the caller (``--stack``, ``stack=``), else ``$PIPECAST_STACK``, else the user's ``pipecast stack use``, else
``local``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipecast.errors import StackError
from pipecast.stacks.model import BUILT_IN, LOCAL, Stack

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_STACK = "PIPECAST_STACK"
_BARE = re.compile(r"[A-Za-z0-9_-]+")  # TOML's bare keys
PROJECT_FILE = "pipecast.toml"


def user_file() -> Path:
    """The user's stacks file: ``$XDG_CONFIG_HOME/pipecast/stacks.toml`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pipecast" / "stacks.toml"


def project_file(start: str | None = None) -> Path | None:
    """The nearest ``pipecast.toml`` from ``start`` (the working folder) up, or None."""
    folder = Path(start or os.getcwd()).resolve()
    for candidate in (folder, *folder.parents):
        path = candidate / PROJECT_FILE
        if path.is_file():
            return path
    return None


def read_file(path: Path) -> dict[str, Any]:
    """A TOML file as a dict ({} when it does not exist); a syntax error is a StackError naming the file."""
    try:
        with open(path, "rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
            return data
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as err:
        raise StackError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise StackError(f"cannot read {path}: {err.strerror or err}") from None


def stacks_in(path: Path | None) -> dict[str, Stack]:
    """The stacks a file defines (its ``[stacks.NAME]`` tables)."""
    if path is None:
        return {}
    tables = read_file(path).get("stacks", {})
    if not isinstance(tables, Mapping):
        raise StackError(f"{path}: 'stacks' must be a table of [stacks.NAME] tables")
    found = {name: Stack.from_table(name, table, str(path)) for name, table in tables.items()}
    if LOCAL in found:
        raise StackError(f"{path}: [stacks.{LOCAL}] redefines the built-in stack; give it another name")
    return found


def all_stacks() -> dict[str, Stack]:
    """Every stack by name: built-in, the user's, then the project's (a later one replaces an earlier one).

    A project stack's relative artifact root is a folder of the project (beside its ``pipecast.toml``), wherever
    the command runs from.
    """
    project = project_file()
    stacks = stacks_in(project)
    if project is not None:
        stacks = {name: _rooted(stack, project.parent) for name, stack in stacks.items()}
    return {LOCAL: BUILT_IN, **stacks_in(user_file()), **stacks}


def _rooted(stack: Stack, folder: Path) -> Stack:
    root = stack.artifact_root
    if not root or "://" in root or os.path.isabs(os.path.expanduser(root)):
        return stack
    from dataclasses import replace

    return replace(stack, artifact_root=str(folder / root))


def get_stack(name: str) -> Stack:
    """The stack called ``name``; a StackError listing the known ones (with the closest) otherwise."""
    import difflib

    stacks = all_stacks()
    if name in stacks:
        return stacks[name]
    close = difflib.get_close_matches(name, list(stacks), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise StackError(f"no stack named {name!r}.{hint} Known stacks: {', '.join(sorted(stacks))}; register one with "
                     f"`pipecast stack register {name} --target TARGET ...`")


def active_name(explicit: str | None = None) -> str:
    """The active stack's name: ``explicit``, else ``$PIPECAST_STACK``, else the user's ``use``, else local."""
    if explicit:
        return explicit
    chosen = os.environ.get(ENV_STACK)
    if chosen:
        return chosen
    used = read_file(user_file()).get("active")
    return used if isinstance(used, str) and used else LOCAL


def active_stack(explicit: str | None = None) -> Stack:
    """The active stack (see :func:`active_name`)."""
    return get_stack(active_name(explicit))


def write_file(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as TOML to ``path`` at once (a reader never sees half a file)."""
    text = dumps(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".pipecast-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def dumps(data: Mapping[str, Any]) -> str:
    """TOML for ``data``: top-level values, then one ``[stacks."NAME"]`` table per stack (others inline)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for key, value in data.items():
        if not isinstance(value, Mapping):
            continue
        if key == "stacks":
            for name, table in value.items():
                lines += ["", f"[stacks.{_key(name)}]"]
                lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
        else:
            lines += ["", f"[{_key(key)}]"] + [f"{_key(k)} = {_value(v)}" for k, v in value.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's (\uXXXX for control characters); DEL must be escaped too in TOML.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, (datetime.date, datetime.time)):  # TOML's own dates and times, read from a project file
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        raise StackError("TOML has no null: leave the key out (`pipecast stack update NAME --unset KEY`)")
    raise StackError(f"cannot store {type(value).__name__} {value!r} in a stack file")
