"""The ``vertex`` target: Vertex AI Pipelines, through the KFP pipeline IR and ``aiplatform.PipelineJob``.

Vertex runs the same IR as Kubeflow Pipelines (one builder, :mod:`pipecast.targets.kfpspec.builder`) but
ignores the Kubernetes platform spec: timeouts are enforced by pipecast's runtime instead, secrets are
reported as unsupported, pod settings (node selectors, tolerations) are not among its settings, and GPUs use
Vertex accelerator types. The pipeline's tags become labels of the PipelineJob at submit (a tag that cannot be
a label key is reported). Its submit module is :mod:`pipecast.targets.kfpspec.vertex_api`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native, unsupported
from pipecast.targets.kfpspec.builder import KfpFlavor, emit_pipeline, vertex_accelerator
from pipecast.targets.kfpspec.map_limit import list_limit
from pipecast.targets.kfpspec.settings import VertexConnection, VertexSettings
from pipecast.targets.map_limits import MapLimit

# PipelineJob.labels: "keys and values can be no longer than 64 characters (Unicode codepoints), can only contain
# lowercase letters, numeric characters, underscores and dashes" (Vertex AI REST reference, v1 pipelineJobs);
# Google Cloud's label rules add that a key starts with a lowercase letter and holds at most 63 characters.
LABEL_KEY_LIMIT = 63
LABEL_COUNT_LIMIT = 64


def label_key_problem(tag: str) -> str | None:
    """Why ``tag`` cannot be a Vertex AI label key, or None if it can."""
    if not tag or len(tag) > LABEL_KEY_LIMIT:
        return f"a label key has 1 to {LABEL_KEY_LIMIT} characters"
    if not (tag[0].isalpha() and tag[0] == tag[0].lower()):
        return "a label key starts with a lowercase letter"
    if any(not (c.isdigit() or c in "_-" or (c.isalpha() and c == c.lower())) for c in tag):
        return "a label key holds only lowercase letters, digits, '_' and '-'"
    return None


def tag_labels(pipeline: ir.Pipeline) -> dict[str, str]:
    """The pipeline's tags as PipelineJob labels (key: the tag, value empty).

    Tags that cannot be keys are left out here because emit reported them.
    """
    return {tag: "" for tag in pipeline.tags if label_key_problem(tag) is None}


def _check_tags(pipeline: ir.Pipeline, context: EmitContext) -> None:
    location = str(pipeline.location) if pipeline.location else None
    for tag in pipeline.tags:
        problem = label_key_problem(tag)
        if problem:
            suggestion = re.sub(r"[^a-z0-9_-]+", "-", tag.lower()).strip("-")[:LABEL_KEY_LIMIT] or "tag"
            if not suggestion[0].isalpha():
                suggestion = f"t-{suggestion}"[:LABEL_KEY_LIMIT]
            context.unsupported(f"tag {tag!r} cannot become a Vertex AI label of the pipeline job: {problem}",
                                location=location, fix=f"rename the tag, e.g. to {suggestion!r}")
    if len(pipeline.tags) > LABEL_COUNT_LIMIT:
        context.unsupported(f"the pipeline has {len(pipeline.tags)} tags; a Vertex AI pipeline job holds at most "
                            f"{LABEL_COUNT_LIMIT} labels", location=location, fix="use fewer tags")


class VertexTarget(Target):
    """Vertex AI Pipelines: the KFP IR YAML; runs via ``google.cloud.aiplatform.PipelineJob``."""

    name = "vertex"
    description = "Vertex AI Pipelines: KFP IR YAML (PipelineSpec 2.1.0) submitted as an aiplatform PipelineJob"
    extra = "vertex"
    sdk_modules = ("google.cloud.aiplatform",)
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
        Feature.RESOURCES: native("cpu/memory limits choose the machine (Vertex reads no requests)"),
        Feature.GPU: native("accelerator type from gpu_type (nvidia-tesla-t4 → NVIDIA_TESLA_T4); unknown types "
                            "are reported"),
        Feature.RETRY: native("retryPolicy.maxRetryCount"),
        Feature.RETRY_BACKOFF: native("backoffDuration and backoffFactor; a max_delay that would cap a delay, or "
                                      "delays past the one-hour retry window, are retried by pipecast's runtime "
                                      "inside the task instead"),
        Feature.TIMEOUT: emulated("pipecast's runtime stops the step (--timeout): Vertex ignores the Kubernetes "
                                  "platform spec's activeDeadlineSeconds"),
        Feature.CACHE: emulated("pipecast's runtime cache in the artifact store; Vertex's own cache cannot hit "
                                "across runs (each task reads its run id), so engine_cache=true is reported"),
        Feature.SCHEDULE: native("a Vertex pipeline schedule created by submit"),
        Feature.ENV: native("container env, $ doubled so the $(VAR) expansion gives the value back"),
        Feature.SECRETS: unsupported("Vertex AI has no Kubernetes secrets to expose as env; read Secret Manager "
                                     "inside the step, or use the kubeflow target"),
        Feature.STEP_IMAGE: native("one executor per step"),
        Feature.SUBMIT: native("aiplatform.PipelineJob.submit"),
        Feature.STATUS: native("PipelineJob state; cancel"),
        Feature.UI_URL: native("https://console.cloud.google.com/vertex-ai/locations/<location>/pipelines/runs/"
                               "<job id>?project=<project>"),
    }
    settings_class = VertexSettings
    connection_class = VertexConnection
    connection_in_settings = True  # submit_value: -c first, then the pipeline's settings
    schedules_module = "pipecast.schedules.vertex"
    submit_module = "pipecast.targets.kfpspec.vertex_api"

    flavor = KfpFlavor(
        engine="vertex",
        title="Vertex AI",
        kubernetes_platform=False,
        resource_requests=False,
        accelerator=vertex_accelerator,
    )

    def map_limit(self, settings: Any) -> MapLimit:
        """The bytes of a map's list (KFP hands it whole to every item's task)."""
        return list_limit()

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The pipeline spec (KFP IR YAML) for Vertex AI; tags that cannot be labels are reported."""
        _check_tags(pipeline, context)
        return emit_pipeline(pipeline, context, self.flavor)

    def logs(self, record: Mapping[str, Any], config: Mapping[str, Any], step: str | None = None,
             follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """Refused: Vertex AI keeps task logs in Cloud Logging."""
        from pipecast.runs.logs import no_logs

        raise no_logs(self.name, "Vertex AI writes task logs to Cloud Logging, which pipecast does not read; open "
                                 f"the run's page ({record.get('url') or 'in the console'}) or run `gcloud logging "
                                 "read` for its job")
