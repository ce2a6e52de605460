"""Step logs of a Compose project (local_docker here, hyperai over SSH): ``docker compose logs``.

A run is a Compose project; each step is a service whose name is the step's under the Compose naming rule.
The project's containers are listed with ``docker compose --project-name P ps --all --format json`` and read
in the order they started (``docker inspect``'s ``State.StartedAt``: Compose creates every container of a
project at once, so creation says nothing; one never started comes last), one service at a time, with
``docker compose --project-name P logs --no-color --no-log-prefix [--follow] SERVICE`` (by project name alone,
away from ``compose.yaml``, whose variables only the run had). ``--follow`` streams a service's log until its
container stops. How a command is run (here, or over SSH) is the caller's: :class:`ComposeHost`.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipecast.compiler.naming import rule_for
from pipecast.errors import SubmitError
from pipecast.runs.logs import Deadline, StepLog, engine_logs


def ps_argv(docker: Sequence[str], project: str) -> list[str]:
    """The command that lists every container of ``project`` as JSON."""
    return [*docker, "compose", "--project-name", project, "ps", "--all", "--format", "json"]


def logs_argv(docker: Sequence[str], project: str, service: str, follow: bool) -> list[str]:
    """The command that prints (``follow``: streams) one service's log, without colours or prefixes."""
    return [*docker, "compose", "--project-name", project, "logs", "--no-color", "--no-log-prefix",
            *(["--follow"] if follow else []), service]


def inspect_argv(docker: Sequence[str], containers: Sequence[str]) -> list[str]:
    """The command that prints each container's name and start time (``0001-01-01...`` if it never started)."""
    return [*docker, "inspect", "--format", "{{.Name}} {{.State.StartedAt}}", *containers]


def parse_ps(text: str) -> list[dict[str, Any]]:
    """``ps --format json``: one JSON object a line (Compose >= 2.21) or one JSON array (older releases)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class ComposeHost:
    """How docker commands run: ``output(argv)`` returns one's stdout, ``lines(argv)`` streams its output lines.

    The default runs them on this machine; hyperai passes functions that run them over SSH.
    """

    docker: Sequence[str] = ("docker",)
    output: Callable[[list[str]], str] = field(default=lambda argv: _output(argv))
    lines: Callable[[list[str], Deadline | None], Iterator[str]] = field(default=lambda argv, d: _lines(argv, d))


def compose_logs(host: ComposeHost, project: str, run_id: str, run_over: Callable[[], bool], step: str | None,
                 follow: bool, timeout: float | None, *, gone: str = "") -> Iterator[str]:
    """The project's service logs: ``step``'s service, else each service's in the order its container started.

    ``gone`` says why a project may have no containers any more (it is said when it has none).
    """
    service = rule_for("local_docker").apply(step) if step is not None else None

    def listing() -> list[StepLog]:
        containers = [c for c in parse_ps(host.output(ps_argv(host.docker, project))) if c.get("Name")]
        started: dict[str, str] = {}
        if containers:
            for line in host.output(inspect_argv(host.docker, [str(c["Name"]) for c in containers])).splitlines():
                name, _, when = line.strip().partition(" ")
                started[name.lstrip("/")] = "" if when.startswith("0001-") else when
        containers.sort(key=lambda c: (not started.get(str(c["Name"])), started.get(str(c["Name"]), ""),
                                       str(c.get("Service") or "")))
        return [StepLog(key=str(c["Name"]), step=str(c["Service"]),
                        read=_reader(host, project, str(c["Service"]))) for c in containers if c.get("Service")]

    def checked() -> Iterator[str]:
        if not follow and not listing():
            raise SubmitError(f"no containers of Compose project {project!r}{f': {gone}' if gone else ''}")
        yield from engine_logs(run_id, listing, run_over, service, follow, timeout)

    return checked()


def _reader(host: ComposeHost, project: str, service: str) -> Callable[[Deadline | None], Iterator[str]]:
    return lambda deadline: host.lines(logs_argv(host.docker, project, service, deadline is not None), deadline)


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SubmitError(f"no {argv[0]!r} on PATH: the run's logs are read with the docker CLI") from None
    if done.returncode != 0:
        raise SubmitError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _lines(argv: list[str], deadline: Deadline | None) -> Iterator[str]:
    """``argv``'s output lines as they come; the process is stopped at the deadline or when reading stops."""
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SubmitError(f"no {argv[0]!r} on PATH: the run's logs are read with the docker CLI") from None
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.put(raw)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            try:
                raw = lines.get(timeout=1.0)
            except queue.Empty:
                if deadline is not None and deadline.expired():
                    return
                continue
            if raw is None:
                break
            yield raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if process.wait(timeout=60) != 0:
            raise SubmitError(f"{' '.join(argv)} exited with status {process.returncode}")
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def local_docker_logs(record: Mapping[str, Any], step: str | None, follow: bool, timeout: float | None,
                      read: Callable[[str], Mapping[str, Any]], host: ComposeHost | None = None) -> Iterator[str]:
    """A ``pipecast run --target local_docker`` run's logs (its project is named after the run id).

    While the run goes on, from its containers; once it has ended (its containers removed), from the
    ``<step>.log`` files the run wrote into the ``logs`` folder its record names.
    """
    import os

    from pipecast.runs.logs import local_logs

    run_id = str(record["id"])
    saved = (record.get("metadata") or {}).get("logs")
    if record["status"] != "running" and saved and os.path.isdir(saved):
        return local_logs({**record, "metadata": {**record["metadata"], "log_dir": saved}}, step, False, None, read)
    project = str((record.get("metadata") or {}).get("compose_project") or rule_for("dns1123_label").apply(run_id))
    gone = ("local_docker removes a run's containers when the run ends (docker compose down), so their logs are "
            "there while it runs: follow it with --follow from another terminal")
    return compose_logs(host or ComposeHost(), project, run_id, lambda: read(run_id)["status"] != "running", step,
                        follow, timeout, gone=gone)
