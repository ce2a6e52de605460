"""The ``airflow`` target: one DAG file per pipeline, submitted through Airflow's REST API.

``emit`` writes ``<dag_id>.dag.py`` (Airflow 3 idioms by default, Airflow 2.10 with ``airflow_version=2``):
one task per step, each running ``python -m pipecast.runtime run ...``, on the worker (BashOperator) or
in a pod (KubernetesPodOperator); for tasks on the worker, the steps' code goes beside it in ``<dag_id>.code/``
(:mod:`pipecast.targets.airflow.code`). ``submit`` copies them into the deployment's DAGs folder, waits
until Airflow has parsed it, triggers a run through the REST API and returns a handle on it.
"""

from __future__ import annotations

from typing import Any

from pipecast.compiler import ir
from pipecast.errors import Problem, Severity
from pipecast.targets.airflow.code import AIRFLOWIGNORE
from pipecast.targets.airflow.lowering import lower
from pipecast.targets.airflow.render import render_dag
from pipecast.targets.airflow.settings import AirflowConnection, AirflowSettings
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native
from pipecast.targets.map_limits import MapLimit

__all__ = ["AirflowTarget"]


class AirflowTarget(Target):
    """Apache Airflow: a DAG file per pipeline; the REST API (v2, or v1 on Airflow 2) to trigger and track runs."""

    name = "airflow"
    status = "stable"
    description = "Apache Airflow 3 (or 2.10) DAG file; BashOperator or KubernetesPodOperator tasks"
    extra = "airflow"  # Airflow itself, to load and run DAG files here (DagBag, `airflow dags test`)
    sdk_modules = ()  # submit speaks Airflow's REST API with the standard library: no Airflow needed to submit
    settings_class = AirflowSettings
    connection_class = AirflowConnection
    submit_module = "pipecast.targets.airflow.submit"
    schedules_module = "pipecast.schedules.airflow"
    capabilities = {
        Feature.PARAMETERS: native("DAG params (typed Param with defaults), overridable per run"),
        Feature.DATA_PASSING: native("artifact store through the runtime; data edges become task dependencies"),
        Feature.AFTER: native("task dependencies"),
        Feature.RESOURCES: native("kubernetes mode: container requests/limits; a local task reports them"),
        Feature.GPU: native("kubernetes mode: GPU limit and accelerator node selector; a local task reports it"),
        Feature.RETRY: native("retries, retry_delay, max_retry_delay"),
        Feature.RETRY_BACKOFF: native("retry_exponential_backoff: the factor on Airflow 3 (Airflow adds up to "
                                      "100% jitter); Airflow 2 only doubles, so for other factors the runtime "
                                      "retries within one task"),
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
        Feature.MAP: native("dynamic task mapping: a task publishes the list as its XCom, each step of the map is "
                            "expanded over it (.expand), tasks on the worker; a nested map flattened onto one level "
                            "(a task expanded over the (outer, inner) pairs)"),
        Feature.CONDITION: native("@task.branch per if/elif/else chain; skipped branches skip their dependents "
                                  "(all_success), OneOf reads with none_failed_min_one_success; inside a map, "
                                  "each mapped step skips its own map index (AirflowSkipException)"),
        Feature.EXIT_HANDLER: native("a teardown task with trigger rule all_done after the group's tasks"),
        Feature.HOOKS: native("teardown tasks after every other task that skip when their event did not happen"),
        Feature.PARALLELISM: native("max_active_tis_per_dagrun per map (shared out over a mapped task group's "
                                    "tasks); max_active_tasks for the DAG"),
    }

    def map_limit(self, settings: Any) -> MapLimit | None:
        """The deployment's mapped instances per task, as the max_map_length setting says."""
        if settings is None:
            return None
        most = settings.max_map_length
        return MapLimit(most, f"Airflow expands a task into at most {most} mapped instances (its [core] "
                        "max_map_length, pipecast's max_map_length setting)",
                        "raise the deployment's [core] max_map_length and the max_map_length setting")

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The DAG file, then the code local tasks import; a warning when they keep outputs on a worker's disk."""
        model = lower(pipeline, context)
        notices = []
        if model.worker_local_root:
            notices.append(Problem(
                f"local tasks keep their outputs under {model.worker_local_root!r}, on the disk of the Airflow worker "
                "that runs each task: a step finds its inputs only if every task runs on one machine "
                "(LocalExecutor) or that path is a filesystem all workers share",
                location=str(pipeline.location) if pipeline.location else None,
                fix="with several workers (Celery, Kubernetes or Edge executor), set the pipeline's artifact_root or "
                    "--set artifact_root=s3://bucket/prefix (or gs://..., az://...); say --set executor=local when "
                    "one machine runs every task",
                severity=Severity.WARNING, target=self.name))
        files = [(model.file_name, render_dag(model))]
        if model.code_folder:  # the shipped code, and what keeps Airflow from parsing it as DAG files
            files.append((f"{model.code_folder}/.airflowignore", AIRFLOWIGNORE))
            files += [(f"{model.code_folder}/{path}", text) for path, text in model.code]
        return Bundle(self.name, tuple(files), tuple(notices))
