"""``pipecast targets``: every flavor with its status, extra and capabilities.

Also the support matrix and each target's settings table, generated from the targets' own declarations
(README and docs hold copies that a test keeps equal).
"""

from __future__ import annotations

import json
from typing import Any

from pipecast.errors import PipecastError
from pipecast.targets.base import Feature, Support
from pipecast.targets.registry import all_targets

_MARK = {Support.NATIVE: "yes", Support.EMULATED: "emulated", Support.UNSUPPORTED: "no"}


def describe_targets(as_json: bool = False) -> str:
    """A table (or JSON) of the registered targets."""
    rows: list[dict[str, Any]] = []
    for target in all_targets():
        if isinstance(target, PipecastError):
            rows.append({"name": getattr(target, "target_name", "?"), "status": "broken", "description": str(target),
                         "extra": None, "sdk_installed": False, "capabilities": {}})
            continue
        rows.append({
            "name": target.name,
            "status": target.status,
            "description": target.description,
            "extra": target.extra,
            "sdk_installed": target.extra_installed(),
            "capabilities": {
                feature.value: {"support": cap.support.value, "note": cap.note}
                for feature, cap in ((f, target.capabilities.get(f)) for f in Feature) if cap is not None
            },
        })
    if as_json:
        return json.dumps(rows, indent=2) + "\n"
    lines = []
    for row in rows:
        extra = row["extra"]
        installed = "" if extra is None else (
            f"  [pipecast[{extra}] {'installed' if row['sdk_installed'] else 'not installed'}]")
        lines.append(f"{row['name']:<14} {row['status']:<12} {row['description']}{installed}")
        caps = row["capabilities"]
        for support in (Support.EMULATED, Support.UNSUPPORTED):
            named = [f"{k} ({v['note']})" if v["note"] else k for k, v in caps.items() if v["support"] == support.value]
            if named:
                lines.append(f"{'':<14} {_MARK[support]}: {'; '.join(named)}")
        native = [k for k, v in caps.items() if v["support"] == "native"]
        if native:
            lines.append(f"{'':<14} yes: {', '.join(native)}")
    return "\n".join(lines) + "\n"


_CELL = {Support.NATIVE: "✓", Support.EMULATED: "emulated", Support.UNSUPPORTED: "—"}


def support_matrix() -> str:
    """The Markdown support matrix: one row per feature, one column per built-in target.

    ✓ is native, "emulated" is provided by pipecast on that engine (its page says how), — is refused with a
    clear error when a pipeline uses it.
    """
    from pipecast.targets.registry import BUILTIN, get_target

    targets = [get_target(name) for name in BUILTIN]
    rows = ["| feature | " + " | ".join(f"`{t.name}`" for t in targets) + " |",
            "|---|" + "---|" * len(targets)]
    for feature in Feature:
        cells = [_CELL[t.capabilities[feature].support] for t in targets]
        rows.append(f"| {feature.value} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def describe_settings(name: str) -> str:
    """``pipecast targets --settings NAME``: the settings a target takes, generated from its settings class."""
    from pipecast.targets.registry import get_target
    from pipecast.targets.settings import settings_table

    target = get_target(name)
    head = (f"Settings of {target.name!r} (--set KEY=VALUE, or settings={{{target.name!r}: {{...}}}} on a pipeline "
            "or step):\n\n")
    body = settings_table(target.settings_class)
    if target.connection_class is not None:
        body += "\nConnection settings (pipecast submit -c KEY=VALUE):\n\n" + "".join(
            f"- {spec.name}: {spec.help}\n" for spec in sorted(target.connection_class.spec().values(),
                                                                key=lambda spec: spec.name))
    return head + body


def replace_between(text: str, marker: str, content: str) -> str:
    """``text`` with what stands between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` replaced."""
    start, end = f"<!-- {marker}:start -->\n", f"<!-- {marker}:end -->"
    head, found, rest = text.partition(start)
    if not found or end not in rest:
        raise ValueError(f"no {start.strip()} ... {end} markers")
    return head + start + content + end + rest.split(end, 1)[1]
