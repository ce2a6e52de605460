"""Lowering the IR to the plain data an Airflow DAG file is rendered from.

Everything here is pure: it turns a pipeline and its settings into a :class:`DagModel` of strings,
numbers, lists and dicts. The template (``pipecast/templates/airflow_dag.py.j2``) only places those
values, through the filters that write literals (the task table as JSON in one string). Each step's entry is
lowered in :mod:`pipecast.targets.airflow.tasks`; how values stay data is in
:mod:`pipecast.targets.airflow.commands`; the settings are typed in :mod:`pipecast.targets.airflow.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.graph import topological_order
from pipecast.compiler.naming import engine_names, rule_for
from pipecast.runtime.airflow_xcom import XCOM_FILE, XCOM_FILE_VAR
from pipecast.runtime.artifacts import DEFAULT_ROOT
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.targets.airflow import flow as cf
from pipecast.targets.airflow import nested
from pipecast.targets.airflow.code import code_files
from pipecast.targets.airflow.commands import RUN_ID_VAR, param_vars, template
from pipecast.targets.airflow.settings import SEVERAL_WORKERS, AirflowSettings
from pipecast.targets.airflow.tasks import (
    POD_HATCH_ARGS,
    DagScope,
    Field,
    pod_arguments_of,
    step_mode,
    task_fields,
)
from pipecast.targets.base import EmitContext
from pipecast.targets.lowering import artifact_root, is_node_local

__all__ = ["DagModel", "Field", "ParamModel", "TaskModel", "lower"]

DAG_FILE_SUFFIX = ".dag.py"
_TAG_LIMIT = 100  # characters: the length of Airflow's dag_tag.name column
# The start date of a scheduled Airflow 2 DAG (Airflow 2.10 requires one): no logical date comes before it.
EARLIEST_START = (1970, 1, 1)
_JSON_SCHEMA_TYPES = {
    ir.TypeName.STR: "string", ir.TypeName.INT: "integer", ir.TypeName.FLOAT: "number",
    ir.TypeName.BOOL: "boolean", ir.TypeName.DICT: "object", ir.TypeName.LIST: "array",
}

# The run's logical date for pipecast.context().logical_time: ``logical_date`` is what ``{{ ds }}`` is made from
# (for a scheduled run the start of its data interval with Airflow's cron data-interval timetable). Airflow 3
# leaves it out of a manual run's context (undefined, and Airflow's Jinja is strict): then it renders ''.
LOGICAL_TIME_ENV = {LOGICAL_TIME_VAR: "{{ logical_date.isoformat() if logical_date is defined and logical_date "
                                      "else '' }}"}


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
    code: list[tuple[str, str]] = field(default_factory=list)  # the steps' code shipped beside the DAG file
    max_active_tasks: int | None = None  # the pipeline's parallelism bound
    flow: bool = False  # control flow: TaskFlow tasks (publishers, branches, mapped steps, handlers)
    nested: bool = False  # a map inside a map, flattened (pipecast.targets.airflow.nested)

    @property
    def run_id_env(self) -> dict[str, str]:
        """The run id's variable as a worker gets it (one template for every task), and the logical date's."""
        return {RUN_ID_VAR: template("run_id", False), **LOGICAL_TIME_ENV}

    @property
    def pod_run_id_env(self) -> dict[str, str]:
        """The same for pods, where a '$' must be written '$$' (an ISO 8601 date has none), and the XCom file."""
        return {RUN_ID_VAR: template("run_id", True), **LOGICAL_TIME_ENV, **self.xcom_file_env}

    @property
    def file_name(self) -> str:
        """The DAG file's name: ``<dag_id>.dag.py``, which no ``import`` can name, so it never shadows a module."""
        return f"{self.dag_id}{DAG_FILE_SUFFIX}"

    @property
    def code_folder(self) -> str | None:
        """The folder of the shipped code beside the DAG file (``<dag_id>.code``, never importable), if any."""
        return f"{self.dag_id}.code" if self.code else None

    @property
    def map_groups(self) -> bool:
        """Whether a map's chained steps are a mapped task group (then the file has the helper that builds one)."""
        return any(f.key == "group" for task in self.tasks for f in task.fields)

    @property
    def pod_groups(self) -> bool:
        """Whether a mapped task group has a step in a pod (then its items carry the pods' arguments too)."""
        return any({f.key for f in task.fields} >= {"group", "image"} for task in self.tasks)

    @property
    def outlets(self) -> bool:
        """Whether a task declares Airflow Assets (then the file has the helpers that declare them)."""
        return any(f.key == "outlets" for task in self.tasks for f in task.fields)

    @property
    def xcom_file_env(self) -> dict[str, str]:
        """A pod's runtime writes the step's URI to this file, which KubernetesPodOperator pushes as XCom."""
        return {XCOM_FILE_VAR: XCOM_FILE}

    @property
    def pod_hatch(self) -> bool:
        """Whether a pod task has escape-hatch arguments (then the file's pod helper passes them on)."""
        return any(f.key in POD_HATCH_ARGS for task in self.tasks for f in task.fields)

    @property
    def pod_hatch_args(self) -> tuple[str, ...]:
        """The names of the escape-hatch arguments of the pod helper."""
        return POD_HATCH_ARGS

    @property
    def operator_kwargs(self) -> bool:
        """Whether a task has operator_kwargs (then the file has the helper that passes them on)."""
        return any(f.key == "operator_kwargs" for task in self.tasks for f in task.fields)

    @property
    def pull_secrets(self) -> bool:
        """Whether a pod pulls its image with Secrets (then the file's pod helper passes them on)."""
        return any(f.key == "image_pull_secrets" for task in self.tasks for f in task.fields)

    @property
    def task_table(self) -> dict[str, dict[str, Any]]:
        """``TASKS``: task id → entry, upstream tasks first."""
        return {task.task_id: {f.key: f.value for f in task.fields} for task in self.tasks}


