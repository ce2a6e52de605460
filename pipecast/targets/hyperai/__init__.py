"""The ``hyperai`` target: a Compose project on a HyperAI instance, or any Docker host reachable over SSH.

``emit`` writes ``compose.yaml`` and ``run.sh`` (:mod:`pipecast.targets.hyperai.emit`); the submit module
(:mod:`pipecast.targets.hyperai.remote`, which alone imports paramiko) uploads them over SSH, installs the crontab
entry of a scheduled pipeline and starts the run, which goes on on the host after SSH disconnects. HyperAI's own
API is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipecast.compiler import ir
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native, unsupported
from pipecast.targets.compose import ComposeSettings
from pipecast.targets.hyperai.emit import emit_bundle
from pipecast.targets.inline_flow import CAPABILITIES as COMPOSE_FLOW
from pipecast.targets.inline_flow import check as check_flow
from pipecast.targets.settings import Settings, setting


@dataclass(frozen=True, kw_only=True)
class HyperAISettings(ComposeSettings):
    """Settings of the hyperai target (``--set KEY=VALUE`` or ``settings={"hyperai": {...}}``)."""

    artifact_root: str | None = setting(
        None, "an object-store URI, or file:///path: a folder on the host mounted into every container (default: "
              "artifacts/ beside compose.yaml on the host)", step=False, example="artifact_root=file:///srv/artifacts")


@dataclass(frozen=True, kw_only=True)
class HyperAIConnection(Settings):
    """How submit reaches the Docker host (``pipecast submit -c KEY=VALUE``); checked when submit connects."""

    host: str | None = setting(None, "the Docker host's name or address (required)")
    port: int = setting(22, "SSH port (default 22)")
    username: str | None = setting(None, "SSH user (default: your local user name)")
    key_file: str | None = setting(None, "private key file (default: ssh-agent and ~/.ssh/id_*)")
    known_hosts: str | None = setting(None, "known_hosts file the host key must be in (default ~/.ssh/known_hosts)")
    insecure_accept_host_key: bool = setting(False, "accept an unknown host key without checking it (default "
                                                    "false)")
    remote_dir: str | None = setting(None, "folder on the host for compose.yaml and run.sh (default "
                                           "pipecast/<pipeline>, under home)")
    docker: str = setting("docker", "the docker command on the host, e.g. 'sudo docker' (default docker)")
    timeout: float = setting(60.0, "seconds to wait for the connection and for each remote command (default 60)")


class HyperAITarget(Target):
    """Each step in a container on one remote Docker host, started over SSH."""

    name = "hyperai"
    description = "A HyperAI instance (or any Docker host) over SSH: compose.yaml + run.sh, cron schedules"
    extra = "hyperai"
    sdk_modules = ("paramiko",)
    # Proven against a real OpenSSH server in front of a real Docker engine with Compose v2 and cron
    # (tests/targets/hyperai/test_docker.py): submit, wait, failure, cancel, a cron-started run.
    status = "stable"
    capabilities = {
        Feature.PARAMETERS: native("Compose variables ${PIPECAST_PARAM_<name>}, set by run.sh from the run's values"),
        Feature.DATA_PASSING: native("artifact store: artifacts/ on the host bind-mounted into every container "
                                     "(or an object-store root)"),
        Feature.AFTER: native("depends_on: condition: service_completed_successfully"),
        Feature.RESOURCES: native("deploy.resources.limits (cpus, memory)"),
        Feature.GPU: native("deploy.resources.reservations.devices (count); gpu_type cannot be chosen"),
        Feature.RETRY: emulated("the runtime retries inside the container"),
        Feature.RETRY_BACKOFF: emulated("the runtime waits the delay with backoff"),
        Feature.TIMEOUT: emulated("the runtime stops the step (Compose has no per-service timeout)"),
        Feature.CACHE: native("the runtime reuses outputs from the artifact store"),
        Feature.SCHEDULE: native("cron on the host: submit installs a crontab line that runs run.sh"),
        Feature.ENV: native("environment ($ escaped as $$)"),
        Feature.SECRETS: emulated("read on the host from secrets.env beside compose.yaml, which you create; "
                                  "pipecast never sends their values"),
        Feature.STEP_IMAGE: native(),
        Feature.SUBMIT: native("SSH: SFTP upload, then run.sh, which starts docker compose up in a session of "
                               "its own on the host and returns"),
        Feature.STATUS: native("runs/<project>/ on the host + docker compose ps --all --format json over SSH; "
                               "cancel: marked there, exit handlers and hooks run on the host, then "
                               "docker compose down"),
        Feature.UI_URL: unsupported("HyperAI's API/console is not used; no page per run"),
        **COMPOSE_FLOW,
    }
    settings_class = HyperAISettings
    connection_class = HyperAIConnection
    submit_module = "pipecast.targets.hyperai.remote"
    schedules_module = "pipecast.schedules.hyperai"

    def check(self, pipeline: ir.Pipeline, context: EmitContext) -> None:
        """The capability table's refusals, and the pipeline-wide bound the step runtime cannot keep on Compose."""
        super().check(pipeline, context)
        check_flow(pipeline, context)

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The Compose file and the script that runs it."""
        return emit_bundle(pipeline, context)


__all__ = ["HyperAISettings", "HyperAITarget"]
