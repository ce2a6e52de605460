"""Lowering pipecast's IR to the KFP pipeline IR (PipelineSpec 2.1.0), built as data.

Every step becomes one component (``comp-<task>``), one container executor (``exec-<task>``) running
``python -m pipecast.runtime run …`` in the step's image, and one task of the root DAG. Pipeline
parameters are typed root inputs with defaults, wired into each task that reads them
(``componentInputParameter``) and substituted by the engine into the runtime's arguments as
``{{$.inputs.parameters['name']}}``. Data moves through pipecast's artifact store, so an upstream
edge (data or ``.after()``) is a ``dependentTasks`` entry. The run id reaches every task the way the kfp
compiler passes ``dsl.PIPELINE_JOB_ID_PLACEHOLDER`` to a task (see :data:`RUN_ID_INPUT`). Keys are written
in KFP's own order (the KFP compiler sorts them), and nothing in the file depends on the SDK version, the
clock or the machine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names, pipeline_resource_name
from pipecast.compiler.units import parse_quantity
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.targets import kube
from pipecast.targets.base import Bundle, EmitContext
from pipecast.targets.kfpspec import settings as kfp_settings
from pipecast.targets.serialize import dump_yaml

SCHEMA_VERSION = "2.1.0"
# A fixed producer name instead of a version: the bytes must not change when pipecast or kfp is upgraded.
SDK_VERSION = "pipecast"
JOB_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"  # kfp.dsl.PIPELINE_JOB_ID_PLACEHOLDER
# The run id is a component input whose task argument is the runtime constant JOB_ID_PLACEHOLDER, read in the
# args as {{$.inputs.parameters['pipecast_run_id']}}: what kfp 2.17's compiler emits for
# `task(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)` (kfp/compiler/pipeline_spec_builder.py, build_task_spec_for_task:
# a str argument becomes `runtime_value.constant`). Job placeholders are resolved only there: the KFP backend's
# driver swaps a runtime constant that *is* `{{$.pipeline_job_uuid}}` for the run's id
# (backend/src/v2/driver/resolve.go, resolveInputParameter, KFP >= 2.4: kubeflow/pipelines#11599, #10453),
# while the launcher substitutes only input/output placeholders into args (backend/src/v2/component/
# launcher_v2.go, getPlaceholders), so `{{$.pipeline_job_uuid}}` written into args stays literal and every run
# would share one run folder. Vertex AI resolves the same runtime constants (the kfp SDK documents the
# placeholder as a task argument for both engines, dsl.PIPELINE_JOB_ID_PLACEHOLDER).
RUN_ID_INPUT = "pipecast_run_id"

PARAMETER_TYPES: Mapping[ir.TypeName, str] = {
    ir.TypeName.STR: "STRING",
    ir.TypeName.INT: "NUMBER_INTEGER",
    ir.TypeName.FLOAT: "NUMBER_DOUBLE",
    ir.TypeName.BOOL: "BOOLEAN",
    ir.TypeName.DICT: "STRUCT",
    ir.TypeName.LIST: "LIST",
    # An untyped parameter travels as JSON text; the runtime decodes ``any:`` values with json.loads.
    ir.TypeName.ANY: "STRING",
}

# KFP's retry window (backoffMaxDuration): the SDK's default and the longest KFP documents.
RETRY_WINDOW_SECONDS = 3600.0

# Vertex AI accelerator types (google.cloud.aiplatform_v1.types.AcceleratorType, aiplatform 2.7), copied so
# that emitting never imports the SDK.
VERTEX_ACCELERATORS = frozenset({
    "NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_L4", "NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB", "NVIDIA_B200", "NVIDIA_GB200", "NVIDIA_RTX_PRO_6000", "TPU_V2", "TPU_V3",
    "TPU_V4_POD", "TPU_V5_LITEPOD",
})


@dataclass(frozen=True, slots=True)
class KfpFlavor:
    """How one engine that runs the KFP IR differs from the others.

    Attributes:
        engine: The target name (also its naming rule).
        title: The engine's name in the file header and messages.
        kubernetes_platform: Whether the engine reads the Kubernetes platform spec (secrets as env, node
            selectors, tolerations, ``activeDeadlineSeconds``). Vertex AI does not.
        resource_requests: Whether cpu/memory requests are emitted besides limits (Vertex sizes machines
            from limits only).
        accelerator: Maps a step's ``gpu_type`` to the engine's accelerator name; ``None`` if unknown.
        known_settings: Every setting key the target reads (compile and connection settings).
        size_limit: Largest IR in bytes the engine accepts, or ``None``.
        size_reason: Why that limit exists, for the message.
    """

    engine: str
    title: str
    kubernetes_platform: bool
    resource_requests: bool
    accelerator: Callable[[str | None], str | None]
    known_settings: frozenset[str]
    size_limit: int | None = None
    size_reason: str = ""


def input_placeholder(name: str) -> str:
    """KFP's placeholder for a component input parameter."""
    return "{{$.inputs.parameters['" + name + "']}}"


