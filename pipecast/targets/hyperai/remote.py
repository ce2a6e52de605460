"""The Docker host over SSH: upload, start, schedule, status and cancel.

The hyperai submit module; paramiko is imported lazily.

HyperAI's own API is not used: a HyperAI instance (or any machine with Docker and an SSH server) is
reached as a plain SSH host. ``submit`` uploads ``compose.yaml`` and ``run.sh`` over SFTP to the remote
folder, checks ``docker compose version``, installs the crontab entry when the pipeline has a schedule,
and starts the run with ``sh run.sh RUN_ID``, which returns at once (``docker compose up`` goes on in a
session of its own on the host; its log, process id and exit status are in ``runs/<project>/``). Status
is those files plus ``docker compose ps --all --format json`` over SSH; cancel marks the run cancelled in
that folder, stops ``compose up`` and runs ``docker compose down``. Host keys are checked against a
known_hosts file unless the config says ``insecure_accept_host_key=true``.
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
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import Bundle, SubmitRequest
from pipecast.targets.compose import CONTAINER_ARTIFACT_ROOT, has_exit_steps, param_var, service_names
from pipecast.targets.hyperai import HyperAIConnection
from pipecast.targets.hyperai.emit import (
    DOCKER_VAR,
    PROJECT_VAR,
    RUN_SCRIPT,
    RUNS_DIR,
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
        docker = str(values.get("docker") or "docker")
        if any(c in docker for c in "\n\r%"):
            raise SubmitError(f"docker={docker!r} cannot hold a newline or % (cron would misread it)")
        key_file = values.get("key_file")
        return cls(host=host, port=port, username=str(values.get("username") or getpass.getuser()),
                   key_file=os.path.expanduser(str(key_file)) if key_file else None,
                   known_hosts=str(values.get("known_hosts") or "~/.ssh/known_hosts"),
                   insecure_accept_host_key=insecure, remote_dir=remote_dir,
                   docker=docker, timeout=float(timeout))

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


def cron_line(pipeline: ir.Pipeline, directory: str, docker: str = "docker") -> str:
    """The crontab entry that starts a run on the pipeline's schedule with the configured docker command."""
    assert pipeline.schedule is not None
    script = shlex.quote(posixpath.join(directory, RUN_SCRIPT))
    log = shlex.quote(posixpath.join(directory, "cron.log"))
    # cron runs the line with /bin/sh: a VAR=value prefix hands run.sh the docker command submit was given.
    env = "" if docker == "docker" else f"{DOCKER_VAR}={shlex.quote(docker)} "
    return f"{pipeline.schedule} {env}sh {script} >>{log} 2>&1 {cron_marker(pipeline, directory)}"


def install_schedule(client: Any, cfg: HostConfig, pipeline: ir.Pipeline, directory: str) -> str:
    """Put the pipeline's line into the remote user's crontab, replacing an earlier one (idempotent)."""
    line = cron_line(pipeline, directory, cfg.docker)
    command = (f"(crontab -l 2>/dev/null | grep -v -F -e {shlex.quote(cron_marker(pipeline, directory))}; "
               f"printf '%s\\n' {shlex.quote(line)}) | crontab -")
    code, out, err = run_remote(client, cfg, command)
    if code != 0:
        raise SubmitError(f"installing the schedule in the crontab of {cfg.where} failed: "
                          f"{_last_line(err or out, code)}; install cron there (the `cron` package)")
    return line


def start_run(client: Any, cfg: HostConfig, pipeline: ir.Pipeline, directory: str, parameters: Mapping[str, Any],
              run_id: str, project: str) -> None:
    """``sh run.sh RUN_ID`` in the remote folder, with the run's parameters in its environment.

    run.sh checks the file loads with the run's values, starts ``docker compose up`` in a session of its own
    and returns at once, so this does not wait for any step.
    """
    env = {param_var(p.name): render_parameter(p.type, parameters[p.name])
           for p in pipeline.parameters if p.name in parameters}
    env[PROJECT_VAR] = project
    if cfg.docker != "docker":
        env[DOCKER_VAR] = cfg.docker
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    command = f"cd {shlex.quote(directory)} && env {assignments} sh {RUN_SCRIPT} {shlex.quote(run_id)}"
    code, out, err = run_remote(client, cfg, command, starts_run=True)
    if code != 0:
        raise SubmitError(f"starting the run on {cfg.host!r} failed: {RUN_SCRIPT} said: "
                          f"{_last_line(err or out, code)}")


