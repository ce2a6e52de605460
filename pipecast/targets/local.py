"""The ``local`` target: runs a pipeline on this machine with no server (the embedded default).

Its ``emit`` writes the validated IR as ``<pipeline>.json``, the plan ``pipecast run`` executes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native
from pipecast.targets.settings import Settings


@dataclass(frozen=True, kw_only=True)
class LocalSettings(Settings):
    """The local target takes no settings: ``pipecast run``'s options say how to run (a setting is an error)."""


class LocalTarget(Target):
    """Run on this machine: a thread pool, the artifact store, the run store."""

    name = "local"
    status = "stable"
    description = "This machine, no server: parallel steps, retries, timeouts, cache, resume"
    carries_null_parameters = True  # parameters stay JSON values end to end
    settings_class = LocalSettings
    capabilities = {
        Feature.PARAMETERS: native(),
        Feature.DATA_PASSING: native("artifact store"),
        Feature.AFTER: native(),
        Feature.RESOURCES: emulated("not enforced; steps share this machine"),
        Feature.GPU: emulated("not enforced; steps see this machine's GPUs"),
        Feature.RETRY: native(),
        Feature.RETRY_BACKOFF: native(),
        Feature.TIMEOUT: native("the step runs in a child process that is stopped"),
        Feature.CACHE: native(),
        Feature.SCHEDULE: emulated("ignored: run it from cron with `pipecast run`"),
        Feature.ENV: emulated("not set: steps share this process's environment"),
        Feature.SECRETS: emulated("read from this process's environment variables"),
        Feature.STEP_IMAGE: emulated("ignored: steps run in this Python environment"),
        Feature.SUBMIT: native("`pipecast run`"),
        Feature.STATUS: native("run store"),
        Feature.UI_URL: native("file:// URL of the run's folder"),
        Feature.MAP: native("items run in parallel within the bounds, each with its retries and cache"),
        Feature.CONDITION: native(),
        Feature.EXIT_HANDLER: native(),
        Feature.HOOKS: native(),
        Feature.PARALLELISM: native("per map and per run (with --workers)"),
    }

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The pipeline's IR as JSON."""
        return Bundle(self.name, ((f"{pipeline.name}.json", pipeline.to_json()),))

    def logs(self, record: Mapping[str, Any], config: Mapping[str, Any], step: str | None = None,
             follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """A local run's step logs, from the files the local runner wrote beside the run store."""
        from pipecast.runs.logs import run_logs

        return run_logs(str(record["id"]), config, step, follow, timeout)
