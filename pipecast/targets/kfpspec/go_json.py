r"""JSON text exactly as Go's ``encoding/json`` writes a decoded JSON value (``json.Marshal(interface{})``).

The KFP backend renders every protobuf message it embeds in its Argo Workflow this way
(``backend/src/v2/compiler/argocompiler/proto.go``, ``stablyMarshalJSON``: ``protojson.Marshal``, then
``json.Unmarshal`` into ``interface{}`` and ``json.Marshal`` again), and Argo measures a Workflow with
``json.Marshal`` too (``workflow/packer/packer.go``, ``getSize``). What Go does differently from Python's
``json.dumps``: compact, map keys sorted, ``<`` ``>`` ``&`` written ``\u003c`` ``\u003e`` ``\u0026`` and
U+2028/U+2029 escaped (``encoding/json``, ``appendString`` with ``escapeHTML``), numbers decoded as
``float64`` and written by ``floatEncoder`` (``strconv.AppendFloat(…, 'f', -1, 64)``, or ``'e'`` below 1e-6 and
from 1e21, with the exponent's leading zero cut: ``1e-07`` → ``1e-7``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_string(text: str) -> str:
    """A JSON string literal as Go's encoder writes it (control characters as Go ≥ 1.22 writes them)."""
    rendered = json.dumps(text, ensure_ascii=False)
    if any(char in rendered for char in _GO_ESCAPES):
        rendered = "".join(_GO_ESCAPES.get(char, char) for char in rendered)
    return rendered


def go_number(value: float) -> str:
    """A number decoded into float64 and written back by Go (``9`` → ``9``, ``2.0`` → ``2``, ``1e21`` → ``1e+21``)."""
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"JSON has no {number!r}")
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    # The shortest digits that read back as the same float64 (what Go's precision -1 means, and Python's repr).
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + int(exponent or 0)  # the decimal point stands after this many of `digits`
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    if abs(number) < 1e-6 or abs(number) >= 1e21:
        shown = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{shown}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}".replace("e-0", "e-")
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_json(value: Any) -> str:
    """``value`` (decoded JSON) as Go's ``json.Marshal`` writes it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, (int, float)):
        return go_number(value)
    if isinstance(value, dict):
        return "{" + ",".join(go_string(str(key)) + ":" + go_json(value[key]) for key in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(item) for item in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def size(text: str) -> int:
    """Bytes of ``text`` in UTF-8."""
    return len(text.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Measure:
    """Go's JSON text of a value, measured without keeping it.

    Attributes:
        size: Its bytes.
        quotes: Its ``"`` characters.
        backslashes: Its backslashes.
    """

    size: int
    quotes: int
    backslashes: int

    @classmethod
    def of(cls, text: str) -> Measure:
        """The measure of Go's JSON text ``text``."""
        return cls(len(text.encode("utf-8", "surrogatepass")), text.count('"'), text.count("\\"))

    @property
    def as_string(self) -> int:
        """Bytes of this text written as a JSON string value (quotes and backslashes escaped, two quotes around)."""
        return self.size + self.quotes + self.backslashes + 2


# What Python's C encoder may write differently from Go's: a float or an int Go writes with an exponent.
_HOLDER = re.compile(r"\x01[A-Za-z0-9_.-]*")
DIFFERENT_NUMBERS = re.compile(r"[:\[,]-?\d+[.eE]|\d{22}")


def measure(value: Any, text: str | None = None) -> Measure:
    """:func:`go_json` of ``value``, measured from Python's C encoder where that writes the same text.

    The same text but for ``<`` ``>`` ``&`` (6 bytes each in Go) and U+2028/U+2029 (6 bytes each, 3 in UTF-8);
    when the text may hold a float (or an int Go writes with an exponent) it is rendered by :func:`go_json`.
    ``text`` is ``value`` already dumped (sorted keys, compact, ``ensure_ascii=False``), if at hand.
    """
    if text is None:
        text = dumps(value)
    if DIFFERENT_NUMBERS.search(text):
        return Measure.of(go_json(value))
    return text_measure(text)


def text_measure(text: str) -> Measure:
    """Go's JSON text measured from :func:`dumps`'s ``text``, which holds no number Go writes differently."""
    html = text.count("<") + text.count(">") + text.count("&")
    if text.isascii():  # one byte a character, and no line separators
        return Measure(len(text) + 5 * html, text.count('"'), text.count("\\") + html)
    lines = text.count("\u2028") + text.count("\u2029")
    return Measure(len(text.encode("utf-8", "surrogatepass")) + 5 * html + 3 * lines, text.count('"'),
                   text.count("\\") + html + lines)


def dumps(value: Any) -> str:
    """Python's compact JSON with sorted keys and UTF-8 kept: Go's text but for the cases :func:`measure` fixes."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def embedded(outer: Measure, placeholder: str, part: Measure, as_string: bool) -> Measure:
    """``outer`` with the JSON string ``placeholder`` in it replaced by ``part`` (as an object, or as a string)."""
    # "\x01…" with plain ASCII after it: Python and Go write it "\u0001…", one backslash (measured once, by formula)
    holder = Measure(len(placeholder) + 7, 2, 1) if _HOLDER.fullmatch(placeholder) else measure(placeholder)
    if as_string:  # each " and \ of part escaped, two quotes around
        part = Measure(part.as_string, part.quotes + 2, 2 * part.backslashes + part.quotes)
    return Measure(outer.size - holder.size + part.size, outer.quotes - holder.quotes + part.quotes,
                   outer.backslashes - holder.backslashes + part.backslashes)