def kubernetes_accelerator(gpu_type: str | None) -> str:
    """The Kubernetes extended resource KFP requests for a GPU (``nvidia.com/gpu``, ``amd.com/gpu``)."""
    return kube.gpu_resource_name(gpu_type)


def vertex_accelerator(gpu_type: str | None) -> str | None:
    """The Vertex AI accelerator type for ``gpu_type`` (``nvidia-tesla-t4`` → ``NVIDIA_TESLA_T4``)."""
    if not gpu_type:
        return None
    candidate = re.sub(r"[^A-Za-z0-9]+", "_", gpu_type).strip("_").upper()
    return candidate if candidate in VERTEX_ACCELERATORS else None


def duration(seconds: float) -> str:
    """A protobuf Duration in JSON form (``30s``, ``1.5s``)."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.9f}".rstrip("0") + "s"


def parameter_default(param: ir.Parameter) -> Any:
    """A parameter's default as the IR holds it (JSON text for untyped parameters)."""
    if param.type is ir.TypeName.ANY:
        return param.default_json
    return param.default


def emit_pipeline(pipeline: ir.Pipeline, context: EmitContext, flavor: KfpFlavor) -> Bundle:
    """Lower ``pipeline`` to one IR YAML file (plus the Kubernetes platform spec where the engine reads it)."""
    kfp_settings.check_keys(pipeline, context, flavor.known_settings)
    common = kfp_settings.read_common(pipeline, context)
    tasks_by_step = engine_names(flavor.engine, [s.name for s in pipeline.steps],
                                 locations={s.name: str(s.location) for s in pipeline.steps}, target=flavor.engine)
    syntax = EngineSyntax(run_id=input_placeholder(RUN_ID_INPUT), parameter=lambda p: input_placeholder(p.name),
                          artifact_root=common.artifact_root, python=common.python)
    components: dict[str, Any] = {}
    executors: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    platform: dict[str, Any] = {}
    params = {p.name: p for p in pipeline.parameters}
    if RUN_ID_INPUT in params:
        context.error(f"parameter {RUN_ID_INPUT!r} has the name of the input that carries the run id into every "
                      f"{flavor.title} task",
                      fix=f"rename the parameter (names starting with 'pipecast_' are the {flavor.engine} "
                          "target's own)")
    if flavor.kubernetes_platform:
        _check_secret_names(pipeline, context)
    for step in sorted(pipeline.steps, key=lambda s: tasks_by_step[s.name]):
        task_name = tasks_by_step[step.name]
        component, executor = f"comp-{task_name}", f"exec-{task_name}"
        used = sorted({b.parameter for b in step.bindings if b.kind is ir.BindingKind.PARAMETER and b.parameter})
        components[component] = _component(executor, [params[name] for name in used])
        executors[executor] = {"container": _container(pipeline, step, context, flavor, syntax)}
        tasks[task_name] = _task(pipeline, step, context, flavor, component, used, tasks_by_step)
        if flavor.kubernetes_platform:
            config = _kubernetes_config(pipeline, step, context)
            if config:
                platform[executor] = config
        else:
            _report_kubernetes_settings(pipeline, step, context, flavor)

    info: dict[str, Any] = {}
    if pipeline.description:
        info["description"] = pipeline.description
    info["displayName"] = pipeline.name
    info["name"] = pipeline_resource_name(pipeline.name)
    spec: dict[str, Any] = {"components": components}
    if common.pipeline_root:
        spec["defaultPipelineRoot"] = common.pipeline_root
    spec["deploymentSpec"] = {"executors": executors}
    spec["pipelineInfo"] = info
    root: dict[str, Any] = {"dag": {"tasks": tasks}}
    if pipeline.parameters:
        root["inputDefinitions"] = {"parameters": {
            p.name: _root_parameter(p) for p in sorted(pipeline.parameters, key=lambda p: p.name)
        }}
    spec["root"] = root
    spec["schemaVersion"] = SCHEMA_VERSION
    spec["sdkVersion"] = SDK_VERSION

    text = (f"# {flavor.title} pipeline (KFP PipelineSpec, schemaVersion {SCHEMA_VERSION}) compiled by pipecast.\n"
            "# Edit the Python pipeline and compile it again rather than editing this file.\n")
    text += dump_yaml(spec)
    if platform:
        text += "---\n" + dump_yaml({"platforms": {"kubernetes": {"deploymentSpec": {"executors": platform}}}})
    size = len(text.encode("utf-8"))
    if flavor.size_limit is not None and size > flavor.size_limit:
        context.unsupported(
            f"the compiled pipeline is {size} bytes; {flavor.size_reason} ({flavor.size_limit} bytes)",
            location=str(pipeline.location) if pipeline.location else None,
            fix="split the pipeline, or move large constants into a file the steps read",
        )
    return Bundle(flavor.engine, ((f"{info['name']}.yaml", text),))


