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
   output placeholders (pipecast uses none: the runtime reads its output paths from ``{{$}}``). It
   substitutes in the first command element only ``{{$}}`` (``compileCmdAndArgs`` applies the rest to a copy
   it then drops), and in args ``{{$}}`` first, then the others in the result. Everything else — a job
   placeholder in args included — stays literal.
4. The ExecutorInput (:func:`executor_input`): the driver gives each declared output parameter an
   ``outputFile`` and each output artifact a URI under the pipeline root (``<root>/<job uuid>/<task>/<name>``),
   and names the executor output file (``outputs.outputFile``). The files live in a folder of the replay's
   instead of ``/tmp/kfp/outputs`` and ``/tmp/kfp_outputs`` (launcher_v2.go, ``OutputMetadataFilepath``).
5. After the container exits 0, the launcher collects the outputs (:func:`collect_outputs`; launcher_v2.go
   ``getExecutorOutputFile``, ``collectOutputParameters``, ``uploadOutputArtifacts``,
   ``mergeRuntimeArtifacts``, ``LocalPathForURI``; ``objectstore.Config.KeyFromURI``;
   ``metadata.TextToPbValue``). Vertex AI's launcher is not public: the same rules are applied to it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

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
    pipeline_root: str = "minio://mlpipeline/v2/artifacts"  # KFP's default; the IR's defaultPipelineRoot wins
    makes_output_folders: bool = True  # launcher_v2.go prepareOutputFolders; Vertex AI documents none
    # taskFinalStatus inputs: KFP before 2.14 refuses the whole run ("task final status not supported yet",
    # backend/src/v2/compiler/argocompiler/dag.go at 2.4.0, addImplicitDependencies; added by #11953).
    final_status: bool = True
    # The state names a final status carries: KFP gives the group's MLMD execution state (driver/resolve.go,
    # GetLastKnownState: COMPLETE, FAILED, CANCELED); Vertex AI SUCCEEDED, FAILED, CANCELLED (kfp's
    # dsl.PipelineTaskFinalStatus.state documents those).
    states: tuple[tuple[str, str], ...] = (("COMPLETE", "COMPLETE"), ("FAILED", "FAILED"))
    # {{$.pipeline_job_schedule_time_utc}}, see pipecast/targets/kfpspec/schedule_time.py: "kfp-2.17" (the
    # schedule's tick, else the create time: cmd/driver/main.go resolvePipelineJobTimes), "literal" (KFP <= 2.15
    # leaves it: driver/resolve.go's default case), "vertex" (documented for scheduled runs only; else "").
    schedule_rule: str = "kfp-2.17"


KFP_2_17 = Engine("kfp-2.17", driver_resolves_args=True, pods=True)
KFP_2_4 = Engine("kfp-2.4", driver_resolves_args=False, pods=True, final_status=False, schedule_rule="literal")
VERTEX = Engine("vertex", driver_resolves_args=False, pods=False, pipeline_root="gs://replay-bucket/vertex-root",
                makes_output_folders=False, states=(("COMPLETE", "SUCCEEDED"), ("FAILED", "FAILED")),
                schedule_rule="vertex")

JOB_PLACEHOLDERS = ("{{$.pipeline_job_name}}", "{{$.pipeline_job_resource_name}}", "{{$.pipeline_job_uuid}}",
                    "{{$.pipeline_task_name}}", "{{$.pipeline_task_uuid}}", "{{$.pipeline_job_create_time_utc}}",
                    "{{$.pipeline_job_schedule_time_utc}}")
_INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['(.+?)']}}")  # driver/util.go fullInputParameterRe
_PRIMITIVE = {"STRING": str, "BOOLEAN": bool, "LIST": list, "STRUCT": dict, "TASK_FINAL_STATUS": dict}


