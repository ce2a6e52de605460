"""The lowering toolkit: what every target needs to know about a step, derived in one place.

Targets call these instead of re-deriving them: the step's image, the artifact root, the env and secrets in
effect, the retry plan (the engine's retries or the runtime's, and the worst case a step may take), and the
runtime command. A missing image or artifact root is one error from here, with one placeholder that is
never a real value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from pipecast.compiler import ir
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.targets.base import EmitContext

MISSING_IMAGE = "<missing image>"  # written only into a compile that fails: the error names the fix
MISSING_ARTIFACT_ROOT = "<missing artifact root>"

# The code package's sha256 of the compile under way, when the code is shipped as a package: set by the flow
# around a target's emit, so every target's task command carries it without each target passing it on.
_CODE_PACKAGE: ContextVar[str | None] = ContextVar("pipecast_code_package", default=None)


@contextmanager
def code_package(sha256: str | None) -> Iterator[None]:
    """Within this block, every runtime command imports the steps from the code package ``sha256``.

    The runtime finds it under the task's artifact root (``.pipecast/code/<sha256>.tar.gz``).
    """
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"code package sha256 {sha256!r} is not 64 lowercase hex digits")  # never into a file
    token = _CODE_PACKAGE.set(sha256)
    try:
        yield
    finally:
        _CODE_PACKAGE.reset(token)


def step_image(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, *, required: bool = True,
               why: str = "") -> str | None:
    """The image ``step`` runs in: ``@step(image=)``, ``@pipeline(image=)``, the ``image`` setting, the built one.

    The built image is the one ``pipecast build`` made for the step before this compile (``submit`` builds when a
    step needs an image and has none: see :attr:`EmitContext.missing_images`), named by digest.

    Args:
        pipeline: The pipeline.
        step: The step.
        context: The compile's context (settings, problems).
        required: Whether a step without an image is an error (a container engine) or runs without one.
        why: What needs the image, for the error ("Azure ML runs each node in a container").
    """
    image = pipeline.image_of(step) or _setting(context, step, "image") or context.images.get(step.name)
    if image:
        return str(image)
    if not required:
        return None
    context.missing_images.append(step.name)
    reason = f": {why}" if why else ""
    context.error(f"step {step.name!r} has no container image{reason}", step=step,
                  fix="pass image= to @step or @pipeline, or --set image=REGISTRY/IMAGE:TAG (an image with pipecast "
                      "and the pipeline's code installed), or let `pipecast submit` build one (docs/shipping.md)")
    return MISSING_IMAGE


def artifact_root(pipeline: ir.Pipeline, context: EmitContext, *, remote: bool, default: str | None = None,
                  mounted: bool = False) -> str:
    """The artifact root every task of the run uses: the pipeline's, then the ``artifact_root`` setting.

    Args:
        pipeline: The pipeline.
        context: The compile's context.
        remote: Whether tasks run on machines of their own (pods, VMs, jobs), which a node-local path
            (``file://`` or a plain path) cannot serve: then such a root is an error, and so is none.
        default: The root when none is given and ``remote`` is false.
        mounted: Whether a ``file://`` root may name a volume every task mounts (Vertex AI's Cloud Storage
            FUSE mount under ``/gcs``, a shared volume), which the engine, not pipecast, provides; a plain
            path is still an error.
    """
    root = given_artifact_root(pipeline, context) or default
    fix = ("pass artifact_root= to @pipeline or --set artifact_root=s3://BUCKET/PREFIX (or gs://..., az://...), "
           "a store every task can reach" + (", or file:///PATH on a volume every task mounts" if mounted else ""))
    if not root:
        context.error(f"pipeline {pipeline.name!r} has no artifact root", fix=fix,
                      location=str(pipeline.location) if pipeline.location else None)
        return MISSING_ARTIFACT_ROOT
    root = str(root)
    if remote and is_node_local(root) and not (mounted and root.startswith("file://")):
        context.error(f"artifact root {root!r} is a path on one machine, but each task of {context.target!r} runs "
                      "on a machine (or pod) of its own, so a step would not find its inputs", fix=fix,
                      location=str(pipeline.location) if pipeline.location else None)
    return root


def given_artifact_root(pipeline: ir.Pipeline, context: EmitContext) -> str | None:
    """The pipeline's artifact root, then the ``artifact_root`` setting; None when neither is given.

    None is for targets that have a place of their own then, such as a folder on the Docker host or GitHub's
    artifacts.
    """
    root = pipeline.artifact_root or _setting(context, None, "artifact_root")
    return str(root) if root else None


def set_by_step(step: ir.Step, context: EmitContext, name: str) -> bool:
    """Whether the step's own ``settings=`` give setting ``name``.

    That is a value the step chose, rather than the pipeline's value it inherits: e.g. a node's own compute,
    which only then is written on the node.
    """
    return any(item.target == context.target and item.key == name for item in step.settings)


def is_node_local(root: str) -> bool:
    """Whether ``root`` is a local path (``file://``, ``~``, ``/...``) rather than an object store."""
    return root.startswith("file://") or "://" not in root


def env_in_effect(pipeline: ir.Pipeline, step: ir.Step) -> tuple[tuple[str, str], ...]:
    """The step's environment variables: the pipeline's, overridden by the step's own, sorted by name."""
    return tuple(pipeline.env_of(step))


def secrets_in_effect(pipeline: ir.Pipeline, step: ir.Step) -> tuple[ir.SecretRef, ...]:
    """The secret references the step's environment receives (the pipeline's and its own)."""
    return tuple(pipeline.secrets_of(step))


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """Who retries a step and how long it may take.

    Attributes:
        engine: Whether the engine retries the step (its native retry fields carry the policy).
        runtime: Whether the runtime retries inside one engine task (``--attempts``, and the timeout per try).
        attempts: Tries in all (1: no retries).
    """

    engine: bool
    runtime: bool
    attempts: int

    @property
    def native(self) -> bool:
        """The engine retries (an older name for :attr:`engine`)."""
        return self.engine


def retry_plan(step: ir.Step, *, engine_retries: bool = True, engine_delay: bool = True,
               engine_backoff: Callable[[float], bool] = lambda factor: True,
               engine_max_delay: bool = True) -> RetryPlan:
    """The engine retries when it can honour the whole policy (delay, backoff factor, cap); else the runtime does.

    Args:
        step: The step.
        engine_retries: Whether the engine can retry a task at all.
        engine_delay: Whether it can wait between tries.
        engine_backoff: Whether it can express this backoff factor.
        engine_max_delay: Whether it can cap the wait.
    """
    retry = step.retry
    if retry.attempts <= 1:
        return RetryPlan(engine=False, runtime=False, attempts=1)
    waits = retry.delay_seconds > 0
    needs = [engine_retries]
    if waits:
        needs += [engine_delay, engine_backoff(retry.backoff) if retry.backoff != 1.0 else True]
        if retry.max_delay_seconds is not None:
            needs.append(engine_max_delay)
    if all(needs):
        return RetryPlan(engine=True, runtime=False, attempts=retry.attempts)
    return RetryPlan(engine=False, runtime=True, attempts=retry.attempts)


def retry_delays(step: ir.Step) -> float:
    """Seconds spent waiting between tries in the worst case (every try fails)."""
    return sum(step.retry.delay_before(attempt) for attempt in range(2, step.retry.attempts + 1))


def worst_case_seconds(step: ir.Step) -> float | None:
    """The longest a step may take with every try timing out and every delay waited; None without a timeout."""
    if not step.timeout_seconds:
        return None
    return step.timeout_seconds * step.retry.attempts + retry_delays(step)


def worst_case_whole_seconds(step: ir.Step) -> int | None:
    """:func:`worst_case_seconds` rounded up to whole seconds (at least 1), as engines' timeout fields take."""
    seconds = worst_case_seconds(step)
    return None if seconds is None else max(1, math.ceil(seconds))


def runtime_command(pipeline: ir.Pipeline, step: ir.Step, syntax: EngineSyntax, plan: RetryPlan, *,
                    runtime_timeout: bool | None = None) -> list[str]:
    """The step's runtime command (``python -m pipecast.runtime run ...``) with the engine's placeholders.

    The runtime enforces the retries when ``plan.runtime``; it enforces the timeout when the engine cannot
    (``runtime_timeout``; by default whenever the runtime retries, since a per-try timeout is then the runtime's).
    """
    enforce_timeout = plan.runtime if runtime_timeout is None else runtime_timeout
    shipped = _CODE_PACKAGE.get()
    if shipped and not syntax.code_sha256:
        syntax = replace(syntax, code_sha256=shipped)
    return step_command(pipeline, step, syntax, runtime_retry=plan.runtime, runtime_timeout=enforce_timeout)


def _setting(context: EmitContext, step: ir.Step | None, name: str) -> Any:
    """A setting's typed value for ``step`` (None when the target has no such setting)."""
    return getattr(context.settings_for(step), name, None)
