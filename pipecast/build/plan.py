"""What goes into each image: the steps it serves, its parent, its requirements and pipecast itself.

Steps that name an image of their own (``@step(image=)`` or ``@pipeline(image=)``) get none built. The others
are grouped by their ``packages``: steps with the same packages share one image. Every image installs the
pipeline's requirements (``requirements=``, else ``requirements.txt`` or ``pyproject.toml`` found at the import
root), the artifact store's fsspec backend, what the target asks for the pods it runs pipecast in besides the
steps (:meth:`pipecast.targets.base.Target.image_requirements`, given here as ``extra``), and pipecast at exactly
the running version — from the package index when that version is there, else from a wheel of the running
pipecast shipped with the build.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipecast.build.settings import BuildSettings
from pipecast.build.wheel import DISTRIBUTION, pipecast_dependencies, pipecast_version, wheel_name
from pipecast.compiler import ir
from pipecast.compiler.requirements import parse_requirement_lines, pyproject_dependencies
from pipecast.errors import Problem, ValidationError

# The fsspec implementation each artifact-store scheme needs, as `pipecast[s3]`, `[gcs]`, `[azure]` install it.
FSSPEC_BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                   "abfss": "adlfs", "adl": "adlfs"}


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One image to build.

    Attributes:
        steps: The steps that run in it.
        parent: The image it is built on.
        apt_packages: Debian packages installed first.
        requirements: Third-party requirement specifiers (sorted): the pipeline's, the steps' packages, the
            artifact store's backend, the target's extra ones, and pipecast's own dependencies when pipecast
            comes as a wheel.
        pipecast: ``pipecast==X.Y.Z`` from the index, or the file name of the shipped wheel.
        code: Whether the import root is copied in.
        wheelhouse: Whether the requirements are shipped as wheels (installed with no index).
    """

    steps: tuple[str, ...]
    parent: str
    apt_packages: tuple[str, ...]
    requirements: tuple[str, ...]
    pipecast: str
    code: bool
    wheelhouse: bool

    @property
    def pipecast_is_wheel(self) -> bool:
        """Whether pipecast is installed from the shipped wheel (not the index)."""
        return self.pipecast.endswith(".whl")


def plan_images(pipeline: ir.Pipeline, settings: BuildSettings, root: Path | None,
                artifact_root: str | None, *, parent: str | None = None,
                extra: Sequence[str] = ()) -> list[ImageSpec]:
    """The images ``pipeline`` needs (none when every step names its own image).

    ``extra``: requirements every image gets besides the pipeline's (a project that names one already keeps its
    own specifier).
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for step in pipeline.steps:
        if pipeline.image_of(step) is None:
            groups.setdefault(step.packages, []).append(step.name)
    if not groups:
        return []
    common = list(pipeline_requirements(pipeline, root))
    backend = fsspec_backend(artifact_root)
    if backend and not any(_name(r) == backend for r in common):
        common.append(backend)
    common += [r for r in extra if _name(r) not in {_name(c) for c in common}]
    source = pipecast_source(settings)
    if source.endswith(".whl"):
        common += [r for r in pipecast_dependencies() if _name(r) not in {_name(c) for c in common}]
    return [ImageSpec(steps=tuple(steps), parent=parent or settings.parent, apt_packages=settings.apt_packages,
                      requirements=_sorted_unique([*common, *packages]), pipecast=source,
                      code=settings.code == "image", wheelhouse=settings.wheelhouse)
            for packages, steps in sorted(groups.items())]


def pipeline_requirements(pipeline: ir.Pipeline, root: Path | None) -> tuple[str, ...]:
    """``requirements=``, else ``requirements.txt``, else ``pyproject.toml``'s dependencies at the import root."""
    if pipeline.requirements or root is None:
        return pipeline.requirements
    problems: list[Problem] = []
    found: tuple[str, ...] = ()
    if (root / "requirements.txt").is_file():
        text = (root / "requirements.txt").read_text(encoding="utf-8")
        found = parse_requirement_lines(text, str(root / "requirements.txt"), problems)
    elif (root / "pyproject.toml").is_file():
        found = pyproject_dependencies(root / "pyproject.toml", problems)
    if problems:
        raise ValidationError(problems, summary=f"the requirements of pipeline {pipeline.name!r} are invalid")
    return found


def fsspec_backend(artifact_root: str | None) -> str | None:
    """The fsspec package an artifact root's scheme needs (``s3://`` → ``s3fs``); None for local roots."""
    if not artifact_root or "://" not in artifact_root:
        return None
    return FSSPEC_BACKENDS.get(artifact_root.split("://", 1)[0].lower())


def pipecast_source(settings: BuildSettings) -> str:
    """``pipecast==X.Y.Z`` when the index has this version (and it is the code running), else the wheel's name."""
    version = pipecast_version()
    if settings.pipecast_from == "wheel":
        return wheel_name()
    if settings.pipecast_from == "index" or (not is_editable() and index_has(version)):
        return f"{DISTRIBUTION}=={version}"
    return wheel_name()


def is_editable() -> bool:
    """Whether the running pipecast is an editable install (its code may differ from any published version)."""
    import importlib.metadata

    text = importlib.metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    if not text:
        return False
    return bool(json.loads(text).get("dir_info", {}).get("editable"))


def index_has(version: str) -> bool:
    """Whether the configured package index offers pipecast ``version`` (asked through pip)."""
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", DISTRIBUTION],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    for line in done.stdout.splitlines():
        if line.strip().startswith("Available versions:"):
            return version in [v.strip() for v in line.split(":", 1)[1].split(",")]
    return False


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(requirement).name)


def _sorted_unique(requirements: list[str]) -> tuple[str, ...]:
    return tuple(sorted(set(requirements), key=lambda r: (r.lower(), r)))
