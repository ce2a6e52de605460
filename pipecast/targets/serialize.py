"""The one dumper for structured output (YAML, JSON): fixed key order, stable bytes.

Keys keep the order the target built them in (targets build dicts in the engine's conventional
order: apiVersion, kind, metadata, spec...). Multi-line strings become ``|`` blocks when YAML allows it.
YAML is written by ``yaml_emit.Writer`` (PyYAML's bytes at a fraction of the cost); a document it does not
cover goes through PyYAML itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any

import yaml

from pipecast.targets.yaml_emit import Unsupported, Writer

# libyaml's emitter is several times faster than PyYAML's pure-Python one and writes the same bytes for
# what we emit (the golden tests hold both to the same files); the pure-Python one is the fallback.
if TYPE_CHECKING:  # both dumpers have the SafeDumper interface; mypy takes no base chosen at run time
    _Base = yaml.SafeDumper
else:
    _Base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):
    """SafeDumper that never writes aliases and writes multi-line strings as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# Plain scalars a YAML 1.2 core-schema reader (GitHub Actions, go-yaml v3, ruamel) takes for a number, a bool or
# null, but PyYAML's YAML 1.1 resolver does not (``1e5``, ``0o17``): such strings are quoted so every reader
# gets the same string back. ruamel's 1.2 resolver also takes ``_`` inside numbers (``._``, ``0o_``:
# ``ruamel/yaml/resolver.py``), so those forms are quoted too.
_YAML12_NOT_STR = re.compile(
    r"[-+]?(\.[0-9_]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?|[-+]?\.[0-9]+([eE][-+]?[0-9]+)?"
    r"|[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9][0-9_]*|[-+][0-9_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?\.(inf|Inf|INF)"
    r"|\.(nan|NaN|NAN)|true|True|TRUE|false|False|FALSE|null|Null|NULL|~"
)


def str_style(value: str) -> str | None:
    """The scalar style a string asks for: ``|`` for multi-line text, ``'`` where YAML 1.2 would not read a str."""
    if "\n" in value and not any(line != line.rstrip() for line in value.split("\n")):
        return "|"
    if _YAML12_NOT_STR.fullmatch(value):
        return "'"
    return None


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=str_style(value))


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    """One YAML document, keys in insertion order."""
    try:
        return Writer(str_style, pyyaml_dump).document(data)
    except Unsupported:
        return pyyaml_dump(data)


def dump_yaml_all(documents: Iterable[Any]) -> str:
    """Several YAML documents separated by ``---``."""
    documents = list(documents)
    try:
        return Writer(str_style, pyyaml_dump).documents(documents, "---\n")
    except Unsupported:
        return pyyaml_dump_all(documents)


def pyyaml_dump(data: Any) -> str:
    """``dump_yaml`` by PyYAML alone (what ``yaml_emit`` must match byte for byte)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=120, indent=2)


def pyyaml_dump_all(documents: list[Any]) -> str:
    """``dump_yaml_all`` by PyYAML alone."""
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         allow_unicode=True, width=120, indent=2, explicit_start=True)


def dump_json(data: Any) -> str:
    """JSON with two-space indents, keys in insertion order, and a final newline.

    ``json.dumps``'s bytes, joined a few thousand pieces at a time: with an indent the encoder is pure Python and
    yields a piece per token, and ``json.dumps`` holds them all before joining (80 MiB for a 12 MiB SageMaker
    definition of 10,000 steps).
    """
    pieces = json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(data, _one_shot=True)
    chunks = []
    while batch := list(islice(pieces, 8192)):
        chunks.append("".join(batch))
    chunks.append("\n")
    return "".join(chunks)
