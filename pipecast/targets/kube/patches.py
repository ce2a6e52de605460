"""The escape hatch of every Kubernetes-based target: patches onto the pod spec and main container pipecast emits.

``pod_spec_patch`` and ``container_patch`` are merged the way ``kubectl patch --type=strategic`` merges a pod:
mappings key by key, the lists Kubernetes merges (volumes by name, volumeMounts by mountPath...) item by item,
any other list replaced. Keys pipecast owns (the command, image, env, resources, timeouts,
and the fields a typed setting writes) are refused with the setting to use instead.

At compile a patch is checked structurally: every key must be a field of the Kubernetes v1 ``PodSpec`` or
``Container`` and hold the JSON type the schema gives it. The tables below are read from the strict JSON schema
of Kubernetes 1.35 that ``kubernetes-validate`` bundles (Apache-2.0); the tests validate whole emitted objects
against that schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.targets.kube.pod import is_label_key, is_label_value

# io.k8s.api.core.v1.PodSpec, Kubernetes 1.35: field -> JSON type.
POD_SPEC_FIELDS: dict[str, type] = {
    "activeDeadlineSeconds": int, "affinity": dict, "automountServiceAccountToken": bool, "containers": list,
    "dnsConfig": dict, "dnsPolicy": str, "enableServiceLinks": bool, "ephemeralContainers": list,
    "hostAliases": list, "hostIPC": bool, "hostNetwork": bool, "hostPID": bool, "hostUsers": bool, "hostname": str,
    "hostnameOverride": str, "imagePullSecrets": list, "initContainers": list, "nodeName": str,
    "nodeSelector": dict, "os": dict, "overhead": dict, "preemptionPolicy": str, "priority": int,
    "priorityClassName": str, "readinessGates": list, "resourceClaims": list, "resources": dict,
    "restartPolicy": str, "runtimeClassName": str, "schedulerName": str, "schedulingGates": list,
    "securityContext": dict, "serviceAccount": str, "serviceAccountName": str, "setHostnameAsFQDN": bool,
    "shareProcessNamespace": bool, "subdomain": str, "terminationGracePeriodSeconds": int, "tolerations": list,
    "topologySpreadConstraints": list, "volumes": list, "workloadRef": dict,
}
# io.k8s.api.core.v1.Container, Kubernetes 1.35.
CONTAINER_FIELDS: dict[str, type] = {
    "args": list, "command": list, "env": list, "envFrom": list, "image": str, "imagePullPolicy": str,
    "lifecycle": dict, "livenessProbe": dict, "name": str, "ports": list, "readinessProbe": dict,
    "resizePolicy": list, "resources": dict, "restartPolicy": str, "restartPolicyRules": list,
    "securityContext": dict, "startupProbe": dict, "stdin": bool, "stdinOnce": bool, "terminationMessagePath": str,
    "terminationMessagePolicy": str, "tty": bool, "volumeDevices": list, "volumeMounts": list, "workingDir": str,
}
# io.k8s.api.core.v1.PodSecurityContext and Affinity, Kubernetes 1.35.
POD_SECURITY_CONTEXT_FIELDS: dict[str, type] = {
    "appArmorProfile": dict, "fsGroup": int, "fsGroupChangePolicy": str, "runAsGroup": int, "runAsNonRoot": bool,
    "runAsUser": int, "seLinuxChangePolicy": str, "seLinuxOptions": dict, "seccompProfile": dict,
    "supplementalGroups": list, "supplementalGroupsPolicy": str, "sysctls": list, "windowsOptions": dict,
}
AFFINITY_FIELDS: dict[str, type] = {"nodeAffinity": dict, "podAffinity": dict, "podAntiAffinity": dict}

# Pod spec fields pipecast writes itself, and what to use instead.
OWNED_POD_FIELDS: dict[str, str] = {
    "containers": "use container_patch for the step's container",
    "initContainers": "bake what the step needs into its image; pipecast's pods have one container",
    "activeDeadlineSeconds": "use the step's timeout=",
    "restartPolicy": "use the step's retry=; pipecast's pods never restart in place",
    "serviceAccountName": "use the service_account setting",
    "serviceAccount": "use the service_account setting",
    "nodeSelector": "use the node_selector setting",
    "tolerations": "use the tolerations setting",
    "imagePullSecrets": "use the image_pull_secrets setting",
    "affinity": "use the affinity setting",
    "securityContext": "use the security_context setting",
}
# Container fields pipecast writes itself.
OWNED_CONTAINER_FIELDS: dict[str, str] = {
    "name": "pipecast names the container",
    "image": "use the step's image=",
    "command": "pipecast's runtime command runs the step",
    "args": "pipecast's runtime command runs the step",
    "env": "use @step(env=...) or secrets=",
    "resources": "use @step(cpu=, memory=, gpu=) and the cpu_limit/memory_limit settings",
}
# The lists a strategic merge patch merges, by their item key (the patchMergeKey tags of k8s.io/api/core/v1
# types.go, Kubernetes 1.35); every other list is replaced.
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "imagePullSecrets": "name", "resourceClaims": "name", "schedulingGates": "name",
    "volumeMounts": "mountPath", "volumeDevices": "devicePath", "ports": "containerPort", "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}


def _type_name(kind: type) -> str:
    return {dict: "a mapping", list: "a list", str: "text", int: "a whole number", bool: "true or false"}[kind]


def _fits(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def fields_problem(value: Any, known: Mapping[str, type], what: str,
                   owned: Mapping[str, str] | None = None) -> str | None:
    """Why ``value`` is not a ``what`` (a mapping of ``known`` fields of their types, none of ``owned``), or None."""
    if not isinstance(value, Mapping):
        return f"is not a mapping of {what} fields"
    for key, item in value.items():
        if owned and key in owned:
            return f"sets {key!r}, which pipecast writes itself ({owned[key]})"
        if key not in known:
            return f"has {key!r}, which is not a field of a Kubernetes {what}"
        if not _fits(item, known[key]):
            return f"has {key!r} that is not {_type_name(known[key])}, as a Kubernetes {what} needs"
    return None


def pod_spec_patch_problem(value: Any) -> str | None:
    """Why ``value`` cannot patch a pipecast pod spec, or None."""
    return fields_problem(value, POD_SPEC_FIELDS, "PodSpec", OWNED_POD_FIELDS)


def container_patch_problem(value: Any) -> str | None:
    """Why ``value`` cannot patch pipecast's container, or None."""
    return fields_problem(value, CONTAINER_FIELDS, "Container", OWNED_CONTAINER_FIELDS)


