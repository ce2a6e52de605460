"""hyperai's step logs: :mod:`pipecast.targets.compose_logs` with the docker commands run over SSH.

Each command runs in a session of its own on the Docker host, through the remote user's shell, with the docker
command the run was submitted with (``-c docker='sudo docker'``), from ``/`` and by project name (never the
run's ``compose.yaml``, whose variables only the run had). A followed log is read as the remote command writes
it; at the deadline, or when reading stops, the session is closed.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipecast.errors import SubmitError
from pipecast.runs.logs import Deadline, LineBuffer
from pipecast.targets.compose_logs import ComposeHost, compose_logs

if TYPE_CHECKING:
    from pipecast.targets.hyperai.remote import HostConfig


def remote_command(argv: list[str]) -> str:
    """The remote shell command for ``argv`` (every word quoted), run from ``/``."""
    return f"cd / && {shlex.join(argv)}"


def ssh_host(cfg: HostConfig) -> ComposeHost:
    """A :class:`ComposeHost` whose commands run on ``cfg``'s host over SSH."""
    from pipecast.targets.hyperai.remote import connect, run_remote

    def output(argv: list[str]) -> str:
        with connect(cfg) as client:
            code, out, err = run_remote(client, cfg, remote_command(argv))
        if code != 0:
            raise SubmitError(f"{shlex.join(argv)} failed on {cfg.host!r}: {(err or out).strip() or code}")
        return out

    def lines(argv: list[str], deadline: Deadline | None) -> Iterator[str]:
        with connect(cfg) as client:
            yield from stream_remote(client, remote_command(argv), deadline, cfg.timeout)

    return ComposeHost(docker=tuple(shlex.split(cfg.docker)), output=output, lines=lines)


def stream_remote(client: Any, command: str, deadline: Deadline | None, timeout: float) -> Iterator[str]:
    """The output lines (stdout and stderr mixed, as docker writes them) of ``command`` as they come."""
    channel = client.get_transport().open_session()
    try:
        channel.set_combine_stderr(True)
        channel.settimeout(1.0)  # wake up every second to look at the deadline
        channel.exec_command(command)
        buffer = LineBuffer()
        quiet = 0.0
        while True:
            try:
                chunk = channel.recv(65536)
            except TimeoutError:
                quiet += 1.0
                if deadline is not None and deadline.expired():
                    break
                if deadline is None and quiet >= timeout:
                    raise SubmitError(f"no answer to {command!r} in {timeout:g}s") from None
                continue
            if not chunk:
                break
            quiet = 0.0
            yield from buffer.feed(chunk)
        yield from buffer.rest()
        if channel.exit_status_ready() and channel.recv_exit_status() not in (0, -1):
            raise SubmitError(f"{command!r} exited with status {channel.recv_exit_status()}")
    finally:
        channel.close()


def hyperai_logs(run: Any, step: str | None, follow: bool, timeout: float | None) -> Iterator[str]:
    """A hyperai run's step logs (``run``: its :class:`~pipecast.targets.hyperai.remote.HyperAIRun`)."""
    gone = f"the run's containers are no longer on {run.cfg.host!r} (removed by a cancel or by hand)"
    return compose_logs(ssh_host(run.cfg), run.project, run.run_id, lambda: run.fetch_status().finished, step,
                        follow, timeout, gone=gone)