def parse_ps(text: str) -> list[dict[str, Any]]:
    """``docker compose ps --format json``: a JSON array (Compose < 2.21) or one object per line."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


_SPLIT = "--- pipecast: docker compose ps ---"


@dataclass(frozen=True)
class HostView:
    """What the host says about a run: the marks in ``runs/<project>/`` and the project's containers."""

    marks: frozenset[str]  # started, cancelled, given-up
    exit_code: int | None  # of the background `docker compose up`, once it ended
    log_tail: str
    containers: list[dict[str, Any]]


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
        # A pipeline with exit handlers or hooks: what its cancel needs to run them (see wind_down_script).
        self.on_cancel: dict[str, Any] | None = (metadata or {}).get("on_cancel")
        self.still_running_after_cancel = False  # its handlers run on after cancel() returned

    @property
    def state_dir(self) -> str:
        """``runs/<project>`` in the remote folder (relative to the login's home when the folder is)."""
        return posixpath.join(self.directory, RUNS_DIR, self.project)

    def ps_command(self) -> str:
        """The remote command that prints the run's marks, then its containers as JSON."""
        state = shlex.quote(self.state_dir)
        marks = (f"{{ [ ! -e {state}/pid ] || echo started; [ ! -e {state}/cancelled ] || echo cancelled; "
                 f"[ ! -e {state}/cancelling ] || echo cancelling; "
                 f"[ ! -e {state}/given-up ] || echo given-up; [ ! -e {state}/exit ] || "
                 f"{{ echo \"exit $(cat {state}/exit)\"; tail -n 3 {state}/log | sed 's/^/log /'; }}; }} 2>/dev/null")
        # By project name alone, away from compose.yaml: loading the file would need the run's variables
        # (${PIPECAST_RUN_ID?...}), while Compose finds a project's containers by its label.
        return (f"{marks}; echo {shlex.quote(_SPLIT)}; cd / && {self.cfg.docker_words()} compose --project-name "
                f"{shlex.quote(self.project)} ps --all --format json")

    def probe(self) -> HostView:
        """The run's marks and containers on the host, in a new SSH session."""
        with connect(self.cfg) as client:
            code, out, err = run_remote(client, self.cfg, self.ps_command())
        head, _, ps = out.partition(_SPLIT + "\n")
        if code != 0:
            raise SubmitError(f"`docker compose ps` failed on {self.cfg.host!r}: {_last_line(err or ps, code)}")
        marks, exit_code, log = set(), None, []
        for line in head.splitlines():
            word, _, rest = line.partition(" ")
            if word == "exit":
                exit_code = int(rest) if rest.strip().isdigit() else -1
            elif word == "log":
                log.append(rest)
            elif word:
                marks.add(word)
        return HostView(frozenset(marks), exit_code, "\n".join(log), parse_ps(ps))

    def containers(self) -> list[dict[str, Any]]:
        """The project's containers on the host (``docker compose ps --all``)."""
        return self.probe().containers

    def fetch_status(self) -> RunStatus:
        """The run's status from its marks and containers on the host."""
        return self.status_of(self.probe())

    def status_of(self, view: HostView) -> RunStatus:
        """The run's status from what the host says."""
        containers = view.containers
        if self.cancelled or "cancelled" in view.marks:
            self.cancelled, self.detail = True, ""
            return RunStatus.CANCELLED
        if "cancelling" in view.marks:  # the exit handlers and hooks of a cancelled run still run
            self.detail = "cancelled: the exit handlers and hooks run"
            return RunStatus.RUNNING
        failed = [c for c in containers if c.get("State") in ("exited", "dead") and c.get("ExitCode", 0) != 0]
        if failed:
            first = failed[0]
            self.detail = f"step service {first.get('Service')!r} exited with {first.get('ExitCode')}"
            # Exit handlers and hooks (every dependency optional) run after a failed step: the run ends when no
            # container runs and `compose up` has ended (or never had more to start).
            return RunStatus.RUNNING if _still_going(view) else RunStatus.FAILED
        if view.exit_code:  # `compose up` failed before any step did: an image that cannot be pulled, …
            self.detail = f"docker compose up failed: {_last_line(view.log_tail, view.exit_code)}"
            return RunStatus.FAILED
        if "given-up" in view.marks and "started" not in view.marks:
            self.detail = "submit gave this run up before it started"
            return RunStatus.FAILED
        if not containers:
            self.detail = "" if "started" in view.marks else \
                f"no run {self.project!r} on {self.cfg.host!r} ({self.state_dir} is missing)"
            return RunStatus.PENDING if "started" in view.marks else RunStatus.UNKNOWN
        done = [c for c in containers if c.get("State") == "exited"]
        self.detail = ""
        if len(done) == len(containers) and len(containers) >= self.services:
            return RunStatus.SUCCEEDED
        if any(c.get("State") in ("running", "restarting", "paused") for c in containers) or done:
            return RunStatus.RUNNING
        return RunStatus.PENDING

    def cancel_command(self) -> str:
        """Mark the run cancelled on the host, stop its `compose up` (its own process group), remove it.

        With exit handlers or hooks: mark it cancelling, stop its `compose up`, and wind it down on the host in a
        session of its own (:func:`wind_down_script`), which marks it cancelled once the handlers have run.
        """
        state = shlex.quote(self.state_dir)
        stop_up = (f"{{ [ -e {state}/exit ] || [ ! -e {state}/pid ] || kill -TERM -\"$(cat {state}/pid)\" "
                   f"2>/dev/null || true; }}")
        if self.on_cancel:
            script = wind_down_script(self.cfg.docker_words(), self.project, self.on_cancel)
            # The state folder by its absolute path: the wind-down runs from / (the login's home may be relative).
            return (f"mkdir -p {state} && : >{state}/cancelling && {stop_up} && state=$(cd {state} && pwd) && "
                    f"cd / && {{ nohup setsid sh -c {shlex.quote(script)} sh \"$state\" >\"$state/cancel.log\" "
                    f"2>&1 </dev/null & }} && echo winding down")  # only the wind-down in the background
        return (f"mkdir -p {state} && : >{state}/cancelled && {stop_up} && cd / && {self.cfg.docker_words()} "
                f"compose --project-name {shlex.quote(self.project)} down --remove-orphans")

    def cancel(self) -> None:
        """Cancel the run: marked on the host first, so every later status reads cancelling or cancelled.

        A run with exit handlers or hooks reads running until they have run (as ``pipecast run``'s cancel).
        """
        with connect(self.cfg) as client:
            code, out, err = run_remote(client, self.cfg, self.cancel_command())
        if code != 0:
            raise SubmitError(f"cancelling {self.project!r} on {self.cfg.host!r} failed: "
                              f"{_last_line(err or out, code)}")
        if self.on_cancel:
            self.still_running_after_cancel = True
            self.detail = "cancelled: the exit handlers and hooks run"
        else:
            self.cancelled = True

    def logs(self, step: str | None = None, follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """The steps' container logs on the host (:mod:`pipecast.targets.compose_ssh_logs`)."""
        from pipecast.targets.compose_ssh_logs import hyperai_logs

        return hyperai_logs(self, step, follow, timeout)


EXIT_GRACE_SECONDS = 300  # how long exit handlers and hooks may run after a cancel (pipecast run's grace)
# The host folder mounted as the artifact root (none for an object store), as `docker inspect --format` reads it.
_ARTIFACT_MOUNT = ("{{range .Mounts}}{{if eq .Destination " + json.dumps(CONTAINER_ARTIFACT_ROOT) +
                   "}}{{.Source}}{{end}}{{end}}")


def cancel_plan(pipeline: ir.Pipeline, run_id: str) -> dict[str, Any] | None:
    """What a cancel of a run with exit handlers or hooks needs, kept in the run's metadata (None without them).

    ``steps``: each ordinary step's service, name and record folder (relative to the artifact root); ``exits``:
    the handlers' and hooks' services in the pipeline's order.
    """
    if not has_exit_steps(pipeline):
        return None
    services = service_names(pipeline, "hyperai")
    store = ArtifactStore("file:///root")  # only for the layout: folders relative to the root
    steps = [[services[s.name], s.name, store.step_dir(pipeline.name, run_id, s.name)[len("/root/"):]]
             for s in pipeline.steps if s.trigger is ir.Trigger.ALL_SUCCESS]
    return {"steps": steps, "exits": [services[s.name] for s in pipeline.steps
                                      if s.trigger is not ir.Trigger.ALL_SUCCESS]}


def wind_down_script(docker: str, project: str, plan: Mapping[str, Any]) -> str:
    """The host's part of a cancel with exit handlers or hooks (``sh -c SCRIPT sh STATE``), as ``pipecast run``'s.

    Once ``compose up`` has ended: stop the ordinary steps (``docker stop``'s SIGTERM: each running one records
    itself cancelled), record every other one without a record cancelled (in the host folder mounted as the
    artifact root), start the handlers and hooks whose containers have not run, one after the other in the
    pipeline's order, within :data:`EXIT_GRACE_SECONDS` in all; then mark the run cancelled and remove it.
    Their runtime builds status ``cancelled`` from the records; on_failure runs, on_success skips itself.
    """
    quoted = shlex.quote(project)
    label = f"--filter label=com.docker.compose.project={quoted}"
    lines = [
        'state="$1"; pid=$(cat "$state/pid" 2>/dev/null || true); n=0',
        '# `compose up` got SIGTERM: once it has ended, nothing new starts.',
        'while [ -n "$pid" ] && kill -0 -"$pid" 2>/dev/null && [ "$n" -lt 600 ]; do sleep 0.1; n=$((n+1)); done',
        f"{docker} compose --project-name {quoted} stop {' '.join(shlex.quote(s) for s, _, _ in plan['steps'])}",
        f"first=$({docker} ps --all --quiet {label} | head -n 1)",
        f"folder=$([ -z \"$first\" ] || {docker} inspect --format {shlex.quote(_ARTIFACT_MOUNT)} \"$first\")",
        'at=$(date -u +%Y-%m-%dT%H:%M:%S.000+00:00)',
        'record() { [ -e "$folder/$1/meta.json" ] || { mkdir -p "$folder/$1" && printf \'{"step": "%s", '
        '"status": "cancelled", "error": "the run was cancelled", "ended_at": "%s"}\\n\' "$2" "$at" '
        '>"$folder/$1/meta.json"; }; }',
        'if [ -n "$folder" ]; then',
        *[f"  record {shlex.quote(folder)} {shlex.quote(step)}" for _, step, folder in plan["steps"]],
        "fi",
        f"end=$(( $(date +%s) + {EXIT_GRACE_SECONDS} ))",
        f"for service in {' '.join(shlex.quote(s) for s in plan['exits'])}; do",
        f"  id=$({docker} ps --all --quiet {label} --filter label=com.docker.compose.service=\"$service\")",
        '  [ -n "$id" ] || continue',
        f"  [ \"$({docker} inspect --format '{{{{.State.Status}}}}' \"$id\")\" != created ] || {docker} start \"$id\"",
        '  left=$(( end - $(date +%s) )); [ "$left" -gt 0 ] || break',
        f"  timeout \"$left\" {docker} wait \"$id\" || break",
        "done",
        ': >"$state/cancelled"',
        f"{docker} compose --project-name {quoted} down --remove-orphans",
    ]
    return "\n".join(lines) + "\n"


def _still_going(view: HostView) -> bool:
    """Whether a container of the run still runs, or `compose up` is still on and may start a created one."""
    states = {c.get("State") for c in view.containers}
    return bool(states & {"running", "restarting", "paused"}) or (
        "created" in states and "started" in view.marks and view.exit_code is None)


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
        plan = cancel_plan(pipeline, run_id)
        run = HyperAIRun(run_id=run_id, cfg=cfg, directory=directory, project=project, services=len(pipeline.steps),
                         metadata={"crontab": schedule, **({"on_cancel": plan} if plan else {})})
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
    """Whether a start whose answer never came started the run, asked in a new SSH session.

    run.sh claims ``runs/<project>/`` with ``mkdir`` before it starts anything. Claiming it here first
    settles the question for good: if this claim wins, the run never starts (run.sh will find the folder
    taken); if run.sh's won, the run started and is tracked as usual.
    """
    state = shlex.quote(run.state_dir)
    command = (f"mkdir -p {shlex.quote(posixpath.join(run.directory, RUNS_DIR))} && "
               f"if mkdir {state} 2>/dev/null; then : >{state}/given-up; echo given-up; else echo started; fi")
    try:
        with connect(run.cfg) as client:
            code, out, err = run_remote(client, run.cfg, command)
        if code != 0:
            raise SubmitError(f"`{command}` failed: {_last_line(err or out, code)}")
    except SubmitError as err:
        raise SubmitOutcomeUnknownError(f"{lost}; and asking the host whether the run started failed too ({err}): "
                                        f"`pipecast runs wait {run.run_id}` asks again") from err
    if out.strip() == "given-up":
        raise SubmitError(f"{lost}; the run had not started, and now never will ({run.state_dir} on "
                          f"{run.cfg.host!r} says so)") from lost


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
                      metadata={"crontab": metadata.get("crontab"),
                                **({"on_cancel": metadata["on_cancel"]} if metadata.get("on_cancel") else {})})
