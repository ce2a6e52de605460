"""What Kubernetes itself does to a container's text, for replays of Kubernetes-based engines, and the
"strictify" recipe that makes a CRD/JSON schema reject unknown fields (``kubectl --validate=strict``).

The kubelet expands ``$(VAR)`` in a container's ``command``, ``args`` and env ``value`` from the env
defined before it, leaves unknown references as written and turns ``$$`` into ``$``
(``k8s.io/kubernetes/third_party/forked/golang/expansion``, ported below line for line).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def kubelet_expand(text: str, env: Mapping[str, str]) -> str:
    """``expansion.Expand(text, MappingFuncFor(env))`` as the kubelet runs it."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable(text[cursor + 1:])
            out.append((env[read] if read in env else f"$({read})") if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def _read_variable(rest: str) -> tuple[str, bool, int]:
    if rest[0] == "$":
        return "$", False, 1
    if rest[0] == "(":
        for index in range(1, len(rest)):
            if rest[index] == ")":
                return rest[1:index], True, index + 1
        return "$(", False, 1
    return "$" + rest[0], False, 1


def container_env(env: Sequence[Mapping[str, Any]], secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment the kubelet builds from a container's ``env`` list.

    Each value is expanded against the variables defined before it; ``secretKeyRef`` entries take the
    value the test supplies for ``(secret, key)`` as ``"secret/key"`` (or are left out when not given).
    """
    result: dict[str, str] = {}
    for item in env:
        if "value" in item:
            result[item["name"]] = kubelet_expand(str(item["value"]), result)
        else:
            ref = item.get("valueFrom", {}).get("secretKeyRef", {})
            key = f"{ref.get('name')}/{ref.get('key')}"
            if secrets and key in secrets:
                result[item["name"]] = secrets[key]
    return result


def container_argv(command: Sequence[str], args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``command + args`` after the kubelet's expansion against the container's env."""
    return [kubelet_expand(part, env) for part in [*command, *args]]


def strictify(schema: Any) -> Any:
    """Set ``additionalProperties: false`` on every object schema with ``properties`` that allows more.

    Walks schema keywords only, so a field that happens to be called ``properties`` is not mistaken for
    the keyword. Objects marked ``x-kubernetes-preserve-unknown-fields`` stay open, as in Kubernetes.
    """
    if not isinstance(schema, dict):
        return schema
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    for keyword in ("properties", "patternProperties", "definitions", "$defs"):
        for sub in (schema.get(keyword) or {}).values():
            strictify(sub)
    for keyword in ("items", "additionalProperties", "not", "if", "then", "else"):
        strictify(schema.get(keyword))
    for keyword in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(keyword) or []:
            strictify(sub)
    return schema
