"""Builders: one small interface, the local Docker engine and buildah, and others through entry points.

A builder builds a context folder (with its ``Dockerfile``) into a named image, says whether it already holds an
image, and pushes one. A remote builder (kaniko, a cloud build service) registers a :class:`Builder` subclass
under the entry-point group ``pipecast.builders``::

    [project.entry-points."pipecast.builders"]
    kaniko = "mypkg.kaniko:KanikoBuilder"

and is chosen with ``settings={"build": {"builder": "kaniko"}}`` or ``pipecast build --builder kaniko``.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

from pipecast.errors import BuildError

GROUP = "pipecast.builders"
Log = Callable[[str], None]


class Builder:
    """Base of every builder. Subclasses set ``name`` and implement the four methods."""

    name: ClassVar[str]
    pushes_itself: ClassVar[bool] = False  # a remote builder pushes as it builds: push() is then not called

    def image_id(self, reference: str) -> str | None:
        """The id of a local image (``sha256:...``), None when the builder holds none by that name."""
        raise NotImplementedError

    def build(self, context: Path, tag: str, *, dockerfile: Path | None = None, network: str | None = None,
              log: Log = print) -> None:
        """Build ``context`` (its ``Dockerfile``, or ``dockerfile``) into the image ``tag``.

        ``network``: the network ``RUN`` instructions get (``none``: no network at all).
        """
        raise NotImplementedError

    def push(self, tag: str, *, insecure: bool = False, log: Log = print) -> None:
        """Push the image ``tag`` (``REGISTRY/NAME:TAG``) to its registry."""
        raise NotImplementedError

    def pull(self, reference: str, *, log: Log = print) -> None:
        """Pull ``reference`` (the parent image, so its id is known before the tag is computed)."""
        raise NotImplementedError

    def parent_id(self, reference: str, *, log: Log = print) -> str:
        """The id of the parent image, pulled first when the builder does not hold it.

        The tag of every image built on it includes this id: a parent that moved gives new images.
        """
        found = self.image_id(reference)
        if found is None:
            self.pull(reference, log=log)
            found = self.image_id(reference)
        if found is None:
            raise BuildError(f"the parent image {reference!r} cannot be found after pulling it",
                             fix="check the parent_image setting")
        return found


def _run(command: list[str], what: str, log: Log) -> str:
    """Run a builder command; its output goes to ``log`` line by line; BuildError with its tail on failure."""
    tool = command[0]
    if shutil.which(tool) is None:
        raise BuildError(f"{tool!r} is not installed, so the image cannot be {what}",
                         fix=f"install {tool}, or choose another builder with --builder")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        log(line.rstrip("\n"))
    if process.wait() != 0:
        tail = "\n".join(lines[-15:])
        raise BuildError(f"{' '.join(command[:2])} failed (exit status {process.returncode}); the image was not "
                         f"{what}:\n{tail}", fix="read the builder's output above")
    return "\n".join(lines)


def _quiet(command: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        raise BuildError(f"{command[0]!r} is not installed", fix="install it, or choose another builder "
                                                                "with --builder")
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


class DockerBuilder(Builder):
    """The Docker engine ``docker`` talks to (``DOCKER_HOST``, the current context)."""

    name = "docker"

    def image_id(self, reference: str) -> str | None:
        """The local image's id (``docker image inspect``)."""
        done = _quiet(["docker", "image", "inspect", "--format", "{{.Id}}", reference])
        return done.stdout.strip() or None if done.returncode == 0 else None

    def build(self, context: Path, tag: str, *, dockerfile: Path | None = None, network: str | None = None,
              log: Log = print) -> None:
        """``docker build``."""
        _run(["docker", "build", *(["--network", network] if network else []), "--file",
              str(dockerfile or context / "Dockerfile"), "--tag", tag, str(context)], "built", log)

    def push(self, tag: str, *, insecure: bool = False, log: Log = print) -> None:
        """``docker push`` (a plain-HTTP registry must be in the engine's insecure-registries)."""
        _run(["docker", "push", tag], "pushed", log)

    def pull(self, reference: str, *, log: Log = print) -> None:
        """``docker pull``."""
        _run(["docker", "pull", reference], "pulled", log)


class BuildahBuilder(Builder):
    """buildah: daemonless, for CI runners without a Docker engine (its storage: containers-storage.conf)."""

    name = "buildah"

    def image_id(self, reference: str) -> str | None:
        """The local image's id (``buildah inspect``)."""
        done = _quiet(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", reference])
        if done.returncode != 0 or not done.stdout.strip():
            return None
        found = done.stdout.strip()
        return found if found.startswith("sha256:") else f"sha256:{found}"

    def build(self, context: Path, tag: str, *, dockerfile: Path | None = None, network: str | None = None,
              log: Log = print) -> None:
        """``buildah bud`` with layer caching, in Docker's image format."""
        _run(["buildah", "bud", "--layers", "--format", "docker", *(["--network", network] if network else []),
              "--file", str(dockerfile or context / "Dockerfile"), "--tag", tag, str(context)], "built", log)

    def push(self, tag: str, *, insecure: bool = False, log: Log = print) -> None:
        """``buildah push`` to ``docker://TAG``."""
        from pipecast.build.registry import Repository

        plain = insecure or Repository.parse(tag.rsplit(":", 1)[0]).plain_http
        _run(["buildah", "push", *(["--tls-verify=false"] if plain else []), tag, f"docker://{tag}"], "pushed", log)

    def pull(self, reference: str, *, log: Log = print) -> None:
        """``buildah pull`` (a plain-HTTP registry is declared insecure in registries.conf)."""
        _run(["buildah", "pull", reference], "pulled", log)


def get_builder(name: str) -> Builder:
    """The builder registered as ``name`` under ``pipecast.builders``; BuildError naming the known ones."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    builtin: dict[str, type[Builder]] = {"docker": DockerBuilder, "buildah": BuildahBuilder}
    if name in found:
        loaded = found[name].load()
    elif name in builtin:  # running from a source tree whose entry points are not installed
        loaded = builtin[name]
    else:
        known = sorted({*found, *builtin})
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BuildError(f"unknown builder {name!r}{hint}", fix=f"known builders: {', '.join(known)}; others are "
                                                                f"registered under the entry-point group {GROUP!r}")
    if not (isinstance(loaded, type) and issubclass(loaded, Builder)):
        raise BuildError(f"builder {name!r} ({loaded!r}) is not a pipecast.build.builders.Builder subclass")
    return loaded()