def lower(pipeline: ir.Pipeline, context: EmitContext) -> DagModel:
    """Build the :class:`DagModel` of ``pipeline``; problems go to ``context``."""
    settings: AirflowSettings = context.settings
    modes = {step.name: step_mode(pipeline, step, context) for step in pipeline.steps}
    pods, local = "kubernetes" in modes.values(), "local" in modes.values()
    # Pods have disks of their own: they need an object store. Local tasks default to the worker's disk.
    root = artifact_root(pipeline, context, remote=pods, default=None if pods else DEFAULT_ROOT)
    worker_local = local and is_node_local(root)
    if worker_local and settings.executor in SEVERAL_WORKERS:
        context.error(f"artifact root {root!r} is on the disk of the worker that runs each task, but the "
                      f"{settings.executor} executor runs tasks on several workers: a step would not find the "
                      "outputs of its upstream steps",
                      location=str(pipeline.location) if pipeline.location else None,
                      fix="pass artifact_root= to @pipeline or --set artifact_root=s3://BUCKET/PREFIX (or gs://..., "
                          "az://...), a store every worker reaches with its own credentials")
    locations = {s.name: str(s.location) for s in pipeline.steps}
    flow = cf.FlowScope.of(pipeline) if pipeline.uses_control_flow else None
    if flow:
        cf.check(flow, context, modes)
        nested.check(flow, context)
        flow.choose_groups()
        nested.choose_groups(flow)
    pod_defaults = {argument: value for argument, value in pod_arguments_of(settings).items() if value}
    scope = DagScope(pipeline=pipeline, context=context, root=root, pod_defaults=pod_defaults,
                     task_ids=engine_names("airflow", [*(flow.names() if flow else ()),
                                                       *(s.name for s in pipeline.steps)],
                                           locations=locations, target=context.target),
                     variables=param_vars(pipeline))
    model = DagModel(
        airflow_version=scope.version,
        modes=tuple(sorted(set(modes.values()))),
        dag_id=settings.dag_id or rule_for("airflow").apply(pipeline.name),
        description=pipeline.description,
        schedule=pipeline.schedule,
        start_date=_start_date(pipeline, context, settings),
        catchup=settings.catchup,
        tags=_tags(pipeline, context, settings),
        params=[_param(p) for p in pipeline.parameters],
        default_args={"retries": 0, **pod_defaults},
        worker_local_root=root if worker_local and settings.executor is None else None,
        code=code_files(pipeline, context) if local and settings.ship_code else [],
        max_active_tasks=pipeline.parallelism,
        flow=flow is not None,
        nested=bool(flow and nested.inner_maps(flow)),
    )
    _check_scheduled_parameters(pipeline, context)
    if flow is None:
        for step in _dependency_order(pipeline):
            model.tasks.append(TaskModel(scope.task_ids[step.name], task_fields(scope, step, modes[step.name])))
    else:
        model.tasks += _flow_tasks(scope, flow, modes, settings.python)
    return model


