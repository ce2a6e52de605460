"""A stack: a target with its connection and deployment settings, saved under a name (docs/stacks.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipecast.errors import StackError

LOCAL = "local"  # the built-in stack: the local target, this machine
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
CHAINS = ("docker", "aws", "gcp", "azure")  # credential chains a stack may rely on (checked by `stack verify`)
_FIELDS = ("target", "description", "config", "settings", "artifact_root", "build", "code", "credentials")


@dataclass(frozen=True)
class Stack:
    """A named target with its ``-c`` config, ``--set`` settings, artifact root, build settings and code mode.

    ``source`` says where it was read from: ``built-in``, or the path of the user's or the project's file.
    Config values may be references (``env:VAR``, ``keyring:service/name``), resolved when the stack is used.
    """

    name: str
    target: str
    description: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    artifact_root: str | None = None
    build: Mapping[str, Any] = field(default_factory=dict)
    code: str | None = None
    credentials: tuple[str, ...] = ()
    source: str = "built-in"

    def to_table(self) -> dict[str, Any]:
        """The stack as its TOML table (empty fields left out)."""
        table: dict[str, Any] = {"target": self.target}
        for key in _FIELDS[1:]:
            value = getattr(self, key)
            if value:
                table[key] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(
                    value, Mapping) else value
        return table

    @classmethod
    def from_table(cls, name: str, table: Any, source: str) -> Stack:
        """Read one ``[stacks.NAME]`` table; a wrong shape is a StackError naming the file and key."""
        where = f"{source}: [stacks.{name}]"
        if not NAME.fullmatch(name):
            raise StackError(f"{where}: {name!r} is not a stack name (letters, digits, '_', '.', '-'; starts with a "
                             "letter)")
        if not isinstance(table, Mapping):
            raise StackError(f"{where} must be a table")
        unknown = sorted(set(table) - set(_FIELDS))
        if unknown:
            raise StackError(f"{where}: unknown key(s) {unknown!r}; a stack has {', '.join(_FIELDS)}")
        target = table.get("target")
        if not isinstance(target, str) or not target:
            raise StackError(f"{where} names no target: add target = \"airflow\" (see `pipecast targets`)")
        for key in ("config", "settings", "build"):
            if not isinstance(table.get(key, {}), Mapping):
                raise StackError(f"{where}: {key} must be a table of KEY = VALUE")
        for key in ("description", "artifact_root", "code"):
            if not isinstance(table.get(key, ""), str):
                raise StackError(f"{where}: {key} must be a string")
        credentials = table.get("credentials", [])
        if not isinstance(credentials, list) or not all(isinstance(c, str) for c in credentials):
            raise StackError(f"{where}: credentials must be a list of strings, e.g. [\"aws\"]")
        return cls(name=name, target=target, description=table.get("description", ""),
                   config=dict(table.get("config", {})), settings=dict(table.get("settings", {})),
                   artifact_root=table.get("artifact_root") or None, build=dict(table.get("build", {})),
                   code=table.get("code") or None, credentials=tuple(credentials), source=source)


BUILT_IN = Stack(name=LOCAL, target="local", description="this machine, no server (the default)")
