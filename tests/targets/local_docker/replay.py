"""Replaying a Compose project here: interpolation as Compose does it, services in depends_on order.

Only ``tests/targets/hyperai/fake_docker.py`` still uses this: the local_docker tests run the real Docker engine
and Compose v2 (``test_real_engine.py``) and read interpolation from ``docker compose config``. Remove this
module with that stand-in.

``interpolate`` follows compose-go's template rules (the pattern in ``template/template.go``): ``$$`` is a
literal ``$``; ``$VAR`` and ``${VAR}`` substitute; ``${VAR-d}``/``${VAR:-d}`` default, ``${VAR?e}``/``${VAR:?e}``
fail when unset (``:`` also when empty), ``${VAR+r}``/``${VAR:+r}`` replace; any other ``$`` is an
"invalid template" error, as in ``docker compose``. Substituted values are not interpolated again. Only
values are interpolated, never mapping keys (``recursiveInterpolate`` in compose-go's
``interpolation/interpolation.go`` keeps each key as written).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_PATTERN = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)|\{(?P<braced>[_a-z][_a-z0-9]*)"
    r"(?:(?P<op>:?[-+?])(?P<arg>[^}]*))?\}|(?P<invalid>))",
    re.IGNORECASE,
)


class TemplateError(ValueError):
    """What ``docker compose`` reports for a bad template or a missing required variable."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        name = match.group("braced")
        if name is None:
            raise TemplateError(f"invalid template: {text!r}")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        missing = value is None or (op is not None and op.startswith(":") and value == "")
        if op is None:
            return value or ""
        if op.endswith("-"):
            return arg if missing else str(value)
        if op.endswith("?"):
            if missing:
                raise TemplateError(f"required variable {name} is missing a value: {arg}")
            return str(value)
        return "" if missing else arg  # "+"

    return _PATTERN.sub(replace, text)


def interpolate_all(data: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value of a loaded Compose document (keys stay as written, as in compose-go)."""
    if isinstance(data, str):
        return interpolate(data, env)
    if isinstance(data, list):
        return [interpolate_all(v, env) for v in data]
    if isinstance(data, dict):
        return {k: interpolate_all(v, env) for k, v in data.items()}
    return data


def load(compose_text: str, env: Mapping[str, str]) -> dict[str, Any]:
    return interpolate_all(yaml.safe_load(compose_text), env)  # type: ignore[no-any-return]


def service_order(document: dict[str, Any]) -> list[str]:
    """Services so that each comes after everything in its ``depends_on`` (the file's own order on ties)."""
    services = document["services"]
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(services):
        ready = [n for n, s in services.items() if n not in done and set(s.get("depends_on", {})) <= done]
        assert ready, f"depends_on has a cycle among {sorted(set(services) - done)}"
        order.append(ready[0])
        done.add(ready[0])
    return order


def service_argv(service: dict[str, Any]) -> list[str]:
    """The container's command with bind mounts mapped to their host folders, ``python`` as this interpreter."""
    argv = list(service["command"])
    for volume in service.get("volumes", []):
        source, target = volume["source"], volume["target"]
        argv = [source + a[len(target):] if a == target or a.startswith(target + "/") else
                f"file://{source}{a[len('file://' + target):]}" if a.startswith(f"file://{target}") else a
                for a in argv]
    if Path(argv[0]).name in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def service_env(service: dict[str, Any], outer: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: values as written; a null takes the variable from ``outer``."""
    env = {}
    for name, value in (service.get("environment") or {}).items():
        if value is None:
            if name in outer:
                env[name] = outer[name]
        else:
            env[name] = str(value)
    return env
