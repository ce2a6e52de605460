"""The Docker host over SSH: upload, start, schedule, status and cancel.

The hyperai submit module; paramiko is imported lazily.

HyperAI's own API is not used: a HyperAI instance (or any machine with Docker and an SSH server) is
reached as a plain SSH host. ``submit`` uploads ``compose.yaml`` and ``run.sh`` over SFTP to the remote
folder, checks ``docker compose version``, installs the crontab entry when the pipeline has a schedule,
and starts the run with ``sh run.sh RUN_ID``. Status is ``docker compose ps --all --format json`` over
SSH; cancel is ``docker compose down``. Host keys are checked against a known_hosts file unless the config
says ``insecure_accept_host_key=true``.
"""

from __future__ import annotations

import getpass
import json
import os
import posixpath
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import Bundle, SubmitRequest
from pipecast.targets.compose import param_var
from pipecast.targets.hyperai import HyperAIConnection
from pipecast.targets.hyperai.emit import (
    DOCKER_VAR,
    PROJECT_VAR,
    RUN_SCRIPT,
    project_base,
    run_project,
)

PASSPHRASE_ENV = "PIPECAST_SSH_KEY_PASSPHRASE"  # a passphrase is a credential: only from the environment


@dataclass(frozen=True)
class HostConfig:
    """Where and how to reach the Docker host."""

    host: str
    port: int
    username: str
    key_file: str | None
    known_hosts: str
    insecure_accept_host_key: bool
    remote_dir: str
    docker: str
    timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any], pipeline_name: str,
                    recorded: Mapping[str, Any] | None = None) -> HostConfig:
        """Read ``-c key=value`` config (over what the run store recorded for a run); check every value."""
        known = HyperAIConnection.spec()
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise SubmitError(f"unknown config key(s) {unknown!r} for hyperai; known: {sorted(known)!r}")
        values = {**(recorded or {}), **config}
        host = values.get("host")
        if not host or not isinstance(host, str):
            raise SubmitError("hyperai needs the Docker host: -c host=NAME_OR_ADDRESS (and -c username=…, "
                              "-c key_file=… as needed)")
        port = values.get("port", 22)
        timeout = values.get("timeout", 60)
        insecure = values.get("insecure_accept_host_key", False)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise SubmitError(f"config port={port!r} is not a TCP port number")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise SubmitError(f"config timeout={timeout!r} must be a positive number of seconds")
        if not isinstance(insecure, bool):
            raise SubmitError(f"config insecure_accept_host_key={insecure!r} must be true or false")
        remote_dir = str(values.get("remote_dir") or posixpath.join("pipecast", pipeline_name))
        if any(c in remote_dir for c in "\n\r%"):
            raise SubmitError(f"remote_dir {remote_dir!r} cannot hold a newline or % (cron would misread it)")
        key_file = values.get("key_file")
        return cls(host=host, port=port, username=str(values.get("username") or getpass.getuser()),
                   key_file=os.path.expanduser(str(key_file)) if key_file else None,
                   known_hosts=str(values.get("known_hosts") or "~/.ssh/known_hosts"),
                   insecure_accept_host_key=insecure, remote_dir=remote_dir,
                   docker=str(values.get("docker") or "docker"), timeout=float(timeout))

    @property
    def where(self) -> str:
        """``user@host:port``, for messages."""
        return f"{self.username}@{self.host}:{self.port}"

    def docker_words(self) -> str:
        """The docker command, each word quoted for the remote shell."""
        return " ".join(shlex.quote(word) for word in shlex.split(self.docker))


