"""The ``local_docker`` target: every step in its own container on this machine, through Docker Compose.

``emit`` writes ``compose.yaml`` (see :mod:`pipecast.targets.compose`). ``pipecast run --target local_docker``
compiles it for one run and runs ``docker compose up --abort-on-container-failure`` when a Docker engine and
the Compose plugin answer, and otherwise stops with a clear message (exit status 2).

The artifact root: an object-store URI is used as is; a ``file://`` root (or, when none is set, pipecast's
local artifact folder) is bind-mounted at ``/pipecast/artifacts`` in every container.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.flow import EmitOptions
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native, unsupported
from pipecast.targets.compose import (
    ARTIFACT_DIR_VAR,
    CONTAINER_ARTIFACT_ROOT,
    ComposeSettings,
    compose_environment,
    compose_project,
)
from pipecast.targets.lowering import given_artifact_root, is_node_local
from pipecast.targets.serialize import dump_yaml
from pipecast.targets.settings import pipeline_layers, setting

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
    description = ("Docker on this machine: a Compose project, one container per step "
                   "(run path untested here: no Docker engine)")
    extra = "local_docker"
    sdk_modules = ()  # the docker CLI is used, no Python SDK
    # Emit is schema-checked; running needs a Docker engine, which the test machine lacks.
    status = "experimental"
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
                                 "in the foreground (never run against a real Docker engine in pipecast's tests)"),
        Feature.STATUS: unsupported("the run is in the foreground; its result is in the run store"),
        Feature.UI_URL: native("file:// URL of the run's artifact folder"),
    }
    settings_class = LocalDockerSettings

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The Compose file; a node-local (or no) artifact root becomes a host folder mounted into the containers."""
        root = given_artifact_root(pipeline, context)
        if root and not is_node_local(root):
            document = compose_project(pipeline, context, artifact_root=root)
        else:
            path = root[len("file://"):] if root else None
            if path is not None and not path.startswith("/"):
                context.error(f"artifact root {root!r} must be an absolute path to be mounted into containers",
                              fix="--set artifact_root=file:///absolute/path")
            mount = path if path else "${" + ARTIFACT_DIR_VAR + "?set " + ARTIFACT_DIR_VAR + \
                " to the host folder that holds the artifacts}"
            document = compose_project(pipeline, context, artifact_root=f"file://{CONTAINER_ARTIFACT_ROOT}",
                                       artifact_mount=mount.replace("$", "$$") if path else mount)
        return Bundle(self.name, ((COMPOSE_FILE, dump_yaml(document)),))


# -- running it ---------------------------------------------------------------------------------------


@dataclass
class DockerRun:
    """A finished ``local_docker`` run: its id, status, the folder of its files and the commands run."""

    id: str
    status: str
    url: str
    commands: list[list[str]] = field(default_factory=list)


def compose_commands(compose_file: str, project: str) -> list[list[str]]:
    """The exact docker commands of a run: bring the project up in the foreground, then remove its containers."""
    base = ["docker", "compose", "--file", compose_file, "--project-name", project]
    return [[*base, "up", "--abort-on-container-failure", "--no-color"],
            [*base, "down", "--remove-orphans"]]


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
            lines = (result.stderr or result.stdout or "").strip().splitlines()
            reason = lines[-1] if lines else f"exit status {result.returncode}"
            raise DockerUnavailableError(f"{problem}: `{' '.join(command[:2])}` failed: {reason}; {fix}")


