"""What the KFP backend and Vertex AI do to a task's inputs and command before its container runs.

The replayer (:mod:`.support`) hands each task to :func:`resolve_task`, which does exactly what the engine
does, and nothing more (DESIGN §4: a replay more generous than the engine proves nothing). Modelled on the
kubeflow/pipelines backend at 2.17.0 (paths below are in that repository):

1. Root inputs are the run's parameters, missing ones filled with the root defaults
   (``backend/src/v2/compiler/argocompiler/argo.go``: "fill root component default parameters").
2. The driver resolves each task input (``backend/src/v2/driver/resolve.go``, ``resolveInputParameter``):
   ``componentInputParameter`` reads a root input; a ``runtimeValue.constant`` that *is* one of the job
   placeholders (``{{$.pipeline_job_uuid}}``, ``{{$.pipeline_job_name}}``, …; whole-string match) becomes
   the job's value, any other constant stays as written. Values are then type-checked
   (``handleParamTypeValidationAndConversion``).
3. Command and args:
   - KFP >= 2.17: the driver substitutes ``{{$.inputs.parameters['x']}}`` in command and args
     (``driver/util.go``, ``resolveContainerArgs``/``pbValueToString``; args holding ``$.outputs`` are
     skipped) and writes them into the pod, where the kubelet expands ``$(VAR)`` and ``$$``; the launcher
     then substitutes its placeholders once more in what is left (``component/launcher_v2.go``,
     ``compileCmdAndArgs``/``getPlaceholders``).
   - KFP 2.4 to 2.16: the pod holds the templates (the kubelet's expansion touches only their text) and the
     launcher substitutes.
   - Vertex AI: its launcher is not public; it substitutes the same input placeholders (the KFP SDK's
     contract) and, unlike the KFP backend, also job placeholders written straight into args (Google's own
     Vertex-only components do that: ``components/google-cloud/google_cloud_pipeline_components/preview/
     automl/tabular/feature_transform_engine.py``). The model substitutes input placeholders only: what both
     engines do, so nothing passes here that fails on KFP. Args are not expanded (undocumented); env values
     are, as ``google.cloud.aiplatform_v1.types.EnvVar`` documents.
   The launcher's placeholders: ``{{$}}`` (the ExecutorInput as JSON), ``{{$.inputs.parameters['x']}}`` and
   output placeholders (pipecast declares no outputs). It substitutes in the first command element only
   ``{{$}}`` (``compileCmdAndArgs`` applies the rest to a copy it then drops). Everything else — a job
   placeholder in args included — stays literal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.helpers.kube_semantics import container_argv, container_env


@dataclass(frozen=True)
class Engine:
    """One engine's substitution behaviour.

    Attributes:
        name: For test ids.
        driver_resolves_args: KFP >= 2.17's driver substitutes input placeholders into the pod's args.
        pods: The task is a Kubernetes pod: the kubelet expands ``$(VAR)``/``$$`` in command and args.
    """

    name: str
    driver_resolves_args: bool
    pods: bool


KFP_2_17 = Engine("kfp-2.17", driver_resolves_args=True, pods=True)
KFP_2_4 = Engine("kfp-2.4", driver_resolves_args=False, pods=True)
VERTEX = Engine("vertex", driver_resolves_args=False, pods=False)

JOB_PLACEHOLDERS = ("{{$.pipeline_job_name}}", "{{$.pipeline_job_resource_name}}", "{{$.pipeline_job_uuid}}",
                    "{{$.pipeline_task_name}}", "{{$.pipeline_task_uuid}}", "{{$.pipeline_job_create_time_utc}}",
                    "{{$.pipeline_job_schedule_time_utc}}")
_INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['(.+?)']}}")  # driver/util.go fullInputParameterRe
_PRIMITIVE = {"STRING": str, "BOOLEAN": bool, "LIST": list, "STRUCT": dict}


@dataclass(frozen=True)
class Job:
    """The values the job placeholders resolve to for one run."""

    uuid: str
    display_name: str
    create_time: str = "2026-01-02T03:04:05Z"

    def value(self, placeholder: str, task: str, task_number: int) -> str:
        return {
            "{{$.pipeline_job_name}}": self.display_name,
            "{{$.pipeline_job_resource_name}}": f"run-resource-{self.uuid}",
            "{{$.pipeline_job_uuid}}": self.uuid,
            "{{$.pipeline_task_name}}": task,
            "{{$.pipeline_task_uuid}}": str(task_number),
            "{{$.pipeline_job_create_time_utc}}": self.create_time,
            "{{$.pipeline_job_schedule_time_utc}}": self.create_time,
        }[placeholder]


def as_proto_value(value: Any) -> Any:
    """A JSON value as a ``google.protobuf.Value`` holds it: every number a double."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): as_proto_value(v) for k, v in value.items()}
    return [as_proto_value(v) for v in value]


