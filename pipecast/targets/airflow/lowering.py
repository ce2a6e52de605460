"""Lowering the IR to the plain data an Airflow DAG file is rendered from.

Everything here is pure: it turns a pipeline and its settings into a :class:`DagModel` of strings,
numbers, lists and dicts. The template (``pipecast/templates/airflow_dag.py.j2``) only places those
values, through one filter that writes Python literals.

Two rules keep values from escaping into code or templates (DESIGN §3):

* Airflow renders Jinja in templated fields (``bash_command``, ``env``, ``arguments``...). The DAG file
  wraps every pipeline value in ``literal()`` so it is never rendered. The only templates in the file are
  the ones written here: the run id, each parameter and each Airflow secret, all passed as environment
  variables, whose rendered values are data (Jinja does not render its own output again).
* The command never holds a rendered value. A local task's bash command refers to those variables as
  ``"$VAR"`` (bash does not re-parse an expanded variable); a pod's arguments refer to them as
  ``$(VAR)``, which Kubernetes expands, so every literal ``$`` there is written ``$$``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.graph import topological_order
from pipecast.compiler.naming import engine_names, rule_for
from pipecast.runtime.artifacts import DEFAULT_ROOT
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.targets import kube
from pipecast.targets.base import EmitContext

MODES = ("auto", "local", "kubernetes")
RUN_ID_VAR = "PIPECAST_RUN_ID"

# A placeholder for an environment variable inside a runtime argument while the command is built; NUL
# cannot occur in a command line, so it never collides with pipeline text.
_VAR = re.compile("\x00([A-Za-z0-9_]+)\x00")
_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Attributes of Airflow's ParamsDict and of dict: ``params.items`` would find the method, not the value.
_PARAMS_ATTRIBUTES = frozenset({
    "clear", "copy", "deserialize", "dump", "filter_params_by_source", "fromkeys", "get", "get_param", "items",
    "keys", "pop", "popitem", "serialize", "setdefault", "suppress_exception", "update", "validate", "values",
})
_JSON_SCHEMA_TYPES = {
    ir.TypeName.STR: "string", ir.TypeName.INT: "integer", ir.TypeName.FLOAT: "number",
    ir.TypeName.BOOL: "boolean", ir.TypeName.DICT: "object", ir.TypeName.LIST: "array",
}
_AIRFLOW_SECRET_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_CONNECTION_FIELDS = frozenset({"conn_type", "host", "login", "password", "schema", "port", "extra"})
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_TAG_LIMIT = 100  # characters: the length of Airflow's dag_tag.name column
# Pod settings that become KubernetesPodOperator arguments (setting name -> operator argument).
POD_SETTINGS = {
    "namespace": "namespace",
    "service_account": "service_account_name",
    "image_pull_policy": "image_pull_policy",
    "kubernetes_conn_id": "kubernetes_conn_id",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One ``key: value`` of a task's entry in the DAG file's ``TASKS`` list.

    Attributes:
        key: The entry's key.
        value: A JSON-like value, written as a Python literal.
        seconds: Write the value as ``timedelta(seconds=value)``.
    """

    key: str
    value: Any
    seconds: bool = False


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
    start_date: tuple[int, int, int]
    catchup: bool
    tags: list[str]
    params: list[ParamModel]
    default_args: dict[str, Any]
    tasks: list[list[Field]] = field(default_factory=list)

    @property
    def run_id_env(self) -> dict[str, str]:
        """The run id's variable as a worker gets it (one template for every task)."""
        return {RUN_ID_VAR: _template("run_id", False)}

    @property
    def pod_run_id_env(self) -> dict[str, str]:
        """The same for pods, where a '$' must be written '$$'."""
        return {RUN_ID_VAR: _template("run_id", True)}

    @property
    def file_name(self) -> str:
        return f"{self.dag_id}.py"

    @property
    def uses_timedelta(self) -> bool:
        return any(f.seconds for task in self.tasks for f in task)


