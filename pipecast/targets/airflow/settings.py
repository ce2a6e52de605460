"""The ``airflow`` target's settings (``--set``, a pipeline's or a step's ``settings={"airflow": {...}}``).

Typed once here and parsed by the framework before ``emit``: a wrong value or an unknown key is an error at the
``file:line`` it was written. Pod mode shares :class:`~pipecast.targets.kube.settings.PodSettings` with every
Kubernetes-based target.

Values that reach one of KubernetesPodOperator's templated fields unwrapped (``namespace``,
``kubernetes_conn_id``) are checked against the engine's own name rules, which leave no room for a Jinja
delimiter: a value can never become a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import ClassVar, Literal

from pipecast.compiler.naming import rule_for
from pipecast.targets.airflow.kwargs import operator_kwargs_problem
from pipecast.targets.airflow.secrets import CONNECTION_ID
from pipecast.targets.kube.settings import PodSettings
from pipecast.targets.settings import ContainerSettings, Duration, Json, Settings, setting


def _version_problem(version: int) -> str | None:
    return None if version in (2, 3) else "must be 3 or 2 (pipecast writes DAGs for Airflow 3 and Airflow 2.10)"


def _dag_id_problem(dag_id: str) -> str | None:
    if rule_for("airflow").apply(dag_id) == dag_id:
        return None
    return "an Airflow DAG id holds only letters, digits, '_', '.' and '-' (at most 250)"


def _date_problem(text: str) -> str | None:
    try:
        date.fromisoformat(text)
    except ValueError:
        return "must be a date written YYYY-MM-DD"
    return None


def _namespace_problem(namespace: str) -> str | None:
    if rule_for("dns1123_label").apply(namespace) == namespace:
        return None
    return "must be a Kubernetes namespace: at most 63 lower-case letters, digits and '-'"


def _connection_problem(conn_id: str) -> str | None:
    if CONNECTION_ID.fullmatch(conn_id):
        return None
    return "must be an Airflow connection id: letters, digits and '_', '-', '.', ':', '/', '\\', '#', '!', '(' or ')'"


@dataclass(frozen=True, kw_only=True)
class DagSettings(Settings):
    """How the DAG is written: modes, the Airflow version, the DAG's id, schedule arguments and tags."""

    mode: Literal["auto", "local", "kubernetes"] = setting(
        "auto", "auto (kubernetes for a step with an image, else local), local (BashOperator on the worker) or "
                "kubernetes (KubernetesPodOperator)")
    airflow_version: int = setting(3, "3 (airflow.sdk and provider imports) or 2 (Airflow 2.10 import paths)",
                                   step=False, check=_version_problem, example="airflow_version=2")
    dag_id: str | None = setting(None, "the DAG id and file name (default: the pipeline's name)", step=False,
                                 check=_dag_id_problem, example="dag_id=nightly.train")
    start_date: str | None = setting(
        None, "the DAG's start_date, YYYY-MM-DD (default: none, so no logical date is before it; 1970-01-01 for a "
              "scheduled Airflow 2 DAG, which needs one); a run whose logical date is earlier runs no task",
        step=False, check=_date_problem, example="start_date=2024-01-01")
    catchup: bool = setting(False, "run every missed schedule interval since start_date, which it then needs",
                            step=False)
    tags: tuple[str, ...] | str = setting([], "extra DAG tags (a list, or comma-separated text)", step=False,
                                          example="tags=team-ml,nightly")
    executor: Literal["local", "sequential", "celery", "kubernetes", "edge"] | None = setting(
        None, "the deployment's executor ([core] executor): celery, kubernetes and edge run tasks on several "
              "workers, which then need an object-store artifact_root (a worker-local one is refused); with local "
              "or sequential, one machine runs every task (default: not known, so a worker-local root warns)",
        step=False, example="executor=celery")
    ship_code: bool = setting(
        True, "local mode: copy the steps' Python code (their import root) into a <dag_id>.code folder beside the "
              "DAG file, first on each task's PYTHONPATH; false when the workers have the code installed",
        step=False, example="ship_code=false")


@dataclass(frozen=True, kw_only=True)
class WorkerSettings(Settings):
    """What a task needs to run pipecast: its Python, and for a local task the worker's paths; its secrets."""

    secret_store: Literal["airflow", "kubernetes"] | None = setting(
        None, "airflow (connections/variables; a local task's default) or kubernetes (Secrets; a pod's default)")
    python: str = setting("python", "the Python a task runs", example="python=/opt/venv/bin/python")
    pythonpath: str | None = setting(None, "local mode: PYTHONPATH of the task, so the worker imports the "
                                           "pipeline's module", example="pythonpath=/srv/code")
    working_directory: str | None = setting(None, "local mode: working directory of the task (default: a "
                                                  "temporary directory)", example="working_directory=/srv/work")


