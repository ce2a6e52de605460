"""Lowering the IR to the plain data an Airflow DAG file is rendered from.

Everything here is pure: it turns a pipeline and its settings into a :class:`DagModel` of strings,
numbers, lists and dicts. The template (``pipecast/templates/airflow_dag.py.j2``) only places those
values, through the filters that write literals (the task table as JSON in one string). How values stay
data is in :mod:`pipecast.targets.airflow.commands`; the settings are read in
:mod:`pipecast.targets.airflow.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.graph import topological_order
from pipecast.compiler.naming import engine_names
from pipecast.targets import kube
from pipecast.targets.airflow.commands import (
    RUN_ID_VAR,
    bash_command,
    param_template,
    param_vars,
    pod_arguments,
    runtime_argv,
    template,
)
from pipecast.targets.airflow.secrets import airflow_secret_template, kubernetes_secret
from pipecast.targets.airflow.settings import (
    POD_SETTINGS,
    airflow_version,
    artifact_root,
    dag_id,
    flag,
    pod_settings,
    secret_store,
    start_date,
    step_mode,
    string_setting,
    tags,
    worker_local,
)
from pipecast.targets.base import EmitContext

_JSON_SCHEMA_TYPES = {
    ir.TypeName.STR: "string", ir.TypeName.INT: "integer", ir.TypeName.FLOAT: "number",
    ir.TypeName.BOOL: "boolean", ir.TypeName.DICT: "object", ir.TypeName.LIST: "array",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One ``key: value`` of a task's entry in the DAG file's ``TASKS`` table (a JSON-like value)."""

    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class TaskModel:
    """One entry of the DAG file's ``TASKS``: the task id and its fields, in the order they are written."""

    task_id: str
    fields: list[Field]


@dataclass(frozen=True, slots=True)
class ParamModel:
    """A DAG ``Param``: its name, JSON-schema type and default (``required``: no default)."""

    name: str
    type: str | None
    default: Any
    required: bool


@dataclass
class DagModel:
    """Everything the DAG template places, as plain values."""

    airflow_version: int
    modes: tuple[str, ...]
    dag_id: str
    description: str
    schedule: str | None
    start_date: tuple[int, int, int] | None
    catchup: bool
    tags: list[str]
    params: list[ParamModel]
    default_args: dict[str, Any]
    tasks: list[TaskModel] = field(default_factory=list)
    worker_local_root: str | None = None  # a worker's own disk, where local tasks keep their outputs

    @property
    def run_id_env(self) -> dict[str, str]:
        """The run id's variable as a worker gets it (one template for every task)."""
        return {RUN_ID_VAR: template("run_id", False)}

    @property
    def pod_run_id_env(self) -> dict[str, str]:
        """The same for pods, where a '$' must be written '$$'."""
        return {RUN_ID_VAR: template("run_id", True)}

    @property
    def file_name(self) -> str:
        return f"{self.dag_id}.py"

    @property
    def task_table(self) -> dict[str, dict[str, Any]]:
        """``TASKS``: task id → entry, upstream tasks first."""
        return {task.task_id: {f.key: f.value for f in task.fields} for task in self.tasks}


