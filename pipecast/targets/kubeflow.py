"""The ``kubeflow`` target: Kubeflow Pipelines 2.x, through the KFP pipeline IR and ``kfp.Client``.

``emit`` writes one IR YAML file (PipelineSpec 2.1.0) whose second document is the Kubernetes
platform spec (secrets as env, node selectors, tolerations, timeouts) that kfp-kubernetes would write.
Its submit module (:mod:`pipecast.targets.kfpspec.kubeflow_api`) starts a run (and a recurring run for a
schedule) through the KFP v2beta1 API.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native
from pipecast.targets.kfpspec.builder import KfpFlavor, emit_pipeline, kubernetes_accelerator
from pipecast.targets.kfpspec.map_limit import list_limit
from pipecast.targets.kfpspec.settings import KubeflowConnection, KubeflowSettings
from pipecast.targets.map_limits import MapLimit


class KubeflowTarget(Target):
    """Kubeflow Pipelines: the KFP IR YAML with its Kubernetes platform spec; runs via ``kfp.Client``."""

    name = "kubeflow"
    description = "Kubeflow Pipelines 2.x: KFP IR YAML (PipelineSpec 2.1.0) submitted with kfp.Client"
    extra = "kubeflow"
    sdk_modules = ("kfp", "kfp_server_api")
    capabilities = {
        Feature.MAP: native("ParallelFor: a loop DAG with a parameterIterator over a LIST parameter, a LIST output "
                            "parameter or a constant list, nested one level (over the outer item too); Zip as a loop "
                            "over its first list, Product of constant lists over their combinations (a product over "
                            "a run-time list is refused); the runtime finds each item's index (distinct items)"),
        Feature.CONDITION: native("If/Elif/Else as condition-N DAGs with a CEL triggerPolicy.condition on output "
                                  "and pipeline parameters (several branches inside condition-branches-N); OneOf "
                                  "as its valueFromOneof output (the chain must end with Else)"),
        Feature.EXIT_HANDLER: native("ExitHandler as an exit-handler-N DAG at the top level; the handler is a task "
                                     "with triggerPolicy ALL_UPSTREAM_TASKS_COMPLETED reading taskFinalStatus"),
        Feature.HOOKS: native("the pipeline's body in exit-handler-1, the hook its exit task (both hooks: one "
                              "exit task running the one whose event happened; same image and settings); a hook "
                              "whose event did not happen is recorded skipped and exits 0"),
        Feature.PARALLELISM: native("ParallelFor(parallelism=) as iteratorPolicy.parallelismLimit (per map only)"),
        Feature.PARAMETERS: native("typed root inputs with defaults, substituted as {{$.inputs.parameters[...]}}"),
        Feature.DATA_PASSING: native("pipecast artifact store; every edge is a dependentTasks entry"),
        Feature.AFTER: native("dependentTasks"),
        Feature.RESOURCES: native("cpu/memory requests and limits"),
        Feature.GPU: native("accelerator resourceType/resourceCount; gpu_type selects nodes by the label "
                            "gpu_node_label names (gke, eks, aks, nvidia or a label key)"),
        Feature.RETRY: native("retryPolicy.maxRetryCount"),
        Feature.RETRY_BACKOFF: native("backoffDuration and backoffFactor; a max_delay that would cap a delay (KFP has "
                                      "no per-delay cap), or delays past KFP's one-hour retry window, are retried "
                                      "by pipecast's runtime inside the task instead"),
        Feature.TIMEOUT: native("activeDeadlineSeconds in the Kubernetes platform spec (per try; every try when the "
                                "runtime retries)"),
        Feature.CACHE: emulated("pipecast's runtime cache in the artifact store; KFP's own cache cannot hit across "
                                "runs (each task reads its run id), so engine_cache=true is reported"),
        Feature.SCHEDULE: native("a recurring run (6-field cron) created by submit"),
        Feature.ENV: native("container env, $ doubled so the $(VAR) expansion gives the value back"),
        Feature.SECRETS: native("secretAsEnv in the Kubernetes platform spec (references, never values); names "
                                "that no Kubernetes Secret can have are errors"),
        Feature.STEP_IMAGE: native("one executor per step"),
        Feature.SUBMIT: native("kfp.Client: experiment and run on the v2beta1 API"),
        Feature.STATUS: native("run state; cancel terminates the run"),
        Feature.UI_URL: native("<ui_host>/#/runs/details/<run id>; multi-user: <base>/_/pipeline/?ns=<namespace>#/..."),
    }
    settings_class = KubeflowSettings
    connection_class = KubeflowConnection
    connection_in_settings = True  # submit_value: -c first, then the pipeline's settings
    schedules_module = "pipecast.schedules.kubeflow"
    submit_module = "pipecast.targets.kfpspec.kubeflow_api"

    flavor = KfpFlavor(
        engine="kubeflow",
        title="Kubeflow Pipelines",
        kubernetes_platform=True,
        resource_requests=True,
        accelerator=kubernetes_accelerator,
        argo_workflow=True,
    )

    def map_limit(self, settings: Any) -> MapLimit:
        """The bytes of a map's list (KFP hands it whole to every item's task)."""
        return list_limit()

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The pipeline spec (KFP IR YAML)."""
        return emit_pipeline(pipeline, context, self.flavor)

    def logs(self, record: Mapping[str, Any], config: Mapping[str, Any], step: str | None = None,
             follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """Refused: the KFP API serves no task logs."""
        from pipecast.runs.logs import no_logs

        raise no_logs(self.name, f"the Kubeflow Pipelines API serves no task logs; open the run in the KFP UI "
                                 f"({record.get('url') or 'its run page'}), which reads them from the run's pods, "
                                 "or use kubectl logs")
