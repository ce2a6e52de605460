"""The ``vm_aws``, ``vm_gcp`` and ``vm_azure`` targets: a pipeline on cloud VMs through SkyPilot.

``emit`` writes SkyPilot task YAML (see :mod:`pipecast.targets.skypilot.emit`); the submit module
(:mod:`pipecast.targets.skypilot.launch`) hands it to SkyPilot's client SDK, which is imported only there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from pipecast.compiler import ir
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native
from pipecast.targets.inline_flow import SEQUENTIAL_CAPABILITIES
from pipecast.targets.skypilot.emit import emit_tasks
from pipecast.targets.skypilot.settings import SkyPilotConnection, SkyPilotSettings


class SkyPilotTarget(Target):
    """A pipeline as SkyPilot tasks on one cloud's VMs (subclasses fix the cloud)."""

    cloud: ClassVar[str]
    extra = "skypilot"
    sdk_modules = ("sky",)
    # Emitted YAML is checked by SkyPilot's own loader; submit was tested only against SkyPilot's client
    # functions replaced in-process (no cloud or API server is reachable here).
    status = "experimental"
    capabilities = {
        Feature.PARAMETERS: native("task `envs:`; override with `sky launch --env NAME=VALUE`"),
        Feature.DATA_PASSING: native("runtime artifact store on an object-store URI"),
        Feature.AFTER: native("steps run in dependency order inside a task; tasks run as a SkyPilot pipeline"),
        Feature.RESOURCES: native("`resources.cpus`/`memory` as minimums (`2+`); a task per distinct request"),
        Feature.GPU: native("`resources.accelerators` (GKE names such as nvidia-tesla-t4 become T4)"),
        Feature.RETRY: emulated("the runtime retries the step inside the task"),
        Feature.RETRY_BACKOFF: emulated("the runtime waits between tries"),
        Feature.TIMEOUT: emulated("the runtime stops the step"),
        Feature.CACHE: emulated("the runtime's cache in the artifact root"),
        Feature.SCHEDULE: emulated("SkyPilot has no scheduler: `<pipeline>.crontab` holds a cron line that runs "
                                   "`sky jobs launch` on a machine you install it on"),
        Feature.ENV: native("task `envs:`; steps with other env run as their own task"),
        Feature.SECRETS: emulated("task `secrets:` keyed by env var, value given at launch from the submitting "
                                  "environment (`--secret NAME`); the secret's name/key are not used"),
        Feature.STEP_IMAGE: native("`resources.image_id: docker:IMAGE`; a task per image"),
        Feature.SUBMIT: native("`sky.launch` for one task, `sky.jobs.launch` for a pipeline of tasks"),
        Feature.STATUS: native("`sky.job_status`/`sky.cancel`, or `sky.jobs.queue_v2`/`sky.jobs.cancel`"),
        Feature.UI_URL: native("SkyPilot dashboard of the API server: /dashboard/clusters|jobs/…"),
        **SEQUENTIAL_CAPABILITIES,
    }
    settings_class = SkyPilotSettings
    connection_class = SkyPilotConnection
    submit_module = "pipecast.targets.skypilot.launch"

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The SkyPilot task YAML (one document per task), and a crontab line when scheduled."""
        return emit_tasks(pipeline, context, self.cloud)

    def logs(self, record: Mapping[str, Any], config: Mapping[str, Any], step: str | None = None,
             follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """Refused: SkyPilot serves job logs to its own CLI."""
        from pipecast.runs.logs import no_logs

        raise no_logs(self.name, "SkyPilot serves job logs to its own client, which pipecast does not wrap; run "
                                 f"`sky logs` for {record.get('engine_run_id') or 'the job'} (`sky logs CLUSTER "
                                 "JOB_ID`, or `sky jobs logs JOB_ID`)")


class VmAwsTarget(SkyPilotTarget):
    """AWS VMs through SkyPilot."""

    name = "vm_aws"
    cloud = "aws"
    description = ("AWS VMs via SkyPilot task YAML (sky launch / sky jobs launch; submit tested "
                   "only against SkyPilot's client API with its calls replaced)")


class VmGcpTarget(SkyPilotTarget):
    """Google Cloud VMs through SkyPilot."""

    name = "vm_gcp"
    cloud = "gcp"
    description = ("Google Cloud VMs via SkyPilot task YAML (sky launch / sky jobs launch; submit tested "
                   "only against SkyPilot's client API with its calls replaced)")


class VmAzureTarget(SkyPilotTarget):
    """Azure VMs through SkyPilot."""

    name = "vm_azure"
    cloud = "azure"
    description = ("Azure VMs via SkyPilot task YAML (sky launch / sky jobs launch; submit tested "
                   "only against SkyPilot's client API with its calls replaced)")


__all__ = ["SkyPilotTarget", "VmAwsTarget", "VmAzureTarget", "VmGcpTarget"]