def _flow_tasks(scope: DagScope, flow: cf.FlowScope, modes: dict[str, str], python: str) -> list[TaskModel]:
    """Every task of a DAG with control flow (steps, publishers, branch tasks), upstream tasks first."""
    pipeline, ids = scope.pipeline, dict(scope.task_ids)
    ids.update({name: name for name in flow.names()})
    entries: dict[str, list[Field]] = {}
    inner_maps = nested.inner_maps(flow)
    for group in pipeline.groups:
        branches, _ = cf.enclosing(flow, group.parent)
        if group.name in inner_maps:
            entries[flow.publishers[group.name]] = cf.with_map_steps(
                flow, group, nested.pairs_fields(flow, group, scope.root, python, ids, branches))
        elif group.name in flow.publishers:
            entries[flow.publishers[group.name]] = cf.with_map_steps(
                flow, group, cf.publisher_fields(flow, group, scope.root, python, ids, branches))
        elif group.name in flow.branches:
            entries[flow.branches[group.name]] = cf.branch_fields(flow, group.name, scope.root, python, ids, branches)
    for step in pipeline.steps:
        branches, _ = cf.enclosing(flow, step.group)

        def lowered(argv: list[str], env: dict[str, str], step: ir.Step = step) -> list[Field]:
            if nested.handles(flow, step):
                return nested.step_fields(flow, step, argv, scope.root, dict(scope.variables), env)
            fields = cf.step_flow_fields(flow, step, argv, scope.root, dict(scope.variables), ids, env)
            return nested.cover_pairs(flow, step, fields) if step.trigger is not ir.Trigger.ALL_SUCCESS else fields

        fields = task_fields(scope, step, modes[step.name], lowered if flow.is_flow_step(step) else None)
        upstream = [*fields[0].value, *branches, *cf.condition_upstream(flow, step, ids),
                    *cf.waits_for(flow, step, ids), *nested.extra_upstream(flow, step)]
        entries[ids[step.name]] = [Field("upstream", list(dict.fromkeys(upstream))), *fields[1:]]
    order: dict[str, None] = {}
    specs = {task_id: {f.key: f.value for f in fields} for task_id, fields in entries.items()}

    def visit(task_id: str) -> None:
        if task_id in order:
            return
        group = specs[task_id].get("group")  # a mapped task group's tasks are built at once, in step order
        members = [t for t in entries if specs[t].get("group") == group] if group else [task_id]
        for member in members:
            for upstream in [*specs[member]["upstream"], *([specs[member]["map"]] if "map" in specs[member] else [])]:
                if upstream not in members:
                    visit(upstream)
        order.update(dict.fromkeys(members))

    for task_id in [*(ids[s.name] for s in pipeline.steps), *entries]:
        visit(task_id)
    return [TaskModel(task_id, entries[task_id]) for task_id in order]


def _start_date(pipeline: ir.Pipeline, context: EmitContext,
                settings: AirflowSettings) -> tuple[int, int, int] | None:
    """The DAG's start date as (year, month, day), or None: no start date at all.

    Airflow creates no task instance for a run whose logical date is before the start date, and reports the
    run a success (``airflow dags test DAG 2021-01-01``, a manual trigger with an earlier logical date), so
    pipecast writes none where Airflow allows it: Airflow 3 needs one only with ``catchup=True``, Airflow 2.10
    only for a scheduled DAG, which gets 1970-01-01 (with ``catchup=False`` only the latest interval runs).
    """
    if settings.start_date is not None:
        day = date.fromisoformat(settings.start_date)  # checked when the settings were parsed
        return (day.year, day.month, day.day)
    if settings.catchup:
        context.error("setting 'catchup' is true but no start_date is set: Airflow runs every interval of the "
                      "schedule since the start date", fix="--set start_date=YYYY-MM-DD (the first interval to run)")
        return None
    if settings.airflow_version == 2 and pipeline.schedule:
        return EARLIEST_START
    return None


def _tags(pipeline: ir.Pipeline, context: EmitContext, settings: AirflowSettings) -> list[str]:
    """The pipeline's tags, the ``tags`` setting's, and ``pipecast``."""
    extra = [t for t in settings.tags.split(",") if t] if isinstance(settings.tags, str) else list(settings.tags)
    names: dict[str, None] = dict.fromkeys([*pipeline.tags, *extra, "pipecast"])
    for tag in names:
        if len(tag) > _TAG_LIMIT:
            context.unsupported(f"Airflow tags hold at most {_TAG_LIMIT} characters; {tag!r} has {len(tag)}",
                                location=str(pipeline.location) if pipeline.location else None,
                                fix="shorten the tag")
    return list(names)


def _check_scheduled_parameters(pipeline: ir.Pipeline, context: EmitContext) -> None:
    if not pipeline.schedule:
        return
    for param in pipeline.parameters:
        if param.required:
            context.unsupported(
                f"Airflow cannot schedule a DAG with a required parameter: {param.name!r} has no default",
                location=str(param.location or pipeline.location or "") or None,
                fix=f"give {param.name!r} a default or remove the schedule",
            )


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


def _param(param: ir.Parameter) -> ParamModel:
    return ParamModel(name=param.name, type=_JSON_SCHEMA_TYPES.get(param.type), default=param.default,
                      required=param.required)
