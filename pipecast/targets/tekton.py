"""The ``tekton`` target: a Tekton ``Pipeline`` plus a ``PipelineRun`` (``tekton.dev/v1``).

Each step becomes a pipeline task with an inline ``taskSpec`` holding one named step that runs the
pipecast runtime (exec form). Pipeline parameters are typed ``string`` (dicts and lists travel as JSON
text) and reach a task as task parameters: the step's args say ``$(params.x)``, which Tekton replaces
with the whole value. The run id is ``$(context.pipelineRun.name)``, handed to each task as its ``run-id``
parameter. A schedule becomes a Kubernetes CronJob that creates a PipelineRun (Tekton has no cron of its
own).

Tekton replaces its variables in several passes over a step (see :func:`variable_change`), so text it would
substitute cannot travel in args or env values: an env value holding a Tekton variable reaches the step
through a pod annotation and the downward API (Tekton copies an inline task's annotations to its pod and
substitutes nothing there), and a parameter default holding one is refused, as is a run's value holding one but
``$(params.…)``, which reaches a shared Task's step as written (:func:`run_value_change`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pipecast.compiler import ir, naming
from pipecast.runs.status import RunStatus
from pipecast.runtime.command import EngineSyntax
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.params import render_parameter
from pipecast.targets import kube
from pipecast.targets.base import Bundle, EmitContext, Feature, emulated, native, unsupported
from pipecast.targets.kube import crd as kube_crd
from pipecast.targets.kube.crd import CustomResourceTarget, Engine
from pipecast.targets.kube.limits import check_sizes
from pipecast.targets.kube.objects import Kube
from pipecast.targets.kube.patches import plain
from pipecast.targets.kube.pod import env_list, kubelet_escape
from pipecast.targets.kube.settings import (
    KubeConnection,
    Placement,
    PodSettings,
    dns_label_problem,
    dns_subdomain_problem,
    placement,
)
from pipecast.targets.kubernetes.tool_image import client_requirements, tool_image
from pipecast.targets.lowering import retry_plan, runtime_command, step_image, worst_case_whole_seconds
from pipecast.targets.map_limits import MapLimit
from pipecast.targets.serialize import dump_yaml, dump_yaml_all
from pipecast.targets.settings import ContainerSettings, Duration, setting
from pipecast.targets.tekton_cron import LOGICAL_TIME_PARAM, cron_documents
from pipecast.targets.tekton_cron import param_spec as cron_param_spec
from pipecast.targets.tekton_flow import TektonFlow, check_feature_flags
from pipecast.targets.tekton_share import RUN_ENV, RUN_ID, TASK_LABEL, SharedTasks, run_env
from pipecast.targets.tekton_workspace import Workspace, artifacts, size_problem

API_VERSION = "tekton.dev/v1"
ENV_ANNOTATION_PREFIX = "pipecast.dev/env-"  # pod annotations that carry env values Tekton would substitute
ANNOTATIONS_LIMIT = 256 * 1024 - 16 * 1024  # Kubernetes' 256 KiB of annotations, less room for Tekton's own
# Tekton substitutes variables in several passes: at the PipelineRun, ApplyParameters then ApplyContexts, both
# also applied to an inline taskSpec's steps (pkg/reconciler/pipelinerun/resources/apply.go propagateParams);
# at the TaskRun, ApplyParameters, ApplyContexts, ApplyResults, ApplyArtifacts, ApplyStepExitCodePath,
# ApplyWorkspaces and ApplyCredentialsPath (pkg/reconciler/taskrun: applyParamsContextsResultsAndWorkspaces,
# createPod). Each replaces "$(name)" for the names it knows, in text the earlier passes wrote too, and Tekton
# has no escape for "$(". These are the roots of those names.
_TEKTON_VARIABLE = re.compile(r"\$\((params|context|tasks|steps|step|results|artifacts|credentials|workspaces)[.\[]")
# A value the PipelineRun gives for a parameter is taken as resolved (pipelinerun/resources/apply.go
# ApplyParameters, phase 1 paramsFromPipelineRun: only the Pipeline's own defaults the run does not give are
# resolved recursively, resolveStringParamRecursively) and written into the pipeline task's param by one
# strings.Replacer pass (substitution.ApplyReplacements); the shared Task's step reads it through its own param,
# again one pass (taskrun/resources/apply.go ApplyParameters), and no later pass knows "params.". Every other
# root is still replaced by a later pass: ApplyContexts and ApplyWorkspaces at the PipelineRun, the result and
# status passes on a task's params, then the TaskRun's contexts, results, artifacts, exit code, workspaces and
# credentials passes over the step.
_RUN_VALUE_VARIABLE = re.compile(r"\$\((context|tasks|steps|step|results|artifacts|credentials|workspaces)[.\[]")
VARIABLE_CHANGE_FIX = ("remove the '$(…)' reference from the value (Tekton has no escape for '$('), or use a target "
                       "that passes values verbatim, such as 'kubeflow'")
DEFAULT_DASHBOARD = "http://localhost:9097"  # `kubectl port-forward svc/tekton-dashboard 9097:9097`
_CRONJOB_NAME = dataclasses.replace(naming.rule_for("dns1123_label"), max_length=52)  # Jobs add 11 chars


@dataclass(frozen=True, kw_only=True)
class TektonSettings(PodSettings, ContainerSettings):
    """Compile settings of the ``tekton`` target (``--set``, or ``settings={"tekton": {...}}``)."""

    namespace: str | None = setting(None, "namespace of every object; at submit -c namespace= wins, else this, else "
                                          "the kubeconfig context's", step=False, check=dns_label_problem,
                                    example="namespace=pipelines")
    pipeline_timeout: Duration | None = setting(None, "PipelineRun spec.timeouts.pipeline, e.g. '6h' (unset: '0s', "
                                                      "no limit, since Tekton's 60-minute default would stop long "
                                                      "training runs)", step=False)
    embed: bool = setting(False, "true: one PipelineRun with an embedded pipelineSpec instead of a Pipeline and a "
                                 "PipelineRun", step=False)
    cron_image: str | None = setting(None, "image of the schedule's CronJob pod that creates each PipelineRun with "
                                           "its logical time: it runs pipecast with its kubernetes extra (default: "
                                           "the pipeline's image, else image, else the image pipecast submit "
                                           "builds, which then holds the kubernetes client)", step=False,
                                    example="cron_image=REPO:TAG")
    timezone: str | None = setting(None, "time zone of the schedule's CronJob, e.g. 'Europe/Paris' (default: the "
                                         "controller's, UTC)", step=False, example="timezone=Europe/Paris")
    artifact_pvc: str | None = setting(
        None, "an existing PersistentVolumeClaim bound to the 'artifacts' workspace, mounted in every task at the "
              "path of a file:///PATH artifact root (ReadWriteMany, or ReadWriteOnce with Tekton's affinity "
              "assistant)", step=False, check=dns_subdomain_problem, example="artifact_pvc=shared-artifacts")
    artifact_volume_size: str | None = setting(
        None, "size of a PersistentVolumeClaim Tekton creates for each run (volumeClaimTemplate) and mounts in every "
              "task at the path of a file:///PATH artifact root; deleted with the PipelineRun", step=False,
        check=size_problem, example="artifact_volume_size=10Gi")
    artifact_access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = setting(
        "ReadWriteOnce", "access mode of the artifact_volume_size claim (ReadWriteOnce: Tekton's affinity assistant "
                         "runs every task of the run on the volume's node)", step=False)
    artifact_storage_class: str | None = setting(
        None, "storageClassName of the artifact_volume_size claim (default: the cluster's default class)",
        step=False, check=dns_subdomain_problem)
    max_matrix_combinations: int = setting(
        256, "the cluster's default-max-matrix-combinations-count (config-defaults): the most items a map may "
             "have, checked at compile time for constant lists and list parameters' defaults, by submit for the "
             "values given, and by the map's items task at run time",
        step=False, check=lambda n: None if n >= 1 else "must be 1 or more", example="max_matrix_combinations=256")


def emit_tekton(pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
    """Lower the IR to Tekton YAML: Pipeline, PipelineRun and (with a schedule) the CronJob file."""
    settings: TektonSettings = context.settings
    base = naming.pipeline_resource_name(pipeline.name)
    namespace = settings.namespace
    root, workspace = artifacts(pipeline, context)
    shared = SharedTasks(base, {k: v for k, v in kube_crd.metadata(base, pipeline, namespace).items() if k != "name"})
    spec = _pipeline_spec(pipeline, context, root, workspace, shared)
    kube_crd.check_parameter_defaults(pipeline, context, engine_change=variable_change,
                                      engine_fix=VARIABLE_CHANGE_FIX)
    notes = kube_crd.object_annotations(pipeline)
    tasks = shared.documents()
    run = _pipeline_run(pipeline, context, base, namespace, spec if settings.embed else None, workspace)
    pipeline_doc = {"apiVersion": API_VERSION, "kind": "Pipeline",
                    "metadata": kube_crd.metadata(base, pipeline, namespace, annotations=notes), "spec": spec}
    check_sizes([*tasks, run] if settings.embed else [*tasks, pipeline_doc, run], context)
    # The Tasks go with the Pipeline, in the file `kubectl apply -f DIR` applies before the run (names sort so);
    # an embedded run needs them applied first too (`pipecast submit` does).
    if settings.embed:
        files = [(f"{base}-pipelinerun.yaml", dump_yaml(run))]
        files += [(f"{base}-tasks.yaml", dump_yaml_all(tasks))] if tasks else []
    else:
        files = [(f"{base}-pipeline.yaml", dump_yaml_all([*tasks, pipeline_doc])),
                 (f"{base}-pipelinerun.yaml", dump_yaml(run))]
    if pipeline.schedule:
        cron = cron_documents(pipeline, _cron_image(pipeline, context), settings.timezone,
                              _CRONJOB_NAME.apply(pipeline.name), namespace, run)
        check_sizes(cron, context)
        files.append((f"{base}-cron.yaml", dump_yaml_all(cron)))
    return Bundle("tekton", tuple(files))


def _cron_image(pipeline: ir.Pipeline, context: EmitContext) -> str:
    settings: TektonSettings = context.settings
    return tool_image(settings.cron_image, pipeline, context, "the schedule's CronJob",
                      fix="--set cron_image=REPO:TAG (an image with pipecast[kubernetes] installed), or give the "
                          "pipeline image=...")


def _pipeline_spec(pipeline: ir.Pipeline, context: EmitContext, root: str,
                   workspace: Workspace | None, shared: SharedTasks) -> dict[str, Any]:
    names = kube_crd.task_names(pipeline, "tekton")
    spec: dict[str, Any] = {}
    if pipeline.description:
        spec["description"] = pipeline.description
    if pipeline.parameters:
        spec["params"] = [_param_spec(p) for p in pipeline.parameters]
    if pipeline.schedule:
        if any(p.name == LOGICAL_TIME_PARAM for p in pipeline.parameters):
            context.error(f"parameter {LOGICAL_TIME_PARAM!r} is the name pipecast gives a scheduled Tekton "
                          "pipeline's logical time", fix="rename the parameter")
        spec["params"] = [*spec.get("params", []), cron_param_spec()]
    if workspace:
        spec["workspaces"] = [{"name": workspace.run_binding()["name"],
                               "description": f"the artifact root, mounted at {workspace.path}"}]
    tasks = [_pipeline_task(pipeline, step, names, root, context, workspace) for step in pipeline.steps]
    if not pipeline.uses_control_flow:
        spec["tasks"] = [shared.share(step, task) for step, task in zip(pipeline.steps, tasks)]
        return spec
    settings: TektonSettings = context.settings
    flow = TektonFlow(pipeline, names, context, settings.max_matrix_combinations)
    dag: list[dict[str, Any]] = []
    final: list[dict[str, Any]] = []
    for step, task in zip(pipeline.steps, tasks):
        (final if step.name in flow.finally_steps else dag).append(shared.share(step, flow.adjust(step, task)))
    for kind, key in flow.aux_tasks():
        aux = _aux_task(pipeline, flow.aux_plan(kind, key, root, "python"), context, workspace)
        dag.insert(flow.first_user(aux["name"], dag), shared.share(None, aux))
    spec["tasks"] = dag
    if final:
        spec["finally"] = final
    return spec


def _aux_task(pipeline: ir.Pipeline, plan: dict[str, Any], context: EmitContext,
              workspace: Workspace | None) -> dict[str, Any]:
    """A control-flow task (a chain's branch, a map's item indices) running :mod:`pipecast.runtime.publish_tekton`.

    It borrows the image, env and pod metadata of the first step it serves.
    """
    step: ir.Step = plan["step"]
    env, annotations = _env(pipeline, step, context)
    container: dict[str, Any] = {"name": "run", "image": step_image(pipeline, step, context),
                                 "command": plan["command"], "args": plan["args"], "env": [*env, run_env()]}
    metadata = _task_metadata(context.settings_for(step).pod_metadata(), annotations)
    what = "the indices of the map's items" if plan["array"] else "the name of the branch that runs, or 'none'"
    spec: dict[str, Any] = {
        **({"metadata": metadata} if metadata else {}),
        "params": [{"name": p.name, "type": "string"} for p in plan["params"]],
        "results": [{"name": plan["result"], "type": "array" if plan["array"] else "string", "description": what}],
        "steps": [container],
    }
    if workspace:
        spec["workspaces"] = [workspace.task_declaration()]
    task: dict[str, Any] = {"name": plan["name"], "displayName": plan["display"]}
    if plan["runAfter"]:
        task["runAfter"] = plan["runAfter"]
    task["params"] = [{"name": p.name, "value": f"$(params.{p.name})"} for p in plan["params"]]
    if plan["when"]:
        task["when"] = plan["when"]
    if workspace:
        task["workspaces"] = [workspace.task_binding()]
    task["taskSpec"] = spec
    return task


def _param_spec(param: ir.Parameter) -> dict[str, Any]:
    kind = param.type.value
    note = f"pipecast type: {kind}" + (", as JSON text" if param.type in (ir.TypeName.DICT, ir.TypeName.LIST) else "")
    spec: dict[str, Any] = {"name": param.name, "type": "string", "description": note}
    if not param.required:
        spec["default"] = render_parameter(param.type, param.default)
    return spec


def _pipeline_task(pipeline: ir.Pipeline, step: ir.Step, names: Mapping[str, str], root: str,
                   context: EmitContext, workspace: Workspace | None) -> dict[str, Any]:
    plan = retry_plan(step, engine_delay=False)  # Tekton retries at once: a delay is the runtime's to wait
    syntax = EngineSyntax(run_id=RUN_ID, parameter=lambda p: f"$(params.{p.name})",
                          artifact_root=root)
    kube_crd.check_command_text(pipeline, step, context, syntax, plan)
    command = runtime_command(pipeline, step, syntax, plan)
    used = [p.name for p in _parameters_used(pipeline, step)]
    kube.check_secret_refs(pipeline, step, context)
    env, annotations = _env(pipeline, step, context)
    if pipeline.schedule and all(item["name"] != LOGICAL_TIME_VAR for item in env):  # a step's own value wins
        # The tick is RFC 3339 text, which no later substitution pass changes.
        env.append({"name": LOGICAL_TIME_VAR, "value": f"$(params.{LOGICAL_TIME_PARAM})"})
        used.append(LOGICAL_TIME_PARAM)
    container: dict[str, Any] = {
        "name": "run",
        "image": step_image(pipeline, step, context),
        "command": command[:3],
        "args": command[3:],
        "env": [*env, run_env()],
    }
    resources = context.settings_for(step).resources(step, context)
    if resources:
        container["computeResources"] = resources
    settings: TektonSettings = context.settings_for(step)
    container = _patched_step(container, settings, step, context)
    metadata = _task_metadata(settings.pod_metadata(), annotations)
    task_spec: dict[str, Any] = {"metadata": metadata} if metadata else {}
    if used:
        task_spec["params"] = [{"name": name, "type": "string"} for name in used]
    task_spec["steps"] = [container]
    if workspace:
        task_spec["workspaces"] = [workspace.task_declaration()]
    # No displayName: the step's name is the task's `step` param, and 5,000 tasks must fit in 1 MiB.
    task: dict[str, Any] = {"name": names[step.name]}
    upstream = [names[s] for s in step.upstream()]
    if upstream:
        task["runAfter"] = upstream
    if plan.engine:
        task["retries"] = step.retry.retries
    if step.timeout_seconds:
        # When the runtime retries inside the task, it times each try; the task's timeout then covers every try
        # and every delay, so Tekton still stops a task that hangs outside the runtime's reach.
        whole = worst_case_whole_seconds(step) if plan.runtime else step.timeout_seconds
        task["timeout"] = kube_crd.go_duration(whole or step.timeout_seconds)
    if used:
        task["params"] = [{"name": name, "value": f"$(params.{name})"} for name in used]
    if workspace:
        task["workspaces"] = [workspace.task_binding()]
    task["taskSpec"] = task_spec
    return task


def _task_metadata(own: Mapping[str, Any], annotations: Mapping[str, str]) -> dict[str, Any]:
    """The Task's labels and annotations: the settings' pod metadata and the env annotations.

    Tekton copies a Task's (and an inline taskSpec's) metadata to the TaskRun and its pod (docs/labels.md).
    """
    metadata: dict[str, Any] = {}
    if own.get("labels"):
        metadata["labels"] = dict(own["labels"])
    if annotations or own.get("annotations"):
        metadata["annotations"] = {**own.get("annotations", {}), **annotations}
    return metadata


def _parameters_used(pipeline: ir.Pipeline, step: ir.Step) -> list[ir.Parameter]:
    """The pipeline parameters a step binds, once each, in binding order."""
    seen: dict[str, ir.Parameter] = {}
    for binding in step.bindings:
        if binding.kind is ir.BindingKind.PARAMETER and binding.parameter:
            seen.setdefault(binding.parameter, pipeline.parameter(binding.parameter))
    return list(seen.values())


def _env(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Container env, kubelet-escaped, and the pod annotations that carry the values Tekton would substitute.

    Such a value is read through the downward API (``fieldRef`` to ``metadata.annotations['…']``): Tekton
    copies an inline task's annotations to the TaskRun and its pod as written, and the kubelet expands
    nothing in a ``fieldRef`` value.
    """
    env: list[dict[str, Any]] = []
    annotations: dict[str, str] = {}
    for item in env_list(pipeline, step):
        value = item.get("value")
        if item["name"] == RUN_ENV:
            context.error(f"step {step.name!r} sets env {RUN_ENV}, which pipecast sets to the run's name on Tekton",
                          step=step, fix=f"rename the env variable {RUN_ENV}")
        if value is None:
            env.append(item)
        elif variable_change(value):
            name = f"{ENV_ANNOTATION_PREFIX}{item['name']}"
            if not kube.is_label_key(name):
                name = f"{ENV_ANNOTATION_PREFIX}{len(annotations)}"
            annotations[name] = value
            env.append({"name": item["name"],
                        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{name}']"}}})
        else:
            env.append({"name": item["name"], "value": kubelet_escape(value)})
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_LIMIT:
        context.error(f"the env values of step {step.name!r} that travel as pod annotations are {size} bytes; a pod "
                      f"holds at most {ANNOTATIONS_LIMIT} bytes of them here (Kubernetes' limit is 256 KiB)",
                      step=step, fix="pass large data as a step output or an artifact, not an env value")
    return env, annotations


def variable_change(text: str) -> str | None:
    """Why Tekton's substitution would change ``text`` where it reaches a step (args, env values), or None.

    The rule for text written in a Task (env values) and for a parameter's default, which the Pipeline object
    carries too: Tekton resolves ``$(params.…)`` in a default a run does not give.
    """
    return _change(_TEKTON_VARIABLE, text)


def run_value_change(text: str) -> str | None:
    """:func:`variable_change` for a value the PipelineRun gives (``pipecast submit -p``).

    A ``$(params.…)`` in it reaches the step as written (see ``_RUN_VALUE_VARIABLE``).
    """
    return _change(_RUN_VALUE_VARIABLE, text)


def _change(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    if found is None:
        return None
    end = text.find(")", found.start())
    reference = text[found.start():end + 1] if end >= 0 else text[found.start():found.start() + 30]
    return (f"it contains {reference!r}, which Tekton substitutes (Tekton replaces its variables in a step in "
            "several passes, so even a substituted value is replaced again)")


def _pipeline_run(pipeline: ir.Pipeline, context: EmitContext, base: str, namespace: str | None,
                  embedded: dict[str, Any] | None, workspace: Workspace | None) -> dict[str, Any]:
    settings: TektonSettings = context.settings
    spec: dict[str, Any] = {"pipelineSpec": embedded} if embedded is not None else {"pipelineRef": {"name": base}}
    values = [{"name": p.name, "value": render_parameter(p.type, p.default)}
              for p in pipeline.parameters if not p.required]
    if values:
        spec["params"] = values
    spec["timeouts"] = {"pipeline": kube_crd.go_duration(settings.pipeline_timeout or 0)}
    if workspace:
        spec["workspaces"] = [workspace.run_binding()]
    template: dict[str, Any] = {}
    run_placement = placement(settings, pipeline, None, context)
    pod = _pod_template(run_placement, settings, Placement({}, []), None, context, None)
    if pod:
        template["podTemplate"] = pod
    if settings.service_account:
        template["serviceAccountName"] = settings.service_account
    if template:
        spec["taskRunTemplate"] = template
    names = kube_crd.task_names(pipeline, "tekton")
    per_task = []
    for step in pipeline.steps:
        own = context.settings_for(step)
        task_run: dict[str, Any] = {"pipelineTaskName": names[step.name]}
        if own.service_account != settings.service_account:
            if not own.service_account:
                context.unsupported(f"step {step.name!r} sets no service_account while the pipeline does; Tekton "
                                    "then uses the run's", step=step,
                                    fix="give the step a service_account of its own, or none to the pipeline")
            else:
                task_run["serviceAccountName"] = own.service_account
        step_pod = _pod_template(placement(own, pipeline, step, context), own, run_placement, settings, context,
                                 step)
        if step_pod:
            task_run["podTemplate"] = step_pod
        if len(task_run) > 1:
            per_task.append(task_run)
    if per_task:
        spec["taskRunSpecs"] = per_task
    return {"apiVersion": API_VERSION, "kind": "PipelineRun",
            "metadata": kube_crd.metadata(base, pipeline, namespace, generate=True), "spec": spec}


# Fields of a Tekton podTemplate (pkg/apis/pipeline/pod/template.go Template, Tekton v1.x; the PipelineRun
# CRD schema in tests/schemas/tekton lists the same); Tekton builds every other pod field itself.
POD_TEMPLATE_FIELDS = frozenset({
    "affinity", "automountServiceAccountToken", "dnsConfig", "dnsPolicy", "enableServiceLinks", "env",
    "hostAliases", "hostNetwork", "hostUsers", "imagePullSecrets", "nodeSelector", "priorityClassName",
    "runtimeClassName", "schedulerName", "securityContext", "tolerations", "topologySpreadConstraints", "volumes"})
# Container fields a Tekton Step has besides the ones pipecast writes (pkg/apis/pipeline/v1 container_types.go).
STEP_FIELDS = frozenset({"workingDir", "envFrom", "volumeMounts", "volumeDevices", "imagePullPolicy",
                         "securityContext"})


def _patched_step(container: dict[str, Any], settings: TektonSettings, step: ir.Step,
                  context: EmitContext) -> dict[str, Any]:
    """``container`` with ``container_patch``; a field a Tekton Step lacks, or a ``$(`` it would replace, reported."""
    unknown = sorted(set(settings.container_patch) - STEP_FIELDS)
    if unknown:
        context.unsupported(f"container_patch sets {unknown!r}, which a Tekton Step does not have", step=step,
                            fix=f"patch only {sorted(STEP_FIELDS)!r} on Tekton")
    if "$(" in json.dumps(plain(settings.container_patch)):
        context.error("container_patch holds '$(', which Tekton replaces as a variable", step=step,
                      fix="remove '$(' from container_patch")
    return settings.patch_container(container)


def _pod_fields(settings: PodSettings, step: ir.Step | None, context: EmitContext) -> dict[str, Any]:
    """The podTemplate fields of the escape-hatch settings; those Tekton has no podTemplate field for reported."""
    fields = settings.pod_fields()
    unknown = sorted(set(fields) - POD_TEMPLATE_FIELDS)
    if unknown:
        message = f"pod_spec_patch sets {unknown!r}, which a Tekton podTemplate does not have"
        if not any(p.message == message for p in context.problems):
            context.unsupported(message, step=step, fix=f"patch only {sorted(POD_TEMPLATE_FIELDS)!r} on Tekton")
    return {key: value for key, value in fields.items() if key in POD_TEMPLATE_FIELDS}


def _pod_template(own: Placement, settings: PodSettings, default: Placement,
                  defaults: PodSettings | None, context: EmitContext, step: ir.Step | None) -> dict[str, Any]:
    """A podTemplate with the fields of ``own`` (and ``settings``' pull secrets) that differ from the defaults.

    Tekton gives a task's pod the fields its ``taskRunSpecs`` podTemplate sets, each replacing the run's
    ``taskRunTemplate`` field (pkg/apis/pipeline/pod/template.go MergePodTemplateWithDefault).
    """
    pod: dict[str, Any] = {}
    if own.node_selector != default.node_selector:
        pod["nodeSelector"] = own.node_selector
    if own.tolerations != default.tolerations:
        pod["tolerations"] = own.tolerations
    if settings.image_pull_secrets != (defaults.image_pull_secrets if defaults else ()):
        pod["imagePullSecrets"] = settings.pull_secrets()
    theirs = _pod_fields(defaults, None, context) if defaults else {}
    for key, value in _pod_fields(settings, step, context).items():
        if value != theirs.get(key):
            pod[key] = value
    for key in theirs.keys() - pod.keys() - settings.pod_fields().keys():
        context.unsupported(f"the step sets no {key} while the pipeline does; Tekton "
                            "then uses the run's", step=step, fix=f"give the step a {key} of its own")
    return pod


def run_status(run: Mapping[str, Any]) -> tuple[RunStatus, str]:
    """A PipelineRun's state from its ``Succeeded`` condition, and the condition's message."""
    conditions = run.get("status", {}).get("conditions") or []
    succeeded = next((c for c in conditions if c.get("type") == "Succeeded"), None)
    if succeeded is None:
        return RunStatus.PENDING, ""
    state, reason = succeeded.get("status"), succeeded.get("reason", "")
    message = succeeded.get("message", "") or reason
    if state == "True":
        return RunStatus.SUCCEEDED, message
    if state == "False":
        cancelled = reason in ("Cancelled", "CancelledRunFinally", "StoppedRunFinally", "PipelineRunCancelled")
        return (RunStatus.CANCELLED if cancelled else RunStatus.FAILED), message
    if reason in ("PipelineRunPending", "Pending"):
        return RunStatus.PENDING, message
    return RunStatus.RUNNING, message


def _dashboard_url(base: str, namespace: str, name: str) -> str:
    return f"{base.rstrip('/')}/#/namespaces/{namespace}/pipelineruns/{name}"


def _failed_task(api: Kube, run: Mapping[str, Any]) -> str:
    """``task 'x' failed: message`` for the first failed TaskRun of the PipelineRun, or ''."""
    meta = run.get("metadata", {})
    for item in api.list("TaskRun", f"tekton.dev/pipelineRun={meta.get('name', '')}"):
        status, message = run_status(item)
        if status is RunStatus.FAILED:
            task = item.get("metadata", {}).get("labels", {}).get("tekton.dev/pipelineTask") or \
                item.get("metadata", {}).get("name", "?")
            return f"task {task!r} failed: {message}"
    return ""


def _set_params(run: dict[str, Any], pipeline: ir.Pipeline, values: Mapping[str, Any]) -> None:
    run["spec"]["params"] = [{"name": p.name, "value": render_parameter(p.type, values[p.name])}
                             for p in pipeline.parameters if p.name in values]
    if not run["spec"]["params"]:
        del run["spec"]["params"]


@dataclass(frozen=True, kw_only=True)
class TektonConnection(KubeConnection):
    """The cluster, and the UI the run's link points at (``pipecast submit -c KEY=VALUE``)."""

    dashboard_url: str | None = setting(None, "Tekton Dashboard base URL for run links (default "
                                              "$PIPECAST_TEKTON_DASHBOARD_URL, else http://localhost:9097)")


TEKTON = Engine(
    group="tekton.dev", version="v1",
    plurals={"Task": "tasks", "Pipeline": "pipelines", "PipelineRun": "pipelineruns", "TaskRun": "taskruns"},
    definition_kinds=("Task", "Pipeline"), run_kind="PipelineRun",
    set_parameters=_set_params, read_status=run_status, failure_detail=_failed_task,
    # CancelledRunFinally, not Cancelled: both cancel the running TaskRuns and start no new task, but only it runs
    # the finally tasks (exit handlers and hooks), as a cancelled `pipecast run` runs them (docs/pipelineruns.md
    # "Gracefully cancelling a PipelineRun"; accepted at every enable-api-fields level, pipelinerun_validation.go
    # validateSpecStatus). Without finally tasks the two are the same.
    cancel_patch={"spec": {"status": "CancelledRunFinally"}},
    ui_setting="dashboard_url", ui_env="PIPECAST_TEKTON_DASHBOARD_URL", default_ui=DEFAULT_DASHBOARD,
    ui_url=_dashboard_url, value_change=run_value_change, value_change_fix=VARIABLE_CHANGE_FIX,
    # Tekton labels a TaskRun's pod with its PipelineRun and pipeline task (docs/labels.md) and names each step's
    # container "step-<step name>" (docs/tasks.md); the one step of a pipecast task is "run".
    pod_run_label="tekton.dev/pipelineRun", pod_step_label=TASK_LABEL, step_container="step-run",
    check_access=check_feature_flags,
)


class TektonTarget(CustomResourceTarget):
    """Tekton Pipelines: emit ``Pipeline``/``PipelineRun``, submit through the Kubernetes API, track runs."""

    name = "tekton"
    description = "Tekton Pipelines on Kubernetes (tekton.dev/v1 Pipeline + PipelineRun)"
    extra = "tekton"
    engine = TEKTON
    settings_class = TektonSettings
    connection_class = TektonConnection
    schedules_module = "pipecast.schedules.kube"
    capabilities = {
        Feature.PARAMETERS: native("typed string params; dicts and lists as JSON text"),
        Feature.DATA_PASSING: native("artifact store; runAfter orders the tasks"),
        Feature.AFTER: native("runAfter"),
        Feature.RESOURCES: native("step computeResources (requests = limits)"),
        Feature.GPU: native("nvidia.com/gpu limits; gpu_type as a per-task node selector"),
        Feature.RETRY: native("pipeline task retries (immediate); with a delay the runtime retries instead"),
        Feature.RETRY_BACKOFF: emulated("Tekton retries at once, so the runtime retries inside the task with "
                                        "the delay and backoff"),
        Feature.TIMEOUT: native("pipeline task timeout (the runtime's when it also retries)"),
        Feature.CACHE: emulated("the runtime reuses earlier outputs from the artifact root"),
        Feature.SCHEDULE: emulated("a Kubernetes CronJob whose pod creates a PipelineRun with the tick as a param"),
        Feature.ENV: native("step env"),
        Feature.SECRETS: native("env valueFrom.secretKeyRef"),
        Feature.STEP_IMAGE: native(),
        Feature.SUBMIT: native("kubernetes client: Pipeline applied, PipelineRun created"),
        Feature.STATUS: native("Succeeded condition; cancel sets spec.status CancelledRunFinally (the finally "
                               "tasks run)"),
        Feature.UI_URL: native("Tekton Dashboard"),
        Feature.MAP: native("matrix over the item indices: literal for constant lists, else the array result of a "
                            "<map>-items task; fan-in from the artifact store; at most max_matrix_combinations (256) "
                            "items; a nested map emulated: the outer map's TaskRuns run the inner items (step[i][j]) "
                            "as child processes and decide the branches around them"),
        Feature.CONDITION: native("a <chain>-branch task writes the branch that runs as a result; when: in on it, "
                                  "carried by every task after the branch; OneOf as one when over its branches"),
        Feature.EXIT_HANDLER: native("a finally task; its status from $(tasks.<name>.status) of the group's tasks; "
                                     "inside a branch with the branch's when, inside a map matrixed over the item "
                                     "indices (item i's status from its group's records)"),
        Feature.HOOKS: native("finally tasks with when on $(tasks.status) (Failed; Succeeded or Completed)"),
        Feature.PARALLELISM: unsupported(
            "Tekton bounds neither the TaskRuns of a matrix nor the running tasks of a PipelineRun",
            fix="drop the bound (ParallelFor(..., parallelism=None), @pipeline(parallelism=None)) or run it with "
                "the local target (`pipecast run FILE`), or a target that bounds it (argo, airflow; github, "
                "azureml per map)"),
    }

    def map_limit(self, settings: Any) -> MapLimit | None:
        """The cluster's TaskRuns per matrix, as the max_matrix_combinations setting says."""
        if settings is None:
            return None
        most = settings.max_matrix_combinations
        return MapLimit(most, f"Tekton fans a task out into at most {most} TaskRuns (the cluster's "
                        "default-max-matrix-combinations-count, pipecast's max_matrix_combinations setting)",
                        "raise the cluster's limit and the max_matrix_combinations setting")

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """Lower the IR to Tekton YAML: Pipeline, PipelineRun and (with a schedule) the CronJob file."""
        return emit_tekton(pipeline, context)

    def image_requirements(self, pipeline: ir.Pipeline, settings: Any) -> tuple[str, ...]:
        """The Kubernetes client, when the schedule's pod runs pipecast in the built image (no cron_image given)."""
        return client_requirements(settings.cron_image, pipeline, settings) if pipeline.schedule else ()
