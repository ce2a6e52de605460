"""Lowering pipecast's IR to the KFP pipeline IR (PipelineSpec 2.1.0), built as data.

Every step becomes one task of the root DAG; tasks with the same function, image, resources and settings
share one component (``comp-<function>``) and one container executor (``exec-<function>``) running
``python -m pipecast.runtime run …`` in the step's image (:mod:`.sharing`). Each component declares its
scalar outputs and the step's folder as outputs, so that the engine's UI shows them (:mod:`.outputs`). Pipeline
parameters are typed root inputs with defaults, wired into each task that reads them
(``componentInputParameter``) and substituted by the engine into the runtime's arguments as
``{{$.inputs.parameters['name']}}``. Data moves through pipecast's artifact store, so an upstream
edge (data or ``.after()``) is a ``dependentTasks`` entry. The run id reaches every task the way the kfp
compiler passes ``dsl.PIPELINE_JOB_ID_PLACEHOLDER`` to a task (see :data:`RUN_ID_INPUT`). Keys are written
in KFP's own order (the KFP compiler sorts them), and nothing in the file depends on the SDK version, the
clock or the machine.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names, pipeline_resource_name
from pipecast.compiler.units import parse_quantity
from pipecast.runtime.command import EngineSyntax
from pipecast.targets import kube, lowering
from pipecast.targets.base import Bundle, EmitContext
from pipecast.targets.kfpspec import combinations, hooks, schedule_time, sharing, workflow_size
from pipecast.targets.kfpspec.groups import GroupLowering
from pipecast.targets.kfpspec.maps import MapLowering
from pipecast.targets.kfpspec.outputs import (
    check_output_names,
    executor_input_args,
    output_definitions,
    output_parameters,
)
from pipecast.targets.kfpspec.platform import kubernetes_config
from pipecast.targets.kfpspec.references import check_references
from pipecast.targets.kfpspec.settings import KfpSettings
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
            selectors, tolerations, image pull secrets, ``activeDeadlineSeconds``). Vertex AI does not.
        resource_requests: Whether cpu/memory requests are emitted besides limits (Vertex sizes machines
            from limits only).
        accelerator: Maps a step's ``gpu_type`` to the engine's accelerator name; ``None`` if unknown.
        argo_workflow: Whether the engine runs the IR as an Argo Workflow (Kubeflow's backend), whose size is
            checked at compile (:mod:`.workflow_size`). Vertex AI makes none.
    """

    engine: str
    title: str
    kubernetes_platform: bool
    resource_requests: bool
    accelerator: Callable[[str | None], str | None]
    argo_workflow: bool = False


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
    spec, platform = build_documents(pipeline, context, flavor)
    text = (f"# {flavor.title} pipeline (KFP PipelineSpec, schemaVersion {SCHEMA_VERSION}) compiled by pipecast.\n"
            "# Edit the Python pipeline and compile it again rather than editing this file.\n")
    text += dump_yaml(spec)
    if platform:
        text += "---\n" + dump_yaml(platform)
    if flavor.argo_workflow:
        problem = workflow_size.problem(pipeline.name, spec, platform)
        if problem:
            context.unsupported(problem[0], location=str(pipeline.location) if pipeline.location else None,
                                fix=problem[1])
    return Bundle(flavor.engine, ((f"{spec['pipelineInfo']['name']}.yaml", text),))