def run_with_docker(pipeline: ir.Pipeline, parameters: Mapping[str, Any], *, settings: Mapping[str, Any] | None = None,
                    artifact_root: str | None = None, on_unsupported: str = "error",
                    warn: Callable[[str], None] | None = None, runner: Runner = subprocess.run) -> DockerRun:
    """Run ``pipeline`` with Docker Compose here; record it in the run store (target ``local_docker``).

    ``on_unsupported="warn"`` runs despite features Compose cannot express, passing each warning to ``warn``.
    """
    from pipecast.compiler.naming import rule_for
    from pipecast.flow import compile_pipeline
    from pipecast.runs.store import RunStore, new_run_id
    from pipecast.runtime.artifacts import ArtifactStore, default_root, pipecast_home
    from pipecast.runtime.params import resolve_parameters

    values = resolve_parameters(pipeline, dict(parameters))
    given = _given_settings(pipeline, settings or {})
    root = ArtifactStore(artifact_root or pipeline.artifact_root or given.artifact_root or default_root()).uri
    chosen = dict(settings or {})
    chosen["artifact_root"] = root
    local = root.startswith("file://")
    if local and given.user is None and hasattr(os, "getuid"):
        chosen["user"] = f"{os.getuid()}:{os.getgid()}"  # outputs in the mounted folder stay yours
    if local:  # the pipeline's own root must not win over the one chosen here
        pipeline = _with_root(pipeline, root)
    bundle = compile_pipeline(pipeline, "local_docker", EmitOptions(settings=chosen, on_unsupported=on_unsupported))
    for problem in bundle.warnings:
        (warn or print)(problem.render())
    check_docker(runner)
    run_id = new_run_id(pipeline.name)
    folder = os.path.join(pipecast_home(), "docker", run_id)
    bundle.write(folder)
    compose_file = os.path.join(folder, COMPOSE_FILE)
    if local:
        os.makedirs(root[len("file://"):], exist_ok=True)
    env = {**os.environ, **compose_environment(pipeline, values, run_id)}
    artifacts = ArtifactStore(root)
    url = artifacts.url(artifacts.run_dir(pipeline.name, run_id))
    store = RunStore.default()
    store.create_run(run_id, pipeline=pipeline.name, target="local_docker", parameters=values, status="running",
                     url=url, metadata={"artifact_root": root, "compose_file": compose_file})
    commands = compose_commands(compose_file, rule_for("dns1123_label").apply(run_id))
    try:
        up = runner(commands[0], env=env)
    except KeyboardInterrupt:
        runner(commands[1], env=env)
        store.update_status(run_id, "cancelled", detail="interrupted")
        raise
    runner(commands[1], env=env, capture_output=True, text=True)
    status = "succeeded" if up.returncode == 0 else "failed"
    store.record_steps(run_id, _step_rows(pipeline, artifacts, run_id))
    store.update_status(run_id, status, detail=None if up.returncode == 0 else
                        f"docker compose up exited with status {up.returncode}")
    return DockerRun(run_id, status, url, commands)


def _given_settings(pipeline: ir.Pipeline, settings: Mapping[str, Any]) -> LocalDockerSettings:
    """The settings the compile will read: the pipeline's ``settings=``, then ``--set``.

    A bad one is left for the compile to report, with every other problem.
    """
    layers = pipeline_layers(pipeline, LocalDockerTarget.name, settings)
    return LocalDockerSettings.parse(layers, target=LocalDockerTarget.name, report=lambda problem: None)


def _with_root(pipeline: ir.Pipeline, root: str) -> ir.Pipeline:
    from dataclasses import replace

    return replace(pipeline, artifact_root=root)


def _step_rows(pipeline: ir.Pipeline, artifacts: Any, run_id: str) -> list[dict[str, Any]]:
    """Each step's result, read from the metadata the runtime wrote (no record: it never ran)."""
    rows: list[dict[str, Any]] = []
    for step in pipeline.steps:
        try:
            meta = artifacts.read_json(f"{artifacts.step_dir(pipeline.name, run_id, step.name)}/meta.json")
        except PipecastError:
            rows.append({"step": step.name, "status": "skipped"})
            continue
        status = "failed" if meta.get("status") == "failed" else ("cached" if meta.get("cached") else "done")
        rows.append({"step": step.name, "status": status, "cached": bool(meta.get("cached")),
                     "attempts": meta.get("attempt", 0), "started_at": meta.get("started_at"),
                     "ended_at": meta.get("ended_at"), "error": meta.get("error")})
    return rows
