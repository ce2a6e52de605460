"""A block-style YAML writer for the plain data targets emit, writing the bytes PyYAML's dumper writes.

PyYAML spends most of an emit building a node graph and resolving every scalar (~67k nodes and ~118k resolver
calls for a 1,000-step KFP IR). The data we emit is only dicts with str keys, lists, str, int, float, bool and
None, always in block style (``default_flow_style=False``, indent 2, width 120, unicode allowed), so the layout
is a short recursion here. Scalars take one of two ways:

- a string of printable ASCII can never be escaped, and without spaces never folded, so its style depends only
  on its text (plain, or single-quoted when a reader would take it for something else); it is rendered once and
  cached, and used wherever its line ends within the width of 120;
- multi-line printable ASCII that the style function writes as a ``|`` block (every target's scripts) is written
  line by line, as the emitter's ``write_literal`` does, unless it needs an indentation or ``+`` hint;
- any other string (spaces, line breaks, unicode, control characters) is written by the dumper itself (libyaml
  when present), inside a tiny document that puts it at the same indent and column, and cut out; so folding,
  quoting and escaping are the dumper's own (libyaml and PyYAML's pure-Python emitter differ on some of them).

Whatever falls outside this (other types, non-str keys, keys too long for a simple key, empty or scalar roots, a
``|+`` block that would end the stream with ``...``) raises :class:`Unsupported` and the caller uses PyYAML for
the whole document. ``tests/unit/test_yaml_emit.py`` holds this to PyYAML's bytes on random documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import yaml
from yaml.resolver import Resolver

_STR = "tag:yaml.org,2002:str"
_FLOAT = "tag:yaml.org,2002:float"
_RESOLVER = Resolver()
# printable ASCII, no space: such a scalar is never folded, escaped or written as a block
_SIMPLE = re.compile(r"[!-~]+")
# printable ASCII with spaces: the same, as long as its line ends within the width (PyYAML folds at a space
# past column 120, libyaml too: emitter.c yaml_emitter_write_plain/_single_quoted)
_ASCII = re.compile(r"[ -~]+")
# printable ASCII lines: as a "|" block such a scalar is written line by line, never folded or escaped
_LINES = re.compile(r"[ -~\n]+")
_WIDTH = 120
_LONGEST_KEY = 100  # PyYAML writes keys of 128 characters or more (tag included) as "? key"; stay well below
# Pieces of text held before they are joined into one chunk: a 10,000-step document is ~10^6 pieces (tens of
# MiB of list and small strings, several times the text) when joined only at the end.
_CHUNK = 4096


class Unsupported(Exception):
    """The document holds something this writer does not write as PyYAML would: use PyYAML for it."""


def _tag(value: str) -> str:
    """The tag PyYAML's (YAML 1.1) resolver gives ``value`` written plain."""
    tag: str = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return tag


def _implicit_str(value: str) -> bool:
    """Whether a plain ``value`` reads back as a string under PyYAML's (YAML 1.1) resolver."""
    return _tag(value) == _STR


