"""The ``azureml`` target: an Azure Machine Learning pipeline job, submitted with ``azure-ai-ml``.

``emit`` writes ``<pipeline>.pipeline.yml`` (``type: pipeline``, one command node per step running the
pipecast runtime), ``<pipeline>.<map>.component.yml`` per map of several steps (its ``parallel_for`` body) and,
for a scheduled pipeline, ``<pipeline>.schedule.yml`` (a ``JobSchedule``).
:mod:`.submit` creates the job with ``MLClient`` and returns the run, whose URL is the job's Azure ML studio
page; the SDK is imported only there.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.azureml import emit as _emit
from pipecast.targets.azureml.settings import AzureMLSettings
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native, unsupported
from pipecast.targets.map_limits import MapLimit

_FLOW_FIX = ("run it with the local target (`pipecast run FILE`), which runs control flow natively, or do the "
             "final work in a step that reads the outputs it needs")


class AzureMLTarget(Target):
    """Azure Machine Learning pipeline jobs (CLI/SDK v2 YAML)."""

    name = "azureml"
    description = "Azure Machine Learning pipeline job (YAML), submitted with azure-ai-ml"
    extra = "azureml"
    sdk_modules = ("azure.ai.ml", "azure.identity")
    capabilities = {
        Feature.PARAMETERS: native("pipeline inputs bound with ${{parent.inputs.x}}; each needs a default"),
        Feature.DATA_PASSING: native("values in the artifact store; the node order from an output bound to an input"),
        Feature.AFTER: native("a pipecast_done output of the upstream node bound to an input (direct mode)"),
        Feature.RESOURCES: emulated("a node gets whole nodes of its compute: choose the size with the compute or "
                                    "instance_type settings (per step in the step's settings)"),
        Feature.GPU: emulated("GPUs come with the compute: a GPU step must name its compute or instance_type"),
        Feature.RETRY: emulated("the runtime retries (command nodes have no retry setting)"),
        Feature.RETRY_BACKOFF: emulated("the runtime waits between tries"),
        Feature.TIMEOUT: native("limits.timeout; for a retried step the runtime times each try"),
        Feature.CACHE: native("the runtime's cache; Azure ML's node reuse is off (is_deterministic: false)"),
        Feature.SCHEDULE: native("a JobSchedule with a cron trigger (<pipeline>.schedule.yml)"),
        Feature.ENV: native("environment_variables"),
        Feature.SECRETS: unsupported("an Azure ML job cannot set an environment variable from a secret store; "
                                     "read the secret from Key Vault inside the step"),
        Feature.STEP_IMAGE: native("an inline environment per node"),
        Feature.SUBMIT: native("MLClient.jobs.create_or_update"),
        Feature.STATUS: native("MLClient.jobs.get / begin_cancel"),
        Feature.UI_URL: native("the job's Azure ML studio URL"),
        Feature.MAP: native("a parallel_for node over a constant list, a parameter or a step's list output (a "
                            "body of several steps is a pipeline component file; inside a branch, in its block; "
                            "nested one level, an inner map of one step inside the outer body's component, its "
                            "items counted per outer item; an Azure ML preview: --set control_flow_preview=true)"),
        Feature.CONDITION: native("an if_else node per branch on a boolean control output the deciding step "
                                  "publishes (inside a map or another condition too; an Azure ML preview: "
                                  "--set control_flow_preview=true)"),
        # PipelineJob._validate_init_finalize_job: "On_finalize job should not have connection to other execution
        # node" (and not be a control flow node); azure.ai.ml.dsl: "On_init/on_finalize is not supported for
        # pipeline component". No expression gives a node another node's status.
        Feature.EXIT_HANDLER: unsupported("Azure ML's settings.on_finalize runs one node after the pipeline whatever "
                                          "its outcome, but that node must have no data connection to any other "
                                          "node and Azure ML passes it no status, so it can read neither the final "
                                          "status nor any output (and a map's body, a pipeline component, cannot "
                                          "have one)", fix=_FLOW_FIX),
        Feature.HOOKS: unsupported("Azure ML's settings.on_finalize node runs whatever the outcome but cannot tell "
                                   "it (no data connection to any other node, no status passed)", fix=_FLOW_FIX),
        Feature.PARALLELISM: native("a parallel_for's max_concurrency (a pipeline-wide bound is refused)"),
    }
    settings_class = AzureMLSettings
    submit_module = "pipecast.targets.azureml.submit"
    schedules_module = "pipecast.schedules.azureml"

    def map_limit(self, settings: Any) -> MapLimit:
        """The items whose parallel_for indices fit the run property the items node publishes them in."""
        from pipecast.runtime.publish_azureml import MAX_PROPERTY_CHARS

        most = _most_items()
        return MapLimit(most, f"Azure ML's parallel_for reads a parameter's items ({most} at most) from a run "
                        f"property of at most {MAX_PROPERTY_CHARS} characters (Azure ML's limits, "
                        "https://aka.ms/azure-machine-learning-limits)", "Azure does not let it be raised")

    def check(self, pipeline: ir.Pipeline, context: EmitContext) -> None:
        """Check the capability table, leaving secrets to :meth:`emit`, which names them and the fix."""
        # Secrets are reported by emit, with their names and a fix; the table's note alone says less.
        super().check(_without_secrets(pipeline), context)

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The pipeline job YAML, and the schedule YAML when the pipeline has a schedule."""
        return _emit.emit(pipeline, context)


def _without_secrets(pipeline: ir.Pipeline) -> ir.Pipeline:
    from dataclasses import replace

    return replace(pipeline, secrets=(), steps=tuple(replace(s, secrets=()) for s in pipeline.steps))


@functools.cache
def _most_items() -> int:
    """The most items whose parallel_for indices fit Azure ML's run property (what the items node publishes)."""
    from pipecast.runtime.publish_azureml import MAX_PROPERTY_CHARS, items_of

    count = 1
    while len(json.dumps({"pipecast_items": items_of("", list(range(count + 1)))}, separators=(",", ":"))) \
            <= MAX_PROPERTY_CHARS:
        count += 1
    return count
