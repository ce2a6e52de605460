"""Reading and checking the ``airflow`` target's settings (``--set``, pipeline or step ``settings=``).

Bad values are reported with ``context.error`` (naming the setting and the fix), never dropped.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import rule_for
from pipecast.runtime.artifacts import DEFAULT_ROOT
from pipecast.targets.base import EmitContext

MODES = ("auto", "local", "kubernetes")
# Pod settings that become KubernetesPodOperator arguments (setting name -> operator argument).
POD_SETTINGS = {
    "namespace": "namespace",
    "service_account": "service_account_name",
    "image_pull_policy": "image_pull_policy",
    "kubernetes_conn_id": "kubernetes_conn_id",
}
_AIRFLOW_ID = re.compile(r"[A-Za-z0-9_.-]+")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_TAG_LIMIT = 100  # characters: the length of Airflow's dag_tag.name column
# The start date of a scheduled Airflow 2 DAG (Airflow 2.10 requires one): no logical date comes before it.
EARLIEST_START = (1970, 1, 1)


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


def secret_store(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, mode: str) -> str:
    """Where the step's secrets are resolved: ``airflow`` (connections/variables) or ``kubernetes``."""
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


def artifact_root(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, *, remote: bool) -> str:
    """The step's artifact root; ``remote``: it must be an object store every pod reaches."""
    root = pipeline.artifact_root or context.setting(pipeline, "artifact_root", None, step=step)
    if not remote:
        return str(root or DEFAULT_ROOT)
    if not root:
        context.error("a pod needs an artifact root every task can reach, and none is set", step=step,
                      fix="set the pipeline's artifact_root or --set artifact_root=s3://bucket/prefix (or gs://...)")
        return ""
    if worker_local(str(root)):
        context.unsupported(f"artifact root {root!r} is a local path, and every pod has a disk of its own (no "
                            "volume is mounted): a step would not find its inputs", step=step,
                            fix="use an object-store URI such as s3://bucket/prefix or gs://bucket/prefix")
    return str(root)


def worker_local(root: str) -> bool:
    """Whether ``root`` is a path on the machine that runs the task (a plain path or ``file://``)."""
    return "://" not in root or root.startswith("file://")


def pod_settings(pipeline: ir.Pipeline, context: EmitContext, step: ir.Step | None) -> dict[str, str]:
    """The pod settings that are set (namespace, service account...), checked, for the pipeline or ``step``."""
    values = {}
    for key in POD_SETTINGS:
        value = context.setting(pipeline, key, None, step=step)
        if value is None:
            continue
        valid = {
            "namespace": _DNS1123_LABEL.fullmatch(str(value)),
            "service_account": _DNS1123_SUBDOMAIN.fullmatch(str(value)),
            "image_pull_policy": str(value) in _PULL_POLICIES,
            "kubernetes_conn_id": _AIRFLOW_ID.fullmatch(str(value)),
        }[key]
        if not valid:
            context.error(f"setting {key!r} is {value!r}, which Kubernetes/Airflow does not accept", step=step,
                          fix={"image_pull_policy": f"use one of {list(_PULL_POLICIES)!r}"}.get(
                              key, "use lower-case letters, digits and '-'"))
            continue
        values[key] = str(value)
    return values


def airflow_version(pipeline: ir.Pipeline, context: EmitContext) -> int:
    """The Airflow major version the file is written for: 3 (default) or 2."""
    value = context.setting(pipeline, "airflow_version", 3)
    text = str(value).split(".")[0]
    if text not in ("2", "3"):
        context.error(f"setting 'airflow_version' is {value!r}; pipecast writes DAGs for Airflow 3 or 2 (2.10)",
                      fix="--set airflow_version=3 or --set airflow_version=2")
        return 3
    return int(text)


def dag_id(pipeline: ir.Pipeline, context: EmitContext) -> str:
    """The DAG id: the ``dag_id`` setting, else the pipeline's name under Airflow's id rule."""
    given = context.setting(pipeline, "dag_id", None)
    rule = rule_for("airflow")
    if given is None:
        return rule.apply(pipeline.name)
    if not isinstance(given, str) or rule.apply(given) != given:
        context.error(f"setting 'dag_id' is {given!r}; an Airflow DAG id holds only letters, digits, '_', '.' and "
                      "'-' (at most 250)", fix="choose another dag_id")
        return rule.apply(str(given))
    return given


def start_date(pipeline: ir.Pipeline, context: EmitContext, version: int,
               catchup: bool) -> tuple[int, int, int] | None:
    """The DAG's start date as (year, month, day), or None: no start date at all.

    Airflow creates no task instance for a run whose logical date is before the start date, and reports the
    run a success (``airflow dags test DAG 2021-01-01``, a manual trigger with an earlier logical date), so
    pipecast writes none where Airflow allows it: Airflow 3 needs one only with ``catchup=True``, Airflow 2.10
    only for a scheduled DAG, which gets 1970-01-01 (with ``catchup=False`` only the latest interval runs).
    """
    value = context.setting(pipeline, "start_date", None)
    if value is not None:
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            context.error(f"setting 'start_date' is {value!r}, not a date", fix="--set start_date=2024-01-01")
            return None
        return (day.year, day.month, day.day)
    if catchup:
        context.error("setting 'catchup' is true but no start_date is set: Airflow runs every interval of the "
                      "schedule since the start date", fix="--set start_date=YYYY-MM-DD (the first interval to run)")
        return None
    if version == 2 and pipeline.schedule:
        return EARLIEST_START
    return None


def tags(pipeline: ir.Pipeline, context: EmitContext) -> list[str]:
    """The pipeline's tags, the ``tags`` setting's, and ``pipecast``."""
    extra = context.setting(pipeline, "tags", [])
    if isinstance(extra, str):
        extra = [t for t in extra.split(",") if t]
    names: dict[str, None] = dict.fromkeys([*pipeline.tags, *map(str, extra), "pipecast"])
    for tag in names:
        if len(tag) > _TAG_LIMIT:
            context.unsupported(f"Airflow tags hold at most {_TAG_LIMIT} characters; {tag!r} has {len(tag)}",
                                location=str(pipeline.location) if pipeline.location else None,
                                fix="shorten the tag")
    return list(names)


def flag(pipeline: ir.Pipeline, context: EmitContext, key: str, default: bool) -> bool:
    """A true/false setting."""
    value = context.setting(pipeline, key, default)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    context.error(f"setting {key!r} is {value!r}; it must be true or false")
    return default


def string_setting(pipeline: ir.Pipeline, context: EmitContext, key: str, default: str | None,
                   step: ir.Step | None = None) -> Any:
    """A setting that must be text (``python``, ``cwd``, ``image``...), for the pipeline or ``step``."""
    value = context.setting(pipeline, key, default, step=step)
    if value is not None and not isinstance(value, str):
        context.error(f"setting {key!r} is {value!r}; it must be a string", step=step)
        return default
    return value
