"""Lowering one step to its entry in the DAG file's ``TASKS`` table.

The entry says where the step runs (on the Airflow worker or in a pod), its command and environment, its
retries and timeout.

The step's image, artifact root, env and secrets, retry plan and runtime command come from the framework's
lowering toolkit (:mod:`pipecast.targets.lowering`); what is Airflow's own is here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipecast.compiler import ir
from pipecast.targets import kube
from pipecast.targets.airflow.assets import outlets, typed_outputs
from pipecast.targets.airflow.commands import bash_command, param_template, pod_arguments, runtime_argv
from pipecast.targets.airflow.kwargs import task_problem
from pipecast.targets.airflow.pod_flow import (
    MAP_INDEX_LABEL,
    POD_FLOW_KEYS,
    POD_MAP_INDEX_VAR,
    POD_SPEC_VAR,
    pod_templates,
)
from pipecast.targets.airflow.secrets import airflow_secret_template, kubernetes_secret
from pipecast.targets.airflow.settings import POD_ONLY, AirflowSettings
from pipecast.targets.base import EmitContext
from pipecast.targets.kube.patches import plain
from pipecast.targets.lowering import (
    RetryPlan,
    env_in_effect,
    retry_plan,
    secrets_in_effect,
    step_image,
    worst_case_whole_seconds,
)


@dataclass(frozen=True, slots=True)
class Field:
    """One ``key: value`` of a task's entry in the DAG file's ``TASKS`` table (a JSON-like value)."""

    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class DagScope:
    """What every task of one DAG shares while it is lowered.

    Attributes:
        pipeline: The pipeline.
        context: The compile's context (settings, problems).
        task_ids: Airflow's task id of each step.
        variables: The environment variable carrying each parameter.
        root: The artifact root of the run.
        pod_defaults: The KubernetesPodOperator arguments in the DAG's ``default_args``.
    """

    pipeline: ir.Pipeline
    context: EmitContext
    task_ids: Mapping[str, str]
    variables: Mapping[str, str]
    root: str
    pod_defaults: Mapping[str, Any]
    reported: set[str] = field(default_factory=set)  # problems of the pipeline's settings, reported once

    @property
    def version(self) -> int:
        """The Airflow major version the file is written for."""
        return int(self.context.settings.airflow_version)


def step_mode(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> str:
    """``local`` or ``kubernetes`` for ``step`` (``auto``: kubernetes when the step has an image)."""
    mode = str(context.settings_for(step).mode)
    if mode == "auto":
        return "kubernetes" if step_image(pipeline, step, context, required=False) else "local"
    return mode


def pod_arguments_of(settings: AirflowSettings) -> dict[str, Any]:
    """The KubernetesPodOperator arguments the pod settings give (None or ``[]`` where unset)."""
    return {
        "namespace": settings.namespace,
        "service_account_name": settings.service_account,
        "image_pull_policy": settings.image_pull_policy,
        "kubernetes_conn_id": settings.kubernetes_conn_id,
        # Kubernetes' own form, which the operator reads (convert_toleration).
        "tolerations": [toleration.as_kubernetes() for toleration in settings.tolerations],
    }


# KubernetesPodOperator arguments of the escape-hatch settings, in the order they are written.
POD_HATCH_ARGS = ("labels", "annotations", "affinity", "security_context", "container_security_context",
                  "pod_template_dict")


def pod_hatch_arguments(settings: AirflowSettings) -> dict[str, Any]:
    """The KubernetesPodOperator arguments of the escape-hatch pod settings (only those set).

    Labels, annotations, affinity and security contexts have arguments of their own; the rest of the patches
    goes in ``pod_template_dict``, the base pod the operator builds its own pod onto (its own fields win,
    pod_generator.PodGenerator.reconcile_pods), in the container the operator calls ``base``.
    """
    arguments: dict[str, Any] = {}
    if settings.pod_labels:
        arguments["labels"] = dict(settings.pod_labels)
    if settings.pod_annotations:
        arguments["annotations"] = dict(settings.pod_annotations)
    if settings.affinity:
        arguments["affinity"] = plain(settings.affinity)
    if settings.security_context:
        arguments["security_context"] = plain(settings.security_context)
    container = plain(settings.container_patch)
    if "securityContext" in container:
        arguments["container_security_context"] = container.pop("securityContext")
    if settings.pod_spec_patch or container:
        spec = plain(settings.pod_spec_patch)
        if container:
            spec["containers"] = [{"name": "base", **container}]
        arguments["pod_template_dict"] = {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}
    return arguments


def task_fields(scope: DagScope, step: ir.Step, mode: str,
                flow: Callable[[list[str], dict[str, str]], list[Field]] | None = None) -> list[Field]:
    """The step's entry in ``TASKS``, fields in the order they are written (``flow``: a TaskFlow task's)."""
    pipeline, context = scope.pipeline, scope.context
    settings: AirflowSettings = context.settings_for(step)
    # Airflow 3 multiplies the delay by any factor; Airflow 2 only doubles it: the runtime retries otherwise.
    plan = retry_plan(step, engine_backoff=lambda factor: scope.version >= 3 or factor == 2.0)
    store = _secret_store(pipeline, step, context, mode)
    env = dict(env_in_effect(pipeline, step))
    _check_reserved_names(pipeline, step, context, env)
    argv = runtime_argv(pipeline, step, context, scope.root, settings.python, dict(scope.variables), plan)
    fields = [Field("upstream", [scope.task_ids[name] for name in step.upstream()])]
    templated = _templated_env(scope, step, pod=mode == "kubernetes", store=store)
    if flow is not None and mode == "kubernetes":
        fields += _pod_flow_fields(scope, step, settings, {f.key: f.value for f in flow(argv, env)}, env, templated,
                                   store)
    elif flow is not None:
        if settings.pythonpath:
            env["PYTHONPATH"] = settings.pythonpath
        fields += flow(argv, env)
        # The parameters reach a TaskFlow task's runtime in its payload; its Airflow secrets are templates in
        # the task's op_kwargs, which Airflow renders as it renders a BashOperator's env.
        secrets = {name: value for name, value in templated.items() if name not in scope.variables.values()}
        if secrets:
            fields.append(Field("templated_env", secrets))
    elif mode == "kubernetes":
        fields += _pod_fields(scope, step, settings, argv, env, templated, store)
    else:
        _report_local_limits(pipeline, step, context)
        fields += _worker_fields(settings, argv, env, templated)
    fields += _retry_fields(step, plan, scope.version)
    timeout = worst_case_whole_seconds(step) if plan.runtime else step.timeout_seconds
    if timeout:  # the runtime retries within one task: Airflow's timeout must cover every try and delay
        fields.append(Field("execution_timeout", _number(timeout)))
    if step.description:
        fields.append(Field("doc_md", step.description))
    return fields + _outlet_fields(scope, step) + _operator_kwargs(scope, step, settings, mode)


def _outlet_fields(scope: DagScope, step: ir.Step) -> list[Field]:
    """The step's typed outputs as its task's Airflow Assets, an operator's or a TaskFlow task's alike."""
    if not typed_outputs(step):
        return []
    found = outlets(scope.pipeline, step, scope.root, scope.context)
    return [Field("outlets", found)] if found else []


def _operator_kwargs(scope: DagScope, step: ir.Step, settings: AirflowSettings, mode: str) -> list[Field]:
    """The escape hatch's operator arguments (checked against the operator the task uses), if any."""
    if not settings.operator_kwargs:
        return []
    problem = task_problem(settings.operator_kwargs, mode, scope.version)
    if problem:
        fix = "pass these arguments in the settings of the steps whose operator takes them, or remove them"
        if settings.operator_kwargs is not scope.context.settings.operator_kwargs:
            scope.context.error(problem, step=step, fix=fix)
        elif problem not in scope.reported:  # the pipeline's: once, where the pipeline is defined
            scope.reported.add(problem)
            scope.context.error(f"{problem} (the pipeline's operator_kwargs reach step {step.name!r})", fix=fix,
                                location=str(scope.pipeline.location) if scope.pipeline.location else None)
        return []
    return [Field("operator_kwargs", plain(settings.operator_kwargs))]


