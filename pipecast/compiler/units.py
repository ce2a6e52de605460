"""Parsing of durations, resource quantities and cron expressions.

Each parser returns ``None`` for invalid input instead of raising, so validation can report every
bad value at once with the step it belongs to.
"""

from __future__ import annotations

import itertools
import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

# Kubernetes resource.Quantity: a decimal number with an optional binary or decimal suffix.
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_QUANTITY_FACTOR = {
    None: 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def parse_duration(value: str | int | float | None) -> float | None:
    """Return seconds for ``"90s"``, ``"1h30m"``, ``"250ms"`` or a number of seconds; ``None`` if invalid."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    text = value.strip()
    if not text:
        return None
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def parse_quantity(value: str | int | float) -> float | None:
    """Return the numeric value of a Kubernetes quantity (``"4Gi"``, ``"500m"``, ``2``); ``None`` if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    return float(match.group(1)) * _QUANTITY_FACTOR[match.group(2)]


def normalize_quantity(value: str | int | float) -> str:
    """Return a quantity as the canonical string engines accept (``2 -> "2"``, ``0.5 -> "500m"``)."""
    if isinstance(value, str):
        return value.strip()
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


_CRON_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_CRON_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
)


def cron_problem(expr: str) -> str | None:
    """Return why a five-field cron expression is invalid, or ``None`` if it is valid."""
    text = expr.strip()
    if text in _CRON_ALIASES:
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"a cron expression has 5 fields (minute hour day month weekday), got {len(fields)}"
    labels = ("minute", "hour", "day of month", "month", "day of week")
    for field, (low, high), names, label in zip(fields, _CRON_FIELDS, _CRON_NAMES, labels):
        for part in field.split(","):
            reason = _cron_part_problem(part.lower(), low, high, names)
            if reason:
                return f"{label} field {field!r}: {reason}"
    return None


def _cron_part_problem(part: str, low: int, high: int, names: dict[str, int]) -> str | None:
    base, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        return f"step {step!r} must be a positive integer"
    if base == "*":
        return None
    bounds = base.split("-")
    if len(bounds) > 2:
        return f"{base!r} is not a value or a range"
    values = []
    for bound in bounds:
        number = names.get(bound, int(bound) if bound.isdigit() else None)
        if number is None:
            return f"{bound!r} is not a number"
        if not low <= number <= high:
            return f"{number} is outside {low}-{high}"
        values.append(number)
    if len(values) == 2 and values[0] > values[1]:
        return f"range {base!r} runs backwards"
    return None


def cron_min_interval_minutes(expr: str) -> int | None:
    """Return the smallest gap in minutes between runs within an hour, for engines with a floor.

    Only the minute field is examined (``*/2`` → 2, ``*`` → 1, ``0,30`` → 30); ``None`` for aliases.
    """
    fields = expr.split()
    if len(fields) != 5:
        return None
    minutes: set[int] = set()
    for part in fields[0].split(","):
        base, _, step = part.partition("/")
        stride = int(step) if step else 1
        if base == "*":
            start, end = 0, 59
        elif "-" in base:
            start, end = (int(x) for x in base.split("-"))
        else:
            start = end = int(base)
            if step:
                end = 59
        minutes.update(range(start, end + 1, stride))
    ordered = sorted(minutes)
    if len(ordered) == 1:
        return 60
    gaps = [b - a for a, b in itertools.pairwise(ordered)] + [60 - ordered[-1] + ordered[0]]
    return min(gaps)
