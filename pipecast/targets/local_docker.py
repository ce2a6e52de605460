"""The ``local_docker`` target: every step in its own container on this machine, through Docker Compose.

``emit`` writes ``compose.yaml`` (see :mod:`pipecast.targets.compose`; every service has ``init: true``).
``pipecast run --target local_docker`` compiles it for one run and runs ``docker compose up
--abort-on-container-failure`` (without that flag for a pipeline with exit handlers or hooks: they run after a
failed step; the run's status comes from the steps' records) when a Docker engine and the Compose plugin answer,
and otherwise stops with a clear message (exit status 2). Afterwards it keeps each step's log and removes the
containers; Ctrl-C or SIGTERM cancels the run (``docker compose stop``: each step records itself cancelled).

The run itself (compile, ``docker compose up``, record) is :func:`pipecast.flow.run_with_docker`.

The artifact root: an object-store URI is used as is; a ``file://`` root (or, when none is set, pipecast's
local artifact folder) is bind-mounted at ``/pipecast/artifacts`` in every container.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native, unsupported
from pipecast.targets.compose import (
    ARTIFACT_DIR_VAR,
    CONTAINER_ARTIFACT_ROOT,
    ComposeSettings,
    compose_project,
)
from pipecast.targets.inline_flow import CAPABILITIES as COMPOSE_FLOW
from pipecast.targets.inline_flow import check as check_flow
from pipecast.targets.lowering import given_artifact_root, is_node_local
from pipecast.targets.serialize import dump_yaml
from pipecast.targets.settings import setting

COMPOSE_FILE = "compose.yaml"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class DockerUnavailableError(PipecastError):
    """No Docker engine (or no Compose plugin) to run the containers."""


@dataclass(frozen=True, kw_only=True)
class LocalDockerSettings(ComposeSettings):
    """Settings of the local_docker target (``--set KEY=VALUE`` or ``settings={"local_docker": {...}}``)."""

    artifact_root: str | None = setting(
        None, "artifact root when the pipeline has none: an object-store URI used as is, or a file:///path "
              "bind-mounted into every container (default: pipecast's artifact folder)", step=False,
        example="artifact_root=file:///srv/pipecast")


class LocalDockerTarget(Target):
    """Each step in a container from its image, on this machine's Docker engine."""

    name = "local_docker"
    description = "Docker on this machine: a Compose project, one container per step"
    extra = "local_docker"
    sdk_modules = ()  # the docker CLI is used, no Python SDK
    # Every golden case runs in the tests on a real Docker engine with Compose v2 (docs/targets/local_docker.md).
    status = "stable"
    capabilities = {
        Feature.PARAMETERS: native("Compose variables ${PIPECAST_PARAM_<name>}, set by `pipecast run`"),
        Feature.DATA_PASSING: native("artifact store: the artifact folder bind-mounted into every container"),
        Feature.AFTER: native("depends_on: condition: service_completed_successfully"),
        Feature.RESOURCES: native("deploy.resources.limits (cpus, memory)"),
        Feature.GPU: native("deploy.resources.reservations.devices (count); gpu_type cannot be chosen"),
        Feature.RETRY: emulated("the runtime retries inside the container (Compose restarts would break "
                                "service_completed_successfully)"),
        Feature.RETRY_BACKOFF: emulated("the runtime waits the delay with backoff"),
        Feature.TIMEOUT: emulated("the runtime stops the step (Compose has no per-service timeout)"),
        Feature.CACHE: native("the runtime reuses outputs from the artifact store"),
        Feature.SCHEDULE: emulated("not scheduled: `pipecast run --target local_docker` runs it once now (put that "
                                   "in cron); the schedule is kept under x-pipecast"),
        Feature.ENV: native("environment ($ escaped as $$)"),
        Feature.SECRETS: emulated("passed through from the same-named variable of the environment "
                                  "`docker compose` runs in"),
        Feature.STEP_IMAGE: native(),
        Feature.SUBMIT: emulated("no engine to submit to: `pipecast run --target local_docker` runs docker compose up "
                                 "in the foreground"),
        Feature.STATUS: unsupported("the run is in the foreground (Ctrl-C or SIGTERM cancels it); its result is in "
                                    "the run store"),
        Feature.UI_URL: native("file:// URL of the run's artifact folder"),
        **COMPOSE_FLOW,
    }
    settings_class = LocalDockerSettings

    def check(self, pipeline: ir.Pipeline, context: EmitContext) -> None:
        """The capability table's refusals, and the pipeline-wide bound the step runtime cannot keep on Compose."""
        super().check(pipeline, context)
        check_flow(pipeline, context)

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The Compose file; a node-local (or no) artifact root becomes a host folder mounted into the containers."""
        root = given_artifact_root(pipeline, context)
        if root and not is_node_local(root):
            document = compose_project(pipeline, context, artifact_root=root, init=True)
        else:
            path = root[len("file://"):] if root else None
            if path is not None and not path.startswith("/"):
                context.error(f"artifact root {root!r} must be an absolute path to be mounted into containers",
                              fix="--set artifact_root=file:///absolute/path")
            mount = path if path else "${" + ARTIFACT_DIR_VAR + "?set " + ARTIFACT_DIR_VAR + \
                " to the host folder that holds the artifacts}"
            document = compose_project(pipeline, context, artifact_root=f"file://{CONTAINER_ARTIFACT_ROOT}",
                                       artifact_mount=mount.replace("$", "$$") if path else mount, init=True)
        return Bundle(self.name, ((COMPOSE_FILE, dump_yaml(document)),))


# -- running it ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComposeCommands:
    """The docker commands of one run of a Compose project."""

    up: list[str]    # in the foreground: the steps' logs stream to the terminal; ends at the first failure unless
    #                  the pipeline has exit handlers or hooks (then when every step has ended)
    stop: list[str]  # on cancel: SIGTERM to every step (docker-init passes it on; the runtime records cancelled)
    ps: list[str]    # every service's container and exit code (JSON lines)
    logs: list[str]  # every container's log, each line prefixed ``<service>-<n> | ``
    down: list[str]  # remove the containers and the project's network
    base: tuple[str, ...] = ()  # ``docker compose --file … --project-name …``, for commands on some services

    def stop_services(self, services: list[str]) -> list[str]:
        """``stop`` of the named services only (a cancel stops the steps; the exit handlers still run)."""
        return [*self.base, "stop", *services]

    def up_services(self, services: list[str]) -> list[str]:
        """``up --no-deps`` of the named services: after a cancel, the exit handlers and hooks, in their order."""
        return [*self.base, "up", "--no-deps", "--no-color", *services]


def compose_commands(compose_file: str, project: str, *, abort_on_failure: bool = True) -> ComposeCommands:
    """The exact docker commands of a run of ``compose_file`` as project ``project``.

    ``abort_on_failure=False`` for a pipeline with exit handlers or hooks: the first failed step must not stop
    the containers, the handlers run after it (pipecast then reads the run's status from the steps' records).
    """
    base = ["docker", "compose", "--file", compose_file, "--project-name", project]
    abort = ["--abort-on-container-failure"] if abort_on_failure else []
    return ComposeCommands(up=[*base, "up", *abort, "--no-color"],
                           stop=[*base, "stop"], ps=[*base, "ps", "--all", "--format", "json"],
                           logs=[*base, "logs", "--no-color"], down=[*base, "down", "--remove-orphans"],
                           base=tuple(base))


def run_up(runner: Runner, command: list[str], env: Mapping[str, str],
           **options: Any) -> subprocess.CompletedProcess[str]:
    """Run a ``docker compose up`` in a session of its own, its stdin empty: pipecast alone gets Ctrl-C.

    A terminal's Ctrl-C signals its whole foreground process group. In it, Compose would take the one Ctrl-C for
    two and kill the containers (SIGKILL) before a step's runtime could record itself cancelled: ``compose up``
    (docker/compose v2.40.3 ``pkg/compose/up.go``) stops gracefully on the first of a signal or its context's end
    and kills on the next, and one SIGINT gives both — its own ``AdaptCmd`` (``cmd/compose/compose.go``) cancels
    that context on SIGINT, and so does the docker CLI closing the plugin socket on its own SIGINT when its output
    is not a terminal (docker/cli v28.2.2 ``cmd/docker/docker.go`` ``tryPluginRun``). Apart from the terminal,
    Compose sees one event only: the docker CLI ending (``subprocess.run`` kills it on KeyboardInterrupt) closes
    the socket, and pipecast itself stops the steps (``docker compose stop``, SIGTERM). An empty stdin keeps
    Compose's navigation menu off: it puts the terminal in raw mode and would take Ctrl-C as a key, for itself.

    On that interrupt the whole session (the docker CLI and its Compose plugin) is killed, not the CLI alone: a
    plugin left to wind down goes on starting services whose upstream just exited (every ``depends_on`` of a
    pipeline with handlers is ``required: false``), so a handler would run once under it and again under
    :func:`run_exit_steps_after_cancel`. The containers are the engine's, not the plugin's: they keep running
    until pipecast stops them.
    """
    if runner is not subprocess.run:  # an injected runner (no process to reach): as subprocess.run would
        return runner(command, env=env, start_new_session=True, stdin=subprocess.DEVNULL, **options)
    timeout = options.pop("timeout", None)
    with subprocess.Popen(command, env=dict(env), start_new_session=True, stdin=subprocess.DEVNULL, text=True,
                          **options) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: the group is the CLI's pid
            process.wait()
            raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


EXIT_GRACE_SECONDS = 300.0  # how long exit handlers and hooks may run after a cancel (pipecast run's grace)


def run_exit_steps_after_cancel(runner: Runner, commands: ComposeCommands, env: Mapping[str, str],
                                pipeline: ir.Pipeline, services: Mapping[str, str],
                                record_cancelled: Callable[[str], None],
                                grace_seconds: float = EXIT_GRACE_SECONDS) -> None:
    """After Ctrl-C or SIGTERM, as ``pipecast run`` does: stop the steps, then run the exit handlers and hooks.

    The ordinary steps are stopped (each records itself cancelled); ``record_cancelled`` records every step that
    never started as cancelled, so the handlers' runtime builds status ``cancelled`` from the records and an
    ``on_success`` hook skips itself. Then the handlers and hooks that have not run yet start (``up --no-deps``;
    one still running goes on), bounded by ``grace_seconds``; a second signal ends the wait. The caller stops
    and removes the whole project afterwards.
    """
    exits = [step.name for step in pipeline.steps if step.trigger is not ir.Trigger.ALL_SUCCESS]
    ordinary = [services[step.name] for step in pipeline.steps if step.trigger is ir.Trigger.ALL_SUCCESS]
    with signals_held():
        runner(commands.stop_services(ordinary), env=env, capture_output=True, text=True)
        for step in pipeline.steps:
            if step.trigger is ir.Trigger.ALL_SUCCESS:
                record_cancelled(step.name)
        listed = runner(commands.ps, env=env, capture_output=True, text=True)
        ended = set(exit_codes(listed.stdout)) if listed.returncode == 0 else set()
    waiting = [services[name] for name in exits if services[name] not in ended]  # an ended one must not rerun
    if not waiting:
        return
    try:
        with sigterm_interrupts():
            run_up(runner, commands.up_services(waiting), env, timeout=grace_seconds)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        pass  # a second signal, or out of time: the caller's stop ends the handlers (they record cancelled)


def exit_codes(ps_output: str) -> dict[str, int]:
    """Each service's container exit code from ``compose ps --all --format json`` (lines, or one list)."""
    text = ps_output.strip()
    if not text:
        return {}
    entries = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]
    return {entry["Service"]: int(entry.get("ExitCode") or 0) for entry in entries
            if entry.get("State") == "exited"}