def security_context_problem(value: Any) -> str | None:
    """Why ``value`` is not a pod securityContext, or None."""
    return fields_problem(value, POD_SECURITY_CONTEXT_FIELDS, "PodSecurityContext")


def affinity_problem(value: Any) -> str | None:
    """Why ``value`` is not a pod affinity, or None."""
    return fields_problem(value, AFFINITY_FIELDS, "Affinity")


def labels_problem(value: Mapping[str, str]) -> str | None:
    """Why ``value`` cannot be pod labels (Kubernetes' key and value rules, no ``pipecast.dev/`` key), or None."""
    bad = [key for key in value if not is_label_key(key)]
    if bad:
        return f"has key(s) {bad!r} that are not label keys"
    values = [item for item in value.values() if not is_label_value(item)]
    if values:
        return f"has value(s) {values!r} that are not label values (at most 63 letters, digits, '-', '_', '.')"
    return _reserved_problem(value)


def annotations_problem(value: Mapping[str, str]) -> str | None:
    """Why ``value`` cannot be pod annotations, or None."""
    bad = [key for key in value if not is_label_key(key)]
    if bad:
        return f"has key(s) {bad!r} that are not annotation keys"
    return _reserved_problem(value)


def _reserved_problem(value: Mapping[str, str]) -> str | None:
    reserved = [key for key in value if key.startswith("pipecast.dev/")]
    return f"has key(s) {reserved!r} under pipecast.dev/, which pipecast writes itself" if reserved else None


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """``patch`` merged onto ``base`` as a strategic merge patch of a pod does it (neither is changed).

    Mappings merge key by key; a list the Kubernetes API merges (:data:`MERGE_KEYS`) merges item by its key;
    any other list, and any other value, is replaced. ``field`` names the value, for the list rule.
    """
    if isinstance(base, Mapping) and isinstance(patch, Mapping):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value, key) if key in base else plain(value)
        return merged
    key = MERGE_KEYS.get(field)
    if key and _keyed_list(base, key) and _keyed_list(patch, key):
        items = {item[key]: dict(item) for item in base}
        for item in patch:
            items[item[key]] = strategic_merge(items[item[key]], item) if item[key] in items else plain(item)
        return list(items.values())
    return plain(patch)


def _keyed_list(value: Any, key: str) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(item, Mapping) and key in item for item in value)


def plain(value: Any) -> Any:
    """``value`` as plain dicts and lists (settings arrive as read-only mappings and tuples)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