def build_documents(pipeline: ir.Pipeline, context: EmitContext,
                    flavor: KfpFlavor) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The PipelineSpec and, for an engine that reads one and a pipeline that needs one, the platform spec.

    Both are checked for dangling references (:mod:`.references`), so a file that would only fail on the
    engine, at run time, is never written.
    """
    settings: KfpSettings = context.settings
    root = lowering.artifact_root(pipeline, context, remote=True, mounted=True)
    pipeline = combinations.publish(hooks.wrap(pipeline, context))  # run-time zips and products: a task's list
    _check_run_id_input(pipeline, context, flavor)
    if flavor.kubernetes_platform:
        for step in pipeline.steps:  # in pipeline order: each bad name is reported at the first step reading it
            kube.check_secret_refs(pipeline, step, context)
    syntax = EngineSyntax(run_id=input_placeholder(RUN_ID_INPUT), parameter=lambda p: input_placeholder(p.name),
                          artifact_root=root, python=settings.python)
    components, executors, tasks, configs = _lower_steps(pipeline, context, flavor, syntax)
    spec: dict[str, Any] = {"components": components}
    if settings.pipeline_root:
        spec["defaultPipelineRoot"] = settings.pipeline_root
    spec["deploymentSpec"] = {"executors": executors}
    spec["pipelineInfo"] = _pipeline_info(pipeline)
    spec["root"] = _root(pipeline, tasks)
    spec["schemaVersion"] = SCHEMA_VERSION
    spec["sdkVersion"] = SDK_VERSION
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": configs}}}} if configs else None
    problems = check_references(spec, platform)
    if problems:
        context.error(f"the compiled {flavor.title} IR has dangling references: {'; '.join(problems)}",
                      fix="this is a bug in pipecast: please report it with the pipeline")
    return spec, platform


def _check_run_id_input(pipeline: ir.Pipeline, context: EmitContext, flavor: KfpFlavor) -> None:
    for param in pipeline.parameters:
        if param.name == RUN_ID_INPUT:
            context.error(f"parameter {RUN_ID_INPUT!r} has the name of the input that carries the run id into every "
                          f"{flavor.title} task",
                          fix=f"rename the parameter (names starting with 'pipecast_' are the {flavor.engine} "
                              "target's own)")


def _lower_steps(pipeline: ir.Pipeline, context: EmitContext, flavor: KfpFlavor,
                 syntax: EngineSyntax) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Every step's component, executor, root task and (on Kubernetes) executor config, by task name."""
    tasks_by_step = engine_names(flavor.engine, [s.name for s in pipeline.steps],
                                 locations={s.name: str(s.location) for s in pipeline.steps}, target=flavor.engine)
    tasks_by_step = hooks.task_names(pipeline, tasks_by_step, context)  # both hooks: one exit task
    params = {p.name: p for p in pipeline.parameters}
    flow = MapLowering(pipeline, context, tasks_by_step, {p.name: PARAMETER_TYPES[p.type] for p in pipeline.parameters})
    lists = flow.iterated_outputs()
    groups = None
    if pipeline.groups or any(s.trigger is not ir.Trigger.ALL_SUCCESS for s in pipeline.steps):
        output_types = {tasks_by_step[s.name]: output_parameters(s, lists.get(s.name, ())) for s in pipeline.steps}
        if hooks.both(pipeline):
            output_types[hooks.TASK] = {}  # the hooks' shared task declares no output parameter (hooks.combine)
        groups = GroupLowering(pipeline, context, tasks_by_step, flow.param_types, flow, output_types)
    components: dict[str, Any] = {}
    executors: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    shapes: dict[str, str] = {}  # shape key -> shared name (sharing.py)
    both_hooks: list[hooks.Lowered] = []
    for step in sorted(pipeline.steps, key=lambda s: tasks_by_step[s.name]):
        task_name = tasks_by_step[step.name]
        shared_hook = task_name == hooks.TASK and step.trigger in hooks.HOOKS
        inputs = parameter_inputs(step)
        _check_input_names(step, inputs, context, flavor)
        check_output_names(step, context, flavor.title, flavor.engine)
        plan = retry_plan(step)
        step_syntax = dataclasses.replace(syntax, parameter=_placeholder_of(inputs))
        container = _container(pipeline, step, context, flavor, step_syntax, plan)
        args = flow.step_args(step, container["args"]) + (groups.step_args(step) if groups else [])
        container["args"], constants = sharing.task_arguments(
            args, input_placeholder, *([hooks.task_input(step)] if shared_hook else []))
        if pipeline.schedule:
            container["args"] += schedule_time.args(input_placeholder)
            constants[schedule_time.INPUT] = schedule_time.PLACEHOLDER
        used = {arg: params[name] for name, arg in inputs.items()}
        for clash in sorted(set(constants) & set(used)):
            context.error(f"step {step.name!r} has an argument named {clash!r}, an input {flavor.title} tasks use "
                          "for the step's own values", step=step,
                          fix=f"rename the argument (names starting with 'pipecast_' are the {flavor.engine} "
                              "target's own)")
        config = kubernetes_config(pipeline, step, context, plan) if flavor.kubernetes_platform else None
        outputs = output_definitions(step, lists.get(step.name, ()))
        extra = flow.component_inputs(step)
        if groups:
            extra.update(groups.component_inputs(step))
            published = groups.extra_outputs(step)
            if published:
                outputs["parameters"] = dict(sorted({**outputs.get("parameters", {}), **{
                    name: {"parameterType": kind} for name, kind in published.items()}}.items()))
        if shared_hook:
            both_hooks.append(hooks.Lowered(step, container, config, _component("", used, constants, outputs, extra),
                                            _task(step, context, flavor, "", inputs, tasks_by_step, plan, constants,
                                                  flow, groups)))
            continue
        key = sharing.shape_key(step.function.path, {a: p.type.value for a, p in used.items()}, sorted(constants),
                                outputs, container, config, extra)
        name = shapes.get(key)
        if name is None:
            name = shapes[key] = sharing.unique(sharing.base_name(step), set(shapes.values()))
            components[f"comp-{name}"] = _component(f"exec-{name}", used, constants, outputs, extra)
            executors[f"exec-{name}"] = {"container": container}
            if config:
                configs[f"exec-{name}"] = config
        tasks[task_name] = _task(step, context, flavor, f"comp-{name}", inputs, tasks_by_step, plan, constants,
                                 flow, groups)
    if both_hooks:
        component, container, config, tasks[hooks.TASK] = hooks.combine(both_hooks, context)
        components[f"comp-{hooks.TASK}"], executors[f"exec-{hooks.TASK}"] = component, {"container": container}
        if config:
            configs[f"exec-{hooks.TASK}"] = config
    if groups:
        tasks = groups.organize(tasks, components)
    return (dict(sorted(components.items())), dict(sorted(executors.items())), tasks,
            dict(sorted(configs.items())))


