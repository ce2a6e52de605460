"""A stand-in ``docker`` CLI on the SSH test host (this machine has no Docker engine).

It logs every call (argv, working folder, the ``PIPECAST_*`` environment) to ``$FAKE_DOCKER_STATE/calls.jsonl``.
``compose version`` answers like Compose v2. ``compose … up --detach`` runs the project's services in
``depends_on`` order the way Compose would (interpolation and bind mounts by the local_docker tests'
``compose_replay``), then records each container's state and exit code; ``compose … ps --all --format json``
prints those records as Compose does (one JSON object a line; the project is found by its name alone, as
Compose finds it by its label); ``compose … down`` removes them. Unlike real Compose, ``up --detach`` returns
only after the services ran, so a test can read the outputs right away. When ``$FAKE_DOCKER_STATE/up-hangs``
holds a number of seconds, ``up`` then hangs that long after the work (its pid in ``up.pid``), as an answer
that never comes in time. While ``$FAKE_DOCKER_STATE/ps-fails`` exists, ``ps`` fails as with no engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.targets.local_docker import replay as compose_replay


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def main(argv: list[str]) -> int:
    state = Path(os.environ["FAKE_DOCKER_STATE"])
    with open(state / "calls.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps({"argv": argv, "cwd": os.getcwd(),
                              "env": {k: v for k, v in os.environ.items() if k.startswith("PIPECAST_")}}) + "\n")
    if argv[:2] == ["compose", "version"]:
        print("Docker Compose version v2.39.1")
        return 0
    project = _option(argv, "--project-name")
    containers = state / f"ps-{project}.jsonl"
    if argv[:1] == ["compose"] and "up" in argv:
        document = compose_replay.load(Path(_option(argv, "--file") or "compose.yaml").read_text("utf-8"),
                                       os.environ)
        base = {k: v for k, v in os.environ.items() if not k.startswith("PIPECAST_")}
        records, failed = [], False
        for name in compose_replay.service_order(document):
            if failed:  # service_completed_successfully never holds: the service is created, never started
                records.append({"Service": name, "State": "created", "ExitCode": 0})
                continue
            service = document["services"][name]
            result = subprocess.run(compose_replay.service_argv(service),
                                    env={**base, **compose_replay.service_env(service, os.environ)},
                                    capture_output=True, text=True, timeout=300)
            (state / f"{name}.log").write_text(result.stdout + result.stderr, encoding="utf-8")
            records.append({"Service": name, "State": "exited", "ExitCode": result.returncode})
            failed = result.returncode != 0
        containers.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        hang = state / "up-hangs"
        if hang.exists():
            (state / "up.pid").write_text(str(os.getpid()), encoding="utf-8")
            time.sleep(float(hang.read_text()))
        return 0
    if argv[:1] == ["compose"] and "ps" in argv:
        if (state / "ps-fails").exists():
            sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock\n")
            return 1
        sys.stdout.write(containers.read_text("utf-8") if containers.exists() else "")
        return 0
    if argv[:1] == ["compose"] and "down" in argv:
        containers.unlink(missing_ok=True)
        return 0
    sys.stderr.write(f"fake docker: unexpected {argv}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
