"""A target for "batchd", a toy batch queue, written as a third-party package would write one.

The README's "Adding a target" shows this code; tests/unit/test_plugin_target.py installs it as a wheel of its
own and checks that it is listed, compiles and submits through the same code paths as the built-ins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipecast.compiler import ir
from pipecast.runtime.command import EngineSyntax
from pipecast.targets import lowering
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native, unsupported
from pipecast.targets.serialize import dump_json
from pipecast.targets.settings import ContainerSettings, Settings, setting


@dataclass(frozen=True, kw_only=True)
class BatchdSettings(ContainerSettings):
    """What a batchd job can be told."""

    queue: str = setting("default", "the batchd queue the jobs wait in")
    priority: Literal["low", "normal", "high"] = setting("normal", "scheduling priority of every job", step=False)


@dataclass(frozen=True, kw_only=True)
class BatchdConnection(Settings):
    """Where batchd is (``pipecast submit -c url=...``)."""

    url: str | None = setting(None, "the batchd API, e.g. http://batchd.example.com")


class BatchdTarget(Target):
    """batchd: one job per step, ordered by its ``after`` list."""

    name = "batchd"
    description = "batchd, a toy batch queue (an example of a target from another package)"
    settings_class = BatchdSettings
    submit_module = "pipecast_batchd.submit"
    connection_class = BatchdConnection
    capabilities = {
        Feature.PARAMETERS: native("${BATCHD_PARAM_<name>} in each job's command"),
        Feature.DATA_PASSING: native("artifact store"),
        Feature.AFTER: native("each job's after list"),
        Feature.RESOURCES: unsupported("batchd jobs take the queue's machines", fix="choose a queue"),
        Feature.GPU: unsupported("batchd has no GPUs", fix="run GPU steps on another target"),
        Feature.RETRY: emulated("the runtime retries inside the job"),
        Feature.RETRY_BACKOFF: emulated("the runtime waits between tries"),
        Feature.TIMEOUT: emulated("the runtime stops the step"),
        Feature.CACHE: emulated("the runtime reuses earlier outputs"),
        Feature.SCHEDULE: unsupported("batchd has no scheduler", fix="submit from cron"),
        Feature.ENV: native("each job's env"),
        Feature.SECRETS: unsupported("batchd has no secret store"),
        Feature.STEP_IMAGE: native("each job's image"),
        Feature.SUBMIT: native("POST /jobs"),
        Feature.STATUS: native("GET /jobs/<id>"),
        Feature.UI_URL: native("<url>/jobs/<id>"),
    }

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """One job per step; pure: no I/O, clock or randomness."""
        root = lowering.artifact_root(pipeline, context, remote=True)
        syntax = EngineSyntax(run_id="${BATCHD_RUN_ID}", parameter=lambda p: f"${{BATCHD_PARAM_{p.name}}}",
                              artifact_root=root)
        jobs = []
        for step in pipeline.steps:
            settings = context.settings_for(step)
            plan = lowering.retry_plan(step, engine_retries=False)
            jobs.append({
                "name": step.name,
                "after": sorted(step.upstream()),
                "image": lowering.step_image(pipeline, step, context),
                "queue": settings.queue,
                "env": dict(lowering.env_in_effect(pipeline, step)),
                "command": lowering.runtime_command(pipeline, step, syntax, plan, runtime_timeout=True),
            })
        job = {"pipeline": pipeline.name, "priority": context.settings.priority, "jobs": jobs,
               "parameters": {p.name: p.default for p in pipeline.parameters}}
        return Bundle(self.name, ((f"{pipeline.name}.batchd.json", dump_json(job)),))
