"""A real OpenSSH server on 127.0.0.1 for the hyperai tests, started and stopped by the test.

Debian's ``openssh-server`` provides ``/usr/sbin/sshd``; when it is missing the helper installs it (and
``cron``, for ``crontab``) with ``apt-get`` itself, bounded in time, so a fresh machine (or CI) needs no
manual step. That needs root, which the test machines are. The server gets a generated host key, one
authorized client key, its own config (no PAM, no passwords, ``StrictModes no``), a free port, a PID file
and a log file, all in a temporary folder; it is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
INSTALL_TIMEOUT = 600


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(command, env=env, capture_output=True, timeout=INSTALL_TIMEOUT).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=INSTALL_TIMEOUT, check=True)
        subprocess.run(command, env=env, capture_output=True, timeout=INSTALL_TIMEOUT, check=True)


def ensure_installed() -> None:
    """Install openssh-server and cron from Debian's packages if this machine lacks them."""
    missing = [package for package, program in (("openssh-server", SSHD), ("cron", "crontab"))
               if not (os.path.exists(program) if program.startswith("/") else shutil.which(program))]
    if missing:
        _apt_install(*missing)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SshServer:
    """A running sshd: where it listens and the files a client needs."""

    port: int
    folder: Path
    client_key: Path
    known_hosts: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def config(self) -> dict[str, object]:
        """The ``-c`` config of the hyperai target for this server."""
        return {"host": "127.0.0.1", "port": self.port, "username": os.environ.get("USER") or "root",
                "key_file": str(self.client_key), "known_hosts": str(self.known_hosts), "timeout": 30}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start(folder: Path) -> SshServer:
    """Start sshd on 127.0.0.1 with keys and config made in ``folder``."""
    ensure_installed()
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=60)
    authorized = folder / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    port = _free_port()
    known_hosts = folder / "known_hosts"
    host_public = host_key.with_suffix(".pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    config = folder / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {host_key}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "StrictModes no",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
        "",
    ]))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True, capture_output=True, timeout=30)
    log = folder / "sshd.log"
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(log, "wb"))
    server = SshServer(port, folder, client_key, known_hosts, log, process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"sshd did not listen on port {port} within 20s: {log.read_text()}")
