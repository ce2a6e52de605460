"""Build the images a pipeline needs, push them, and return each one by digest.

For each image (:mod:`pipecast.build.plan`): lay out a reproducible build context (Dockerfile, requirements,
shipped wheels, the code), hash it into the tag (:mod:`pipecast.build.tag`), and ask the registry (or, without
one, the builder) whether that tag exists. If it does, nothing is built. Otherwise the builder builds and pushes
it, and the registry says its digest. The result names the image as ``REPOSITORY@sha256:...``, which no later
push can change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipecast.build import registry
from pipecast.build.builders import Builder, get_builder
from pipecast.build.context import code_digest, copy_code, fix_times, import_root
from pipecast.build.dockerfile import render_dockerfile, requirements_text
from pipecast.build.plan import ImageSpec, plan_images
from pipecast.build.settings import BuildSettings, build_settings
from pipecast.build.tag import image_tag, repository_name, tree_digest
from pipecast.build.wheel import pipecast_version, pipecast_wheel, wheel_name
from pipecast.compiler import ir
from pipecast.errors import BuildError

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """One image of a pipeline.

    Attributes:
        steps: The steps that run in it.
        reference: How tasks name it: ``REPOSITORY@sha256:...`` once pushed, ``REPOSITORY:TAG`` when it stays
            on the builder's host.
        tag: The content-hash tag.
        built: Whether it was built now (False: the registry or the builder already held the tag).
        seconds: How long it took to have it.
        code_digest: The digest of the code baked in (None when no code is).
    """

    steps: tuple[str, ...]
    reference: str
    tag: str
    built: bool
    seconds: float
    code_digest: str | None = None


def step_images(images: list[BuiltImage]) -> dict[str, str]:
    """Each step's image reference."""
    return {step: image.reference for image in images for step in image.steps}


def dockerfiles(pipeline: ir.Pipeline, overrides: Mapping[str, Any] | None = None, *,
                artifact_root: str | None = None, extra: Sequence[str] = ()) -> list[tuple[ImageSpec, str]]:
    """The Dockerfile of each image ``pipeline`` needs (nothing is built; ``pipecast build --dockerfile``).

    ``extra``: the target's own requirements, as in :func:`build_images`.
    """
    settings = build_settings(pipeline, overrides or {})
    root = _root(pipeline, settings)
    parent = f"<the image built from {settings.dockerfile}>" if settings.dockerfile else None
    return [(spec, render_dockerfile(spec, pipeline=pipeline.name, version=pipecast_version()))
            for spec in plan_images(pipeline, settings, root, artifact_root or pipeline.artifact_root, parent=parent,
                                    extra=extra)]


def build_images(pipeline: ir.Pipeline, overrides: Mapping[str, Any] | None = None, *, push: bool = True,
                 artifact_root: str | None = None, log: Log = print, extra: Sequence[str] = ()) -> list[BuiltImage]:
    """Build (when needed) and push the images ``pipeline`` needs; see the module's docstring.

    ``extra``: requirements the target needs in every image besides the pipeline's (e.g. the Kubernetes client
    for a pod that runs pipecast beside the steps; :meth:`pipecast.targets.base.Target.image_requirements`).
    """
    settings = build_settings(pipeline, overrides or {})
    if push and not settings.repository:
        raise BuildError(f"pipeline {pipeline.name!r} has no repository to push its image to",
                         fix="pass --repository REGISTRY/NAME (or settings={'build': {'repository': ...}}), or "
                             "build without --push to keep the image on this host")
    builder = get_builder(settings.builder)
    root = _root(pipeline, settings)
    parent = _user_parent(builder, settings, root, log) if settings.dockerfile else settings.parent
    specs = plan_images(pipeline, settings, root, artifact_root or pipeline.artifact_root, parent=parent,
                        extra=extra)
    repository = settings.repository or f"pipecast/{repository_name(pipeline.name)}"
    digest = code_digest(root) if root is not None and settings.code == "image" else None
    return [_one_image(spec, pipeline.name, repository, builder, settings, root, push, digest, log) for spec in specs]


def _root(pipeline: ir.Pipeline, settings: BuildSettings) -> Path | None:
    try:
        return import_root(pipeline)
    except BuildError:
        if settings.code == "image":
            raise
        return None  # no code of its own to ship: the requirements say everything


def prepare(spec: ImageSpec, pipeline: str, builder: Builder, settings: BuildSettings, root: Path | None,
            context: Path, log: Log) -> str:
    """Lay out the build context of ``spec`` in ``context`` and return the image's tag (nothing is built)."""
    _lay_out(context, spec, pipeline, root, settings.max_context_mb * 2**20)
    return image_tag(tree_digest(context), builder.parent_id(spec.parent, log=log))


def _one_image(spec: ImageSpec, pipeline: str, repository: str, builder: Builder, settings: BuildSettings,
               root: Path | None, push: bool, digest: str | None, log: Log) -> BuiltImage:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pipecast-build-") as folder:
        context = Path(folder)
        tag = prepare(spec, pipeline, builder, settings, root, context, log)
        name = f"{repository}:{tag}"
        if push:
            found = registry.manifest_digest(repository, tag, insecure=settings.insecure_registry)
            if found:
                log(f"{name}: already in the registry, nothing to build")
                return BuiltImage(spec.steps, f"{repository}@{found}", tag, False, time.monotonic() - started,
                                  digest)
        elif builder.image_id(name):
            log(f"{name}: already built here, nothing to build")
            return BuiltImage(spec.steps, name, tag, False, time.monotonic() - started, digest)
        log(f"building {name} for steps {', '.join(spec.steps)} with {builder.name}")
        builder.build(context, name, network=build_network(spec, settings), log=log)
    if not push:
        return BuiltImage(spec.steps, name, tag, True, time.monotonic() - started, digest)
    if not builder.pushes_itself:
        builder.push(name, insecure=settings.insecure_registry, log=log)
    found = registry.manifest_digest(repository, tag, insecure=settings.insecure_registry)
    if not found:
        raise BuildError(f"{name} was pushed but the registry does not list it", fix="check the registry")
    return BuiltImage(spec.steps, f"{repository}@{found}", tag, True, time.monotonic() - started, digest)