@contextmanager
def connect(cfg: HostConfig) -> Iterator[Any]:
    """An open ``paramiko.SSHClient`` to the host; every failure becomes a SubmitError saying what to fix."""
    import paramiko

    client = paramiko.SSHClient()
    known_hosts = os.path.expanduser(cfg.known_hosts)
    if os.path.exists(known_hosts):
        client.load_host_keys(known_hosts)
    elif not cfg.insecure_accept_host_key:
        raise SubmitError(f"known_hosts file {known_hosts!r} does not exist, so the host key of {cfg.host!r} "
                          f"cannot be checked; add it (ssh-keyscan -p {cfg.port} {cfg.host}, then compare the "
                          f"fingerprint) or pass -c insecure_accept_host_key=true")
    # Never trust a host key silently: an unknown host is refused unless the user said otherwise, and
    # even then the key is accepted for this connection only (WarningPolicy writes nothing to known_hosts).
    client.set_missing_host_key_policy(paramiko.WarningPolicy() if cfg.insecure_accept_host_key
                                       else paramiko.RejectPolicy())
    try:
        client.connect(cfg.host, port=cfg.port, username=cfg.username, key_filename=cfg.key_file,
                       passphrase=os.environ.get(PASSPHRASE_ENV), timeout=cfg.timeout, banner_timeout=cfg.timeout,
                       auth_timeout=cfg.timeout, look_for_keys=cfg.key_file is None)
    except paramiko.BadHostKeyException as err:
        raise SubmitError(f"the host key of {cfg.host!r} does not match {known_hosts!r}: refusing to connect "
                          f"(if the host was rebuilt, remove its old line with ssh-keygen -R)") from err
    except paramiko.AuthenticationException as err:
        raise SubmitError(f"SSH login to {cfg.where} was refused ({err}); check -c username=… and "
                          f"-c key_file=…, and that the key is in the host's authorized_keys") from err
    except paramiko.SSHException as err:
        text = str(err)
        if "not found in known_hosts" in text:
            raise SubmitError(f"the host key of {cfg.host!r} port {cfg.port} is not in {known_hosts!r}; add it "
                              f"(ssh-keyscan -p {cfg.port} {cfg.host}, then compare the fingerprint) or pass "
                              f"-c insecure_accept_host_key=true") from err
        raise SubmitError(f"SSH to {cfg.where} failed: {text}") from err
    except OSError as err:
        raise SubmitError(f"cannot reach {cfg.host!r} port {cfg.port} over SSH: {err}") from err
    try:
        yield client
    finally:
        client.close()


def run_remote(client: Any, cfg: HostConfig, command: str, *, starts_run: bool = False) -> tuple[int, str, str]:
    """Run ``command`` through the remote user's shell; return (exit status, stdout, stderr).

    A command that times out, or whose SSH session breaks, raises a SubmitError; one that ``starts_run`` raises
    SubmitOutcomeUnknownError, since the run may have started.
    """
    import paramiko

    try:
        _, stdout, stderr = client.exec_command(command, timeout=cfg.timeout)
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        return stdout.channel.recv_exit_status(), out, err
    except (OSError, EOFError, paramiko.SSHException) as err:  # socket.timeout included
        lost = SubmitOutcomeUnknownError if starts_run else SubmitError
        raise lost(f"remote command on {cfg.host!r} did not finish in {cfg.timeout:g}s or its SSH session broke: "
                   f"{command!r}") from err


