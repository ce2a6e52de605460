"""What the ``hyperai`` target writes: ``compose.yaml`` and ``run.sh`` (pure: no I/O, no SDK).

``compose.yaml`` is the Compose project of :mod:`pipecast.targets.compose` (one service per step).
``run.sh`` starts one run of it on the Docker host and returns at once: ``docker compose up --detach``
still waits for each upstream step to finish (``service_completed_successfully``), so it runs in a
session of its own (``nohup setsid``), detached from the shell and the SSH connection that started it,
with its output, process id and exit status in ``runs/<project>/`` beside ``compose.yaml``.
``pipecast submit`` runs it over SSH with the run's id and parameter values in its environment, and the
crontab entry runs it on the pipeline's schedule with the parameters' defaults. Default values are
written with :func:`shlex.quote`, so they stay data whatever they contain.
"""

from __future__ import annotations

import re
import shlex

from pipecast.compiler import ir
from pipecast.compiler.naming import rule_for
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import Bundle, EmitContext
from pipecast.targets.compose import (
    ARTIFACT_DIR_VAR,
    CONTAINER_ARTIFACT_ROOT,
    RUN_ID_VAR,
    compose_project,
    param_var,
)
from pipecast.targets.lowering import given_artifact_root, is_node_local, secrets_in_effect
from pipecast.targets.serialize import dump_yaml

COMPOSE_FILE = "compose.yaml"
RUN_SCRIPT = "run.sh"
SECRETS_FILE = "secrets.env"
PROJECT_VAR = "PIPECAST_PROJECT"
DOCKER_VAR = "PIPECAST_DOCKER"
RUNS_DIR = "runs"  # runs/<project>/: log, pid, exit (of `compose up`), cancelled, given-up
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def project_base(pipeline_name: str) -> str:
    """The Compose project name of the pipeline (``[a-z0-9-]``), which each run's project name starts with."""
    return rule_for("dns1123_label").apply(pipeline_name)


def run_project(pipeline_name: str, run_id: str) -> str:
    """The Compose project name of one run: the pipeline's, then the run id in Compose's alphabet."""
    return f"{project_base(pipeline_name)}-{re.sub(r'[^a-z0-9_-]', '-', run_id.lower())}"


def _artifacts(pipeline: ir.Pipeline, context: EmitContext) -> tuple[str, str | None]:
    """(root as the containers see it, host folder to mount or None)."""
    root = given_artifact_root(pipeline, context)
    if root and not is_node_local(root):
        return root, None  # an object store: every container reaches it directly
    if root:
        path = root[len("file://"):] if root.startswith("file://") else root
        if not path.startswith("/"):
            context.error(f"artifact root {root!r} must be an absolute folder on the Docker host",
                          fix="--set artifact_root=file:///srv/pipecast/artifacts, or leave it unset to use "
                              "artifacts/ beside compose.yaml on the host")
        return f"file://{CONTAINER_ARTIFACT_ROOT}", path.replace("$", "$$")
    # No root: run.sh sets the folder to artifacts/ beside compose.yaml on the host.
    variable = "${" + ARTIFACT_DIR_VAR + "?set " + ARTIFACT_DIR_VAR + " to the host folder of the artifacts}"
    return f"file://{CONTAINER_ARTIFACT_ROOT}", variable


def run_script(pipeline: ir.Pipeline, context: EmitContext) -> str:
    """``run.sh``: start one run of ``compose.yaml`` in the background and return (``sh run.sh [RUN_ID]``)."""
    lines = [
        "#!/bin/sh",
        "# Starts one run of compose.yaml (in this folder) in the background and returns: sh run.sh [RUN_ID]",
        "# `pipecast submit --target hyperai` runs it over SSH with the run's id and parameters in the",
        "# environment; the crontab entry pipecast installs runs it on the schedule with the defaults.",
        "set -eu",
        'cd "$(dirname "$0")"',
        f"{RUN_ID_VAR}=${{1:-scheduled-$(date -u +%Y%m%d-%H%M%S)}}",
        f"export {RUN_ID_VAR}",
        f'{ARTIFACT_DIR_VAR}="${{{ARTIFACT_DIR_VAR}:-$PWD/artifacts}}"',
        f"export {ARTIFACT_DIR_VAR}",
    ]
    if pipeline.parameters:
        lines.append("# Each parameter: its value in the environment, else the pipeline's default.")
    for param in pipeline.parameters:
        if not _SHELL_NAME.match(param.name):
            context.error(f"parameter {param.name!r} cannot be a shell variable name ([A-Za-z_][A-Za-z0-9_]*)",
                          fix="rename the parameter with ASCII letters, digits and _")
            continue
        var = param_var(param.name)
        if param.required:
            lines.append(f': "${{{var}?{var} is required: pass the parameter {param.name}}}"')
        else:
            default = shlex.quote(render_parameter(param.type, param.default))
            lines.append(f'[ "${{{var}+set}}" = set ] || {var}={default}')
        lines.append(f"export {var}")
    secrets = sorted({s.env for step in pipeline.steps for s in secrets_in_effect(pipeline, step)})
    if secrets:
        lines.append(f"# Secrets ({', '.join(secrets)}) come from {SECRETS_FILE} in this folder, which you "
                     f"create on the host (NAME=value lines); pipecast never sends them.")
    lines.append(f"if [ -f {SECRETS_FILE} ]; then set -a; . ./{SECRETS_FILE}; set +a; fi")
    lines += [
        f"project=${{{PROJECT_VAR}:-{project_base(pipeline.name)}-$(printf '%s' \"${RUN_ID_VAR}\" | tr 'A-Z' 'a-z' | "
        f"tr -c 'a-z0-9_-' '-')}}",
        f"docker=${{{DOCKER_VAR}:-docker}}",
        "# The file must load with this run's values: a mistake is reported here, before anything starts.",
        f"$docker compose --file {COMPOSE_FILE} --project-name \"$project\" config --quiet",
        f"state={RUNS_DIR}/$project",
        f"mkdir -p {RUNS_DIR}",
        "# mkdir is atomic: whoever makes the folder first owns the run (a submit that lost its answer may",
        "# have given the run up already; then it must not start).",
        'mkdir "$state" || { echo "run $project was started or given up before" >&2; exit 1; }',
        "# `up --detach` waits for each upstream step to finish: run it in its own session, so that it",
        "# outlives this shell and the SSH connection, and return at once.",
        f"nohup setsid sh -c '\"$@\"; echo $? >\"$0/exit\"' \"$state\" $docker compose --file {COMPOSE_FILE} \\",
        '    --project-name "$project" up --detach >"$state/log" 2>&1 </dev/null &',
        'echo $! >"$state/pid"',
        'echo "started $project (docker compose output: $PWD/$state/log)"',
    ]
    return "\n".join(lines) + "\n"


def emit_bundle(pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
    """``compose.yaml`` and ``run.sh`` for a Docker host reached over SSH."""
    root, mount = _artifacts(pipeline, context)
    document = compose_project(pipeline, context, artifact_root=root, artifact_mount=mount)
    return Bundle(context.target, ((COMPOSE_FILE, dump_yaml(document)), (RUN_SCRIPT, run_script(pipeline, context))))