def _secret_store(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, mode: str) -> str:
    """Where the step's secrets are resolved: ``airflow`` (connections/variables) or ``kubernetes``."""
    default = "kubernetes" if mode == "kubernetes" else "airflow"
    store = context.settings_for(step).secret_store or default
    if store == "kubernetes" and mode == "local" and secrets_in_effect(pipeline, step):
        context.error("a local task runs on the Airflow worker and cannot read Kubernetes secrets", step=step,
                      fix="--set secret_store=airflow (connections/variables) or --set mode=kubernetes")
        return "airflow"
    return str(store)


def _check_reserved_names(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, env: Mapping[str, str]) -> None:
    for name in [*env, *(s.env for s in secrets_in_effect(pipeline, step))]:
        if name.startswith("PIPECAST_"):  # the run id, parameters and (Airflow 2) the command travel in these
            context.error(f"environment variable {name!r} is reserved: PIPECAST_* variables are pipecast's",
                          step=step, fix="rename the variable")


def _templated_env(scope: DagScope, step: ir.Step, *, pod: bool, store: str) -> dict[str, str]:
    """The templates Airflow renders into the task's environment: the parameters it uses, Airflow secrets."""
    used = {b.parameter for b in step.bindings if b.kind is ir.BindingKind.PARAMETER}
    templated = {scope.variables[p.name]: param_template(p, dollar_escaped=pod)
                 for p in scope.pipeline.parameters if p.name in used}
    if store == "airflow":
        templated.update({s.env: airflow_secret_template(s, step, scope.context, dollar_escaped=pod,
                                                         version=scope.version)
                          for s in secrets_in_effect(scope.pipeline, step)})
    return templated


