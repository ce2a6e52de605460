"""The ``argo`` target: an Argo ``WorkflowTemplate`` plus a ``Workflow`` that runs it (``argoproj.io/v1alpha1``).

The template's entrypoint is a DAG with one task per step; each task runs a container template whose
args carry the pipecast runtime command with ``{{workflow.parameters.x}}`` and ``{{workflow.name}}``.
Argo templates a container several times over (see :func:`template_change`), so a value holding a tag Argo
would resolve is refused rather than passed. Retries are ``retryStrategy`` with backoff, timeouts are
``activeDeadlineSeconds``, and a schedule becomes a ``CronWorkflow``. Submit and tracking are
:mod:`pipecast.targets.kube.submit`'s, with :data:`ARGO` saying what is Argo's own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pipecast.compiler import ir, naming
from pipecast.runs.status import RunStatus
from pipecast.runtime.command import EngineSyntax
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.params import render_parameter
from pipecast.runtime.publish_argo import SCHEDULED_TIME
from pipecast.targets import argo_args, kube
from pipecast.targets.argo_access import check_access
from pipecast.targets.argo_flow import FlowLowering
from pipecast.targets.argo_maps import FLOW_PARAMETER, flow_argument
from pipecast.targets.argo_maps import map_limit as argument_limit
from pipecast.targets.argo_share import Templates, parameterize
from pipecast.targets.base import Bundle, EmitContext, Feature, emulated, native
from pipecast.targets.kube import crd as kube_crd
from pipecast.targets.kube.crd import CustomResourceTarget, Engine
from pipecast.targets.kube.limits import check_sizes
from pipecast.targets.kube.patches import plain
from pipecast.targets.kube.pod import env_list, kubelet_escape
from pipecast.targets.kube.settings import KubeConnection, Placement, PodSettings, dns_label_problem, placement
from pipecast.targets.lowering import artifact_root, retry_plan, runtime_command, step_image
from pipecast.targets.map_limits import MapLimit
from pipecast.targets.serialize import dump_yaml, dump_yaml_all
from pipecast.targets.settings import ContainerSettings, Duration, setting

API_VERSION = "argoproj.io/v1alpha1"
DESCRIPTION_ANNOTATION = "workflows.argoproj.io/description"
RUN_LABEL = "pipecast.dev/run"  # the run's Workflow name, on the Workflow and its pods (set at submit)
DEFAULT_ARGO_UI = "https://localhost:2746"  # `kubectl -n argo port-forward svc/argo-server 2746:2746`
# Env the workflow controller appends to every step container (ARGO_CONTAINER_NAME, ARGO_NODE_ID, …, and
# the trace context), so the kubelet would expand $(ARGO_…) in a substituted parameter value too.
INJECTED_ENV = ("ARGO_", "TRACEPARENT", "TRACESTATE")
# Argo templates a container in several passes over its JSON (workflow/common/util.go SubstituteParams: globals
# and locals, then globals, locals and inputs again; workflow/controller/workflowpod.go substitutePodParams:
# globals once more over the whole pod), each a fasttemplate scan where the first "}}" closes a "{{" and an
# unknown tag is left as written. So a value inserted by one pass is scanned by the next: a tag in it that names
# an Argo variable (util/variables/keys) is replaced, an expression tag "{{=…}}" is evaluated, and an unclosed
# "{{" breaks the scan. Argo has no escape for "{{".
_ARGO_VARIABLE = re.compile(r"(workflow|inputs|outputs|pod|node|tasks|steps|item|lastRetry)\.|(item|retries)$")
TEMPLATE_CHANGE_FIX = ("remove the '{{…}}' tag from the value (Argo has no escape for '{{'), or use a target that "
                       "passes values verbatim, such as 'kubeflow'")


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be a whole number greater than 0"


@dataclass(frozen=True, kw_only=True)
class ArgoSettings(PodSettings, ContainerSettings):
    """Compile settings of the ``argo`` target (``--set``, or ``settings={"argo": {...}}``)."""

    namespace: str | None = setting(None, "namespace of every object; at submit -c namespace= wins, else this, else "
                                          "the kubeconfig context's", step=False, check=dns_label_problem,
                                    example="namespace=argo")
    pipeline_timeout: Duration | None = setting(None, "the whole workflow's activeDeadlineSeconds, e.g. '6h'",
                                                step=False)
    retry_policy: Literal["Always", "OnFailure", "OnError", "OnTransientError"] = setting(
        "Always", "retryStrategy.retryPolicy of retried steps ('Always' also retries errors such as evicted pods)")
    embed: bool = setting(False, "true: one self-contained Workflow instead of a WorkflowTemplate and a Workflow "
                                 "that refers to it", step=False)
    timezone: str | None = setting(None, "time zone of the CronWorkflow schedule, e.g. 'Europe/Paris' (default: "
                                         "the controller's)", step=False, example="timezone=Europe/Paris")
    pod_gc: Literal["OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess", "Never"] = setting(
        "OnWorkflowSuccess", "podGC.strategy: when Argo deletes a run's pods ('OnWorkflowSuccess' keeps a failed "
                             "run's pods, for their logs, until the ttl deletes the run; 'Never': no podGC)",
        step=False)
    pod_gc_delay: Duration | None = setting(Duration(3600.0), "podGC.deleteDelayDuration: how long a finished pod "
                                            "is kept before podGC deletes it, so `pipecast runs logs` can still "
                                            "read it (default 1 hour); null: at once", step=False,
                                            example="pod_gc_delay=10m")
    ttl: Duration | None = setting(Duration(7 * 86400.0), "ttlStrategy.secondsAfterCompletion: how long a "
                                   "finished Workflow (and with it its pods) is kept (default 7 days), e.g. '3d'; "
                                   "null: forever", step=False, example="ttl=3d")
    rbac: bool = setting(True, "with a service_account: also emit <name>-rbac.yaml, the ServiceAccount(s) and the "
                               "Role and RoleBinding Argo's executor needs (create/patch workflowtaskresults)",
                         step=False)
    parallelism: int | None = setting(None, "spec.parallelism: at most this many of the run's pods at once",
                                      step=False, check=_positive, example="parallelism=4")
    priority: int | None = setting(None, "spec.priority: which workflows the controller starts first when it "
                                         "runs a limited number at once (higher first)", step=False)


def emit_argo(pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
    """Lower the IR to Argo YAML: WorkflowTemplate, Workflow and (with a schedule) CronWorkflow."""
    settings: ArgoSettings = context.settings
    base = naming.pipeline_resource_name(pipeline.name)
    namespace = settings.namespace
    spec = _workflow_spec(pipeline, settings, context)
    kube_crd.check_parameter_defaults(pipeline, context, prefixes=INJECTED_ENV, engine_change=template_change,
                                      engine_fix=TEMPLATE_CHANGE_FIX)
    embed = settings.embed
    annotations = kube_crd.object_annotations(pipeline, DESCRIPTION_ANNOTATION)
    runnable = spec if embed else {"workflowTemplateRef": {"name": base}}
    run_spec = dict(runnable)
    given = [p for p in spec.get("arguments", {}).get("parameters", []) if p["name"] != FLOW_PARAMETER]
    if given and not embed:  # the plan stays the template's alone (Argo merges the template's arguments in)
        run_spec["arguments"] = {"parameters": given}
    documents: list[tuple[str, dict[str, Any]]] = []
    if not embed:
        documents.append((f"{base}-workflowtemplate.yaml", {
            "apiVersion": API_VERSION, "kind": "WorkflowTemplate",
            "metadata": kube_crd.metadata(base, pipeline, namespace, annotations=annotations), "spec": spec,
        }))
    documents.append((f"{base}-workflow.yaml", {
        "apiVersion": API_VERSION, "kind": "Workflow",
        "metadata": kube_crd.metadata(base, pipeline, namespace, generate=True, annotations=annotations),
        "spec": run_spec,
    }))
    if pipeline.schedule:
        cron_spec: dict[str, Any] = {"schedules": [pipeline.schedule]}
        if settings.timezone:
            cron_spec["timezone"] = settings.timezone
        cron_spec["workflowMetadata"] = {"labels": kube_crd.labels(pipeline)}
        cron_spec["workflowSpec"] = runnable
        documents.append((f"{base}-cronworkflow.yaml", {
            "apiVersion": API_VERSION, "kind": "CronWorkflow",
            "metadata": kube_crd.metadata(base, pipeline, namespace, annotations=annotations), "spec": cron_spec,
        }))
    rbac = _executor_rbac(pipeline, settings, context, base) if settings.rbac else []
    argo_args.report_defaults(pipeline, [doc for _, doc in documents], kube_crd.task_names(pipeline, "argo"), context)
    check_sizes([doc for _, doc in documents], context)
    files = [(path, dump_yaml(doc)) for path, doc in documents]
    if rbac:
        files.append((f"{base}-rbac.yaml", dump_yaml_all(rbac)))
    return Bundle("argo", tuple(files))


def _executor_rbac(pipeline: ir.Pipeline, settings: ArgoSettings, context: EmitContext,
                   base: str) -> list[dict[str, Any]]:
    """The ServiceAccounts the run's pods use, and the Role and RoleBinding its executor needs; [] with none set.

    Each pod's ``wait`` container (the emissary executor) writes the step's result as a ``WorkflowTaskResult``:
    without create/patch on ``workflowtaskresults`` every step fails ("wait: Error (exit code 64)"). This is
    the minimum Argo documents (docs/workflow-rbac.md).
    """
    accounts = [settings.service_account] + [context.settings_for(step).service_account for step in pipeline.steps]
    names = [name for name in dict.fromkeys(accounts) if name]
    if not names:
        return []
    name = f"{base}-executor"

    def meta(object_name: str, shared: bool = False) -> dict[str, Any]:
        found: dict[str, Any] = {"name": object_name}
        if settings.namespace:
            found["namespace"] = settings.namespace
        # A service account may serve several pipelines: deleting one pipeline's objects by label keeps it.
        found["labels"] = dict(kube_crd.MANAGED_BY) if shared else kube_crd.labels(pipeline)
        return found

    # A RoleBinding's ServiceAccount subject without a namespace is one of the binding's namespace.
    subjects = [{"kind": "ServiceAccount", "name": account, **({"namespace": settings.namespace}
                                                                if settings.namespace else {})} for account in names]
    return [
        *({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(account, shared=True)} for account in names),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name),
         "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(name),
         "subjects": subjects, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}},
    ]


def _workflow_spec(pipeline: ir.Pipeline, settings: ArgoSettings, context: EmitContext) -> dict[str, Any]:
    names = kube_crd.task_names(pipeline, "argo")
    root = artifact_root(pipeline, context, remote=True)
    workflow = placement(settings, pipeline, None, context)
    shared = Templates()
    flow_templates: list[dict[str, Any]] = []
    on_exit = None
    plan_argument = None
    if pipeline.uses_control_flow:
        flow = FlowLowering(pipeline, context, names, lambda step, name: _container_template(
            pipeline, step, name, root, workflow, context), shared)
        tasks, on_exit = flow.lower()
        flow_templates = flow.all_templates()
        plan_argument = flow_argument(flow)
    else:
        tasks = _plain_tasks(pipeline, context, names, root, workflow, shared)
    templates = [*flow_templates, *shared.all()]
    entry = "main"
    while any(t["name"] == entry for t in templates):  # a function may itself be called "main"
        entry += "-dag"
    spec: dict[str, Any] = {"entrypoint": entry}
    arguments = [*(_argument(p) for p in pipeline.parameters), *([plan_argument] if plan_argument else [])]
    if arguments:
        spec["arguments"] = {"parameters": arguments}
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    if settings.pipeline_timeout:
        spec["activeDeadlineSeconds"] = math.ceil(settings.pipeline_timeout)
    spec.update(_housekeeping(pipeline, settings))
    if on_exit:
        spec["onExit"] = on_exit
    if workflow.node_selector:
        spec["nodeSelector"] = workflow.node_selector
    if workflow.tolerations:
        spec["tolerations"] = workflow.tolerations
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = settings.pull_secrets()
    spec["templates"] = [{"name": entry, "dag": {"tasks": tasks}}, *templates]
    return spec


def _plain_tasks(pipeline: ir.Pipeline, context: EmitContext, names: dict[str, str], root: str,
                 workflow: Placement, shared: Templates) -> list[dict[str, Any]]:
    """One DAG task per step, ordered by ``dependencies`` (a pipeline without control flow)."""
    tasks = []
    for step in pipeline.steps:
        template, arguments = parameterize(
            _container_template(pipeline, step, names[step.name], root, workflow, context), kube_crd.STEP_LABEL)
        task: dict[str, Any] = {"name": names[step.name], "template": shared.add(step, template)}
        upstream = [names[s] for s in step.upstream()]
        if upstream:
            task["dependencies"] = upstream
        task["arguments"] = {"parameters": arguments}
        tasks.append(task)
    return tasks


def _housekeeping(pipeline: ir.Pipeline, settings: ArgoSettings) -> dict[str, Any]:
    """What keeps a namespace clean and its objects selectable: podGC, ttlStrategy, limits, labels.

    The labels go on every Workflow made from the spec (``workflowMetadata``, also those a CronWorkflow
    makes) and on every pod (``podMetadata``); each step's template adds its step label, and submit adds
    the run's.
    """
    fields: dict[str, Any] = {}
    bounds = [b for b in (settings.parallelism, pipeline.parallelism) if b is not None]
    if bounds:  # the pipeline's own bound and the setting: the smaller holds both
        fields["parallelism"] = min(bounds)
    if settings.priority is not None:
        fields["priority"] = settings.priority
    if settings.pod_gc != "Never":
        pod_gc: dict[str, str] = {"strategy": settings.pod_gc}
        if settings.pod_gc_delay is not None:
            pod_gc["deleteDelayDuration"] = kube_crd.go_duration(settings.pod_gc_delay)
        fields["podGC"] = pod_gc
    if settings.ttl is not None:
        fields["ttlStrategy"] = {"secondsAfterCompletion": math.ceil(settings.ttl)}
    fields["podMetadata"] = {"labels": kube_crd.labels(pipeline)}
    fields["workflowMetadata"] = {"labels": kube_crd.labels(pipeline)}
    return fields


def _argument(param: ir.Parameter) -> dict[str, Any]:
    argument: dict[str, Any] = {"name": param.name}
    if not param.required:
        argument["value"] = render_parameter(param.type, param.default)
    return argument


def _container_template(pipeline: ir.Pipeline, step: ir.Step, name: str, root: str, workflow: Placement,
                        context: EmitContext) -> dict[str, Any]:
    settings: ArgoSettings = context.settings_for(step)
    # Argo's backoff factor is an integer (IntOrString): a fractional one makes the runtime retry instead.
    plan = retry_plan(step, engine_backoff=lambda factor: float(factor).is_integer())
    syntax = EngineSyntax(run_id="{{workflow.name}}", parameter=lambda p: f"{{{{workflow.parameters.{p.name}}}}}",
                          artifact_root=root)
    kube_crd.check_command_text(pipeline, step, context, syntax, plan, forbidden=("{{", "}}"))
    command = runtime_command(pipeline, step, syntax, plan)
    template: dict[str, Any] = {"name": name, "metadata": {"labels": {kube_crd.STEP_LABEL: name}}}
    if plan.engine:
        template["retryStrategy"] = _retry_strategy(step.retry, settings.retry_policy)
    if step.timeout_seconds and not plan.runtime:
        template["activeDeadlineSeconds"] = math.ceil(step.timeout_seconds)
    template.update(_template_pod_fields(step, context, workflow, placement(settings, pipeline, step, context)))
    container: dict[str, Any] = {
        "image": step_image(pipeline, step, context),
        "command": command[:3],
        "args": command[3:],
    }
    kube.check_secret_refs(pipeline, step, context)
    env = [_env_item(item, step, context) for item in env_list(pipeline, step)]
    if pipeline.schedule and not any(item["name"] == LOGICAL_TIME_VAR for item in env):
        # pipecast.context().logical_time: Argo defines workflow.scheduledTime only in a Workflow its cron
        # controller made (or `argo submit --scheduled-time`), from the scheduled-time annotation; elsewhere the
        # tag stays as written and the runtime reads it as no time (publish_argo.SCHEDULED_TIME).
        env.append({"name": LOGICAL_TIME_VAR, "value": SCHEDULED_TIME})
    if env:
        container["env"] = env
    resources = settings.resources(step, context)
    if resources:
        container["resources"] = resources
    template["container"] = settings.patch_container(container)
    _escape_hatch(template, settings, step, context)
    return template


def _escape_hatch(template: dict[str, Any], settings: ArgoSettings, step: ir.Step, context: EmitContext) -> None:
    """The pod settings Argo has template fields for; the pod spec patch as the template's ``podSpecPatch``.

    Argo merges ``podSpecPatch`` onto the pod it builds as a strategic merge patch
    (workflow/controller/workflowpod.go, util.ApplyPodSpecPatch).
    """
    meta = settings.pod_metadata()
    template["metadata"] = {**meta, "labels": {**meta.get("labels", {}), **template["metadata"]["labels"]}}
    if settings.affinity:
        template["affinity"] = plain(settings.affinity)
    if settings.security_context:
        template["securityContext"] = plain(settings.security_context)
    if settings.pod_spec_patch:
        template["podSpecPatch"] = json.dumps(plain(settings.pod_spec_patch), sort_keys=True, separators=(",", ":"))
    for name in ("container_patch", "pod_spec_patch", "pod_labels", "pod_annotations", "affinity",
                 "security_context"):
        value = getattr(settings, name)
        if not value:  # most steps set none of these: skip the JSON text (6,000 dumps at 1,000 steps)
            continue
        message = f"setting {name!r} holds '{{{{', which Argo reads as a template expression"
        if "{{" in json.dumps(plain(value)) and not any(p.message == message for p in context.errors):
            context.error(message, step=step, fix=f"remove '{{{{' from {name}")


def _retry_strategy(retry: ir.RetryPolicy, policy: str) -> dict[str, Any]:
    # IntOrString fields are written as strings, the form Argo's own examples and JSON schema use.
    strategy: dict[str, Any] = {"limit": str(retry.retries), "retryPolicy": policy}
    if retry.delay_seconds > 0:
        backoff = {"duration": kube_crd.go_duration(retry.delay_seconds), "factor": f"{retry.backoff:g}"}
        if retry.max_delay_seconds is not None:
            backoff["cap"] = kube_crd.go_duration(retry.max_delay_seconds)
        strategy["backoff"] = backoff
    return strategy


def _template_pod_fields(step: ir.Step, context: EmitContext, workflow: Placement, own: Placement) -> dict[str, Any]:
    """The step's nodeSelector, tolerations and service account where they differ from the workflow's.

    Argo gives a pod the template's nodeSelector (tolerations, serviceAccountName) if it has any, else the
    workflow's (workflow/controller/workflowpod.go addSchedulingConstraints, createWorkflowPod): a template's
    replaces the workflow's, and an empty one cannot say "none". A template has no imagePullSecrets.
    """
    pipeline_settings: ArgoSettings = context.settings
    settings: ArgoSettings = context.settings_for(step)
    fields: dict[str, Any] = {}
    for field, mine, theirs in (("nodeSelector", own.node_selector, workflow.node_selector),
                                ("tolerations", own.tolerations, workflow.tolerations),
                                ("serviceAccountName", settings.service_account, pipeline_settings.service_account)):
        if mine == theirs:
            continue
        if not mine:
            context.unsupported(f"step {step.name!r} sets no {field} while the workflow does; Argo then uses the "
                                "workflow's", step=step, fix=f"give the step a {field} of its own, or none to the "
                                                           "workflow")
            continue
        fields[field] = mine
    if settings.image_pull_secrets != pipeline_settings.image_pull_secrets:
        context.unsupported(f"step {step.name!r} sets image_pull_secrets of its own; Argo takes them for the whole "
                            "workflow only (a template has no imagePullSecrets)", step=step,
                            fix="set image_pull_secrets on the pipeline (every pod gets them)")
    return fields


def _env_item(item: dict[str, Any], step: ir.Step, context: EmitContext) -> dict[str, Any]:
    """An env entry that reaches the container as written, or a report when Argo or the kubelet would change it.

    ``$`` is escaped for the kubelet; Argo's ``{{…}}`` cannot be escaped, so a value Argo would change is
    reported (see :func:`template_change`).
    """
    value = item.get("value")
    if value is None:
        return item
    reason = template_change(value)
    if reason:
        context.unsupported(f"env {item['name']!r} of step {step.name!r} would reach the step changed: {reason}",
                            step=step, fix=TEMPLATE_CHANGE_FIX)
    return {"name": item["name"], "value": kubelet_escape(value)}


def template_change(text: str) -> str | None:
    """Why Argo's templating would change ``text`` where it reaches a container (args, env), or None.

    A tag whose name is an Argo variable is replaced (or, in a template, refused by Argo's validation),
    ``{{=…}}`` is evaluated and an unclosed ``{{`` breaks templating; other tags, such as ``{{ x }}``, stay.
    """
    position = 0
    while (start := text.find("{{", position)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            return (f"it contains an unclosed '{{{{' ({text[start:start + 20]!r}), which breaks Argo's templating "
                    "of the step")
        tag = text[start + 2:end]
        nested = tag[tag.rfind("{{") + 2:]  # Argo also resolves the last "{{" inside a tag on its own
        if tag.startswith("=") or any(_ARGO_VARIABLE.match(name.strip()) for name in (tag, nested)):
            verb = "evaluates" if tag.startswith("=") else "substitutes"
            return (f"it contains {text[start:end + 2]!r}, which Argo {verb} (Argo templates a step several times "
                    "over, so even a substituted value is templated again)")
        position = end + 2
    return None


def workflow_status(workflow: Mapping[str, Any]) -> tuple[RunStatus, str]:
    """A Workflow's state from ``status.phase`` (a stopped or terminated workflow is cancelled)."""
    status = workflow.get("status") or {}
    phase, message = status.get("phase") or "", status.get("message") or ""
    if phase == "Succeeded":
        return RunStatus.SUCCEEDED, message
    if phase in ("Failed", "Error"):
        stopped = bool(workflow.get("spec", {}).get("shutdown")) or message.startswith("Stopped with strategy")
        return (RunStatus.CANCELLED if stopped else RunStatus.FAILED), message or phase
    if phase == "Running":
        return RunStatus.RUNNING, message
    return RunStatus.PENDING, message


def _failed_node(api: Any, workflow: Mapping[str, Any]) -> str:
    """``task 'x' failed: message`` for the first failed pod node of the workflow, or ''."""
    nodes = (workflow.get("status") or {}).get("nodes") or {}
    for node in sorted(nodes.values(), key=lambda n: (n.get("finishedAt") or "", n.get("id") or "")):
        if node.get("type") == "Pod" and node.get("phase") in ("Failed", "Error"):
            return f"task {node.get('displayName') or node.get('name')!r} failed: {node.get('message') or ''}"
    return ""


def _prepare_run(workflow: dict[str, Any], pipeline: ir.Pipeline, values: Mapping[str, Any]) -> None:
    """Give the Workflow submit creates its parameter values, and it and its pods the run's label.

    Argo joins the Workflow's spec onto its template's (``JoinWorkflowSpec``, a strategic merge), so the
    run's ``podMetadata`` labels are added to the template's.
    """
    run = {RUN_LABEL: workflow["metadata"]["name"]}
    workflow["metadata"]["labels"] = {**workflow["metadata"].get("labels", {}), **run}
    pod_metadata = workflow["spec"].setdefault("podMetadata", {})
    pod_metadata["labels"] = {**pod_metadata.get("labels", {}), **run}
    parameters = [{"name": p.name, "value": render_parameter(p.type, values[p.name])}
                  for p in pipeline.parameters if p.name in values]
    if parameters:  # the Workflow's plan parameter, when it has one, stays
        parameters += [p for p in workflow["spec"].get("arguments", {}).get("parameters", [])
                       if p["name"] == FLOW_PARAMETER]
        workflow["spec"]["arguments"] = {"parameters": parameters}


def _argo_url(base: str, namespace: str, name: str) -> str:
    return f"{base.rstrip('/')}/workflows/{namespace}/{name}"


@dataclass(frozen=True, kw_only=True)
class ArgoConnection(KubeConnection):
    """The cluster, and the UI the run's link points at (``pipecast submit -c KEY=VALUE``)."""

    argo_url: str | None = setting(None, "Argo Server base URL for run links (default $PIPECAST_ARGO_URL, else "
                                         "argo_server, else https://localhost:2746)")
    argo_server: str | None = setting(None, "submit and track through this Argo Server (its REST API, with the "
                                            "bearer token in $ARGO_TOKEN) instead of the Kubernetes API")


ARGO = Engine(
    group="argoproj.io", version="v1alpha1",
    plurals={"WorkflowTemplate": "workflowtemplates", "Workflow": "workflows"},
    definition_kinds=("WorkflowTemplate",), run_kind="Workflow",
    set_parameters=_prepare_run, read_status=workflow_status, failure_detail=_failed_node,
    cancel_patch={"spec": {"shutdown": "Terminate"}},
    ui_setting="argo_url", ui_env="PIPECAST_ARGO_URL", default_ui=DEFAULT_ARGO_UI, ui_url=_argo_url,
    injected_env=INJECTED_ENV, value_change=template_change, value_change_fix=TEMPLATE_CHANGE_FIX,
    check_access=check_access, check_run=argo_args.check_run,
    # Argo labels every pod of a Workflow with its name and runs a container template as container "main".
    pod_run_label="workflows.argoproj.io/workflow", step_container="main",
)


class ArgoTarget(CustomResourceTarget):
    """Argo Workflows: emit ``WorkflowTemplate``/``Workflow``/``CronWorkflow``, submit through the Kubernetes API."""

    name = "argo"
    description = "Argo Workflows on Kubernetes (WorkflowTemplate + Workflow, CronWorkflow for schedules)"
    extra = "argo"
    engine = ARGO
    submit_module = "pipecast.targets.argo_server"  # Argo Server's REST API with -c argo_server, else Kubernetes'
    settings_class = ArgoSettings
    connection_class = ArgoConnection
    schedules_module = "pipecast.schedules.argo"
    capabilities = {
        Feature.PARAMETERS: native("workflow parameters, {{workflow.parameters.x}}; dicts and lists as JSON"),
        Feature.DATA_PASSING: native("artifact store; DAG dependencies order the tasks"),
        Feature.AFTER: native("DAG dependencies"),
        Feature.RESOURCES: native("container resources (requests = limits)"),
        Feature.GPU: native("nvidia.com/gpu limits; gpu_type as the template's node selector"),
        Feature.RETRY: native("retryStrategy"),
        Feature.RETRY_BACKOFF: native("retryStrategy.backoff duration/factor/cap (a fractional factor: the "
                                      "runtime retries instead)"),
        Feature.TIMEOUT: native("template activeDeadlineSeconds"),
        Feature.CACHE: emulated("the runtime reuses earlier outputs from the artifact root"),
        Feature.SCHEDULE: native("CronWorkflow"),
        Feature.ENV: native("container env"),
        Feature.SECRETS: native("env valueFrom.secretKeyRef"),
        Feature.STEP_IMAGE: native(),
        Feature.SUBMIT: native("kubernetes client (or Argo Server's REST API): WorkflowTemplate applied, Workflow "
                               "created"),
        Feature.STATUS: native("status.phase; cancel sets spec.shutdown Terminate"),
        Feature.UI_URL: native("Argo Server UI"),
        Feature.MAP: native("a map's body is a DAG template run per item (withItems/withParam over the item "
                            "indices a publisher task outputs); nested one level; fan-in from the artifact store"),
        Feature.CONDITION: native("`when` on the branch number a publisher task picks per if/elif/else chain (a "
                                  "lone if on numbers: on its values); inside a map, per item in the map's body; "
                                  "skips through `depends: X.Succeeded`"),
        Feature.EXIT_HANDLER: native("the group's DAG task's `exit` hook, with {{tasks.X.status}}; inside "
                                     "a map, per item in the map's body"),
        Feature.HOOKS: native("the Workflow's onExit DAG, `when` on {{workflow.status}}"),
        Feature.PARALLELISM: native("template `parallelism` per map, spec.parallelism per workflow"),
    }

    def map_limit(self, settings: Any) -> MapLimit:
        """Argo counts no items; the list's one container argument is bounded (see argo_maps.map_limit)."""
        return argument_limit()

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """Lower the IR to Argo YAML: WorkflowTemplate, Workflow and (with a schedule) CronWorkflow."""
        return emit_argo(pipeline, context)