def _wrap(node: Any, indent: int) -> Any:
    """``node`` (a mapping) inside single-key mappings, so PyYAML writes its keys at column ``indent``."""
    for _ in range(indent // 2):
        node = {"a": node}
    return node


def _prefix(indent: int) -> str:
    return "".join(" " * (2 * level) + "a:\n" for level in range(indent // 2))


class _Probe:
    """One scalar written by the dumper itself, then cut out.

    The small document puts it at the same indent and column as in the real one: folding, quoting and escaping
    depend on nothing else.
    """

    def __init__(self, dump: Callable[[Any], str]) -> None:
        self._dump = dump

    def value(self, value: str, parent: int, column: int, in_sequence: bool) -> str:
        if in_sequence:  # a list at ``parent``: the item's "-" is at column ``parent``
            document: Any = [value, None] if parent == 0 else _wrap({"k": [value, None]}, parent)
            head = "-" if parent == 0 else _prefix(parent) + " " * parent + "k:\n" + " " * parent + "-"
            tail = " " * parent + "- null\n"
        else:  # a mapping at ``parent`` whose key text (with ":") ends at ``column``
            key = "k" * (column - parent - 1)
            document = _wrap({key: value, "z": None}, parent)
            head = _prefix(parent) + " " * parent + key + ":"
            tail = " " * parent + "z: null\n"
        text = self._dump(document)
        if not (text.startswith(head) and text.endswith(tail)):
            raise Unsupported("a scalar whose surroundings PyYAML writes differently")
        text = text[len(head):len(text) - len(tail)]
        if text.startswith(" |") and "+" in text.partition("\n")[0]:  # "|+" may end a stream with "..."
            raise Unsupported("a block scalar that keeps its final line breaks")
        return text

    def key(self, key: str, parent: int) -> str:
        text = self._dump(_wrap({key: None}, parent))
        head, tail = _prefix(parent) + " " * parent, ": null\n"
        if not (text.startswith(head) and text.endswith(tail)) or text[len(head)] == "?":
            raise Unsupported("a key PyYAML writes as a complex key")
        return text[len(head):len(text) - len(tail)] + ":"


class Writer:
    """One YAML document (or several) from plain data; ``style`` is the dumper's string representer's choice."""

    def __init__(self, style: Callable[[str], str | None], dump: Callable[[Any], str]) -> None:
        self._style = style
        self._probe = _Probe(dump)
        self._keys: dict[str, str] = {}
        self._values: dict[str, str] = {}
        self._spaced: dict[str, str] = {}  # by value, for a column where the line does not fold
        self._chunks: list[str] = []  # the text of the documents being written, joined so far

    def document(self, data: Any) -> str:
        """One document (a non-empty mapping or list) as PyYAML writes it, or :class:`Unsupported`."""
        return self.documents((data,), "")

    def documents(self, documents: Iterable[Any], start: str) -> str:
        """Several documents, each after ``start`` (a ``---`` line), as one text; :class:`Unsupported` as above."""
        self._chunks = []
        out: list[str] = []
        for data in documents:
            out.append(start)
            if type(data) is dict and data:
                self._mapping(out, data, 0, False)
            elif type(data) is list and data:
                self._sequence(out, data, 0, False)
            else:
                raise Unsupported("an empty or scalar document")
        self._chunks.append("".join(out))
        text = "".join(self._chunks)
        self._chunks = []
        return text

    def _flush(self, out: list[str]) -> None:
        """Join the pieces so far into one chunk (every level appends to the same ``out``)."""
        self._chunks.append("".join(out))
        out.clear()

    def _mapping(self, out: list[str], data: dict[Any, Any], indent: int, inline: bool) -> None:
        pad = " " * indent
        for key, value in data.items():
            if inline:
                inline = False
            else:
                out.append(pad)
            if type(key) is not str:
                raise Unsupported("a key that is not a string")
            text = self._keys.get(key)
            if text is None:
                text = self._key(key, indent)
            out.append(text)
            kind = type(value)
            if kind is dict:
                if value:
                    out.append("\n")
                    self._mapping(out, value, indent + 2, False)
                else:
                    out.append(" {}\n")
            elif kind is list:
                if value:
                    out.append("\n")
                    self._sequence(out, value, indent, False)  # PyYAML does not indent a list in a mapping
                else:
                    out.append(" []\n")
            else:
                out.append(self._scalar(value, indent, indent + len(text), False))
            if len(out) > _CHUNK:
                self._flush(out)

    def _sequence(self, out: list[str], data: list[Any], indent: int, inline: bool) -> None:
        pad = " " * indent
        for value in data:
            if inline:
                inline = False
                out.append("-")
            else:
                out.append(pad + "-")
            kind = type(value)
            if kind is dict:
                if value:
                    out.append(" ")
                    self._mapping(out, value, indent + 2, True)
                else:
                    out.append(" {}\n")
            elif kind is list:
                if value:
                    out.append(" ")
                    self._sequence(out, value, indent + 2, True)
                else:
                    out.append(" []\n")
            else:
                out.append(self._scalar(value, indent, indent + 1, True))
            if len(out) > _CHUNK:
                self._flush(out)

    def _key(self, key: str, indent: int) -> str:
        if len(key) >= _LONGEST_KEY or "\n" in key:
            raise Unsupported("a long or multi-line key")
        if _ASCII.fullmatch(key):  # a key is never folded
            text = self._simple(key)[1:-1] + ":"
            self._keys[key] = text
            return text
        # not cached: a key's text does not depend on its column, but these are rare
        return self._probe.key(key, indent)

    def _scalar(self, value: Any, parent: int, column: int, in_sequence: bool) -> str:
        """The scalar and its line break as PyYAML writes them after ``key:`` or ``-`` ending at ``column``."""
        kind = type(value)
        if kind is str:
            text = self._values.get(value)
            if text is not None:
                return text
            if _SIMPLE.fullmatch(value):
                text = self._values[value] = self._simple(value)
                return text
            if _ASCII.fullmatch(value):
                text = self._spaced.get(value)
                if text is None:
                    text = self._spaced[value] = self._simple(value)
                if column + len(text) - 1 <= _WIDTH:
                    return text
            if self._style(value) == "|" and _LINES.fullmatch(value):
                block = _literal(value, parent + 2)
                if block is not None:
                    return block
            return self._probe.value(value, parent, column, in_sequence)
        if kind is bool:
            return " true\n" if value else " false\n"
        if kind is int:
            return f" {value}\n"
        if value is None:
            return " null\n"
        if kind is float:
            return f" {_float(value)}\n"
        raise Unsupported(f"a value of type {kind.__name__}")

    def _simple(self, value: str) -> str:
        """A printable-ASCII string: plain when PyYAML would write it so, else single-quoted.

        Nothing in such a string can need double quotes or escapes; the caller makes sure it is not folded.
        """
        if (self._style(value) is None and _implicit_str(value) and value[0] not in "#,[]{}&*!|>'\"%@` "
                and value not in ("-", "?", ":") and not value.startswith(("- ", "? ", ": ", "---", "..."))
                and not value.endswith((":", " ")) and ": " not in value and " #" not in value):
            return f" {value}\n"
        return " '" + value.replace("'", "''") + "'\n"


def _literal(value: str, indent: int) -> str | None:
    """A ``|`` block as the dumper writes it (emitter ``write_literal``), or None where a hint would be needed.

    Its lines sit at ``indent`` (the key's or the dash's column + 2), an empty line is a bare line break, and
    ``|-`` strips a missing final break. Text starting with a space or a break takes an indentation hint, and
    text ending in two breaks ``|+``: those stay with the dumper. Trailing spaces never get here (the style
    function gives such text no ``|``; PyYAML would refuse the block).
    """
    if value[0] in " \n" or value.endswith("\n\n") or value.endswith(" ") or " \n" in value:
        return None
    lines = value[:-1].split("\n") if value.endswith("\n") else value.split("\n")
    pad = " " * indent
    body = "".join(f"{pad}{line}\n" if line else "\n" for line in lines)
    return (" |\n" if value.endswith("\n") else " |-\n") + body


def _float(value: float) -> str:
    """``SafeRepresenter.represent_float``'s text, when it reads back as a float without a tag."""
    if value != value:
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value).lower()
    if "." not in text and "e" in text:
        text = text.replace("e", ".0e", 1)
    if _tag(text) != _FLOAT:
        raise Unsupported("a float PyYAML writes with a tag")
    return text
