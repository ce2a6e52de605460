"""Materializers turn step outputs into bytes and back, chosen by the value's type.

Built in: ``json`` for values that survive a JSON round trip unchanged, ``bytes`` for raw bytes, and
``pickle`` for any other Python object. Pickle files are Python-specific: only Python code with the
same classes importable can read them. Register your own with :func:`register_materializer`.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from typing import Any

from pipecast.errors import ArtifactError


class Materializer:
    """Writes and reads one kind of value. Subclass and register to add your own."""

    name: str = ""
    extension: str = ".bin"

    def can_save(self, value: Any) -> bool:
        """Whether this materializer stores ``value`` (and reads it back equal)."""
        raise NotImplementedError

    def dumps(self, value: Any) -> bytes:
        """``value`` as bytes."""
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        """The value that ``data`` holds."""
        raise NotImplementedError


class JsonMaterializer(Materializer):
    """JSON for dicts, lists, strings, numbers, booleans and None that round-trip exactly."""

    name = "json"
    extension = ".json"

    def can_save(self, value: Any) -> bool:
        """Whether ``value`` reads back from JSON equal and of the same types (no tuples, only string keys)."""
        try:
            return json.loads(self.dumps(value)) == value and _same_shape(value)
        except (TypeError, ValueError):
            return False

    def dumps(self, value: Any) -> bytes:
        """Compact JSON with sorted keys, so equal values give equal bytes; NaN and infinity are refused."""
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        """The decoded JSON value."""
        return json.loads(data)


def _same_shape(value: Any) -> bool:
    """JSON turns tuples into lists and int keys into strings; such values go to pickle instead."""
    if isinstance(value, tuple):
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) for k in value) and all(_same_shape(v) for v in value.values())
    if isinstance(value, list):
        return all(_same_shape(v) for v in value)
    return True


class BytesMaterializer(Materializer):
    """Raw bytes, stored as they are."""

    name = "bytes"
    extension = ".bin"

    def can_save(self, value: Any) -> bool:
        """Whether ``value`` is bytes or a bytearray."""
        return isinstance(value, (bytes, bytearray))

    def dumps(self, value: Any) -> bytes:
        """The bytes themselves (a bytearray copied to bytes)."""
        return bytes(value)

    def loads(self, data: bytes) -> Any:
        """The stored bytes, as they are."""
        return data


class PickleMaterializer(Materializer):
    """Any picklable Python object (Python-specific; the classes must be importable to load)."""

    name = "pickle"
    extension = ".pkl"

    def can_save(self, value: Any) -> bool:
        """Always true: pickle is the fallback for any value."""
        return True

    def dumps(self, value: Any) -> bytes:
        """The pickled value; ArtifactError when it cannot be pickled (register a materializer)."""
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            raise ArtifactError(f"cannot store {type(value).__name__} value: {err}; register a materializer "
                                "for this type with pipecast.register_materializer") from err

    def loads(self, data: bytes) -> Any:
        """The unpickled value."""
        return pickle.loads(data)


@dataclass(frozen=True, slots=True)
class _Entry:
    type: type | None
    materializer: Materializer


_BY_NAME: dict[str, Materializer] = {}
_ORDER: list[_Entry] = []


def register_materializer(materializer: Materializer, for_type: type | None = None) -> None:
    """Register ``materializer``; with ``for_type`` it is used for instances of that type first.

    User materializers are consulted before the built-ins. Register them in the module that defines the
    steps, so the runtime inside every engine task has them too.
    """
    if not materializer.name:
        raise ValueError("a materializer needs a name")
    _BY_NAME[materializer.name] = materializer
    _ORDER.insert(0, _Entry(for_type, materializer))


def choose(value: Any) -> Materializer:
    """The first registered materializer that takes ``value``."""
    for entry in _ORDER:
        if entry.type is not None and not isinstance(value, entry.type):
            continue
        if entry.materializer.can_save(value):
            return entry.materializer
    return _BY_NAME["pickle"]


def by_name(name: str) -> Materializer:
    """The registered materializer called ``name``; ArtifactError if there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ArtifactError(
            f"no materializer named {name!r} is registered; import the module that registers it"
        ) from None


for _builtin in (PickleMaterializer(), BytesMaterializer(), JsonMaterializer()):
    register_materializer(_builtin)