def lower(pipeline: ir.Pipeline, context: EmitContext) -> DagModel:
    """Build the :class:`DagModel` of ``pipeline``; problems go to ``context``."""
    version = airflow_version(pipeline, context)
    locations = {s.name: str(s.location) for s in pipeline.steps}
    task_ids = engine_names("airflow", [s.name for s in pipeline.steps], locations=locations, target=context.target)
    variables = param_vars(pipeline)
    pod_defaults = _pod_arguments(pipeline, context, None)
    default_args: dict[str, Any] = {"retries": 0, **pod_defaults}
    catchup = flag(pipeline, context, "catchup", False)
    model = DagModel(
        airflow_version=version,
        modes=(),
        dag_id=dag_id(pipeline, context),
        description=pipeline.description,
        schedule=pipeline.schedule,
        start_date=start_date(pipeline, context, version, catchup),
        catchup=catchup,
        tags=tags(pipeline, context),
        params=[_param(p) for p in pipeline.parameters],
        default_args=default_args,
    )
    if pipeline.schedule:
        for param in pipeline.parameters:
            if param.required:
                context.unsupported(
                    f"Airflow cannot schedule a DAG with a required parameter: {param.name!r} has no default",
                    location=str(param.location or pipeline.location or "") or None,
                    fix=f"give {param.name!r} a default or remove the schedule",
                )
    modes = set()
    for step in _dependency_order(pipeline):
        mode, fields = _task(pipeline, step, context, task_ids, variables, version, pod_defaults)
        modes.add(mode)
        if mode == "local" and model.worker_local_root is None:
            root = artifact_root(pipeline, step, context, remote=False)
            model.worker_local_root = root if worker_local(root) else None
        model.tasks.append(TaskModel(task_ids[step.name], fields))
    model.modes = tuple(sorted(modes))
    return model


def _task(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, task_ids: dict[str, str],
          variables: dict[str, str], version: int, pod_defaults: dict[str, Any]) -> tuple[str, list[Field]]:
    mode = step_mode(pipeline, step, context)
    fields = [Field("upstream", [task_ids[name] for name in step.upstream()])]
    python = string_setting(pipeline, context, "python", "python", step)
    used = {b.parameter for b in step.bindings if b.kind is ir.BindingKind.PARAMETER}
    kubernetes = mode == "kubernetes"
    templated = {variables[p.name]: param_template(p, dollar_escaped=kubernetes)
                 for p in pipeline.parameters if p.name in used}
    store = secret_store(pipeline, step, context, mode)
    secrets = pipeline.secrets_of(step)
    if store == "airflow":
        templated.update({s.env: airflow_secret_template(s, step, context, dollar_escaped=kubernetes,
                                                         version=version)
                          for s in secrets})
    env = dict(pipeline.env_of(step))
    for name in [*env, *(s.env for s in secrets)]:
        if name.startswith("PIPECAST_"):  # the run id, parameters and (Airflow 2) the command travel in these
            context.error(f"environment variable {name!r} is reserved: PIPECAST_* variables are pipecast's",
                          step=step, fix="rename the variable")
    if kubernetes:
        image = pipeline.image_of(step) or string_setting(pipeline, context, "image", None, step)
        if not image:
            context.error(f"step {step.name!r} runs in a pod and has no image", step=step,
                          fix="set image= on the step or the pipeline, or --set image=REGISTRY/IMAGE:TAG")
        root = artifact_root(pipeline, step, context, remote=True)
        argv = runtime_argv(pipeline, step, context, root, python, variables)
        fields += [Field("image", image or ""), Field("cmds", pod_arguments(argv[:3])),
                   Field("arguments", pod_arguments(argv[3:]))]
        if env:
            fields.append(Field("env", {k: v.replace("$", "$$") for k, v in env.items()}))
        if templated:
            fields.append(Field("templated_env", templated))
        if secrets and store == "kubernetes":
            fields.append(Field("secrets", {s.env: kubernetes_secret(s, step, context) for s in secrets}))
        resources = kube.container_resources(step.resources)
        if resources:
            fields.append(Field("resources", resources))
        selector = kube.gpu_selector(pipeline, step, context)
        if selector:
            fields.append(Field("node_selector", selector))
        for argument, value in _pod_arguments(pipeline, context, step).items():
            if pod_defaults.get(argument) != value and (value or argument in pod_defaults):
                fields.append(Field(argument, value))
    else:
        _report_local_limits(pipeline, step, context)
        root = artifact_root(pipeline, step, context, remote=False)
        argv = runtime_argv(pipeline, step, context, root, python, variables)
        fields.append(Field("command", bash_command(argv)))
        cwd = string_setting(pipeline, context, "cwd", None, step)
        if cwd:
            fields.append(Field("cwd", cwd))
        pythonpath = string_setting(pipeline, context, "pythonpath", None, step)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        if env:
            fields.append(Field("env", dict(sorted(env.items()))))
        if templated:
            fields.append(Field("templated_env", templated))
    fields += _retry_fields(step, context, version)
    if step.timeout_seconds:
        fields.append(Field("execution_timeout", _number(step.timeout_seconds)))
    if step.description:
        fields.append(Field("doc_md", step.description))
    return mode, fields


