"""Lowering the IR to an Azure ML pipeline job YAML (and a schedule YAML when the pipeline has one).

One pipeline job (``type: pipeline``); one ``type: command`` node per step whose inline command component
runs the pipecast runtime. What Azure ML cannot express in the job is done another way:

- Azure ML orders nodes only by data (an output bound to an input). Every node that others wait for
  declares a small ``pipecast_done`` folder output, and each downstream node binds it to an input
  ``pipecast_after_<node>`` in ``direct`` mode (nothing is mounted or copied). The runtime never reads
  these inputs; values travel through pipecast's artifact store.
- The run id all steps share is the pipeline input ``pipecast_run_id``: ``pipecast submit`` sets it to
  the run's id; the schedule sets it to ``${{creation_context.trigger_time}}``, the one macro Azure ML
  documents for a schedule's string job inputs ("Use supported expressions in schedules",
  how-to-schedule-pipeline-job). ``${{name}}`` is documented for output paths only, not for inputs.
- A pipeline with a schedule has a second string input ``pipecast_logical_time`` for
  ``pipecast.context().logical_time``: ``none`` in the job (a job no schedule made has no logical time), the
  trigger time in the schedule's ``create_job.inputs``. Each node passes it to the runtime
  (``--azureml-logical-time``), which parses it as ISO 8601 or fails the step saying so.
- A pipeline without a ``compute`` setting runs on serverless compute (``azureml:serverless``, the value
  the CLI docs give for a pipeline's default compute): azure-ai-ml refuses a job whose nodes have no
  compute ("Compute not set") and Azure ML does not fall back to a workspace default.
- Command nodes have no retry setting, so the runtime retries (``--attempts``).

Values reach the shell only inside single quotes in shell-single-quote form (see
:mod:`pipecast.targets.azureml.shell`).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names
from pipecast.runtime.azureml_mlflow import FLAG as MLFLOW_FLAG
from pipecast.runtime.command import EngineSyntax
from pipecast.runtime.params import render_parameter
from pipecast.runtime.publish_azureml import ITEM_INPUT, ITEMS_PREFIX, NO_LOGICAL_TIME
from pipecast.targets.azureml import body as map_body
from pipecast.targets.azureml import flow
from pipecast.targets.azureml.fields import merged
from pipecast.targets.azureml.nesting import enclosing_map
from pipecast.targets.azureml.settings import AzureMLSettings, experiment_problem
from pipecast.targets.azureml.shell import shell_command, single_quote_body
from pipecast.targets.base import Bundle, EmitContext
from pipecast.targets.inline_flow import mini_plan, plan_json
from pipecast.targets.lowering import (
    artifact_root,
    env_in_effect,
    retry_plan,
    runtime_command,
    set_by_step,
    step_image,
    worst_case_whole_seconds,
)
from pipecast.targets.serialize import dump_yaml

PIPELINE_SCHEMA = "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json"
SCHEDULE_SCHEMA = "https://azuremlschemas.azureedge.net/latest/schedule.schema.json"
RUN_ID_INPUT = "pipecast_run_id"
LOGICAL_TIME_INPUT = "pipecast_logical_time"
DONE_OUTPUT = "pipecast_done"
AFTER_PREFIX = "pipecast_after_"
# The trigger time of a job a schedule creates: Azure ML substitutes it in string inputs of the schedule's
# job ("Use supported expressions in schedules", learn.microsoft.com/azure/machine-learning/
# how-to-schedule-pipeline-job). It is the only per-run value documented for inputs; ``${{name}}`` is
# documented for output paths ("Server expressions", concept-expressions), where it names the step's job.
TRIGGER_TIME_MACRO = "${{creation_context.trigger_time}}"
# Serverless compute, as the CLI docs write it for a pipeline's default compute (how-to-use-serverless-compute).
SERVERLESS = "azureml:serverless"

# Azure ML literal input types, by pipecast type. Dicts and lists travel as JSON text.
INPUT_TYPES = {
    ir.TypeName.STR: "string", ir.TypeName.INT: "integer", ir.TypeName.FLOAT: "number",
    ir.TypeName.BOOL: "boolean", ir.TypeName.DICT: "string", ir.TypeName.LIST: "string",
    ir.TypeName.ANY: "string",
}
# A typed artifact's Azure ML output type (issue 17): a Model is a custom_model (a folder of any files; an
# mlflow_model needs an MLmodel file pipecast does not write), a Dataset or Artifact a uri_folder holding the
# stored file or folder, Metrics a uri_file (one JSON object). Azure ML's asset types, "Data concepts" and
# "Work with models" (learn.microsoft.com/azure/machine-learning/concept-data, how-to-manage-models).
ARTIFACT_OUTPUTS = {"Model": "custom_model", "Dataset": "uri_folder", "Artifact": "uri_folder", "Metrics": "uri_file"}
# Component input and output names (IOConstants.VALID_KEY_PATTERN in azure-ai-ml).
_IO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MARK = "\x00"
_NO_SECRETS = "an Azure ML job has no way to set an environment variable from a secret store"
_SECRET_FIX = ("read it inside the step from Azure Key Vault (azure-keyvault-secrets with the compute's managed "
               "identity), or remove it from the pipeline")


def pipeline_file(pipeline: ir.Pipeline) -> str:
    """The name of the pipeline job's YAML file."""
    return f"{pipeline.name}.pipeline.yml"


