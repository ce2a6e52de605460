"""The Azure ML escape hatch: ``node_fields`` (each command node) and ``job_fields`` (the pipeline job).

Keys are fields of Azure ML's job YAML (the CLI v2 ``commandJob``/``pipelineJob`` schemas, as azure-ai-ml 1.35's
``CommandSchema``, ``JobResourceConfigurationSchema``, ``QueueSettingsSchema``, identity and
``PipelineJobSettingsSchema`` read them; MIT). azure-ai-ml passes an unknown key of a pipeline node through
to the service unchecked, so these tables are the check, at compile: every key must be a field holding the type
the schema gives it; the tests load the job with azure-ai-ml and read each field back from its REST body. Fields
pipecast writes are refused with the setting to use instead. Azure ML evaluates ``${{...}}`` in a job, so no
value may hold it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SHM_SIZE = re.compile(r"\d+[bkmg]")  # docker's --shm-size units, as JobResourceConfigurationSchema checks them
_IDENTITY_TYPES = ("managed", "managed_identity", "user_identity", "aml_token")

# field -> its kind: "text", "whole", "bool", "texts" (a mapping of text), "list" (of text), or a sub-table.
RESOURCES: dict[str, Any] = {"instance_count": "whole", "shm_size": "shm", "docker_args": "text",
                             "locations": "list", "properties": "texts"}
QUEUE_SETTINGS: dict[str, Any] = {"job_tier": ("spot", "basic", "standard", "premium", "null"),
                                  "priority": ("low", "medium", "high")}
IDENTITY: dict[str, Any] = {"type": _IDENTITY_TYPES, "client_id": "text", "object_id": "text",
                            "msi_resource_id": "text"}
NODE_FIELDS: dict[str, Any] = {"resources": RESOURCES, "queue_settings": QUEUE_SETTINGS, "identity": IDENTITY,
                               "tags": "texts", "properties": "texts"}
JOB_SETTINGS: dict[str, Any] = {"default_datastore": "text", "force_rerun": "bool"}
JOB_FIELDS: dict[str, Any] = {"identity": IDENTITY, "tags": "texts", "properties": "texts",
                              "settings": JOB_SETTINGS}

_PIPECAST = "pipecast writes it"
OWNED_NODE: dict[str, str] = {
    "compute": "use the compute setting", "environment_variables": "use @step(env=...)",
    "limits": "use @step(timeout=...) (limits.timeout covers every try)",
    "resources.instance_type": "use the instance_type setting", "type": _PIPECAST, "component": _PIPECAST,
    "command": "pipecast's runtime command runs the step",
    "environment": "use @step(image=...) or the image setting", "code": "the step's image holds its code",
    "inputs": "inputs are the pipeline's parameters and upstream steps", "outputs": "outputs travel through the "
    "artifact root", "display_name": "the node is named after its step", "name": "the node is named after its step",
    "description": "write the step's docstring",
    "distribution": "pipecast runs one command per node, not a distributed launcher",
    "services": "pipecast's nodes run a command, not interactive services",
}
OWNED_JOB: dict[str, str] = {
    "settings.default_compute": "use the compute setting",
    "settings.continue_on_step_failure": "use the continue_on_step_failure setting",
    "compute": "use the compute setting", "experiment_name": "use the experiment_name setting",
    "jobs": _PIPECAST, "inputs": "the pipeline's parameters are its inputs", "outputs": "outputs travel through "
    "the artifact root", "type": _PIPECAST, "display_name": "the job is named after the pipeline",
    "name": "pipecast submit names the job", "description": "write the pipeline's docstring",
    "services": "pipecast's jobs run commands, not interactive services", "component": _PIPECAST,
}


def _kind_problem(path: str, value: Any, kind: Any, owned: Mapping[str, str]) -> str | None:
    if isinstance(kind, dict):
        return _table_problem(value, kind, owned, path)
    if isinstance(kind, tuple):
        return None if value in kind else f"has {path!r} {value!r}, which is none of {list(kind)!r}"
    if not _fits(value, kind):
        what = {"text": "text", "bool": "true or false", "whole": "a whole number of at least 1",
                "shm": "a size such as '2g' (digits then b, k, m or g)", "list": "a list of text",
                "texts": "a mapping of text"}[kind]
        return f"has {path!r} that is not {what}"
    return None


def _fits(value: Any, kind: str) -> bool:
    if kind in ("text", "bool"):
        return isinstance(value, str if kind == "text" else bool)
    if kind == "whole":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if kind == "shm":
        return isinstance(value, str) and _SHM_SIZE.fullmatch(value) is not None
    if kind == "list":
        return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
    return isinstance(value, Mapping) and all(isinstance(item, str) for item in value.values())


def _table_problem(value: Any, table: Mapping[str, Any], owned: Mapping[str, str], path: str) -> str | None:
    if not isinstance(value, Mapping):
        return f"has {path!r} that is not a mapping" if path else "is not a mapping of Azure ML fields"
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if where in owned:  # owned fields by their dotted path
            return f"sets {where!r}, which pipecast cannot pass ({owned[where]})"
        if key not in table:
            return f"has {where!r}, which is not an Azure ML field pipecast passes ({', '.join(table)})"
        problem = _kind_problem(where, item, table[key], owned)
        if problem:
            return problem
    return None


def _expression_problem(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return next(filter(None, (_expression_problem(v) or _expression_problem(k) for k, v in value.items())), None)
    if isinstance(value, list | tuple):
        return next(filter(None, map(_expression_problem, value)), None)
    if isinstance(value, str) and "${{" in value:
        return f"holds {value!r}: Azure ML would read '${{{{...}}}}' as an expression"
    return None


def node_fields_problem(value: Any) -> str | None:
    """Why ``value`` cannot be ``node_fields``, or None."""
    return _table_problem(value, NODE_FIELDS, OWNED_NODE, "") or _expression_problem(value)


def job_fields_problem(value: Any) -> str | None:
    """Why ``value`` cannot be ``job_fields``, or None."""
    return _table_problem(value, JOB_FIELDS, OWNED_JOB, "") or _expression_problem(value)


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` (checked fields) merged onto what pipecast wrote: mappings key by key, the rest replaced."""
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = _plain(value)
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
