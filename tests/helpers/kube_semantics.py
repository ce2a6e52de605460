"""What Kubernetes itself does to a container's text, for replays of Kubernetes-based engines, and the
"strictify" recipe that makes a CRD/JSON schema reject unknown fields (``kubectl --validate=strict``).

The kubelet (``pkg/kubelet/kubelet_pods.go`` makeEnvironmentVariables, ``pkg/kubelet/container/helpers.go``
ExpandContainerCommandAndArgs; the expansion is ``third_party/forked/golang/expansion``, ported below line
for line) does exactly this and nothing more:

- an env ``value`` is expanded: ``$(NAME)`` becomes the value of NAME when the container defines NAME in an
  earlier env entry or NAME is a service-link variable of the namespace (always ``KUBERNETES_SERVICE_HOST``
  and friends, for the API server's own Service); ``$$`` becomes ``$``; anything else stays as written;
- ``command`` and ``args`` are expanded the same way against the container's whole env;
- an env ``valueFrom`` (``fieldRef``, ``secretKeyRef``) is never expanded: the downward API gives the
  pod's field as it is (an annotation or label that does not exist gives ``""``).

Replays pass the service-link variables to the expansion only; they do not put them in the step's process
env (the runtime never reads them, and a driver would take them for in-cluster credentials).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# The service-link env of the API server's ``kubernetes`` Service in the default namespace's cluster IP range.
SERVICE_ENV = {
    "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
    "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
    "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
}
_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


def kubelet_expand(text: str, env: Mapping[str, str]) -> str:
    """``expansion.Expand(text, MappingFuncFor(env, serviceEnv))`` as the kubelet runs it."""
    variables = {**SERVICE_ENV, **env}
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable(text[cursor + 1:])
            out.append((variables[read] if read in variables else f"$({read})") if is_var else read)
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


def downward_field(path: str, pod: Mapping[str, Any]) -> str:
    """The value the downward API gives a ``fieldRef`` (``pod``: ``name``, ``namespace``, ``uid``, ``labels``,
    ``annotations``); a label or annotation that does not exist gives ``""``."""
    found = _FIELD.fullmatch(path)
    if found:
        return str((pod.get(found.group(1)) or {}).get(found.group(2), ""))
    field = path.removeprefix("metadata.")
    assert field in ("name", "namespace", "uid") and field in pod, f"fieldRef {path!r} is not simulated"
    return str(pod[field])


def container_env(env: Sequence[Mapping[str, Any]], secrets: Mapping[str, str] | None = None,
                  pod: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The env a container's ``env`` list declares, as the kubelet builds it.

    Each ``value`` is expanded against the variables defined before it; ``secretKeyRef`` entries take the
    value the test supplies for ``(secret, key)`` as ``"secret/key"`` (or are left out when not given);
    ``fieldRef`` entries read ``pod`` through :func:`downward_field`.
    """
    result: dict[str, str] = {}
    for item in env:
        if "value" in item:
            result[item["name"]] = kubelet_expand(str(item["value"]), result)
            continue
        source = item.get("valueFrom", {})
        if "fieldRef" in source:
            result[item["name"]] = downward_field(source["fieldRef"]["fieldPath"], pod or {})
            continue
        ref = source.get("secretKeyRef", {})
        assert ref, f"env source {source!r} is not simulated"
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