def parameter_inputs(step: ir.Step) -> dict[str, str]:
    """The component input carrying each pipeline parameter ``step`` reads, by parameter name.

    Inputs are named after the step function's argument bound to the parameter, as kfp's compiler names a
    component's inputs after its function's arguments (the first argument, by name, when one parameter feeds
    several).
    """
    inputs: dict[str, str] = {}
    for binding in sorted(step.bindings, key=lambda b: b.input):
        if binding.kind is ir.BindingKind.PARAMETER and binding.parameter:
            inputs.setdefault(binding.parameter, binding.input)
    return inputs


def _placeholder_of(inputs: Mapping[str, str]) -> Callable[[ir.Parameter], str]:
    """A parameter's placeholder in one step's command: its component input's."""
    return lambda param: input_placeholder(inputs[param.name])


def _check_input_names(step: ir.Step, inputs: Mapping[str, str], context: EmitContext, flavor: KfpFlavor) -> None:
    if RUN_ID_INPUT in inputs.values():
        context.error(f"step {step.name!r} has an argument named {RUN_ID_INPUT!r}, the input that carries the run id "
                      f"into every {flavor.title} task", step=step,
                      fix=f"rename the argument (names starting with 'pipecast_' are the {flavor.engine} target's own)")


def _pipeline_info(pipeline: ir.Pipeline) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if pipeline.description:
        info["description"] = pipeline.description
    info["displayName"] = pipeline.name
    info["name"] = pipeline_resource_name(pipeline.name)
    return info


def _root(pipeline: ir.Pipeline, tasks: dict[str, Any]) -> dict[str, Any]:
    root: dict[str, Any] = {"dag": {"tasks": tasks}}
    if pipeline.parameters:
        root["inputDefinitions"] = {"parameters": {
            p.name: _root_parameter(p) for p in sorted(pipeline.parameters, key=lambda p: p.name)
        }}
    return root