def build_network(spec: ImageSpec, settings: BuildSettings) -> str | None:
    """The ``--network`` of the build: the setting, else ``none`` when nothing is fetched while building."""
    if settings.network:
        return settings.network
    return "none" if spec.wheelhouse and not spec.apt_packages else None


def image_tags(pipeline: ir.Pipeline, overrides: Mapping[str, Any] | None = None, *,
               artifact_root: str | None = None, log: Log = lambda line: None,
               extra: Sequence[str] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Each image's steps and tag, computed as a build would, with nothing built (what a build would be)."""
    settings = build_settings(pipeline, overrides or {})
    builder = get_builder(settings.builder)
    root = _root(pipeline, settings)
    parent = _user_parent(builder, settings, root, log) if settings.dockerfile else settings.parent
    result = []
    for spec in plan_images(pipeline, settings, root, artifact_root or pipeline.artifact_root, parent=parent,
                            extra=extra):
        with tempfile.TemporaryDirectory(prefix="pipecast-build-") as folder:
            result.append((spec.steps, prepare(spec, pipeline.name, builder, settings, root, Path(folder), log)))
    return result


def _lay_out(context: Path, spec: ImageSpec, pipeline: str, root: Path | None, max_bytes: int) -> None:
    """Write the build context: Dockerfile, deps/, self/, code/ (see :mod:`pipecast.build.dockerfile`)."""
    (context / "Dockerfile").write_text(render_dockerfile(spec, pipeline=pipeline, version=pipecast_version()))
    deps = context / "deps"
    deps.mkdir()
    text = requirements_text(spec)
    (deps / "requirements.txt").write_text(text)
    if spec.wheelhouse and text:
        shutil.copytree(wheelhouse(text), deps / "wheels", copy_function=_link_or_copy)
    if spec.pipecast_is_wheel:
        _link_or_copy(str(cached_pipecast_wheel()), str(context / "self" / spec.pipecast), mkdir=True)
    if spec.code:
        if root is None:
            raise BuildError("no import root to copy into the image", fix="set code='none' in the build settings")
        copy_code(root, context / "code", max_bytes)
    fix_times(context)


def _link_or_copy(source: str, destination: str, *, mkdir: bool = False) -> None:
    """Hard-link a cached file (they never change in place), or copy it across file systems."""
    if mkdir:
        os.makedirs(os.path.dirname(destination), exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _cache() -> Path:
    return Path(os.environ.get("PIPECAST_CACHE") or Path.home() / ".cache" / "pipecast")


def cached_pipecast_wheel() -> Path:
    """The running pipecast's wheel, made once per content of the package (hashing is cheaper than zipping)."""
    import pipecast

    key = code_digest(Path(pipecast.__file__).parent)[:32] + "-" + pipecast_version()
    folder = _cache() / "self" / key
    found = folder / wheel_name()
    if not found.exists():
        staging = Path(tempfile.mkdtemp(prefix="self-", dir=_cache() if _cache().exists() else None))
        pipecast_wheel(staging)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, folder)
        except OSError:  # made by another build meanwhile: the same bytes
            shutil.rmtree(staging, ignore_errors=True)
    return found


def wheelhouse(requirements: str) -> Path:
    """Wheels of every requirement (and their dependencies), resolved here once per requirements text.

    Downloaded with ``pip download --only-binary=:all:`` for this Python and platform, into a cache folder named
    by the hash of the text: the same requirements give the same wheels on later builds (a lock, kept until the
    cache is cleared), so the image tag does not move when the index does.
    """
    key = hashlib.sha256(f"{sys.version_info[:2]}\n{sys.platform}\n{requirements}".encode()).hexdigest()[:32]
    cache = _cache() / "wheelhouse" / key
    if (cache / ".complete").exists():
        return cache / "wheels"
    staging = Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=cache.parent if cache.parent.exists() else None))
    (staging / "requirements.txt").write_text(requirements)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                           "--only-binary=:all:", "--dest", str(staging / "wheels"), "-r",
                           str(staging / "requirements.txt")], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BuildError(f"pip download could not resolve the requirements to wheels:\n{done.stderr.strip()[-2000:]}",
                         fix="pin versions that have wheels for this Python, or build without wheelhouse")
    (staging / ".complete").write_text("")
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, cache)
    except OSError:  # another build finished it first: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)
    return cache / "wheels"


def _user_parent(builder: Builder, settings: BuildSettings, root: Path | None, log: Log) -> str:
    """Build the user's own Dockerfile (its folder is its context) as the parent, named by its content."""
    assert settings.dockerfile is not None
    path = Path(settings.dockerfile)
    if not path.is_absolute() and root is not None:
        path = root / path
    if not path.is_file():
        raise BuildError(f"dockerfile {settings.dockerfile!r} is not a file (looked at {str(path)!r})",
                         fix="give its path relative to the import root")
    name = f"pipecast-parent/{repository_name(path.parent.name)}:{tree_digest(path.parent)[:32]}"
    if builder.image_id(name) is None:
        log(f"building your Dockerfile {str(path)!r} as {name}")
        builder.build(path.parent, name, dockerfile=path, log=log)
    return name
