"""``pipecast targets``: every flavor with its status, extra and capabilities."""

from __future__ import annotations

import json
from typing import Any

from pipecast.errors import PipecastError
from pipecast.targets.base import Feature, Support
from pipecast.targets.registry import all_targets, extra_installed

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
            "sdk_installed": extra_installed(target),
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