def _last_line(text: str, code: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit status {code}"


def upload(client: Any, cfg: HostConfig, bundle: Bundle) -> str:
    """Put every bundle file into the remote folder (created if need be); return its absolute path."""
    sftp = client.open_sftp()
    try:
        home = sftp.normalize(".")
        directory = posixpath.normpath(posixpath.join(home, cfg.remote_dir))
        current = "/"
        for part in directory.strip("/").split("/"):
            current = posixpath.join(current, part)
            try:
                sftp.stat(current)
            except OSError:
                sftp.mkdir(current)
        for name, text in bundle.files:
            final = posixpath.join(directory, name)
            partial = f"{final}.pipecast-upload"
            with sftp.open(partial, "w") as handle:
                handle.write(text.encode("utf-8"))
            sftp.posix_rename(partial, final)  # readers (cron) never see a half-written file
            if name == RUN_SCRIPT:
                sftp.chmod(final, 0o755)
        return directory
    except OSError as err:
        raise SubmitError(f"SFTP upload to {cfg.where}:{cfg.remote_dir} failed: {err}") from err
    finally:
        sftp.close()


def check_docker(client: Any, cfg: HostConfig) -> None:
    """Raise a SubmitError naming the host and the fix unless ``docker compose version`` works there."""
    code, out, err = run_remote(client, cfg, f"{cfg.docker_words()} compose version")
    if code == 127:
        raise SubmitError(f"remote host {cfg.host!r} has no Docker: {_last_line(err, code)}; install Docker "
                          f"Engine with the Compose plugin on it, or set -c docker=… to its docker command")
    if code != 0:
        raise SubmitError(f"Docker Compose v2 is not usable on {cfg.host!r}: `{cfg.docker} compose version` "
                          f"failed: {_last_line(err or out, code)}; install the Compose plugin "
                          f"(docker-compose-plugin) there")


def cron_marker(pipeline: ir.Pipeline, directory: str) -> str:
    """The comment that marks the pipeline's crontab entry for ``directory``, so it can be replaced."""
    return f"# pipecast-hyperai {project_base(pipeline.name)} {directory} #"


def cron_line(pipeline: ir.Pipeline, directory: str) -> str:
    """The crontab entry that starts a run on the pipeline's schedule."""
    assert pipeline.schedule is not None
    script = shlex.quote(posixpath.join(directory, RUN_SCRIPT))
    log = shlex.quote(posixpath.join(directory, "cron.log"))
    return f"{pipeline.schedule} sh {script} >>{log} 2>&1 {cron_marker(pipeline, directory)}"


def install_schedule(client: Any, cfg: HostConfig, pipeline: ir.Pipeline, directory: str) -> str:
    """Put the pipeline's line into the remote user's crontab, replacing an earlier one (idempotent)."""
    line = cron_line(pipeline, directory)
    command = (f"(crontab -l 2>/dev/null | grep -v -F -e {shlex.quote(cron_marker(pipeline, directory))}; "
               f"printf '%s\\n' {shlex.quote(line)}) | crontab -")
    code, out, err = run_remote(client, cfg, command)
    if code != 0:
        raise SubmitError(f"installing the schedule in the crontab of {cfg.where} failed: "
                          f"{_last_line(err or out, code)}; install cron there (the `cron` package)")
    return line


def start_run(client: Any, cfg: HostConfig, pipeline: ir.Pipeline, directory: str, parameters: Mapping[str, Any],
              run_id: str, project: str) -> None:
    """``sh run.sh RUN_ID`` in the remote folder, with the run's parameters in its environment."""
    env = {param_var(p.name): render_parameter(p.type, parameters[p.name])
           for p in pipeline.parameters if p.name in parameters}
    env[PROJECT_VAR] = project
    if cfg.docker != "docker":
        env[DOCKER_VAR] = cfg.docker
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    command = f"cd {shlex.quote(directory)} && env {assignments} sh {RUN_SCRIPT} {shlex.quote(run_id)}"
    code, out, err = run_remote(client, cfg, command, starts_run=True)
    if code != 0:
        raise SubmitError(f"starting the run on {cfg.host!r} failed: `docker compose up` said: "
                          f"{_last_line(err or out, code)}")


def parse_ps(text: str) -> list[dict[str, Any]]:
    """``docker compose ps --format json``: a JSON array (Compose < 2.21) or one object per line."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class HyperAIRun(EngineRun):
    """One run: the Compose project ``<pipeline>-<run id>`` on the Docker host.

    Its metadata is what the run store keeps to reconnect (no credentials, no key path).
    """

    poll_interval = 10.0  # each poll is an SSH login

    def __init__(self, *, run_id: str, cfg: HostConfig, directory: str, project: str, services: int,
                 cancelled: bool = False, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(run_id=run_id, target="hyperai", engine_run_id=project, url=None, metadata={
            "host": cfg.host, "port": cfg.port, "username": cfg.username, "remote_dir": directory,
            "docker": cfg.docker, "services": services, **(metadata or {})})
        self.cfg = cfg
        self.directory = directory
        self.project = project
        self.services = services
        self.cancelled = cancelled

    def ps_command(self) -> str:
        """The remote shell command that lists the project's containers as JSON."""
        # By project name alone, away from compose.yaml: loading the file would need the run's variables
        # (${PIPECAST_RUN_ID?...}), while Compose finds a project's containers by its label.
        return (f"cd / && {self.cfg.docker_words()} compose --project-name {shlex.quote(self.project)} "
                "ps --all --format json")

    def containers(self) -> list[dict[str, Any]]:
        """The project's containers on the host (``docker compose ps --all``), in a new SSH session."""
        with connect(self.cfg) as client:
            code, out, err = run_remote(client, self.cfg, self.ps_command())
        if code != 0:
            raise SubmitError(f"`docker compose ps` failed on {self.cfg.host!r}: {_last_line(err or out, code)}")
        return parse_ps(out)

    def fetch_status(self) -> RunStatus:
        """The run's status from its containers on the host."""
        return self.status_of(self.containers())

    def status_of(self, containers: list[dict[str, Any]]) -> RunStatus:
        """The run's status from its containers' states and exit codes."""
        if not containers:
            self.detail = "" if self.cancelled else f"no containers of project {self.project!r} on {self.cfg.host!r}"
            return RunStatus.CANCELLED if self.cancelled else RunStatus.UNKNOWN
        failed = [c for c in containers if c.get("State") in ("exited", "dead") and c.get("ExitCode", 0) != 0]
        if failed:
            first = failed[0]
            self.detail = f"step service {first.get('Service')!r} exited with {first.get('ExitCode')}"
            return RunStatus.FAILED
        done = [c for c in containers if c.get("State") == "exited"]
        self.detail = ""
        if len(done) == len(containers) and len(containers) >= self.services:
            return RunStatus.SUCCEEDED
        if any(c.get("State") in ("running", "restarting", "paused") for c in containers) or done:
            return RunStatus.RUNNING
        return RunStatus.PENDING

    def cancel(self) -> None:
        """Stop and remove the project's containers (``docker compose down``)."""
        command = (f"{self.cfg.docker_words()} compose --project-name {shlex.quote(self.project)} down "
                   f"--remove-orphans")
        with connect(self.cfg) as client:
            code, out, err = run_remote(client, self.cfg, command)
        if code != 0:
            raise SubmitError(f"`docker compose down` failed on {self.cfg.host!r}: {_last_line(err or out, code)}")
        self.cancelled = True


def submit(request: SubmitRequest) -> HyperAIRun:
    """Upload, check Docker, install the schedule, start the run; return it with how to reach it again."""
    pipeline, run_id = request.pipeline, request.run_id
    cfg = HostConfig.from_config(request.config, pipeline.name)
    project = run_project(pipeline.name, run_id)
    with connect(cfg) as client:
        directory = upload(client, cfg, request.bundle)
        check_docker(client, cfg)
        schedule = install_schedule(client, cfg, pipeline, directory) if pipeline.schedule else None
        # One service per step; the project's name follows from the run id, so a lost start can be asked about.
        run = HyperAIRun(run_id=run_id, cfg=cfg, directory=directory, project=project, services=len(pipeline.steps),
                         metadata={"crontab": schedule})
        request.note(engine_run_id=project, **run.metadata)
        try:
            start_run(client, cfg, pipeline, directory, request.parameters, run_id, project)
            lost: SubmitOutcomeUnknownError | None = None
        except SubmitOutcomeUnknownError as err:
            lost = err
    if lost is not None:
        _started_despite(run, lost)
    return run


def _started_despite(run: HyperAIRun, lost: SubmitOutcomeUnknownError) -> None:
    """Whether a start whose answer never came started the run: its Compose project has containers.

    The project's name comes from the run id, so a new SSH session can ask Docker for it. Containers of
    the project mean the run exists (it is tracked as usual); none mean it did not start.
    """
    try:
        containers = run.containers()
    except SubmitError as err:
        raise SubmitOutcomeUnknownError(f"{lost}; and asking the host whether the run started failed too ({err}): "
                                        f"`pipecast runs wait {run.run_id}` asks again") from err
    if not containers:
        raise SubmitError(f"{lost}; the host has no container of project {run.project!r}: the run did not "
                          "start") from lost


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> HyperAIRun:
    """The run of a record; connection config (key, known_hosts) comes from ``config`` again."""
    metadata = record.get("metadata") or {}
    recorded = {k: metadata[k] for k in ("host", "port", "username", "remote_dir", "docker") if k in metadata}
    cfg = HostConfig.from_config(config, str(record.get("pipeline")), recorded)
    # A run whose start went unanswered may have no engine id recorded: its project name follows from its id.
    project = str(record.get("engine_run_id") or run_project(str(record.get("pipeline")), str(record["id"])))
    # A cancelled run has no containers left: without this, its status would read as unknown.
    return HyperAIRun(run_id=record["id"], cfg=cfg, directory=cfg.remote_dir, project=project,
                      services=int(metadata.get("services", 0)), cancelled=record.get("status") == "cancelled",
                      metadata={"crontab": metadata.get("crontab")})
