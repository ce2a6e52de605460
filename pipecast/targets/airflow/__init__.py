"""The ``airflow`` target: one DAG file per pipeline, submitted through Airflow's REST API.

``emit`` writes ``<dag_id>.py`` (Airflow 3 idioms by default, Airflow 2.10 with ``airflow_version=2``):
one task per step, each running ``python -m pipecast.runtime run ...``, on the worker (BashOperator) or
in a pod (KubernetesPodOperator). ``submit`` copies the file into the deployment's DAGs folder, waits
until Airflow has parsed it, triggers a run through the REST API and returns a handle on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import Problem, Severity
from pipecast.targets import kube
from pipecast.targets.airflow.lowering import lower
from pipecast.targets.airflow.render import render_dag
from pipecast.targets.base import Bundle, EmitContext, Feature, RunHandle, Target, emulated, native

__all__ = ["AirflowTarget"]


class AirflowTarget(Target):
    """Apache Airflow: a DAG file per pipeline; the REST API (v2, or v1 on Airflow 2) to trigger and track runs."""

    name = "airflow"
    status = "stable"
    description = "Apache Airflow 3 (or 2.10) DAG file; BashOperator or KubernetesPodOperator tasks"
    extra = "airflow"
    sdk_modules = ("airflow",)
    capabilities = {
        Feature.PARAMETERS: native("DAG params (typed Param with defaults), overridable per run"),
        Feature.DATA_PASSING: native("artifact store through the runtime; data edges become task dependencies"),
        Feature.AFTER: native("task dependencies"),
        Feature.RESOURCES: native("kubernetes mode: container requests/limits; a local task reports them"),
        Feature.GPU: native("kubernetes mode: GPU limit and accelerator node selector; a local task reports it"),
        Feature.RETRY: native("retries, retry_delay, max_retry_delay"),
        Feature.RETRY_BACKOFF: native("retry_exponential_backoff: the factor on Airflow 3 (Airflow adds up to "
                                      "100% jitter); Airflow 2 only doubles, other factors are reported"),
        Feature.TIMEOUT: native("execution_timeout"),
        Feature.CACHE: emulated("the runtime reuses a step's stored outputs when its code and inputs are "
                                "unchanged; cache=False passes --no-cache"),
        Feature.SCHEDULE: native("schedule= cron, catchup=False unless set"),
        Feature.ENV: native("task environment, as literal values"),
        Feature.SECRETS: native("Airflow connections/variables (local) or Kubernetes secrets (kubernetes), "
                                "by reference"),
        Feature.STEP_IMAGE: native("kubernetes mode: the pod's image; a local task reports it"),
        Feature.SUBMIT: native("DAG file into the DAGs folder (path or fsspec URI), run triggered by the REST API "
                               "(v2; v1 on Airflow 2)"),
        Feature.STATUS: native("the REST API's DAG run state; cancel marks the run failed"),
        Feature.UI_URL: native("<base_url>/dags/<dag_id>/runs/<run_id>"),
    }
    settings_help = {
        kube.GPU_NODE_LABEL_SETTING: kube.GPU_NODE_LABEL_HELP,
        "mode": "auto (default: kubernetes for a step with an image, else local), local (BashOperator on the "
                "worker) or kubernetes (KubernetesPodOperator); per pipeline or per step",
        "airflow_version": "3 (default: airflow.sdk and provider imports) or 2 (Airflow 2.10 import paths)",
        "artifact_root": "where outputs go when the pipeline sets none (local default ~/.pipecast/artifacts on "
                         "the worker, with a warning: several workers need a shared one; pods need an object store "
                         "such as s3://bucket/prefix)",
        "image": "image of pods whose step and pipeline set none",
        "python": "the Python a task runs (default: python)",
        "pythonpath": "local mode: PYTHONPATH of the task, so the worker imports the pipeline's module",
        "cwd": "local mode: working directory of the task (default: a temporary directory)",
        "namespace": "kubernetes mode: namespace of the pods (default: the connection's or in-cluster one)",
        "service_account": "kubernetes mode: service account of the pods",
        "image_pull_policy": "kubernetes mode: Always, IfNotPresent or Never",
        "kubernetes_conn_id": "kubernetes mode: Airflow connection of the cluster (default: kubernetes_default)",
        "tolerations": "kubernetes mode: tolerations of the pods, a JSON list of Kubernetes tolerations ({key, "
                       "operator, value, effect, tolerationSeconds}); a step's own list replaces the pipeline's",
        "secret_store": "airflow (connections/variables; local default) or kubernetes (secrets; pod default)",
        "dag_id": "the DAG id (default: the pipeline's name)",
        "start_date": "the DAG's start_date, YYYY-MM-DD (default: none, so no logical date is before it; 1970-01-01 "
                      "for a scheduled Airflow 2 DAG, which needs one); a run whose logical date is earlier runs no "
                      "task",
        "catchup": "true to run every missed schedule interval since start_date, which it then needs (default false)",
        "tags": "extra DAG tags (a list, or comma-separated)",
    }

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        model = lower(pipeline, context)
        notices = []
        if model.worker_local_root:
            notices.append(Problem(
                f"local tasks keep their outputs under {model.worker_local_root!r}, on the disk of the Airflow worker "
                "that runs each task: a step finds its inputs only if every task runs on one machine "
                "(LocalExecutor) or that path is a filesystem all workers share",
                location=str(pipeline.location) if pipeline.location else None,
                fix="with several workers (Celery or Kubernetes executor), set the pipeline's artifact_root or "
                    "--set artifact_root=s3://bucket/prefix (or gs://..., az://...)",
                severity=Severity.WARNING, target=self.name))
        return Bundle(self.name, ((model.file_name, render_dag(model)),), tuple(notices))

    def submit(self, pipeline: ir.Pipeline, bundle: Bundle, parameters: Mapping[str, Any],
               config: Mapping[str, Any], run_id: str) -> RunHandle:
        from pipecast.targets.airflow.submit import submit_dag

        return submit_dag(pipeline, bundle, parameters, config, run_id)

    def handle(self, record: Mapping[str, Any], config: Mapping[str, Any]) -> RunHandle:
        from pipecast.targets.airflow.submit import reconnect

        return reconnect(record, config)