def resolve_inputs(task: Mapping[str, Any], declared: Mapping[str, Any], root: Mapping[str, Any], job: Job,
                   task_name: str, task_number: int) -> dict[str, Any]:
    """The driver's ``resolveInputs`` for a root-DAG task: its executor input parameter values."""
    values: dict[str, Any] = {}
    for name, source in ((task.get("inputs") or {}).get("parameters") or {}).items():
        if "componentInputParameter" in source:
            value = root[source["componentInputParameter"]]
            assert value is not None, f"task {task_name!r}: input {name!r} resolves to null"
        elif "runtimeValue" in source:
            constant = source["runtimeValue"]["constant"]
            value = job.value(constant, task_name, task_number) if constant in JOB_PLACEHOLDERS else constant
        else:
            raise AssertionError(f"task {task_name!r}: input {name!r} has a source the replay does not model: {source}")
        values[name] = as_proto_value(value)
    for name, spec in declared.items():
        if name not in values:
            assert spec.get("isOptional") or "defaultValue" in spec, f"{task_name!r}: no value for {name!r}"
            continue
        kind, value = spec["parameterType"], values[name]
        if kind == "STRING" and not isinstance(value, str):
            values[name] = _launcher_text(value)  # metadata.PbValueToText
        elif kind in ("NUMBER_INTEGER", "NUMBER_DOUBLE"):
            assert isinstance(value, float), f"{task_name!r}: input {name!r} type mismatch: expect {kind}"
        elif kind != "STRING":
            assert isinstance(value, _PRIMITIVE[kind]), f"{task_name!r}: input {name!r} type mismatch: expect {kind}"
    return values


def resolve_task(*, task: Mapping[str, Any], component: Mapping[str, Any], container: Mapping[str, Any],
                 root: Mapping[str, Any], job: Job, task_name: str, task_number: int, engine: Engine,
                 extra_env: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The argv and environment the task's process starts with on ``engine``."""
    declared = ((component.get("inputDefinitions") or {}).get("parameters")) or {}
    values = resolve_inputs(task, declared, root, job, task_name, task_number)
    env = container_env(container.get("env") or [])  # the kubelet's expansion; Vertex's EnvVar documents the same
    env.update(extra_env or {})
    command, args = list(container["command"]), list(container.get("args") or [])
    if engine.driver_resolves_args:
        command = [_driver_substitute(part, values) for part in command]
        args = [part if "$.outputs" in part else _driver_substitute(part, values) for part in args]
    if engine.pods:
        argv = container_argv(command, args, env)
    else:
        argv = [*command, *args]
    return _launcher_substitute(argv, values), env


def _driver_substitute(text: str, values: Mapping[str, Any]) -> str:
    assert not text.lstrip().startswith('{"IfPresent":'), "IfPresent args are not modelled"

    def one(match: re.Match[str]) -> str:
        assert match[1] in values, f"parameter {match[1]!r} not found in executor input"
        return _driver_text(values[match[1]])

    return _INPUT_PLACEHOLDER.sub(one, text)


def _launcher_substitute(argv: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    executor_input = go_json({"inputs": {"parameterValues": values}})  # {{$}}: the ExecutorInput, abridged
    # getPlaceholders' map is iterated in Go's random order; sorted here, which matters only for a value
    # holding another placeholder's text.
    replacements = sorted((f"{{{{$.inputs.parameters['{name}']}}}}", _launcher_text(value))
                          for name, value in values.items())
    result = [argv[0].replace("{{$}}", executor_input)]
    for part in argv[1:]:
        part = part.replace("{{$}}", executor_input)
        for placeholder, replacement in replacements:
            part = part.replace(placeholder, replacement)
        result.append(part)
    return result


def _driver_text(value: Any) -> str:
    """``pbValueToString`` (driver/util.go)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else go_format_g(value)
    return go_json(value)


def _launcher_text(value: Any) -> str:
    """``getPlaceholders``' text of an input parameter (launcher_v2.go), also ``metadata.PbValueToText``."""
    assert value is not None, "the launcher has no text for a null value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return go_format_f(value)
    return go_json(value)


def _digits(x: float) -> tuple[str, int]:
    """The shortest decimal digits of ``abs(x)`` and the decimal point's position (strconv's ``digs.d``/``dp``)."""
    _, digits, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    assert isinstance(exponent, int)
    return "".join(map(str, digits)), len(digits) + exponent


def go_format_f(x: float) -> str:
    """``strconv.FormatFloat(x, 'f', -1, 64)``."""
    if x == 0:
        return "0"
    digits, point = _digits(x)
    if point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return ("-" if x < 0 else "") + text


def _go_format_e(x: float) -> str:
    digits, point = _digits(x)
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exponent = point - 1
    return f"{'-' if x < 0 else ''}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"


def go_format_g(x: float) -> str:
    """``fmt.Sprintf("%g", x)``: shortest digits, ``%e`` when the exponent is < -4 or >= 6."""
    if x == 0:
        return "0"
    exponent = _digits(x)[1] - 1
    return _go_format_e(x) if exponent < -4 or exponent >= 6 else go_format_f(x)


def _go_json_number(x: float) -> str:
    """encoding/json's (and protojson's) float64: ``'f'``, or ``'e'`` below 1e-6 or from 1e21, ``e-07`` → ``e-7``."""
    if x != 0 and (abs(x) < 1e-6 or abs(x) >= 1e21):
        return re.sub(r"e([+-])0(\d)$", r"e\1\2", _go_format_e(x))
    return go_format_f(x)


def go_json(value: Any) -> str:
    """Go's ``json.Marshal`` of a protobuf Value's content: sorted keys, compact, HTML characters escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _go_json_number(float(value))
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                              ("\u2029", "\\u2029")):
            text = text.replace(char, escaped)
        return text
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{go_json(str(k))}:{go_json(value[k])}" for k in sorted(value)) + "}"
    return "[" + ",".join(go_json(item) for item in value) + "]"