def _root_parameter(param: ir.Parameter) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    default = parameter_default(param)
    if not param.required and default is not None:
        spec["defaultValue"] = default
    if not param.required:
        spec["isOptional"] = True
    spec["parameterType"] = PARAMETER_TYPES[param.type]
    return spec


def _component(executor: str, used: list[ir.Parameter]) -> dict[str, Any]:
    inputs = {p.name: {"parameterType": PARAMETER_TYPES[p.type]} for p in used}
    inputs[RUN_ID_INPUT] = {"parameterType": "STRING"}
    return {"executorLabel": executor, "inputDefinitions": {"parameters": dict(sorted(inputs.items()))}}


def _container(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, flavor: KfpFlavor,
               syntax: EngineSyntax) -> dict[str, Any]:
    command = step_command(pipeline, step, syntax, runtime_timeout=not flavor.kubernetes_platform)
    container: dict[str, Any] = {"args": command[3:], "command": command[:3]}
    # Both engines expand $(VAR) and turn $$ into $ in env values: the kubelet on Kubeflow's pods, and Vertex AI
    # as its EnvVar documents ("The $(VAR_NAME) syntax can be escaped with a double $$",
    # google.cloud.aiplatform_v1.types.EnvVar.value). Doubling every $ makes the expansion give back the value.
    env = [{"name": name, "value": kube.kubelet_escape(value)} for name, value in pipeline.env_of(step)]
    if env:
        container["env"] = env
    image = pipeline.image_of(step) or context.setting(pipeline, "image", step=step)
    if not image or not isinstance(image, str):
        context.error(f"step {step.name!r} has no container image; every {flavor.title} task runs in a container",
                      step=step, fix="set @step(image=...), @pipeline(image=...) or --set image=REGISTRY/IMAGE:TAG")
        image = ""
    container["image"] = image
    resources = _resources(step, context, flavor)
    if resources:
        container["resources"] = resources
    return container


def _resources(step: ir.Step, context: EmitContext, flavor: KfpFlavor) -> dict[str, Any]:
    res = step.resources
    result: dict[str, Any] = {}
    if res.gpu:
        accelerator = flavor.accelerator(res.gpu_type)
        if accelerator is None:
            known = ", ".join(sorted(VERTEX_ACCELERATORS))
            context.unsupported(
                f"{flavor.title} has no accelerator type for gpu_type {res.gpu_type!r}" if res.gpu_type else
                f"{flavor.title} needs an accelerator type for a GPU, and the step sets no gpu_type",
                step=step, fix=f"set Resources(gpu_type=...) to one of: {known} (case and '-' or '_' do not matter)",
            )
            accelerator = res.gpu_type or ""
        count = str(res.gpu)
        # type/count are the fields older backends read; resourceType/resourceCount the newer ones (kfp 2.17
        # writes both, and so do we).
        result["accelerator"] = {"count": count, "resourceCount": count, "resourceType": accelerator,
                                 "type": accelerator}
    cpu = parse_quantity(res.cpu) if res.cpu else None
    memory = parse_quantity(res.memory) if res.memory else None
    # The float fields (cores; memory in GB) are what KFP before 2.3 reads; the resource* strings keep the
    # quantity as written.
    if cpu is not None:
        result["cpuLimit"] = cpu
        if flavor.resource_requests:
            result["cpuRequest"] = cpu
    if memory is not None:
        result["memoryLimit"] = memory / 1e9
        if flavor.resource_requests:
            result["memoryRequest"] = memory / 1e9
    if res.cpu:
        result["resourceCpuLimit"] = res.cpu
        if flavor.resource_requests:
            result["resourceCpuRequest"] = res.cpu
    if res.memory:
        result["resourceMemoryLimit"] = res.memory
        if flavor.resource_requests:
            result["resourceMemoryRequest"] = res.memory
    return result