def _pod_fields(scope: DagScope, step: ir.Step, settings: AirflowSettings, argv: list[str], env: dict[str, str],
                templated: dict[str, str], store: str) -> list[Field]:
    """A KubernetesPodOperator task: the image, command, environment and pod settings of its pod."""
    pipeline, context = scope.pipeline, scope.context
    image = step_image(pipeline, step, context, why="a KubernetesPodOperator task runs in a pod of its image")
    fields = [Field("image", image), Field("cmds", pod_arguments(argv[:3])),
              Field("arguments", pod_arguments(argv[3:]))]
    if env:
        fields.append(Field("env", {k: v.replace("$", "$$") for k, v in env.items()}))
    if templated:
        fields.append(Field("templated_env", templated))
    secrets = secrets_in_effect(pipeline, step)
    if secrets and store == "kubernetes":
        fields.append(Field("secrets", {s.env: kubernetes_secret(s, step, context) for s in secrets}))
    resources = settings.resources(step, context)
    if resources:
        fields.append(Field("resources", resources))
    selector = kube.with_gpu_selector(dict(settings.node_selector), pipeline, step, context)
    if selector:
        fields.append(Field("node_selector", selector))
    if settings.image_pull_secrets:
        fields.append(Field("image_pull_secrets", list(settings.image_pull_secrets)))
    fields += [Field(key, value) for key, value in pod_hatch_arguments(settings).items()]
    for argument, value in pod_arguments_of(settings).items():
        # The DAG's default_args hold the pipeline's; a task says only where its own differ (None/[] clears).
        if scope.pod_defaults.get(argument) != value and (value or argument in scope.pod_defaults):
            fields.append(Field(argument, value))
    return fields


def _pod_flow_fields(scope: DagScope, step: ir.Step, settings: AirflowSettings, lowered: dict[str, Any],
                     env: dict[str, str], templated: dict[str, str], store: str) -> list[Field]:
    """A step of the control flow in a pod, run by ``python -m pipecast.runtime.publish_airflow --pod``.

    It reads the TaskFlow task's spec, map index and map sizes from its environment (the item, if mapped, is its
    argument).
    """
    env = {**env, POD_SPEC_VAR: json.dumps(lowered["spec"], separators=(",", ":"))}
    argv = [lowered["python"], "-m", "pipecast.runtime.publish_airflow", "--pod"]
    fields = _pod_fields(scope, step, settings, argv, env, {**templated, **pod_templates(lowered)}, store)
    fields += [Field(key, lowered[key]) for key in POD_FLOW_KEYS if key in lowered]
    if "group" in lowered:
        fields.append(Field("map_index_from", {POD_MAP_INDEX_VAR: MAP_INDEX_LABEL}))
    return [Field("flow", "pod"), *fields]


def _worker_fields(settings: AirflowSettings, argv: list[str], env: dict[str, str],
                   templated: dict[str, str]) -> list[Field]:
    """A BashOperator task: the command line, its working directory and environment on the worker."""
    fields = [Field("command", bash_command(argv))]
    if settings.working_directory:
        fields.append(Field("cwd", settings.working_directory))
    if settings.pythonpath:
        env["PYTHONPATH"] = settings.pythonpath
    if env:
        fields.append(Field("env", dict(sorted(env.items()))))
    if templated:
        fields.append(Field("templated_env", templated))
    return fields


def _report_local_limits(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> None:
    """What a task on the Airflow worker cannot honour, reported (never dropped)."""
    fix = "--set mode=kubernetes to run the step in a pod, or --on-unsupported=warn to ignore it"
    image = pipeline.image_of(step)
    if image:
        context.unsupported(f"a local task runs on the Airflow worker's Python; the image {image!r} is not used",
                            step=step, fix=fix)
    if step.resources.cpu or step.resources.memory:
        context.unsupported("a local task cannot reserve cpu/memory on the Airflow worker", step=step, fix=fix)
    if step.resources.gpu:
        context.unsupported("a local task cannot request GPUs on the Airflow worker", step=step, fix=fix)
    own, dag = context.settings_for(step), context.settings
    ignored = [name for name in POD_ONLY if getattr(own, name) and getattr(own, name) != getattr(dag, name)]
    if ignored:
        context.unsupported(f"a local task runs on the Airflow worker; its pod settings "
                            f"({', '.join(map(repr, ignored))}) apply to pods only", step=step, fix=fix)


def _retry_fields(step: ir.Step, plan: RetryPlan, version: int) -> list[Field]:
    """Airflow's own retry arguments, when Airflow retries the step."""
    retry = step.retry
    if not plan.engine:
        return []
    fields = [Field("retries", retry.retries), Field("retry_delay", _number(retry.delay_seconds))]
    if retry.backoff != 1.0:  # Airflow 3 takes the factor; Airflow 2's True doubles the delay
        fields.append(Field("retry_exponential_backoff", float(retry.backoff) if version >= 3 else True))
    if retry.max_delay_seconds is not None:
        fields.append(Field("max_retry_delay", _number(retry.max_delay_seconds)))
    return fields


def _number(value: float) -> int | float:
    """Whole seconds as an int (``30``, not ``30.0``), anything else as it is."""
    return int(value) if float(value).is_integer() else value
