"""Materializers turn step outputs into bytes and back, chosen by the value's type.

Built in: ``json`` for values that survive a JSON round trip unchanged, ``bytes`` for raw bytes, ``numpy``
(``.npy``, no pickled objects) for numpy arrays, ``pandas-parquet`` (``.parquet`` through pyarrow, when pyarrow
is installed) for pandas DataFrames, and ``pickle`` for any other Python object. Pickle files are
Python-specific: only Python code with the same classes importable can read them, so :func:`encode` says when it
falls back to pickle. Register your own with :func:`register_materializer`.

numpy and pandas are never imported here unless a value of theirs is being stored or read: a step that
returns a DataFrame has imported pandas already.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
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


class NumpyMaterializer(Materializer):
    """A numpy array as ``.npy`` (``numpy.save`` without pickle: object arrays go to pickle instead)."""

    name = "numpy"
    extension = ".npy"

    def can_save(self, value: Any) -> bool:
        """Whether ``value`` is exactly a numpy array (a subclass would read back as a plain array)."""
        numpy = sys.modules.get("numpy")
        return numpy is not None and type(value) is numpy.ndarray and not value.dtype.hasobject

    def dumps(self, value: Any) -> bytes:
        """The array in numpy's ``.npy`` format."""
        import numpy

        buffer = io.BytesIO()
        numpy.save(buffer, value, allow_pickle=False)
        return buffer.getvalue()

    def loads(self, data: bytes) -> Any:
        """The array (pickled objects are refused)."""
        import numpy

        return numpy.load(io.BytesIO(data), allow_pickle=False)


class PandasParquetMaterializer(Materializer):
    """A pandas DataFrame as Parquet through pyarrow (index and dtypes kept in pandas' Parquet metadata)."""

    name = "pandas-parquet"
    extension = ".parquet"

    def can_save(self, value: Any) -> bool:
        """Whether ``value`` is exactly a DataFrame with text column names and pyarrow is installed."""
        pandas = sys.modules.get("pandas")
        if pandas is None or type(value) is not pandas.DataFrame:
            return False
        return pyarrow_installed() and all(isinstance(column, str) for column in value.columns)

    def dumps(self, value: Any) -> bytes:
        """The DataFrame as Parquet bytes."""
        buffer = io.BytesIO()
        value.to_parquet(buffer, engine="pyarrow")
        return buffer.getvalue()

    def loads(self, data: bytes) -> Any:
        """The DataFrame; ArtifactError naming pyarrow when it is not installed where the step reads it."""
        if not pyarrow_installed():
            raise ArtifactError("this output is a pandas DataFrame stored as Parquet; reading it needs pyarrow: "
                                "python -m pip install pyarrow")
        import pandas

        return pandas.read_parquet(io.BytesIO(data), engine="pyarrow")


def pyarrow_installed() -> bool:
    """Whether pyarrow can be imported (checked without importing it)."""
    import importlib.util

    return "pyarrow" in sys.modules or importlib.util.find_spec("pyarrow") is not None


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


def choose(value: Any, hint: Any = None) -> Materializer:
    """The first registered materializer that takes ``value``; those registered for the type hint come first.

    For a hint, the materializers registered for its closest class come first (its own, then its bases').
    """
    if isinstance(hint, type) and isinstance(value, hint):
        for cls in hint.__mro__[:-1]:  # not object: that is every value's
            for entry in _ORDER:
                if entry.type is cls and entry.materializer.can_save(value):
                    return entry.materializer
    for entry in _ORDER:
        if entry.type is not None and not isinstance(value, entry.type):
            continue
        if entry.materializer.can_save(value):
            return entry.materializer
    return _BY_NAME["pickle"]


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value as stored: its materializer, bytes, and why pickle was used when it was (else None)."""

    materializer: Materializer
    data: bytes
    pickle_reason: str | None = None


def encode(value: Any, hint: Any = None) -> Encoded:
    """``value`` as bytes with the materializer :func:`choose` picks; pickle when that one fails, saying why."""
    chosen = choose(value, hint)
    failure = None
    if chosen.name != "pickle":
        try:
            return Encoded(chosen, chosen.dumps(value))
        except Exception as err:  # a typed format that cannot hold this value (mixed object columns...)
            failure = f"the {chosen.name} materializer could not store it ({type(err).__name__}: {err})"
    pickled = _BY_NAME["pickle"]
    return Encoded(pickled, pickled.dumps(value), failure or _why_pickle(value))


def _why_pickle(value: Any) -> str:
    """Why no typed materializer took ``value``, with the fix when there is one."""
    kind = type(value)
    if kind.__module__.startswith("pandas") and kind.__name__ == "DataFrame" and not pyarrow_installed():
        return "pyarrow is not installed, so DataFrames cannot be stored as Parquet (python -m pip install pyarrow)"
    if kind.__module__.startswith("pandas") and kind.__name__ == "DataFrame":
        return "Parquet needs text column names"
    return "no materializer is registered for this type (pipecast.register_materializer adds one)"


def by_name(name: str) -> Materializer:
    """The registered materializer called ``name``; ArtifactError if there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ArtifactError(
            f"no materializer named {name!r} is registered; import the module that registers it"
        ) from None


for _builtin in (PickleMaterializer(), PandasParquetMaterializer(), NumpyMaterializer(), BytesMaterializer(),
                 JsonMaterializer()):
    register_materializer(_builtin)