def _task(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, flavor: KfpFlavor, component: str,
          used: list[str], tasks_by_step: Mapping[str, str]) -> dict[str, Any]:
    engine_cache = kfp_settings.engine_cache(pipeline, context, step)
    if engine_cache and step.cache:
        # The cache key holds every resolved input value (KFP: backend/src/v2/cacheutils/cache.go,
        # GenerateCacheKey; Vertex documents the same), and the run id is one of them.
        context.unsupported(
            f"{flavor.title}'s cache cannot reuse step {step.name!r} from another run: its cache key holds every "
            f"input value, and each task reads its own run's id ({RUN_ID_INPUT!r}) so that its outputs land in "
            "this run's folder",
            step=step, fix="leave engine_cache off: pipecast's runtime cache already reuses unchanged outputs",
        )
    task: dict[str, Any] = {"cachingOptions": {"enableCache": bool(engine_cache and step.cache)},
                            "componentRef": {"name": component}}
    upstream = sorted(tasks_by_step[name] for name in step.upstream())
    if upstream:
        task["dependentTasks"] = upstream
    arguments: dict[str, Any] = {name: {"componentInputParameter": name} for name in used}
    arguments[RUN_ID_INPUT] = {"runtimeValue": {"constant": JOB_ID_PLACEHOLDER}}
    task["inputs"] = {"parameters": dict(sorted(arguments.items()))}
    retry = _retry_policy(step, context, flavor)
    if retry:
        task["retryPolicy"] = retry
    task["taskInfo"] = {"name": step.name}
    return task


def _retry_policy(step: ir.Step, context: EmitContext, flavor: KfpFlavor) -> dict[str, Any] | None:
    retry = step.retry
    if retry.attempts <= 1:
        return None
    uncapped = [retry.delay_seconds * retry.backoff ** (n - 2) for n in range(2, retry.attempts + 1)]
    if retry.max_delay_seconds is not None and max(uncapped) > retry.max_delay_seconds:
        context.unsupported(
            f"{flavor.title} cannot cap each retry delay at {retry.max_delay_seconds:g}s: its retryPolicy multiplies "
            f"the delay by backoffFactor with no per-delay cap, so delays would reach {max(uncapped):g}s",
            step=step, fix="lower attempts or backoff so no delay exceeds max_delay, or drop max_delay",
        )
    waited = sum(retry.delay_before(n) for n in range(2, retry.attempts + 1))
    if waited > RETRY_WINDOW_SECONDS:
        context.unsupported(
            f"{flavor.title} stops retrying {RETRY_WINDOW_SECONDS:g}s after a task's first try "
            f"(backoffMaxDuration), but the retry delays alone add up to {waited:g}s",
            step=step, fix="use fewer attempts or shorter delays",
        )
    return {"backoffDuration": duration(retry.delay_seconds), "backoffFactor": float(retry.backoff),
            "backoffMaxDuration": duration(RETRY_WINDOW_SECONDS), "maxRetryCount": retry.retries}


def _kubernetes_config(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> dict[str, Any]:
    """The step's KubernetesExecutorConfig (kfp-kubernetes), keys in its JSON order."""
    config: dict[str, Any] = {}
    if step.timeout_seconds:
        # int64 fields are strings in protobuf JSON, as kfp-kubernetes writes them.
        config["activeDeadlineSeconds"] = str(math.ceil(step.timeout_seconds))
    selector = {**kube.gpu_selector(pipeline, step, context), **kfp_settings.node_selector(pipeline, context, step)}
    if selector:
        config["nodeSelector"] = {"labels": dict(sorted(selector.items()))}
    by_secret: dict[str, list[dict[str, str]]] = {}
    for secret in pipeline.secrets_of(step):
        by_secret.setdefault(secret.name, []).append({"envVar": secret.env, "secretKey": secret.key or secret.env})
    if by_secret:
        config["secretAsEnv"] = [
            {"keyToEnv": pairs, "optional": False, "secretName": name,
             "secretNameParameter": {"runtimeValue": {"constant": name}}}
            for name, pairs in sorted(by_secret.items())
        ]
    tolerations = kfp_settings.tolerations(pipeline, context, step)
    if tolerations:
        config["tolerations"] = tolerations
    return config


def _check_secret_names(pipeline: ir.Pipeline, context: EmitContext) -> None:
    """Report each secret no Kubernetes Secret can hold, once, at the first step that reads it."""
    seen: set[tuple[str, str | None, str]] = set()
    for step in pipeline.steps:
        for secret in pipeline.secrets_of(step):
            identity = (secret.name, secret.key, secret.env)
            if identity in seen:
                continue
            seen.add(identity)
            problem = kube.secret_ref_problem(secret)
            if problem:
                context.error(problem[0], step=step, fix=problem[1])


def _report_kubernetes_settings(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext,
                                flavor: KfpFlavor) -> None:
    for key, what in (("node_selector", "node selectors"), ("tolerations", "tolerations")):
        if context.setting(pipeline, key, step=step):
            context.unsupported(
                f"{flavor.title} does not schedule tasks on Kubernetes nodes, so {what} ({key!r}) cannot apply",
                step=step,
                fix=f"remove the {key!r} setting; choose hardware with Resources(cpu, memory, gpu, gpu_type)",
            )