@dataclass(frozen=True)
class Job:
    """The values the job placeholders resolve to for one run."""

    uuid: str
    display_name: str
    create_time: str = "2026-01-02T03:04:05Z"
    schedule_time: str | None = None  # a scheduled run's tick, as the driver formats it (RFC 3339, UTC)
    schedule_rule: str = "kfp-2.17"  # Engine.schedule_rule, set by resolve_task

    def value(self, placeholder: str, task: str, task_number: int) -> str:
        if placeholder == "{{$.pipeline_job_schedule_time_utc}}":
            return self._schedule_time()
        return {
            "{{$.pipeline_job_name}}": self.display_name,
            "{{$.pipeline_job_resource_name}}": f"run-resource-{self.uuid}",
            "{{$.pipeline_job_uuid}}": self.uuid,
            "{{$.pipeline_task_name}}": task,
            "{{$.pipeline_task_uuid}}": str(task_number),
            "{{$.pipeline_job_create_time_utc}}": self.create_time,
        }[placeholder]

    def _schedule_time(self) -> str:
        if self.schedule_rule == "literal":
            return "{{$.pipeline_job_schedule_time_utc}}"
        if self.schedule_rule == "vertex":  # documented for a scheduled run only: a one-off run gets the least, ""
            return self.schedule_time or ""  # (test_schedule_time.py tries the other values a backend gives)
        return self.create_time if self.schedule_time is None else self.schedule_time


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
                   task_name: str, task_number: int,
                   produced: Mapping[str, Mapping[str, Any]] | None = None,
                   final: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The driver's ``resolveInputs`` for a task: its executor input parameter values.

    ``root`` holds the inputs of the DAG the task is in (the run's parameters for the root DAG; a loop
    iteration's inputs, the item among them, inside a ``ParallelFor``); ``produced`` the output parameters of
    the tasks of that DAG that ran: a ``taskOutputParameter`` reads only those (``resolveTaskOutputParameter``
    looks the producer up among the parent DAG's sub-tasks, ``driver/resolver/parameters.go``); ``final`` the
    final status of those that ended, for ``taskFinalStatus`` (``driver/resolve.go``).
    """
    values: dict[str, Any] = {}
    for name, source in ((task.get("inputs") or {}).get("parameters") or {}).items():
        if "componentInputParameter" in source:
            value = root[source["componentInputParameter"]]
            assert value is not None, f"task {task_name!r}: input {name!r} resolves to null"
        elif "taskOutputParameter" in source:
            output = source["taskOutputParameter"]
            producer = (produced or {}).get(output["producerTask"])
            assert producer is not None, f"task {task_name!r}: producerTask {output['producerTask']!r} not found"
            assert output["outputParameterKey"] in producer, (
                f"task {task_name!r}: output parameter {output['outputParameterKey']!r} not found")
            value = producer[output["outputParameterKey"]]
        elif "taskFinalStatus" in source:
            producer = source["taskFinalStatus"]["producerTask"]
            assert producer in (final or {}), f"task {task_name!r}: producer task, {producer}, not in tasks"
            value = (final or {})[producer]
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


def executor_input(values: Mapping[str, Any], component: Mapping[str, Any], *, task_name: str, job: Job,
                   pipeline_root: str, folder: str) -> dict[str, Any]:
    """The task's ExecutorInput (protojson names): input values, and where each declared output goes."""
    definitions = component.get("outputDefinitions") or {}
    outputs: dict[str, Any] = {}
    if definitions.get("parameters"):
        outputs["parameters"] = {name: {"outputFile": f"{folder}/outputs/{name}"}
                                 for name in definitions["parameters"]}
    if definitions.get("artifacts"):
        outputs["artifacts"] = {name: {"artifacts": [{
            "name": name, "type": spec["artifactType"],
            "uri": f"{pipeline_root.rstrip('/')}/{job.uuid}/{task_name}/{name}"}]}
            for name, spec in definitions["artifacts"].items()}
    result: dict[str, Any] = {"inputs": {"parameterValues": dict(values)}}
    if outputs:
        outputs["outputFile"] = f"{folder}/kfp_outputs/output_metadata.json"
        result["outputs"] = outputs
    json_format.ParseDict(result, pipeline_spec_pb2.ExecutorInput())  # the message the engine really sends
    return result


def resolve_task(*, task: Mapping[str, Any], component: Mapping[str, Any], container: Mapping[str, Any],
                 root: Mapping[str, Any], job: Job, task_name: str, task_number: int, engine: Engine,
                 extra_env: Mapping[str, str] | None = None, folder: str = "/tmp/kfp-replay",
                 pipeline_root: str | None = None, produced: Mapping[str, Mapping[str, Any]] | None = None,
                 final: Mapping[str, Any] | None = None) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """The argv and environment the task's process starts with on ``engine``, and its ExecutorInput."""
    declared = ((component.get("inputDefinitions") or {}).get("parameters")) or {}
    job = dataclasses.replace(job, schedule_rule=engine.schedule_rule)
    values = resolve_inputs(task, declared, root, job, task_name, task_number, produced, final)
    inputs = executor_input(values, component, task_name=task_name, job=job,
                            pipeline_root=pipeline_root or engine.pipeline_root, folder=folder)
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
    return _launcher_substitute(argv, values, inputs), env, inputs


def _driver_substitute(text: str, values: Mapping[str, Any]) -> str:
    assert not text.lstrip().startswith('{"IfPresent":'), "IfPresent args are not modelled"

    def one(match: re.Match[str]) -> str:
        assert match[1] in values, f"parameter {match[1]!r} not found in executor input"
        return _driver_text(values[match[1]])

    return _INPUT_PLACEHOLDER.sub(one, text)


def _launcher_substitute(argv: Sequence[str], values: Mapping[str, Any], inputs: Mapping[str, Any]) -> list[str]:
    executor_input = go_json(inputs)  # {{$}}: protojson.Marshal(executorInput)
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


@dataclass(frozen=True)
class TaskOutputs:
    """What the launcher recorded for a task: its output parameters and output artifacts, by name."""

    parameters: dict[str, Any]
    artifacts: dict[str, dict[str, Any]]


def prepare_output_folders(inputs: Mapping[str, Any], engine: Engine) -> None:
    """``prepareOutputFolders``: the KFP launcher makes each output parameter file's folder before the run."""
    if engine.makes_output_folders:
        for spec in ((inputs.get("outputs") or {}).get("parameters") or {}).values():
            os.makedirs(os.path.dirname(spec["outputFile"]), exist_ok=True)


def collect_outputs(component: Mapping[str, Any], inputs: Mapping[str, Any], pipeline_root: str) -> TaskOutputs:
    """The launcher's collection after the container exited 0; AssertionError where the launcher fails the task."""
    outputs = inputs.get("outputs") or {}
    executor_output: dict[str, Any] = {}
    path = outputs.get("outputFile")
    if path and os.path.exists(path):  # getExecutorOutputFile: a missing file is an empty ExecutorOutput
        with open(path, encoding="utf-8") as handle:  # protojson.Unmarshal: unknown fields are errors
            message = json_format.Parse(handle.read(), pipeline_spec_pb2.ExecutorOutput())
        executor_output = json_format.MessageToDict(message)
    parameters = dict(executor_output.get("parameterValues") or {})
    declared = (component.get("outputDefinitions") or {}).get("parameters") or {}
    for name, spec in (outputs.get("parameters") or {}).items():
        if name in parameters:  # "output metadata file has the highest priority"
            continue
        assert name in declared, f"failed to find output parameter name={name!r} in component spec"
        where = f"failed to read output parameter name={name!r} path={spec['outputFile']!r}"
        assert os.path.isfile(spec["outputFile"]), f"{where}: no such file"
        with open(spec["outputFile"], encoding="utf-8") as handle:
            parameters[name] = text_to_pb_value(handle.read(), declared[name]["parameterType"], where)
    artifacts = {}
    for name, listed in (outputs.get("artifacts") or {}).items():
        artifact = dict(listed["artifacts"][0])
        produced = ((executor_output.get("artifacts") or {}).get(name) or {}).get("artifacts") or []
        if produced:  # mergeRuntimeArtifacts
            if produced[0].get("uri"):
                artifact["uri"] = produced[0]["uri"]
            if produced[0].get("metadata") is not None:
                artifact["metadata"] = {**(artifact.get("metadata") or {}), **produced[0]["metadata"]}
        scheme = artifact["uri"].partition("://")[0]
        if scheme in ("gs", "minio", "s3"):  # LocalPathForURI knows it: the launcher uploads it (KeyFromURI)
            root_scheme, _, rest = pipeline_root.partition("://")
            bucket = f"{root_scheme}://{rest.split('/')[0]}"  # Config.PrefixedBucket of the pipeline root
            assert artifact["uri"].startswith(bucket), (
                f"failed to upload output artifact {name!r}: URI {artifact['uri']!r} does not have expected bucket "
                f"prefix {bucket!r}")
        artifacts[name] = artifact
    return TaskOutputs(parameters, artifacts)


_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_FLOAT = re.compile(r"[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)
_GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
            "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def text_to_pb_value(text: str, kind: str, where: str) -> Any:
    """``metadata.TextToPbValue``: an output parameter file's text as a protobuf Value (numbers are doubles)."""
    stripped = text.strip()  # strings.TrimSpace, for every type but STRING
    if kind == "STRING":
        return text
    if kind == "NUMBER_INTEGER":
        assert _GO_INT.fullmatch(stripped) and -(2 ** 63) <= int(stripped) < 2 ** 63, f"{where}: ParseInt {text!r}"
        return float(int(stripped))
    if kind == "NUMBER_DOUBLE":
        assert _GO_FLOAT.fullmatch(stripped), f"{where}: ParseFloat {text!r}"
        return float(stripped)
    if kind == "BOOLEAN":
        assert stripped in _GO_BOOL, f"{where}: ParseBool {text!r}"
        return _GO_BOOL[stripped]
    return as_proto_value(json.loads(text))  # LIST, STRUCT: protojson
