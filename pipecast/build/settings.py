"""The build's settings: ``settings={"build": {...}}`` on the pipeline, then the command line's flags.

Declared like a target's settings (:mod:`pipecast.targets.settings`), so an unknown key or a wrong value is
reported the same way, at the ``file:line`` of the pipeline, with "did you mean".
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pipecast.compiler import ir
from pipecast.errors import Problem, ValidationError
from pipecast.targets.settings import Layer, Settings, setting

SCOPE = "build"  # the key of these settings in settings={...}


def _default_parent() -> str:
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be a positive number"


_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
_APT_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?")


def _image(value: Any) -> str | None:
    """An image reference is one word: a newline or space in it would change the Dockerfile's structure."""
    return None if _IMAGE.fullmatch(value) else "must be an image reference such as python:3.11-slim"


def _apt_packages(value: Any) -> str | None:
    bad = [p for p in value if not _APT_PACKAGE.fullmatch(p)]
    return f"{bad[0]!r} is not a Debian package name (optionally =VERSION)" if bad else None


@dataclass(frozen=True, kw_only=True)
class BuildSettings(Settings):
    """How ``pipecast build`` (and ``submit`` for container targets) makes the image."""

    parent_image: str | None = setting(None, "the image to build on: Python 3 with pip and venv (default: "
                                             "python:<this Python's X.Y>-slim)", step=False, check=_image,
                                       example="parent_image=python:3.11-slim")
    dockerfile: str | None = setting(None, "your own Dockerfile, built first (its folder is its context) and used "
                                           "as the parent image", step=False, example="dockerfile=docker/Dockerfile")
    apt_packages: tuple[str, ...] = setting([], "Debian packages installed with apt-get first", step=False,
                                            check=_apt_packages, example='apt_packages=["libgomp1"]')
    repository: str | None = setting(None, "where images are pushed, REGISTRY/NAME (the tag is the content "
                                           "hash); none: the image stays on the builder's host", step=False,
                                     check=_image, example="repository=ghcr.io/acme/pipelines")
    builder: str = setting("docker", "docker, buildah, or a builder registered under the entry-point group "
                                     "pipecast.builders", step=False)
    code: Literal["image", "none"] = setting("image", "image: the import root is copied into the image; none: "
                                                      "the image holds the dependencies only", step=False)
    wheelhouse: bool = setting(False, "resolve every requirement to wheels here (pip download) and ship them in "
                                      "the build context: the image installs with no index, reproducibly",
                               step=False)
    network: str | None = setting(None, "the network RUN instructions get (docker/buildah --network); default: "
                                        "none when every install comes from the wheelhouse and no apt package is "
                                        "asked for (a hermetic build), else the builder's default", step=False,
                                  example="network=host")
    pipecast_from: Literal["auto", "index", "wheel"] = setting(
        "auto", "pipecast at this exact version from the package index (auto: when it is there and this one is no "
                "editable install), else a wheel of the running pipecast shipped with the build", step=False)
    max_context_mb: int = setting(200, "the largest import root that ships, in MiB", step=False, check=_positive)
    insecure_registry: bool = setting(False, "talk plain HTTP to the registry (127.0.0.1 and localhost always "
                                             "do)", step=False)
    auto: bool = setting(True, "submit builds and pushes the image by itself for container targets when no "
                               "image is given", step=False)

    @property
    def parent(self) -> str:
        """The parent image to build on."""
        return self.parent_image or _default_parent()


def build_settings(pipeline: ir.Pipeline, overrides: Mapping[str, Any]) -> BuildSettings:
    """The pipeline's build settings, then ``overrides`` (command-line flags); ValidationError on a bad one."""
    own = {item.key: item.value for item in pipeline.settings if item.target == SCOPE}
    where = str(pipeline.location) if pipeline.location else None
    for step in pipeline.steps:
        if any(item.target == SCOPE for item in step.settings):
            raise ValidationError([Problem("build settings apply to the whole pipeline, not to one step",
                                           step=step.name, location=str(step.location),
                                           fix="move them to @pipeline(settings={'build': {...}}); a step's "
                                               "own dependencies go in @step(packages=[...])")],
                                  summary=f"pipeline {pipeline.name!r} cannot be built")
    problems: list[Problem] = []
    layers = [Layer("the pipeline's settings=", own, where),
              Layer("the command line", {k: v for k, v in overrides.items() if v is not None})]
    parsed = BuildSettings.parse(layers, target=SCOPE, report=problems.append)
    if problems:
        raise ValidationError(problems, summary=f"pipeline {pipeline.name!r} cannot be built ({len(problems)} "
                                                f"problem{'s' if len(problems) != 1 else ''})")
    return parsed
