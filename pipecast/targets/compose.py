"""Building a Compose project from a pipeline: one service per step (shared by ``local_docker`` and ``hyperai``).

Public API (keep it small)::

    compose_project(pipeline, context, *, artifact_root, artifact_mount=None) -> dict
    compose_environment(pipeline, parameters, run_id, artifact_dir=None) -> dict[str, str]
    ComposeSettings    # the settings compose_project reads: derive your target's settings class from it

Each service runs ``python -m pipecast.runtime run …`` in the step's image (exec form), waits for its upstream
services with ``condition: service_completed_successfully`` (``required: false`` in a pipeline with exit
handlers or hooks: then it starts whatever they exited with, see :func:`compose_project`), and never restarts
(``restart: "no"``): retries and timeouts are done by the runtime inside the container (Compose has neither per
service).

Run-specific values are Compose variables, interpolated by ``docker compose`` from its environment:
``${PIPECAST_RUN_ID}``, ``${PIPECAST_PARAM_<name>}`` and, when the artifact folder is not fixed at compile time,
``${PIPECAST_ARTIFACT_DIR}``. :func:`compose_environment` gives their values. Every other ``$`` in the file is
written ``$$`` (Compose's escape), so no value can be read as a variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names, rule_for
from pipecast.compiler.units import parse_quantity
from pipecast.runtime.command import EngineSyntax
from pipecast.runtime.inline_flow import ENDED_ENV, FAIL_FAST_ENV
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import EmitContext
from pipecast.targets.inline_flow import flow_command
from pipecast.targets.lowering import env_in_effect, retry_plan, runtime_command, secrets_in_effect, step_image
from pipecast.targets.settings import ContainerSettings, setting

CONTAINER_ARTIFACT_ROOT = "/pipecast/artifacts"  # where a mounted artifact folder appears in every container
RUN_ID_VAR = "PIPECAST_RUN_ID"
ARTIFACT_DIR_VAR = "PIPECAST_ARTIFACT_DIR"
PARAM_VAR_PREFIX = "PIPECAST_PARAM_"
LABEL_PREFIX = "dev.pipecast"

_EXIT_TRIGGERS = (ir.Trigger.ALWAYS, ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
_GPU_DRIVERS = {"amd": "amd", "intel": "intel"}  # by gpu_type prefix; nvidia otherwise


@dataclass(frozen=True, kw_only=True)
class ComposeSettings(ContainerSettings):
    """The settings of a Compose project: the steps' image and artifact root, the user the containers run as."""

    user: str | None = setting(None, "user[:group] the step containers run as, e.g. '1000:1000' (so files in a "
                                     "mounted artifact folder belong to you)", example="user=1000:1000")


def escape(text: str) -> str:
    """Write ``text`` so Compose's interpolation gives it back unchanged (``$`` → ``$$``)."""
    return text.replace("$", "$$")


def param_var(name: str) -> str:
    """The Compose variable holding parameter ``name`` (names are Python identifiers)."""
    return f"{PARAM_VAR_PREFIX}{name}"


def _required(var: str, what: str) -> str:
    # ${VAR?message}: an error when VAR is unset, while an empty value stays valid (a str parameter may be "").
    return "${" + var + "?set " + var + " to " + what + "}"


def service_names(pipeline: ir.Pipeline, target: str) -> dict[str, str]:
    """Each step's Compose service name, by step name."""
    return engine_names("local_docker", [s.name for s in pipeline.steps],
                        locations={s.name: str(s.location) for s in pipeline.steps}, target=target)


def compose_project(pipeline: ir.Pipeline, context: EmitContext, *, artifact_root: str,
                    artifact_mount: str | None = None, init: bool = False) -> dict[str, Any]:
    """The Compose document (plain data, for ``serialize.dump_yaml``) that runs ``pipeline``.

    Args:
        pipeline: The validated IR.
        context: The caller target's context: problems are reported there, settings read from it
            (a :class:`ComposeSettings`).
        artifact_root: The artifact root URI as the steps see it inside their containers, e.g.
            ``file:///pipecast/artifacts`` (with ``artifact_mount``) or ``s3://bucket/prefix``.
        artifact_mount: A host folder (or a named volume, or ``${VAR}``) bind-mounted at the path of a
            ``file://`` ``artifact_root`` in every container; ``None`` when the root is an object store.
        init: Run each step under Docker's init (``init: true``): it passes ``docker stop``'s SIGTERM on to
            the runtime and reaps the step's orphaned subprocesses.
    """
    services = service_names(pipeline, context.target)
    wait: dict[str, Any] = {"condition": "service_completed_successfully"}
    if has_exit_steps(pipeline):
        # Exit handlers and hooks run after a failed step: `required: false` starts a service once each service it
        # depends on has exited, whatever its exit code (proven on Compose v2.40.3; docker/compose
        # pkg/compose/convergence.go waitDependencies: "optional dependency ... didn't complete successfully" is a
        # warning, not an error).
        # On every edge: a required dependency that fails makes `up` stop starting services altogether. The step
        # after a failed one starts, reads the failure from the records and records itself skipped.
        wait["required"] = False
    document: dict[str, Any] = {"name": rule_for("dns1123_label").apply(pipeline.name), "services": {}}
    for step in pipeline.steps:
        user = context.settings_for(step).user
        service: dict[str, Any] = {"image": escape(str(step_image(pipeline, step, context))),
                                   "command": _command(pipeline, step, artifact_root)}
        environment = _environment(pipeline, step)
        if environment:
            service["environment"] = environment
        if artifact_mount is not None:
            target = artifact_root[len("file://"):] if artifact_root.startswith("file://") else artifact_root
            service["volumes"] = [{"type": "bind", "source": artifact_mount, "target": target,
                                   "bind": {"create_host_path": True}}]
        upstream = step.upstream()
        if upstream:
            service["depends_on"] = {services[u]: dict(wait) for u in upstream}
        resources = _resources(step, context)
        if resources:
            service["deploy"] = {"resources": resources}
        if user:
            service["user"] = escape(user)
        if init:
            service["init"] = True
        service["restart"] = "no"
        service["labels"] = {f"{LABEL_PREFIX}.pipeline": escape(pipeline.name),
                             f"{LABEL_PREFIX}.step": escape(step.name)}
        if pipeline.tags:
            # Docker labels are key=value: the tags as one JSON list (`docker ps --filter label=...tags`).
            service["labels"][f"{LABEL_PREFIX}.tags"] = escape(ir.canonical_json(list(pipeline.tags)))
        document["services"][services[step.name]] = service
    document["x-pipecast"] = _metadata(pipeline)
    return document