def schedule_file(pipeline: ir.Pipeline) -> str:
    """The name of the schedule's YAML file."""
    return f"{pipeline.name}.schedule.yml"


def input_value(param: ir.Parameter, value: Any) -> Any:
    """A pipeline input's value as the job YAML (or a submitted job) carries it.

    Numbers and booleans are typed inputs, checked by Azure ML. Text (strings, JSON of dicts and lists)
    is pasted into the command inside single quotes, so it is written in shell-single-quote form.
    """
    if param.type in (ir.TypeName.INT, ir.TypeName.FLOAT, ir.TypeName.BOOL):
        return float(value) if param.type is ir.TypeName.FLOAT else value
    return single_quote_body(render_parameter(param.type, value))


def emit(pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
    """The whole lowering; see the module docstring."""
    settings: AzureMLSettings = context.settings
    # Every node runs on compute of its own: a path on one machine cannot hold what the next node reads.
    root = artifact_root(pipeline, context, remote=True)
    nodes = engine_names("azureml", [s.name for s in pipeline.steps],
                         locations={s.name: str(s.location) for s in pipeline.steps}, target=context.target)
    waited_on = {up for step in pipeline.steps for up in step.upstream()}
    lowering = flow.lower(pipeline, context, nodes)
    inputs = _pipeline_inputs(pipeline, context)
    for secret in pipeline.secrets:
        context.unsupported(f"secret {secret.name!r} (env {secret.env!r}) of the pipeline: {_NO_SECRETS}",
                            location=str(pipeline.location or "") or None, fix=_SECRET_FIX)
    params = {p.name: p for p in pipeline.parameters}
    components: list[tuple[str, str]] = []
    if lowering is not None:  # an inner map's items node waits on the steps whose outputs it counts
        waited_on |= {up for name in lowering.resolved for up in flow.items_waits(lowering, pipeline.group(name))}
    jobs = {nodes[step.name]: _node(pipeline, step, context, nodes, params, root, step.name in waited_on, lowering)
            for step in pipeline.steps}
    if lowering is not None:
        for group_name, body in lowering.resolved.items():  # nodes of the outer body (pipeline_body moves them)
            group = pipeline.group(group_name)
            jobs[flow.items_node(group)] = _inner_items_node(pipeline, group, pipeline.step(body), context, nodes,
                                                             root, lowering)
        documents: dict[str, dict[str, Any]] = {}
        # An inner map's body first: the outer body's component holds its node (and reads its inputs).
        for group in sorted(lowering.lowered_maps(), key=lambda g: g.name not in lowering.nested):
            if lowering.is_multi(group):
                node, component = map_body.pipeline_body(pipeline, group, lowering, nodes, jobs, documents)
                jobs[flow.body_node(group)] = node
                documents[flow.body_node(group)] = component
                components.append((map_body.component_file(pipeline, group), dump_yaml(component)))
        for group_name, param in lowering.counted.items():
            group = pipeline.group(group_name)
            body = lowering.members[group_name][0]  # its first step (in an inner map when the body is only that)
            jobs[flow.items_node(group)] = _items_node(pipeline, params[param], pipeline.step(body), context)
        jobs.update(flow.control_nodes(lowering, nodes))
    job: dict[str, Any] = {"$schema": PIPELINE_SCHEMA, "type": "pipeline", "display_name": pipeline.name}
    if pipeline.description:
        job["description"] = pipeline.description
    job["experiment_name"] = settings.experiment_name or pipeline.name
    problem = experiment_problem(pipeline.name) if settings.experiment_name is None else None
    if problem:  # the pipeline's name stands in for the experiment's, and may hold '.' or start with '_'
        context.error(f"pipeline name {pipeline.name!r} cannot be the Azure ML experiment name: it {problem}",
                      fix="--set experiment_name=<a valid name>")
    if pipeline.tags:
        job["tags"] = {tag: "" for tag in pipeline.tags}
    # Without a default compute azure-ai-ml refuses the job ("Compute not set" for every node).
    job["settings"] = {"default_compute": _compute_ref(settings.compute) if settings.compute else SERVERLESS,
                       "continue_on_step_failure": settings.continue_on_step_failure}
    job = merged(job, settings.job_fields)  # the escape hatch (checked: nothing pipecast writes)
    job["inputs"] = inputs
    job["jobs"] = jobs
    files = [(pipeline_file(pipeline), dump_yaml(job)), *components]
    if pipeline.schedule:
        files.append((schedule_file(pipeline), dump_yaml(_schedule(pipeline, context))))
    return Bundle(context.target, tuple(files))


def _pipeline_inputs(pipeline: ir.Pipeline, context: EmitContext) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for param in pipeline.parameters:
        problem = _io_name_problem(param.name, seen)
        if problem:
            context.error(f"parameter {param.name!r} {problem}", fix="rename the parameter")
        if param.required:
            context.unsupported(f"parameter {param.name!r} has no default, and an Azure ML pipeline job gives every "
                                "input a value in the job itself", location=str(param.location or "") or None,
                                fix="give the parameter a default (pipecast submit -p still overrides it)")
            continue
        inputs[param.name] = input_value(param, param.default)
    # pipecast submit replaces it with the run id; a schedule with the trigger time. A job created by hand
    # must be given one (--set inputs.pipecast_run_id=...): the runtime refuses the macro's text.
    inputs[RUN_ID_INPUT] = TRIGGER_TIME_MACRO
    if pipeline.schedule:  # the schedule's job gets the trigger time; any other job has no logical time
        inputs[LOGICAL_TIME_INPUT] = NO_LOGICAL_TIME
    return inputs


def _io_name_problem(name: str, seen: dict[str, str]) -> str | None:
    if not _IO_NAME.fullmatch(name):
        return "is not an Azure ML input name (letters, digits and _, not starting with a digit)"
    if name.startswith("pipecast_"):
        return "uses the prefix 'pipecast_' that pipecast keeps for its own Azure ML inputs"
    other = seen.setdefault(name.lower(), name)
    if other != name:
        return f"and {other!r} differ only in case, and Azure ML input names ignore case"
    return None


def _compute_ref(compute: str) -> str:
    """``cpu-cluster`` → ``azureml:cpu-cluster``, ``serverless`` → ``azureml:serverless``; references stay."""
    return compute if compute.startswith("azureml:") else f"azureml:{compute}"


def _node(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, nodes: dict[str, str],
          params: dict[str, ir.Parameter], root: str, waited_on: bool, lowering: flow.Lowering | None
          ) -> dict[str, Any]:
    # Each parameter once, in the order the step binds them (two inputs may share one parameter), then those
    # of the conditions the step decides.
    bound = [b.parameter for b in step.bindings if b.kind is ir.BindingKind.PARAMETER and b.parameter]
    decided = lowering.condition_parameters(step.name) + lowering.list_parameters(step.name) if lowering else []
    used = list({name: params[name] for name in bound + decided if name in params}.values())
    # A step after a map waits for the parallel_for node, which ends when every item has; a step of a map's
    # body waits for the body's steps before it (item by item, inside the body's pipeline component).
    scope = enclosing_map(lowering.plan, step.group) if lowering else None
    upstream = list(dict.fromkeys(
        lowering.waited_node(scope.name if scope else None, name, nodes) if lowering else nodes[name]
        for name in step.upstream() if name in nodes))

    component_inputs: dict[str, Any] = {p.name: {"type": INPUT_TYPES[p.type]} for p in used}
    component_inputs[RUN_ID_INPUT] = {"type": "string"}
    if lowering and step.name in lowering.bodies:  # bound by each parallel_for item, not by the node
        component_inputs[ITEM_INPUT] = {"type": "integer"}
        if lowering.bodies[step.name].name in lowering.nested:  # and the outer item, bound by the node
            component_inputs[flow.OUTER_ITEM_INPUT] = {"type": "integer"}
    node_inputs: dict[str, Any] = {p.name: f"${{{{parent.inputs.{p.name}}}}}" for p in used}
    node_inputs[RUN_ID_INPUT] = f"${{{{parent.inputs.{RUN_ID_INPUT}}}}}"
    if pipeline.schedule:
        component_inputs[LOGICAL_TIME_INPUT] = {"type": "string"}
        node_inputs[LOGICAL_TIME_INPUT] = f"${{{{parent.inputs.{LOGICAL_TIME_INPUT}}}}}"
    for up in upstream:
        for output in lowering.done_outputs(up, nodes) if lowering else [DONE_OUTPUT]:
            name = AFTER_PREFIX + up + output.removeprefix(DONE_OUTPUT)
            component_inputs[name] = {"type": "uri_folder"}
            done = f"${{{{parent.jobs.{up}.outputs.{output}}}}}"
            node_inputs[name] = {"type": "uri_folder", "path": done, "mode": "direct"}

    component: dict[str, Any] = {}
    if step.description:
        component["description"] = step.description
    component["inputs"] = component_inputs
    outputs: dict[str, Any] = {DONE_OUTPUT: {"type": "uri_folder"}} if waited_on else {}
    if lowering:  # decision values and map items, read by if_else and parallel_for from the run's properties
        branches = lowering.decisions.get(step.name, {})
        outputs.update({name: {"type": "boolean", "is_control": True} for name in branches})
        outputs.update({ITEMS_PREFIX + name: {"type": "string"} for name in lowering.lists.get(step.name, [])})
    for typed in typed_outputs(step, context):
        outputs[typed.name] = {"type": ARTIFACT_OUTPUTS[typed.artifact or ""]}
    if outputs:
        component["outputs"] = outputs
    component["command"] = _command(pipeline, step, context, root, lowering, used)
    component["environment"] = {"image": step_image(pipeline, step, context,
                                                    why="Azure ML runs each node in a container")}
    # Outputs live in pipecast's artifact store under the run id, so Azure ML must never skip a node
    # because an earlier node had the same inputs: reuse is the runtime cache's job.
    component["is_deterministic"] = False

    settings: AzureMLSettings = context.settings_for(step)
    node: dict[str, Any] = {"type": "command", "display_name": step.name, "component": component}
    if set_by_step(step, context, "compute") and settings.compute:  # the step's own: this node's compute
        node["compute"] = _compute_ref(settings.compute)
    node["inputs"] = node_inputs
    env = env_in_effect(pipeline, step)
    if env:
        node["environment_variables"] = dict(env)
    if settings.instance_type:
        node["resources"] = {"instance_type": settings.instance_type}
    # limits.timeout: the step's timeout, or for a retried step every try and delay (the runtime retries).
    timeout = worst_case_whole_seconds(step)
    if timeout:
        node["limits"] = {"timeout": timeout}
    _report(step, context)
    return merged(node, settings.node_fields)  # the escape hatch (checked: nothing pipecast writes)


def _items_node(pipeline: ir.Pipeline, param: ir.Parameter, body: ir.Step, context: EmitContext) -> dict[str, Any]:
    """A node that publishes the parallel_for items of a map over ``param`` (in the body's image)."""
    marker = f"{_MARK}{param.name}{_MARK}"
    argv = ["python", "-m", "pipecast.runtime.publish_azureml", "items", param.type.value, marker]
    component = {"inputs": {param.name: {"type": INPUT_TYPES[param.type]}},
                 "outputs": {"pipecast_items": {"type": "string"}},
                 "command": shell_command(argv, {marker: f"${{{{inputs.{param.name}}}}}"}),
                 "environment": {"image": step_image(pipeline, body, context, why="Azure ML runs each node in a "
                                                                                 "container")},
                 "is_deterministic": False}
    return {"type": "command", "display_name": f"items of {param.name}", "component": component,
            "inputs": {param.name: f"${{{{parent.inputs.{param.name}}}}}"}}


def _inner_items_node(pipeline: ir.Pipeline, group: ir.Group, body: ir.Step, context: EmitContext,
                      nodes: dict[str, str], root: str, lowering: flow.Lowering) -> dict[str, Any]:
    """A node of the outer body that publishes inner map ``group``'s items for its outer item (``items-at``).

    Its runtime reads what the map iterates by the plan its step binds its instances with (the outer item, the
    parameters, outputs of steps before the outer map from the artifact store), so the count is ``pipecast run``'s.
    """
    used = [pipeline.parameter(name) for name in lowering.list_parameters(body.name)]
    run_id, outer = f"{_MARK}{RUN_ID_INPUT}{_MARK}", f"{_MARK}{flow.OUTER_ITEM_INPUT}{_MARK}"
    markers = {run_id: f"${{{{inputs.{RUN_ID_INPUT}}}}}", outer: f"${{{{inputs.{flow.OUTER_ITEM_INPUT}}}}}"}
    argv = ["python", "-m", "pipecast.runtime.publish_azureml", "items-at", "--group", group.name, "--at", outer,
            "--step", body.name, "--pipeline", pipeline.name, "--run-id", run_id, "--artifact-root", root,
            "--azureml-flow", urllib.parse.quote(plan_json(mini_plan(pipeline, body)), safe="")]
    for param in used:
        markers[f"{_MARK}{param.name}{_MARK}"] = f"${{{{inputs.{param.name}}}}}"
        argv += ["--azureml-flow-param", f"{param.name}={param.type.value}:{_MARK}{param.name}{_MARK}"]
    component_inputs: dict[str, Any] = {p.name: {"type": INPUT_TYPES[p.type]} for p in used}
    component_inputs[RUN_ID_INPUT] = {"type": "string"}
    component_inputs[flow.OUTER_ITEM_INPUT] = {"type": "integer"}  # bound by the outer body's component
    node_inputs: dict[str, Any] = {p.name: f"${{{{parent.inputs.{p.name}}}}}" for p in used}
    node_inputs[RUN_ID_INPUT] = f"${{{{parent.inputs.{RUN_ID_INPUT}}}}}"
    for up in flow.items_waits(lowering, group):  # its outputs are in the store once its node is done
        name = AFTER_PREFIX + nodes[up]
        component_inputs[name] = {"type": "uri_folder"}
        node_inputs[name] = {"type": "uri_folder", "path": f"${{{{parent.jobs.{nodes[up]}.outputs.{DONE_OUTPUT}}}}}",
                             "mode": "direct"}
    component = {"inputs": component_inputs, "outputs": {"pipecast_items": {"type": "string"}},
                 "command": shell_command(argv, markers),
                 "environment": {"image": step_image(pipeline, body, context, why="Azure ML runs each node in a "
                                                                                 "container")},
                 "is_deterministic": False}
    node: dict[str, Any] = {"type": "command", "display_name": f"items of {group.name}", "component": component,
                            "inputs": node_inputs}
    env = env_in_effect(pipeline, body)  # the artifact store's settings, as the step's own node has them
    if env:
        node["environment_variables"] = dict(env)
    return node


def _command(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, root: str,
             lowering: flow.Lowering | None, used: list[ir.Parameter]) -> str:
    for label, text in (("pipeline name", pipeline.name), ("step name", step.name),
                        ("function", step.function.path), ("artifact root", root)):
        if _MARK in text:
            context.error(f"{label} {text!r} holds a NUL character, which no command line can carry", step=step)
    markers = {f"{_MARK}{RUN_ID_INPUT}{_MARK}": f"${{{{inputs.{RUN_ID_INPUT}}}}}"}
    for param in used:
        markers[f"{_MARK}{param.name}{_MARK}"] = f"${{{{inputs.{param.name}}}}}"
    syntax = EngineSyntax(run_id=f"{_MARK}{RUN_ID_INPUT}{_MARK}", parameter=lambda p: f"{_MARK}{p.name}{_MARK}",
                          artifact_root=root)
    # Retries and, for retried steps, the per-try timeout are the runtime's: command nodes have neither.
    argv = runtime_command(pipeline, step, syntax, retry_plan(step, engine_retries=False))
    argv.append(MLFLOW_FLAG)  # the step's metrics and metadata also go to the job's MLflow run (its Metrics tab)
    if pipeline.schedule:  # pipecast.context().logical_time: the trigger time, or NO_LOGICAL_TIME
        markers[f"{_MARK}{LOGICAL_TIME_INPUT}{_MARK}"] = f"${{{{inputs.{LOGICAL_TIME_INPUT}}}}}"
        argv += ["--azureml-logical-time", f"{_MARK}{LOGICAL_TIME_INPUT}{_MARK}"]
    for output in typed_outputs(step, None):  # the runtime copies each to the path Azure ML gives the node
        markers[f"{_MARK}out:{output.name}{_MARK}"] = f"${{{{outputs.{output.name}}}}}"
        argv += ["--azureml-output", f"{output.name}={_MARK}out:{output.name}{_MARK}"]
    if lowering is not None:
        index = f"{_MARK}{ITEM_INPUT}{_MARK}"
        markers[index] = f"${{{{inputs.{ITEM_INPUT}}}}}"
        if step.name in lowering.bodies and lowering.bodies[step.name].name in lowering.nested:
            outer = f"{_MARK}{flow.OUTER_ITEM_INPUT}{_MARK}"
            markers[outer] = f"${{{{inputs.{flow.OUTER_ITEM_INPUT}}}}}"
            index = outer + "][" + index  # instance step[i][j]: the outer item, then its own
        argv = flow.map_args(lowering, step, argv, index, lambda name: f"{_MARK}{name}{_MARK}")
        argv += lowering.decision_args(step.name)
        for name in lowering.condition_parameters(step.name):
            param = pipeline.parameter(name)
            argv += ["--azureml-value", f"{name}={param.type.value}:{_MARK}{name}{_MARK}"]
    return shell_command(argv, markers)


def typed_outputs(step: ir.Step, context: EmitContext | None) -> list[ir.OutputSpec]:
    """The step's typed artifacts that become Azure ML outputs (a name Azure ML refuses is an error)."""
    found = []
    for output in step.outputs:
        if not output.artifact:
            continue
        problem = None if _IO_NAME.fullmatch(output.name) else "is not an Azure ML output name"
        if output.name.startswith("pipecast_"):
            problem = "uses the prefix 'pipecast_' that pipecast keeps for its own Azure ML outputs"
        if problem:
            if context is not None:
                context.error(f"output {output.name!r} ({output.artifact}) {problem}", step=step,
                              fix="rename the output")
            continue
        found.append(output)
    return found


def _report(step: ir.Step, context: EmitContext) -> None:
    """What the job cannot carry for this step goes to the context, never dropped."""
    for secret in step.secrets:
        context.unsupported(
            f"secret {secret.name!r} (env {secret.env!r}): {_NO_SECRETS}", step=step, fix=_SECRET_FIX)
    if step.resources.gpu and not (set_by_step(step, context, "compute") or set_by_step(step, context,
                                                                                        "instance_type")):
        context.unsupported(
            f"step {step.name!r} asks for {step.resources.gpu} GPU(s); Azure ML gives GPUs only through the "
            "compute the node runs on", step=step,
            fix="name a GPU cluster or instance type for this step: "
                "settings={'azureml': {'compute': 'gpu-cluster'}} (or 'instance_type')")


def _schedule(pipeline: ir.Pipeline, context: EmitContext) -> dict[str, Any]:
    trigger: dict[str, Any] = {"type": "cron", "expression": pipeline.schedule,
                               "time_zone": context.settings.timezone}
    return {
        "$schema": SCHEDULE_SCHEMA,
        "name": schedule_name(pipeline),
        "display_name": f"{pipeline.name} schedule",
        "trigger": trigger,
        "create_job": {
            "type": "pipeline",
            "job": f"./{pipeline_file(pipeline)}",
            # Each run the schedule starts gets its own run id and its logical time: its trigger time (see
            # TRIGGER_TIME_MACRO). The logical time only here: a job made by hand would carry the macro's text.
            "inputs": {RUN_ID_INPUT: TRIGGER_TIME_MACRO, LOGICAL_TIME_INPUT: TRIGGER_TIME_MACRO},
        },
    }


def schedule_name(pipeline: ir.Pipeline) -> str:
    """The name of the pipeline's JobSchedule in the workspace."""
    return f"{pipeline.name}_schedule"