def lower(pipeline: ir.Pipeline, context: EmitContext) -> DagModel:
    """Build the :class:`DagModel` of ``pipeline``; problems go to ``context``."""
    version = _airflow_version(pipeline, context)
    locations = {s.name: str(s.location) for s in pipeline.steps}
    task_ids = engine_names("airflow", [s.name for s in pipeline.steps], locations=locations, target=context.target)
    param_vars = _param_vars(pipeline)
    pod_defaults = _pod_settings(pipeline, context, None)
    default_args: dict[str, Any] = {"retries": 0}
    default_args.update({POD_SETTINGS[k]: v for k, v in pod_defaults.items()})
    model = DagModel(
        airflow_version=version,
        modes=(),
        dag_id=_dag_id(pipeline, context),
        description=pipeline.description,
        schedule=pipeline.schedule,
        start_date=_start_date(pipeline, context),
        catchup=_flag(pipeline, context, "catchup", False),
        tags=_tags(pipeline, context),
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
        mode, fields = _task(pipeline, step, context, task_ids, param_vars, version, pod_defaults)
        modes.add(mode)
        model.tasks.append(fields)
    model.modes = tuple(sorted(modes))
    return model


def _task(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, task_ids: dict[str, str],
          param_vars: dict[str, str], version: int, pod_defaults: dict[str, str]) -> tuple[str, list[Field]]:
    mode = step_mode(pipeline, step, context)
    fields = [Field("task_id", task_ids[step.name]),
              Field("upstream", [task_ids[name] for name in step.upstream()])]
    python = _string_setting(pipeline, context, "python", "python", step)
    used = {b.parameter for b in step.bindings if b.kind is ir.BindingKind.PARAMETER}
    kubernetes = mode == "kubernetes"
    templated = {param_vars[p.name]: param_template(p, dollar_escaped=kubernetes)
                 for p in pipeline.parameters if p.name in used}
    store = _secret_store(pipeline, step, context, mode)
    secrets = pipeline.secrets_of(step)
    if store == "airflow":
        templated.update({s.env: airflow_secret_template(s, step, context, dollar_escaped=kubernetes)
                          for s in secrets})
    env = dict(pipeline.env_of(step))
    if kubernetes:
        image = pipeline.image_of(step) or _string_setting(pipeline, context, "image", None, step)
        if not image:
            context.error(f"step {step.name!r} runs in a pod and has no image", step=step,
                          fix="set image= on the step or the pipeline, or --set image=REGISTRY/IMAGE:TAG")
        root = _artifact_root(pipeline, step, context, remote=True)
        argv = _argv(pipeline, step, context, root, python, param_vars)
        fields += [Field("image", image or ""), Field("cmds", pod_arguments(argv[:3])),
                   Field("arguments", pod_arguments(argv[3:]))]
        if env:
            fields.append(Field("env", {k: v.replace("$", "$$") for k, v in env.items()}))
        if templated:
            fields.append(Field("templated_env", templated))
        if secrets and store == "kubernetes":
            fields.append(Field("secrets", {s.env: _kubernetes_secret(s, step, context) for s in secrets}))
        resources = kube.container_resources(step.resources)
        if resources:
            fields.append(Field("resources", resources))
        selector = kube.node_selector_for_gpu(step.resources)
        if selector:
            fields.append(Field("node_selector", selector))
        for key, value in _pod_settings(pipeline, context, step).items():
            if pod_defaults.get(key) != value:
                fields.append(Field(POD_SETTINGS[key], value))
    else:
        _report_local_limits(pipeline, step, context)
        root = _artifact_root(pipeline, step, context, remote=False)
        argv = _argv(pipeline, step, context, root, python, param_vars)
        fields.append(Field("command", bash_command(argv)))
        cwd = _string_setting(pipeline, context, "cwd", None, step)
        if cwd:
            fields.append(Field("cwd", cwd))
        pythonpath = _string_setting(pipeline, context, "pythonpath", None, step)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        if env:
            fields.append(Field("env", dict(sorted(env.items()))))
        if templated:
            fields.append(Field("templated_env", templated))
    fields += _retry_fields(step, context, version)
    if step.timeout_seconds:
        fields.append(Field("execution_timeout", _number(step.timeout_seconds), seconds=True))
    if step.description:
        fields.append(Field("doc_md", step.description))
    return mode, fields


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


def step_mode(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> str:
    """``local`` or ``kubernetes`` for ``step`` (``auto``: kubernetes when the step has an image)."""
    mode = context.setting(pipeline, "mode", "auto", step=step)
    if mode not in MODES:
        context.error(f"setting 'mode' is {mode!r}; it must be one of {list(MODES)!r}", step=step,
                      fix="--set mode=local (BashOperator) or --set mode=kubernetes (KubernetesPodOperator)")
        mode = "auto"
    if mode == "auto":
        has_image = pipeline.image_of(step) or context.setting(pipeline, "image", None, step=step)
        return "kubernetes" if has_image else "local"
    return str(mode)


def _argv(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, root: str, python: str,
          param_vars: dict[str, str]) -> list[str]:
    syntax = EngineSyntax(run_id=_var(RUN_ID_VAR), parameter=lambda p: _var(param_vars[p.name]),
                          artifact_root=root, python=python)
    argv = step_command(pipeline, step, syntax)
    for arg in argv:
        if "\x00" in _VAR.sub("", arg):
            context.error(f"the command of step {step.name!r} holds a NUL character, which no command line can carry",
                          step=step, fix="remove the NUL character from names and settings")
    return argv


def _var(name: str) -> str:
    return f"\x00{name}\x00"


def bash_command(argv: list[str]) -> str:
    """``argv`` as one bash command line: words quoted, variables as ``"$VAR"``, run with ``exec``."""
    words = []
    for arg in argv:
        pieces = _VAR.split(arg)
        word = "".join(f'"${piece}"' if i % 2 else shlex.quote(piece) if piece else ""
                       for i, piece in enumerate(pieces))
        words.append(word or "''")
    if words[-1].endswith((".sh", ".bash")):
        # BashOperator would take a command ending in .sh for the path of a script file.
        words[-1] = f"'{words[-1]}'"
    return "exec " + " ".join(words)


def pod_arguments(argv: list[str]) -> list[str]:
    """``argv`` for a container: variables as Kubernetes ``$(VAR)`` references, every other ``$`` as ``$$``."""
    return ["".join(f"$({piece})" if i % 2 else piece.replace("$", "$$") for i, piece in enumerate(_VAR.split(arg)))
            for arg in argv]


def _param_vars(pipeline: ir.Pipeline) -> dict[str, str]:
    """The environment variable carrying each parameter (by position if its name is not ASCII)."""
    return {p.name: f"PIPECAST_PARAM_{p.name if _ASCII_NAME.fullmatch(p.name) else index}"
            for index, p in enumerate(pipeline.parameters)}


def param_template(param: ir.Parameter, *, dollar_escaped: bool) -> str:
    """The Jinja template that renders a parameter's value as the runtime reads it."""
    if _ASCII_NAME.fullmatch(param.name) and param.name not in _PARAMS_ATTRIBUTES:
        expression = f"params.{param.name}"
    else:
        expression = f"params['{param.name}']"
    if param.type in (ir.TypeName.BOOL, ir.TypeName.DICT, ir.TypeName.LIST, ir.TypeName.ANY):
        expression += " | tojson"
    # Only text can hold a '$': numbers and booleans need no escaping for Kubernetes.
    textual = param.type in (ir.TypeName.STR, ir.TypeName.DICT, ir.TypeName.LIST, ir.TypeName.ANY)
    return _template(expression, dollar_escaped and textual)


def _template(expression: str, dollar_escaped: bool) -> str:
    if dollar_escaped:
        expression += " | replace('$', '$$')"
    return "{{ " + expression + " }}"


def airflow_secret_template(secret: ir.SecretRef, step: ir.Step, context: EmitContext, *,
                            dollar_escaped: bool) -> str:
    """A reference to an Airflow variable (no key) or a connection's field (key), rendered at run time."""
    names = [secret.name] + ([secret.key] if secret.key else [])
    if not all(_AIRFLOW_SECRET_NAME.fullmatch(n) for n in names):
        context.error(f"secret {secret.name!r} (key {secret.key!r}) is not a valid Airflow connection id or "
                      "variable key: use letters, digits, '_', '.' and '-'", step=step,
                      fix="rename the secret in Airflow and in the pipeline")
        return ""
    if secret.key is None:
        return _template(f"var.value['{secret.name}']", dollar_escaped)
    # A connection's own fields by name; any other key is read from its JSON extra.
    attribute = secret.key if secret.key in _CONNECTION_FIELDS else f"extra_dejson['{secret.key}']"
    return _template(f"conn['{secret.name}'].{attribute}", dollar_escaped)


def _kubernetes_secret(secret: ir.SecretRef, step: ir.Step, context: EmitContext) -> list[str]:
    key = secret.key or secret.env
    if not _DNS1123_SUBDOMAIN.fullmatch(secret.name) or not _SECRET_KEY.fullmatch(key):
        context.error(f"secret {secret.name!r} (key {key!r}) is not a valid Kubernetes secret reference: the name "
                      "must be a DNS-1123 subdomain and the key hold only letters, digits, '-', '_' and '.'",
                      step=step, fix="rename the secret")
    return [secret.name, key]


def _secret_store(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, mode: str) -> str:
    default = "kubernetes" if mode == "kubernetes" else "airflow"
    store = context.setting(pipeline, "secret_store", default, step=step)
    if store not in ("airflow", "kubernetes"):
        context.error(f"setting 'secret_store' is {store!r}; it must be 'airflow' or 'kubernetes'", step=step)
        return default
    if store == "kubernetes" and mode == "local" and pipeline.secrets_of(step):
        context.error("a local task runs on the Airflow worker and cannot read Kubernetes secrets", step=step,
                      fix="--set secret_store=airflow (connections/variables) or --set mode=kubernetes")
        return "airflow"
    return str(store)


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


def _retry_fields(step: ir.Step, context: EmitContext, version: int) -> list[Field]:
    retry = step.retry
    if retry.retries == 0:
        return []
    fields = [Field("retries", retry.retries), Field("retry_delay", _number(retry.delay_seconds), seconds=True)]
    if retry.backoff != 1.0:
        if version >= 3:
            fields.append(Field("retry_exponential_backoff", float(retry.backoff)))
        elif retry.backoff == 2.0:
            fields.append(Field("retry_exponential_backoff", True))
        else:
            context.unsupported(f"Airflow 2 only doubles the retry delay; backoff={retry.backoff:g} cannot be "
                                "expressed", step=step, fix="use backoff=2.0, or Airflow 3 (airflow_version=3)")
    if retry.max_delay_seconds is not None:
        fields.append(Field("max_retry_delay", _number(retry.max_delay_seconds), seconds=True))
    return fields


def _artifact_root(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, *, remote: bool) -> str:
    root = pipeline.artifact_root or context.setting(pipeline, "artifact_root", None, step=step)
    if not remote:
        return str(root or DEFAULT_ROOT)
    if not root:
        context.error("a pod needs an artifact root every task can reach, and none is set", step=step,
                      fix="set the pipeline's artifact_root or --set artifact_root=s3://bucket/prefix (or gs://...)")
        return ""
    if "://" not in str(root) or str(root).startswith("file://"):
        context.unsupported(f"artifact root {root!r} is a local path; pods do not share it (no volume is mounted)",
                            step=step, fix="use an object-store URI such as s3://bucket/prefix or gs://bucket/prefix")
    return str(root)


def _pod_settings(pipeline: ir.Pipeline, context: EmitContext, step: ir.Step | None) -> dict[str, str]:
    values = {}
    for key in POD_SETTINGS:
        value = context.setting(pipeline, key, None, step=step)
        if value is None:
            continue
        valid = {
            "namespace": _DNS1123_LABEL.fullmatch(str(value)),
            "service_account": _DNS1123_SUBDOMAIN.fullmatch(str(value)),
            "image_pull_policy": str(value) in _PULL_POLICIES,
            "kubernetes_conn_id": _AIRFLOW_SECRET_NAME.fullmatch(str(value)),
        }[key]
        if not valid:
            context.error(f"setting {key!r} is {value!r}, which Kubernetes/Airflow does not accept", step=step,
                          fix={"image_pull_policy": f"use one of {list(_PULL_POLICIES)!r}"}.get(
                              key, "use lower-case letters, digits and '-'"))
            continue
        values[key] = str(value)
    return values


def _airflow_version(pipeline: ir.Pipeline, context: EmitContext) -> int:
    value = context.setting(pipeline, "airflow_version", 3)
    text = str(value).split(".")[0]
    if text not in ("2", "3"):
        context.error(f"setting 'airflow_version' is {value!r}; pipecast writes DAGs for Airflow 3 or 2 (2.10)",
                      fix="--set airflow_version=3 or --set airflow_version=2")
        return 3
    return int(text)


def _dag_id(pipeline: ir.Pipeline, context: EmitContext) -> str:
    given = context.setting(pipeline, "dag_id", None)
    rule = rule_for("airflow")
    if given is None:
        return rule.apply(pipeline.name)
    if not isinstance(given, str) or rule.apply(given) != given:
        context.error(f"setting 'dag_id' is {given!r}; an Airflow DAG id holds only letters, digits, '_', '.' and "
                      "'-' (at most 250)", fix="choose another dag_id")
        return rule.apply(str(given))
    return given


def _start_date(pipeline: ir.Pipeline, context: EmitContext) -> tuple[int, int, int]:
    value = context.setting(pipeline, "start_date", "2024-01-01")
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        context.error(f"setting 'start_date' is {value!r}, not a date", fix="--set start_date=2024-01-01")
        return (2024, 1, 1)
    return (day.year, day.month, day.day)


def _tags(pipeline: ir.Pipeline, context: EmitContext) -> list[str]:
    extra = context.setting(pipeline, "tags", [])
    if isinstance(extra, str):
        extra = [t for t in extra.split(",") if t]
    tags: dict[str, None] = dict.fromkeys([*pipeline.tags, *map(str, extra), "pipecast"])
    for tag in tags:
        if len(tag) > _TAG_LIMIT:
            context.unsupported(f"Airflow tags hold at most {_TAG_LIMIT} characters; {tag!r} has {len(tag)}",
                                location=str(pipeline.location) if pipeline.location else None,
                                fix="shorten the tag")
    return list(tags)


def _param(param: ir.Parameter) -> ParamModel:
    return ParamModel(name=param.name, type=_JSON_SCHEMA_TYPES.get(param.type), default=param.default,
                      required=param.required)


def _flag(pipeline: ir.Pipeline, context: EmitContext, key: str, default: bool) -> bool:
    value = context.setting(pipeline, key, default)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    context.error(f"setting {key!r} is {value!r}; it must be true or false")
    return default


def _string_setting(pipeline: ir.Pipeline, context: EmitContext, key: str, default: str | None,
                    step: ir.Step | None = None) -> Any:
    value = context.setting(pipeline, key, default, step=step)
    if value is not None and not isinstance(value, str):
        context.error(f"setting {key!r} is {value!r}; it must be a string", step=step)
        return default
    return value


def _number(value: float) -> int | float:
    """Whole seconds as an int (``timedelta(seconds=30)``), anything else as it is."""
    return int(value) if float(value).is_integer() else value
