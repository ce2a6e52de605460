"""The image of a pod that runs pipecast beside the steps: the kubernetes target's driver, Tekton's schedule pod.

Such a pod imports the Kubernetes client (pipecast's ``kubernetes`` extra). Its own setting (``driver_image``,
``cron_image``) wins, then the pipeline's image (``@pipeline(image=)``, ``--set image=``); else it runs in the
image ``pipecast submit`` built for the steps, and the target asks that build for the client
(:meth:`pipecast.targets.base.Target.image_requirements` returning :func:`client_requirements`).
"""

from __future__ import annotations

from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext
from pipecast.targets.lowering import MISSING_IMAGE

CLIENT_EXTRA = "kubernetes"  # the extra whose pins the built image gets (pipecast's metadata, never copied here)


def given_image(own: str | None, pipeline: ir.Pipeline, settings: Any) -> str | None:
    """The image named for the pod: its own setting, else the pipeline's (None: the built image serves)."""
    return own or pipeline.image or settings.image


def built_image(pipeline: ir.Pipeline, context: EmitContext) -> str | None:
    """The image built for the first step (in pipeline order) that got one; every built image has the client."""
    return next((context.images[step.name] for step in pipeline.steps if step.name in context.images), None)


def tool_image(own: str | None, pipeline: ir.Pipeline, context: EmitContext, what: str, fix: str) -> str:
    """The pod's image; an error naming ``what`` and ``fix`` when there is none and no build can give one."""
    image = given_image(own, pipeline, context.settings) or built_image(pipeline, context)
    if image:
        return image
    if not context.missing_images:
        context.error(f"{what} has no image (it runs pipecast with its kubernetes extra)", fix=fix)
    # Otherwise the steps' own "no container image" errors fail the compile, and the build `pipecast submit`
    # makes for them (the second compile) names the image this pod uses too.
    return MISSING_IMAGE


def client_requirements(own: str | None, pipeline: ir.Pipeline, settings: Any) -> tuple[str, ...]:
    """The Kubernetes client, pinned as pipecast's extra pins it, when the pod runs in the built image."""
    if given_image(own, pipeline, settings):
        return ()
    from pipecast.build.wheel import extra_requirements

    return extra_requirements(CLIENT_EXTRA)
