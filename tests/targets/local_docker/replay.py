"""Replaying a Compose project here: interpolation as Compose does it, services in depends_on order.

``interpolate`` follows compose-go's template rules (the pattern in ``template/template.go``): ``$$`` is a
literal ``$``; ``$VAR`` and ``${VAR}`` substitute; ``${VAR-d}``/``${VAR:-d}`` default, ``${VAR?e}``/``${VAR:?e}``
fail when unset (``:`` also when empty), ``${VAR+r}``/``${VAR:+r}`` replace; any other ``$`` is an
"invalid template" error, as in ``docker compose``. Substituted values are not interpolated again. Only
values are interpolated, never mapping keys (``recursiveInterpolate`` in compose-go's
``interpolation/interpolation.go`` keeps each key as written).
"""

from __future__ import annotations

import os
import re
import subprocess
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


def run_project(document: dict[str, Any], outer: Mapping[str, str], base_env: Mapping[str, str]) -> int:
    """Run every service in order, as ``up --abort-on-container-failure`` would; the first failure's code."""
    for name in service_order(document):
        service = document["services"][name]
        result = subprocess.run(service_argv(service), env={**base_env, **service_env(service, outer)},
                                capture_output=True, text=True, timeout=300)
        sys.stdout.write(f"{name} exited with code {result.returncode}\n")
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            return result.returncode
    return 0


def main(argv: list[str]) -> int:
    """A stand-in ``docker`` CLI for tests: logs each call to ``$FAKE_DOCKER_LOG``; see ``$FAKE_DOCKER``."""
    import json

    with open(os.environ["FAKE_DOCKER_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"argv": argv, "env": {k: v for k, v in os.environ.items()
                                                    if k.startswith("PIPECAST_")}}) + "\n")
    mode = os.environ.get("FAKE_DOCKER", "ok")
    if argv[:1] == ["info"]:
        if mode == "no-engine":
            sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                             "Is the docker daemon running?\n")
            return 1
        print("28.2.2")
        return 0
    if argv[:2] == ["compose", "version"]:
        if mode == "no-compose":
            sys.stderr.write("docker: unknown command: docker compose\n")
            return 1
        print("Docker Compose version v2.39.1")
        return 0
    if argv[:1] == ["compose"] and "up" in argv:
        compose_file = argv[argv.index("--file") + 1]
        document = load(Path(compose_file).read_text(encoding="utf-8"), os.environ)
        base = {k: v for k, v in os.environ.items() if not k.startswith("PIPECAST_")}
        return run_project(document, os.environ, base)
    if argv[:1] == ["compose"] and "down" in argv:
        return 0
    sys.stderr.write(f"fake docker: unexpected {argv}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