def compose_environment(pipeline: ir.Pipeline, parameters: dict[str, Any], run_id: str,
                        artifact_dir: str | None = None) -> dict[str, str]:
    """The variables ``docker compose`` needs in its environment to run the project (exact values)."""
    env = {RUN_ID_VAR: run_id}
    for param in pipeline.parameters:
        env[param_var(param.name)] = render_parameter(param.type, parameters[param.name])
    if artifact_dir is not None:
        env[ARTIFACT_DIR_VAR] = artifact_dir
    return env


_RUN_MARK = "\x00run\x00"  # NUL never occurs in a real argument: safe markers, replaced after escaping


def _param_mark(name: str) -> str:
    return f"\x00param:{name}\x00"


def _command(pipeline: ir.Pipeline, step: ir.Step, artifact_root: str) -> list[str]:
    syntax = EngineSyntax(run_id=_RUN_MARK, parameter=lambda p: _param_mark(p.name), artifact_root=artifact_root)
    command = []
    # Compose has neither retries nor timeouts per service: the runtime does both inside the container.
    base = runtime_command(pipeline, step, syntax, retry_plan(step, engine_retries=False), runtime_timeout=True)
    for arg in flow_command(pipeline, step, base, syntax):  # control flow: the step's runtime runs it
        text = escape(arg).replace(_RUN_MARK, _required(RUN_ID_VAR, "the run id"))
        for param in pipeline.parameters:
            text = text.replace(_param_mark(param.name),
                                _required(param_var(param.name), f"the value of parameter {param.name}"))
        command.append(text)
    return command


def has_exit_steps(pipeline: ir.Pipeline) -> bool:
    """Whether ``pipeline`` has exit handlers or hooks (steps that run after others whatever happened)."""
    return any(step.trigger in _EXIT_TRIGGERS for step in pipeline.steps)


def _environment(pipeline: ir.Pipeline, step: ir.Step) -> dict[str, str | None]:
    environment: dict[str, str | None] = {name: escape(value) for name, value in env_in_effect(pipeline, step)}
    if step.trigger in _EXIT_TRIGGERS:
        # It starts once every step it follows exited (`required: false`): one without a record died, i.e. failed.
        environment[ENDED_ENV] = "1"
    elif step.upstream() and has_exit_steps(pipeline):
        # It may start after a step it does not depend on failed (every dependency is optional): it checks the
        # run's records first and skips itself then, as `pipecast run` starts no new step once one failed.
        environment[FAIL_FAST_ENV] = "1"
    for secret in secrets_in_effect(pipeline, step):
        # A reference, never a value: a null entry takes the variable from docker compose's own environment.
        environment[secret.env] = None
    return environment


def _resources(step: ir.Step, context: EmitContext) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    if step.resources.cpu:
        cores = parse_quantity(step.resources.cpu) or 0.0
        limits["cpus"] = f"{cores:g}"
    if step.resources.memory:
        limits["memory"] = _memory(parse_quantity(step.resources.memory) or 0.0)
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if step.resources.gpu:
        gpu_type = (step.resources.gpu_type or "").lower()
        driver = next((d for prefix, d in _GPU_DRIVERS.items() if gpu_type.startswith(prefix)), "nvidia")
        resources["reservations"] = {"devices": [{"driver": driver, "count": step.resources.gpu,
                                                  "capabilities": ["gpu"]}]}
        if step.resources.gpu_type:
            context.unsupported(
                f"Compose cannot choose a GPU model (gpu_type={step.resources.gpu_type!r}); the container would "
                f"get any {step.resources.gpu} of this machine's {driver} GPUs", step=step,
                fix="drop gpu_type for this target, or --on-unsupported=warn to accept any GPU model")
    return resources


def _memory(size: float) -> str:
    """Bytes as Compose writes memory: the largest binary unit that divides it (``4Gi`` → ``4g``)."""
    whole = int(size)
    for unit, factor in (("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if whole and whole % factor == 0:
            return f"{whole // factor}{unit}"
    return f"{whole}b"


def _metadata(pipeline: ir.Pipeline) -> dict[str, Any]:
    """``x-pipecast``: what Compose has no field for, kept in the file for people and tools."""
    data: dict[str, Any] = {"pipeline": escape(pipeline.name)}
    if pipeline.description:
        data["description"] = escape(pipeline.description)
    if pipeline.schedule:
        data["schedule"] = escape(pipeline.schedule)
    if pipeline.tags:
        data["tags"] = [escape(tag) for tag in pipeline.tags]
    data["parameters"] = {p.name: {"type": p.type.value, **({"default_json": escape(p.default_json)}
                                                           if p.default_json is not None else {"required": True})}
                          for p in pipeline.parameters}
    return data