def _root_parameter(param: ir.Parameter) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    default = parameter_default(param)
    if not param.required and default is not None:
        spec["defaultValue"] = default
    if not param.required:
        spec["isOptional"] = True
    spec["parameterType"] = PARAMETER_TYPES[param.type]
    return spec


def _component(executor: str, used: Mapping[str, ir.Parameter], constants: Mapping[str, str],
               outputs: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    inputs = {arg: {"parameterType": PARAMETER_TYPES[p.type]} for arg, p in used.items()}
    inputs.update({name: {"parameterType": "STRING"} for name in constants})
    inputs.update(extra)
    inputs[RUN_ID_INPUT] = {"parameterType": "STRING"}
    return {"executorLabel": executor, "inputDefinitions": {"parameters": dict(sorted(inputs.items()))},
            "outputDefinitions": outputs}


def _container(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, flavor: KfpFlavor,
               syntax: EngineSyntax, plan: lowering.RetryPlan) -> dict[str, Any]:
    # Kubeflow stops a try's pod at activeDeadlineSeconds; Vertex reads no platform spec, so there the runtime
    # enforces every timeout. Retries the runtime makes need its per-try timeout on both.
    command = lowering.runtime_command(pipeline, step, syntax, plan,
                                       runtime_timeout=None if flavor.kubernetes_platform else True)
    # The executor input tells the runtime where the engine collects the step's outputs (.outputs).
    container: dict[str, Any] = {"args": [*command[3:], *executor_input_args()], "command": command[:3]}
    # Both engines expand $(VAR) and turn $$ into $ in env values: the kubelet on Kubeflow's pods, and Vertex AI
    # as its EnvVar documents ("The $(VAR_NAME) syntax can be escaped with a double $$",
    # google.cloud.aiplatform_v1.types.EnvVar.value). Doubling every $ makes the expansion give back the value.
    env = [{"name": name, "value": kube.kubelet_escape(value)}
           for name, value in lowering.env_in_effect(pipeline, step)]
    if env:
        container["env"] = env
    container["image"] = lowering.step_image(pipeline, step, context,
                                             why=f"every {flavor.title} task runs in a container")
    resources = _resources(step, context, flavor)
    if resources:
        container["resources"] = resources
    return container


def _resources(step: ir.Step, context: EmitContext, flavor: KfpFlavor) -> dict[str, Any]:
    res = step.resources
    result: dict[str, Any] = {}
    if res.gpu:
        result["accelerator"] = _accelerator(step, context, flavor)
    # Vertex sizes the machine by the limits: they are the step's cpu/memory. On Kubeflow the requests are the
    # step's and the limits the pod settings' (no CPU limit unless cpu_limit is set; memory: the request).
    cpu_limit, memory_limit = res.cpu, res.memory
    if flavor.resource_requests:
        settings = context.settings_for(step)
        settings.resources(step, context)  # reports a limit below the request
        cpu_limit, memory_limit = settings.cpu_limit, settings.memory_limit or res.memory
    # The float fields (cores; memory in GB) are what KFP before 2.3 reads; the resource* strings keep the
    # quantity as written.
    if cpu_limit:
        result["cpuLimit"] = parse_quantity(cpu_limit)
    if res.cpu and flavor.resource_requests:
        result["cpuRequest"] = parse_quantity(res.cpu)
    if memory_limit:
        result["memoryLimit"] = (parse_quantity(memory_limit) or 0) / 1e9
    if res.memory and flavor.resource_requests:
        result["memoryRequest"] = (parse_quantity(res.memory) or 0) / 1e9
    if cpu_limit:
        result["resourceCpuLimit"] = cpu_limit
    if res.cpu and flavor.resource_requests:
        result["resourceCpuRequest"] = res.cpu
    if memory_limit:
        result["resourceMemoryLimit"] = memory_limit
    if res.memory and flavor.resource_requests:
        result["resourceMemoryRequest"] = res.memory
    return result


def _accelerator(step: ir.Step, context: EmitContext, flavor: KfpFlavor) -> dict[str, str]:
    gpu_type = step.resources.gpu_type
    accelerator = flavor.accelerator(gpu_type)
    if accelerator is None:
        known = ", ".join(sorted(VERTEX_ACCELERATORS))
        context.unsupported(
            f"{flavor.title} has no accelerator type for gpu_type {gpu_type!r}" if gpu_type else
            f"{flavor.title} needs an accelerator type for a GPU, and the step sets no gpu_type",
            step=step, fix=f"set Resources(gpu_type=...) to one of: {known} (case and '-' or '_' do not matter)",
        )
        accelerator = gpu_type or ""
    count = str(step.resources.gpu)
    # type/count are the fields older backends read; resourceType/resourceCount the newer ones (kfp 2.17 writes
    # both, and so do we).
    return {"count": count, "resourceCount": count, "resourceType": accelerator, "type": accelerator}


def _task(step: ir.Step, context: EmitContext, flavor: KfpFlavor, component: str, used: Mapping[str, str],
          tasks_by_step: Mapping[str, str], plan: lowering.RetryPlan, constants: Mapping[str, str],
          flow: MapLowering, groups: GroupLowering | None) -> dict[str, Any]:
    engine_cache = bool(context.settings_for(step).engine_cache)
    if engine_cache and step.cache:
        # The cache key holds every resolved input value (KFP: backend/src/v2/cacheutils/cache.go,
        # GenerateCacheKey; Vertex documents the same), and the run id is one of them.
        context.unsupported(
            f"{flavor.title}'s cache cannot reuse step {step.name!r} from another run: its cache key holds every "
            f"input value, and each task reads its own run's id ({RUN_ID_INPUT!r}) so that its outputs land in "
            "this run's folder",
            step=step, fix="leave engine_cache off: pipecast's runtime cache already reuses unchanged outputs",
        )
    # Caching off is written as kfp 2.17 writes set_caching_options(False): an empty message, enableCache being
    # a proto3 bool whose absence is false (the KFP driver reads GetCachingOptions().GetEnableCache(),
    # backend/src/v2/driver/cache.go and k8s.go).
    task: dict[str, Any] = {"cachingOptions": {"enableCache": True} if engine_cache and step.cache else {}}
    task["componentRef"] = {"name": component}
    upstream = sorted({tasks_by_step[name] for name in (*step.upstream(), *flow.list_producers(step))})
    if upstream:
        task["dependentTasks"] = upstream
    arguments: dict[str, Any] = {arg: {"componentInputParameter": name} for name, arg in used.items()}
    arguments.update(flow.task_inputs(step))
    if groups:
        arguments.update(groups.task_inputs(step))
    arguments.update({name: {"runtimeValue": {"constant": value}} for name, value in constants.items()})
    arguments[RUN_ID_INPUT] = {"runtimeValue": {"constant": JOB_ID_PLACEHOLDER}}
    task["inputs"] = {"parameters": dict(sorted(arguments.items()))}
    if plan.engine:
        retry = step.retry
        task["retryPolicy"] = {"backoffDuration": duration(retry.delay_seconds), "backoffFactor": float(retry.backoff),
                               "backoffMaxDuration": duration(RETRY_WINDOW_SECONDS), "maxRetryCount": retry.retries}
    task["taskInfo"] = {"name": step.name}
    return task


def retry_plan(step: ir.Step) -> lowering.RetryPlan:
    """The engine retries when its retryPolicy says exactly what the step asks, else pipecast's runtime does.

    A retryPolicy multiplies the delay by backoffFactor with no per-delay cap, and KFP stops retrying
    backoffMaxDuration (:data:`RETRY_WINDOW_SECONDS`) after a task's first try: a ``max_delay`` that would cap a
    delay, or delays that alone outlast the window, are honoured by the runtime retrying inside the task.
    """
    retry = step.retry
    capped = retry.max_delay_seconds is not None and any(
        retry.delay_seconds * retry.backoff ** (attempt - 2) > retry.max_delay_seconds
        for attempt in range(2, retry.attempts + 1))
    return lowering.retry_plan(step, engine_delay=lowering.retry_delays(step) <= RETRY_WINDOW_SECONDS,
                               engine_max_delay=not capped)
