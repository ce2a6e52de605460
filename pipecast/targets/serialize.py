"""The one dumper for structured output (YAML, JSON): fixed key order, stable bytes.

Keys keep the order the target built them in (targets build dicts in the engine's conventional
order: apiVersion, kind, metadata, spec...). Multi-line strings become ``|`` blocks when YAML allows it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper that never writes aliases and writes multi-line strings as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and not any(line != line.rstrip() for line in value.split("\n")):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    """One YAML document, keys in insertion order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=120, indent=2)


def dump_yaml_all(documents: Iterable[Any]) -> str:
    """Several YAML documents separated by ``---``."""
    return yaml.dump_all(list(documents), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         allow_unicode=True, width=120, indent=2, explicit_start=True)


def dump_json(data: Any) -> str:
    """JSON with two-space indents, keys in insertion order, and a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