def _pod_arguments(pipeline: ir.Pipeline, context: EmitContext, step: ir.Step | None) -> dict[str, Any]:
    """KubernetesPodOperator arguments from the pod settings (namespace, service account, tolerations...) of the
    pipeline, or in effect for ``step``: its own tolerations replace the pipeline's."""
    values: dict[str, Any] = {POD_SETTINGS[k]: v for k, v in pod_settings(pipeline, context, step).items()}
    if step is None or _own_setting(step, context, "tolerations"):
        # Kubernetes' own form ({key, operator, value, effect, tolerationSeconds}), which the operator reads
        # (convert_toleration); the setting is parsed as on Tekton and Argo.
        tolerations = kube.tolerations(pipeline, context, step)
        if tolerations or step is not None:
            values["tolerations"] = tolerations
    return values


def _own_setting(step: ir.Step, context: EmitContext, key: str) -> bool:
    return any(item.target == context.target and item.key == key for item in step.settings)


def _dependency_order(pipeline: ir.Pipeline) -> list[ir.Step]:
    """The steps in the order they were traced, unless a step comes before one it depends on.

    The DAG file wires each task to its upstream tasks as it creates it (wiring after the fact costs
    Airflow time in proportion to the DAG's size for every edge).
    """
    seen: set[str] = set()
    for step in pipeline.steps:
        if not seen.issuperset(step.upstream()):
            return [pipeline.step(name) for name in topological_order(pipeline)]
        seen.add(step.name)
    return list(pipeline.steps)


def _report_local_limits(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> None:
    fix = "--set mode=kubernetes to run the step in a pod, or --on-unsupported=warn to ignore it"
    image = pipeline.image_of(step)
    if image:
        context.unsupported(f"a local task runs on the Airflow worker's Python; the image {image!r} is not used",
                            step=step, fix=fix)
    if step.resources.cpu or step.resources.memory:
        context.unsupported("a local task cannot reserve cpu/memory on the Airflow worker", step=step, fix=fix)
    if step.resources.gpu:
        context.unsupported("a local task cannot request GPUs on the Airflow worker", step=step, fix=fix)
    if _own_setting(step, context, "tolerations") and kube.tolerations(pipeline, context, step):
        context.unsupported("a local task runs on the Airflow worker; tolerations apply to pods only", step=step,
                            fix=fix)


def _retry_fields(step: ir.Step, context: EmitContext, version: int) -> list[Field]:
    retry = step.retry
    if retry.retries == 0:
        return []
    fields = [Field("retries", retry.retries), Field("retry_delay", _number(retry.delay_seconds))]
    if retry.backoff != 1.0:
        if version >= 3:
            fields.append(Field("retry_exponential_backoff", float(retry.backoff)))
        elif retry.backoff == 2.0:
            fields.append(Field("retry_exponential_backoff", True))
        else:
            context.unsupported(f"Airflow 2 only doubles the retry delay; backoff={retry.backoff:g} cannot be "
                                "expressed", step=step, fix="use backoff=2.0, or Airflow 3 (airflow_version=3)")
    if retry.max_delay_seconds is not None:
        fields.append(Field("max_retry_delay", _number(retry.max_delay_seconds)))
    return fields


def _param(param: ir.Parameter) -> ParamModel:
    return ParamModel(name=param.name, type=_JSON_SCHEMA_TYPES.get(param.type), default=param.default,
                      required=param.required)


def _number(value: float) -> int | float:
    """Whole seconds as an int (``30``, not ``30.0``), anything else as it is."""
    return int(value) if float(value).is_integer() else value
