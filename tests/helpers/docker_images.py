"""Images for the real-Docker tests, made without Docker Hub (unreachable here).

- The parent image: Debian bookworm ``minbase`` with python3, venv, pip and CA certificates, made with
  ``debootstrap`` from this machine's Debian mirror and loaded with ``docker import``. The root filesystem's
  tarball is cached under ``~/.cache/pipecast-tests/`` by the recipe's hash, behind a file lock so parallel
  test runs build it once.
- The wheelhouse: pipecast's dependencies as wheels for the image's Python, downloaded on the host (PyPI is
  reachable from the host, not necessarily from containers) and cached the same way.
- A runtime image: the parent + a virtualenv at ``/opt/pipecast`` (first on PATH) holding pipecast built from
  this checkout (``pip wheel --no-deps``) and its dependencies, installed offline from the wheelhouse;
  :func:`image_with_code` adds code folders at ``/code/<name>`` on ``PYTHONPATH`` (e.g. the pipelines' modules).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.cases import ROOT
from tests.helpers.docker_engine import DockerEngine, EngineUnavailable, ensure_programs

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pipecast-tests"
BUILD_TIMEOUT = 1800  # debootstrap downloads ~60 MB and unpacks ~100 packages: minutes on a loaded machine
SUITE = "bookworm"
IMAGE_PYTHON = "3.11"  # bookworm's python3
PARENT_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# Bump when the recipe changes in a way its arguments do not show.
RECIPE_VERSION = 1


def recipe_key(recipe: object) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold an exclusive lock on ``CACHE/name.lock`` (other test runs wait for it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached(name: str, make: Callable[[Path], None]) -> Path:
    """``CACHE/name``, made once by ``make(partial_path)`` under a lock and renamed into place when complete."""
    target = CACHE / name
    if target.exists():
        return target
    with locked(name):
        if not target.exists():
            partial = CACHE / f"{name}.partial"
            if partial.is_dir():
                shutil.rmtree(partial)
            elif partial.exists():
                partial.unlink()
            make(partial)
            partial.rename(target)
    return target


def debian_mirror() -> str:
    """The first Debian mirror this machine's apt sources name (deb822 ``URIs:`` or one-line ``deb``)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
               *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in sources:
        text = path.read_text(errors="replace") if path.is_file() else ""
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            uri = match.group(1)
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def parent_tarball() -> Path:
    """The cached root filesystem tarball of the parent image (made with debootstrap on first use)."""
    recipe = {"suite": SUITE, "variant": "minbase", "include": PARENT_PACKAGES, "version": RECIPE_VERSION,
              "arch": platform.machine()}

    def make(partial: Path) -> None:
        ensure_programs("debootstrap")
        with tempfile.TemporaryDirectory(prefix="pipecast-debootstrap-", dir=CACHE) as work:
            root = Path(work) / "root"
            result = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PARENT_PACKAGES)}",
                                     SUITE, str(root), debian_mirror()], capture_output=True, text=True,
                                    timeout=BUILD_TIMEOUT)
            if result.returncode != 0:
                raise EngineUnavailable(f"debootstrap failed: {(result.stdout + result.stderr)[-2000:]}")
            for folder in ("var/cache/apt/archives", "var/lib/apt/lists"):  # downloads only, not the system
                for entry in (root / folder).glob("*"):
                    if entry.is_file():
                        entry.unlink()
            subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True,
                           timeout=BUILD_TIMEOUT)

    return cached(f"parent-{SUITE}-{recipe_key(recipe)}.tar", make)


def import_parent(engine: DockerEngine) -> str:
    """Load the parent image into ``engine`` (``docker import``); its tag holds the recipe's hash."""
    tarball = parent_tarball()
    tag = f"pipecast-test-parent:{tarball.stem.rsplit('-', 1)[-1]}"
    if engine.docker("image", "inspect", tag, check=False).returncode != 0:
        engine.docker("import", "--change", "CMD [\"python3\"]", str(tarball), tag, timeout=BUILD_TIMEOUT)
    return tag


def runtime_requirements() -> list[str]:
    """pipecast's own dependencies (no extras) as pip requirement strings."""
    requires = importlib.metadata.requires("pipecast") or []
    return sorted(r for r in requires if "extra ==" not in r)


def wheelhouse() -> Path:
    """A cached folder of wheels of pipecast's dependencies for the image's Python and this machine's arch."""
    requirements = runtime_requirements()
    arch = platform.machine()
    recipe = {"requirements": requirements, "python": IMAGE_PYTHON, "arch": arch, "version": RECIPE_VERSION}

    def make(partial: Path) -> None:
        short = IMAGE_PYTHON.replace(".", "")
        platforms = [f"manylinux2014_{arch}", f"manylinux_2_17_{arch}", f"manylinux_2_28_{arch}"]
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(partial), "--only-binary=:all:",
                   "--python-version", IMAGE_PYTHON, "--implementation", "cp", "--abi", f"cp{short}",
                   *[f"--platform={p}" for p in platforms], *requirements]
        result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        if result.returncode != 0:
            raise EngineUnavailable(f"pip download of {requirements} failed: {result.stderr[-2000:]}")

    return cached(f"wheels-{recipe_key(recipe)}", make)


def pipecast_wheel(folder: Path) -> Path:
    """Build pipecast's wheel from this checkout into ``folder``."""
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                             str(folder), str(ROOT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        raise EngineUnavailable(f"pip wheel of pipecast failed: {result.stderr[-2000:]}")
    return next(folder.glob("pipecast-*.whl"))


def build_runtime_image(engine: DockerEngine, parent: str, tag: str) -> str:
    """Build ``tag``: ``parent`` + a virtualenv with pipecast (from this checkout) and its dependencies."""
    with tempfile.TemporaryDirectory(prefix="pipecast-image-") as work:
        context = Path(work)
        wheels = context / "wheels"
        shutil.copytree(wheelhouse(), wheels)
        pipecast_wheel(wheels)
        lines = [f"FROM {parent}", "COPY wheels /tmp/wheels",
                 "RUN python3 -m venv /opt/pipecast && /opt/pipecast/bin/pip install --quiet --no-index "
                 "--no-cache-dir --find-links /tmp/wheels pipecast && rm -rf /tmp/wheels",
                 "ENV PATH=/opt/pipecast/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        _build(engine, context, lines, tag)
    return tag


def image_with_code(engine: DockerEngine, base: str, tag: str, code: Mapping[str, Path]) -> str:
    """Build ``tag``: ``base`` + each folder of ``code`` at ``/code/<name>``, all of them on ``PYTHONPATH``."""
    with tempfile.TemporaryDirectory(prefix="pipecast-image-") as work:
        context = Path(work)
        lines = [f"FROM {base}"]
        for name, folder in sorted(code.items()):
            shutil.copytree(folder, context / "code" / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            lines.append(f"COPY code/{name} /code/{name}")
        lines.append(f"ENV PYTHONPATH={':'.join(f'/code/{name}' for name in sorted(code))}")
        _build(engine, context, lines, tag)
    return tag


def _build(engine: DockerEngine, context: Path, lines: list[str], tag: str) -> None:
    (context / "Dockerfile").write_text("\n".join(lines) + "\n")
    # No network in the build: everything comes from the context (containers may not reach PyPI).
    engine.docker("build", "--network", "none", "--quiet", "--tag", tag, str(context), timeout=BUILD_TIMEOUT)