def split_logs(logs_output: str, services: Mapping[str, str]) -> dict[str, str]:
    """``compose logs`` output as each step's own log (by step name; ``services`` maps step to service)."""
    by_service = {service: step for step, service in services.items()}
    logs: dict[str, list[str]] = {}
    for line in logs_output.splitlines(keepends=True):
        prefix, bar, text = line.partition(" | ")
        container = prefix.strip()
        service = container.rpartition("-")[0] if bar else ""
        if service in by_service:
            logs.setdefault(by_service[service], []).append(text)
    return {step: "".join(lines) for step, lines in logs.items()}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: the run is cancelled the same way."""


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM interrupts the main thread as Ctrl-C does (so ``kill`` cancels a run too)."""
    def terminated(signum: int, frame: Any) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread: signals cannot reach it anyway
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_held() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM are ignored, by the docker commands started in it too.

    So the end of a run (keep the logs, remove the containers, record the result) is never left half done.
    """
    try:
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupt_signal(interrupt: KeyboardInterrupt) -> int:
    """The signal an interrupt came from: SIGTERM for :func:`sigterm_interrupts`, SIGINT (Ctrl-C) otherwise."""
    return int(signal.SIGTERM if isinstance(interrupt, _Terminated) else signal.SIGINT)


def check_docker(runner: Runner = subprocess.run) -> None:
    """Raise DockerUnavailableError unless a Docker engine and the Compose plugin answer."""
    for command, problem, fix in (
        (["docker", "info", "--format", "{{.ServerVersion}}"], "no Docker engine",
         "start Docker (or set DOCKER_HOST) or use --target local"),
        (["docker", "compose", "version"], "the Docker Compose plugin is missing",
         "install Docker Compose v2.30 or newer (docker-compose-plugin) or use --target local"),
    ):
        try:
            result = runner(command, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise DockerUnavailableError("no docker CLI on PATH: install Docker or use --target local") from None
        except subprocess.TimeoutExpired:
            raise DockerUnavailableError(f"{problem}: `{' '.join(command)}` did not answer in 60s; {fix}") from None
        if result.returncode != 0:
            # The first line says what is wrong; the docker CLI may add "Run 'docker --help' ..." after it.
            lines = [line for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
            reason = lines[0].strip() if lines else f"exit status {result.returncode}"
            raise DockerUnavailableError(f"{problem}: `{' '.join(command[:2])}` failed: {reason}; {fix}")