@dataclass(frozen=True, kw_only=True)
class AirflowSettings(PodSettings, WorkerSettings, ContainerSettings, DagSettings):
    """Every setting of the ``airflow`` target; pod settings apply to KubernetesPodOperator tasks."""

    renamed: ClassVar[Mapping[str, str]] = {"cwd": "working_directory"}

    image: str | None = setting(None, "image of pods whose step and pipeline set none (with mode auto, a step "
                                      "with an image runs in a pod)", example="image=ghcr.io/acme/pipeline:1.0")
    max_map_length: int = setting(
        1024, "the most items a map may have: set it to the deployment's [core] max_map_length (Airflow's default "
              "1024); checked at compile time for constant lists and list parameters' defaults, and at submit for "
              "the values given (the tasks check Airflow's own configured value at run time)",
        step=False, check=lambda n: None if n >= 1 else "must be 1 or more", example="max_map_length=1024")
    artifact_root: str | None = setting(
        None, "where outputs go when the pipeline sets none (local default ~/.pipecast/artifacts on the worker, "
              "with a warning: several workers need a shared one; pods need an object store such as "
              "s3://bucket/prefix)", step=False, example="artifact_root=s3://bucket/prefix")
    namespace: str | None = setting(None, "kubernetes mode: namespace of the pods (default: the connection's or "
                                          "the in-cluster one)", check=_namespace_problem,
                                     example="namespace=ml-jobs")
    kubernetes_conn_id: str | None = setting(None, "kubernetes mode: Airflow connection of the cluster (default: "
                                                   "kubernetes_default)", check=_connection_problem,
                                              example="kubernetes_conn_id=k8s_prod")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = setting(
        None, "kubernetes mode: when the kubelet pulls the image")
    operator_kwargs: Mapping[str, Json] = setting(
        {}, "escape hatch: extra keyword arguments of each task's operator (pool, queue, priority_weight, owner, "
            "email_on_failure...; KubernetesPodOperator's in pod mode); a step's own replace the pipeline's; "
            "arguments pipecast writes are refused", check=operator_kwargs_problem,
        example="'operator_kwargs={\"pool\": \"ml\", \"priority_weight\": 10}'")


# Executors that run a DAG's tasks on several machines (`executor` setting): a worker's own disk is no artifact root.
SEVERAL_WORKERS = ("celery", "kubernetes", "edge")

# Settings that only a pod can honour (KubernetesPodOperator arguments), by setting name.
POD_ONLY = ("namespace", "kubernetes_conn_id", "image_pull_policy", "service_account", "node_selector",
            "tolerations", "gpu_node_label", "image_pull_secrets", "affinity", "security_context", "pod_labels",
            "pod_annotations", "pod_spec_patch", "container_patch", "cpu_limit", "memory_limit")


DEFAULT_PARSE_TIMEOUT = 360.0  # seconds: Airflow looks for new files every 300 s by default


@dataclass(frozen=True, kw_only=True)
class AirflowConnection(Settings):
    """Airflow's connection settings (``pipecast submit -c KEY=VALUE``): where the DAG file goes, the API."""

    dags_folder: str | None = setting(None, "where Airflow reads DAG files: a path, or an fsspec URI "
                                            "(gs://..., s3://...)")
    base_url: str | None = setting(None, "the Airflow URL (UI and REST API); also $PIPECAST_AIRFLOW_URL")
    url: str | None = setting(None, "same as base_url")
    api_url: str | None = setting(None, "the REST API's URL when it is not base_url")
    api_version: int | None = setting(None, "2 (Airflow 3) or 1 (Airflow 2); found out by asking when not given")
    token: str | None = setting(None, "a bearer token (better: $PIPECAST_AIRFLOW_TOKEN)")
    username: str | None = setting(None, "user for POST /auth/token, or HTTP Basic on Airflow 2 (or "
                                         "$AIRFLOW_USERNAME)")
    password: str | None = setting(None, "that user's password (better: $AIRFLOW_PASSWORD)")
    unpause: bool = setting(False, "true to unpause the DAG before triggering (default false)")
    parse_timeout: Duration = setting(DEFAULT_PARSE_TIMEOUT, "how long to wait for Airflow to parse the file "
                                                             f"(default {DEFAULT_PARSE_TIMEOUT:g}s)")
    request_timeout: Duration = setting(30.0, "how long to wait for each HTTP answer (default 30s)")
    verify: bool | str = setting(True, "TLS: true (default), false, or a CA bundle path")
    auth: Literal["airflow", "composer", "mwaa"] = setting(
        "airflow", "airflow (token, user and password, or none), composer (a Google access token from "
                   "Application Default Credentials) or mwaa (MWAA's InvokeRestApi with your AWS credentials)")
    environment: str | None = setting(None, "auth=mwaa: the MWAA environment's name")
    region: str | None = setting(None, "auth=mwaa: its AWS region (default: $AWS_REGION, boto3's default)")
    endpoint_url: str | None = setting(None, "auth=mwaa: another MWAA API endpoint (a VPC endpoint)")
