"""Lowering a pipeline to one GitHub Actions workflow file (``.github/workflows/<pipeline>.yml``).

One job per step; ``needs:`` from data and ``.after()`` edges. Every job checks the repository out, sets
Python up (or runs in the step's image as the job ``container:``), installs pipecast and runs the runtime
command with a fixed ``run:`` script.

Values never meet GitHub's template engine unescaped, and never a shell unquoted (DESIGN §3): every value
reaches the script through ``env:`` and is expanded there as ``"${VAR}"``. A literal that contains ``${{``
is written as ``${{ '${{' }}`` so GitHub gives the text back verbatim instead of evaluating it.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names
from pipecast.compiler.units import cron_min_interval_minutes
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import EmitContext
from pipecast.targets.serialize import dump_yaml

# The first major version of each action that runs on Node 24 (Node 20 leaves the runners in 2026). The
# `actions` setting overrides them, e.g. for a GitHub Enterprise Server that mirrors older versions.
ACTIONS = {
    "actions/checkout": "v5",
    "actions/setup-python": "v6",
    "actions/upload-artifact": "v6",
    "actions/download-artifact": "v7",
}

DEFAULT_RUNS_ON = "ubuntu-latest"
DEFAULT_PYTHON = "3.11"
DEFAULT_INSTALL = "python -m pip install pipecast"
DEFAULT_PERMISSIONS = {"contents": "read"}
RUN_ID_INPUT = "pipecast_run_id"  # the correlation input `pipecast submit` sets and `run-name` shows
LOCAL_ROOT = "${{ runner.temp }}/pipecast-artifacts"  # where a job keeps artifacts when none is remote

MAX_INPUTS = 25  # workflow_dispatch inputs per workflow (GitHub's limit, the run-id input included)
MIN_CRON_MINUTES = 5  # GitHub runs scheduled workflows at most every 5 minutes
HOSTED_MAX_MINUTES = 360  # a job on a GitHub-hosted runner is stopped after 6 hours
NUMBER_EXACT = 2**53  # `number` inputs are doubles: integers beyond this are not exact

# Runner labels of GitHub-hosted runners (their 6-hour job limit applies).
_HOSTED = re.compile(r"^(ubuntu|windows|macos)-")
_INPUT_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_INPUT_TYPES = {
    ir.TypeName.STR: "string", ir.TypeName.INT: "number", ir.TypeName.FLOAT: "number",
    ir.TypeName.BOOL: "boolean", ir.TypeName.DICT: "string", ir.TypeName.LIST: "string",
}
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_PERMISSION_LEVELS = {"read", "write", "none"}
_NO_VALUE_FLAGS = {"--no-cache"}
_MARK = "\x00"  # brackets a placeholder inside a runtime argument; NUL can never be in a real argument


def literal(text: str) -> str:
    """``text`` for a field GitHub evaluates as a template: every ``${{`` becomes an expression that yields it."""
    return text.replace("${{", "${{ '${{' }}")


def workflow_path(pipeline: ir.Pipeline) -> str:
    """Where the workflow lives in the repository."""
    return f".github/workflows/{pipeline.name}.yml"


def param_env(param: ir.Parameter) -> str:
    return f"PIPECAST_PARAM_{param.name.upper()}"


def default_env(param: ir.Parameter) -> str:
    return f"PIPECAST_DEFAULT_{param.name.upper()}"


def withheld_default(param: ir.Parameter) -> bool:
    """Whether the parameter's default stays out of the input's ``default:`` (it holds ``${{``).

    Linters evaluate ``${{`` in an input's default as an expression, so such a default is never written
    there: the input gets none, and the job's script uses the default (from ``env:``, escaped) when the
    input arrives empty.
    """
    return not param.required and "${{" in render_parameter(param.type, param.default)


def secret_name(secret: ir.SecretRef) -> str:
    """The GitHub secret a reference names: ``name`` (plus ``_key``), upper-cased, non-alphanumerics as ``_``."""
    raw = f"{secret.name}_{secret.key}" if secret.key else secret.name
    return re.sub(r"[^A-Za-z0-9_]", "_", raw).upper()


def run_title(pipeline_name: str, run_id: str) -> str:
    """The title (``run-name``) of a run dispatched with ``run_id``: how submit finds it."""
    return f"{pipeline_name} ({run_id})"


def artifact_name(job_id: str) -> str:
    return f"pipecast-{job_id}"


def build_workflow(pipeline: ir.Pipeline, context: EmitContext) -> str:
    """The workflow file's text (pure: the same IR and settings give the same bytes)."""
    jobs = engine_names("github", [s.name for s in pipeline.steps],
                        locations={s.name: str(s.location) for s in pipeline.steps}, target=context.target)
    root = pipeline.artifact_root or context.setting(pipeline, "artifact_root")
    remote_root = root if isinstance(root, str) and "://" in root and not root.startswith("file://") else None
    triggers = _triggers(pipeline, context)
    workflow: dict[str, Any] = {
        "name": pipeline.name,
        # Shows the id `pipecast submit` passes, so it can tell its run from concurrent dispatches.
        "run-name": f"{pipeline.name} (${{{{ inputs.{RUN_ID_INPUT} || github.event_name }}}})",
        "on": triggers,
        "permissions": _permissions(pipeline, context),
    }
    concurrency = _concurrency(pipeline, context)
    if concurrency:
        workflow["concurrency"] = concurrency
    defaults = {default_env(p): literal(render_parameter(p.type, p.default))
                for p in pipeline.parameters if not p.required and (pipeline.schedule or withheld_default(p))}
    if defaults:
        # The scripts read these when a run has no inputs (scheduled) or an input's default was withheld.
        workflow["env"] = defaults
    uses = _actions(pipeline, context)
    workflow["jobs"] = {
        jobs[step.name]: _job(pipeline, step, jobs, remote_root, uses, context) for step in pipeline.steps
    }
    text = dump_yaml(workflow)
    # PyYAML quotes the key `on` (a YAML 1.1 boolean); GitHub and actionlint read YAML 1.2, where it is a
    # plain string. Only `name` and `run-name`, both fixed text, come before it at column 0.
    text = text.replace("\n'on':\n", "\non:\n", 1)
    return _header(pipeline) + text


def _header(pipeline: ir.Pipeline) -> str:
    lines = [f"Pipeline {pipeline.name!r}, compiled by pipecast for GitHub Actions: edit the pipeline and "
             "recompile rather than editing this file."]
    for line in pipeline.description.splitlines():
        # A comment ends at a line break, and YAML forbids most control characters anywhere: escape them.
        lines.append("".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in line))
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def _triggers(pipeline: ir.Pipeline, context: EmitContext) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for param in pipeline.parameters:
        folded = param.name.lower()  # GitHub input ids are case-insensitive
        if not _INPUT_ID.match(param.name) or folded == RUN_ID_INPUT or folded in seen:
            reason = (f"it clashes with {seen[folded]!r} (input ids are case-insensitive)" if folded in seen
                      else "it is reserved for pipecast's run id" if folded == RUN_ID_INPUT
                      else "input ids hold only ASCII letters, digits, _ and -")
            context.error(f"parameter {param.name!r} cannot be a workflow_dispatch input: {reason}",
                          fix="rename the pipeline parameter")
            continue
        seen[folded] = param.name
        inputs[param.name] = _input(pipeline, param, context)
    inputs[RUN_ID_INPUT] = {
        "description": "Set by `pipecast submit` to find its run; leave empty",
        "required": False,
        "type": "string",
        "default": "",
    }
    if len(inputs) > MAX_INPUTS:
        context.error(f"pipeline {pipeline.name!r} has {len(pipeline.parameters)} parameters; a workflow_dispatch "
                      f"takes at most {MAX_INPUTS} inputs, one of which is {RUN_ID_INPUT!r}",
                      fix=f"pass at most {MAX_INPUTS - 1} parameters, e.g. group some into a dict parameter")
    triggers: dict[str, Any] = {"workflow_dispatch": {"inputs": inputs}}
    if pipeline.schedule:
        cron = _CRON_ALIASES.get(pipeline.schedule.strip(), pipeline.schedule.strip())
        interval = cron_min_interval_minutes(cron)
        if interval is not None and interval < MIN_CRON_MINUTES:
            context.error(f"schedule {pipeline.schedule!r} runs every {interval} minute(s); GitHub runs scheduled "
                          f"workflows at most every {MIN_CRON_MINUTES} minutes",
                          fix="use a coarser schedule, e.g. '*/5 * * * *'")
        for param in pipeline.parameters:
            if param.required:
                context.error(f"parameter {param.name!r} has no default, but scheduled runs of {pipeline.name!r} "
                              "get no inputs", fix="give the parameter a default, or drop the schedule")
        triggers["schedule"] = [{"cron": cron}]
    return triggers


def _input(pipeline: ir.Pipeline, param: ir.Parameter, context: EmitContext) -> dict[str, Any]:
    kind = _INPUT_TYPES.get(param.type)
    if kind is None:
        context.unsupported(f"parameter {param.name!r} has type {param.type.value!r}; workflow inputs carry "
                            "str, int, float, bool, dict and list", fix="annotate the parameter with one of those")
        kind = "string"
    note = " as JSON" if param.type in (ir.TypeName.DICT, ir.TypeName.LIST) else ""
    spec: dict[str, Any] = {"description": f"{param.type.value}{note}", "required": param.required, "type": kind}
    if withheld_default(param):
        spec["description"] += ", empty for the default"
    elif not param.required:
        value = param.default
        if kind == "number" and isinstance(value, int) and abs(value) > NUMBER_EXACT:
            context.error(f"default {value!r} of parameter {param.name!r} is not exact as a GitHub number input "
                          f"(a double, exact up to 2**53)", fix="use a smaller default or a str parameter")
        if kind == "string":
            value = render_parameter(param.type, value)  # dict/list as JSON, the text the runtime decodes
        spec["default"] = value
    return spec


def _permissions(pipeline: ir.Pipeline, context: EmitContext) -> dict[str, str]:
    permissions = context.setting(pipeline, "permissions", DEFAULT_PERMISSIONS)
    if not isinstance(permissions, Mapping) or not all(
        isinstance(k, str) and v in _PERMISSION_LEVELS for k, v in permissions.items()
    ):
        context.error(f"setting 'permissions' must map scopes to 'read', 'write' or 'none', got {permissions!r}",
                      fix='e.g. --set \'permissions={"contents": "read", "id-token": "write"}\'')
        return dict(DEFAULT_PERMISSIONS)
    return dict(permissions)


def _concurrency(pipeline: ir.Pipeline, context: EmitContext) -> dict[str, Any] | None:
    group = context.setting(pipeline, "concurrency")
    cancel = context.setting(pipeline, "cancel_in_progress", False)
    if group is None:
        return None
    if not isinstance(group, str) or not group or not isinstance(cancel, bool):
        context.error(f"setting 'concurrency' must be a group name and 'cancel_in_progress' a bool, got "
                      f"{group!r} and {cancel!r}", fix="--set concurrency=train-models")
        return None
    return {"group": literal(group), "cancel-in-progress": cancel}


def _actions(pipeline: ir.Pipeline, context: EmitContext) -> dict[str, str]:
    """``uses:`` of each action: the defaults, overridden by the ``actions`` setting."""
    chosen = context.setting(pipeline, "actions", {})
    if not isinstance(chosen, Mapping) or not all(
        name in ACTIONS and isinstance(ref, str) and re.fullmatch(r"[A-Za-z0-9._/-]+", ref)
        for name, ref in chosen.items()
    ):
        context.error(f"setting 'actions' must map some of {sorted(ACTIONS)!r} to refs, got {chosen!r}",
                      fix='--set \'actions={"actions/checkout": "v5"}\'')
        chosen = {}
    return {name: f"{name}@{chosen.get(name, ref)}" for name, ref in ACTIONS.items()}


def _runner_labels(value: Any) -> list[str] | None:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def _runs_on(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> str | list[str]:
    own = {s.key: s.value for s in step.settings if s.target == context.target}
    if "runs_on" in own:
        chosen = own["runs_on"]
    elif step.resources.gpu:
        chosen = context.setting(pipeline, "gpu_runs_on")
        if chosen is None:
            context.unsupported(f"step {step.name!r} asks for {step.resources.gpu} GPU(s); GitHub's standard "
                                "runners have none", step=step,
                                fix="set gpu_runs_on (or the step's runs_on) to a GPU runner's labels, e.g. "
                                    "--set 'gpu_runs_on=[\"self-hosted\", \"gpu\"]'")
            chosen = context.setting(pipeline, "runs_on", DEFAULT_RUNS_ON)
    else:
        chosen = context.setting(pipeline, "runs_on", DEFAULT_RUNS_ON)
    labels = _runner_labels(chosen)
    if labels is None or any("${{" in label for label in labels):
        context.error(f"runs_on must be a runner label or a list of labels (no expressions), got {chosen!r}",
                      step=step, fix="--set runs_on=ubuntu-latest")
        return DEFAULT_RUNS_ON
    return labels[0] if len(labels) == 1 else labels


def _job(pipeline: ir.Pipeline, step: ir.Step, jobs: Mapping[str, str], remote_root: str | None,
         uses: Mapping[str, str], context: EmitContext) -> dict[str, Any]:
    job: dict[str, Any] = {}
    if jobs[step.name] != step.name:
        job["name"] = literal(step.name)
    needs = [jobs[name] for name in step.upstream()]
    if needs:
        job["needs"] = needs
    runs_on = _runs_on(pipeline, step, context)
    job["runs-on"] = runs_on
    image = pipeline.image_of(step) or context.setting(pipeline, "image", step=step)
    if image:
        container: dict[str, Any] = {"image": literal(image)}
        if step.resources.gpu:
            container["options"] = "--gpus all"
        job["container"] = container
    steps = _setup_steps(pipeline, step, bool(image), uses, context)
    if remote_root is None:
        steps += _downloads(pipeline, step, jobs, uses, context)
    steps.append(_run_step(pipeline, step, remote_root, runs_on, context))
    if remote_root is None:
        steps.append(_upload(pipeline, step, jobs, uses, context))
    job["steps"] = steps
    return job


def _setup_steps(pipeline: ir.Pipeline, step: ir.Step, in_image: bool, uses: Mapping[str, str],
                 context: EmitContext) -> list[dict[str, Any]]:
    """Checkout, then Python and pipecast unless the job's image brings them."""
    steps: list[dict[str, Any]] = [{"name": "Check out the repository", "uses": uses["actions/checkout"],
                                    "with": {"persist-credentials": False}}]
    if not in_image:
        version = str(context.setting(pipeline, "python_version", DEFAULT_PYTHON, step=step))
        steps.append({"name": "Set up Python", "uses": uses["actions/setup-python"],
                      "with": {"python-version": literal(version)}})
    install = context.setting(pipeline, "install", None if in_image else DEFAULT_INSTALL, step=step)
    if install:
        if not isinstance(install, str) or "${{" in install:
            context.error(f"setting 'install' must be a shell command without ${{{{ }}}} expressions, got "
                          f"{install!r}", step=step, fix='put values in env and refer to them as "$VAR"')
        else:
            steps.append({"name": "Install pipecast", "shell": "bash", "run": install})
    return steps


def _run_dir(pipeline: ir.Pipeline) -> str:
    return f"{LOCAL_ROOT}/{pipeline.name}/runs/${{{{ github.run_id }}}}"


def _downloads(pipeline: ir.Pipeline, step: ir.Step, jobs: Mapping[str, str], uses: Mapping[str, str],
               context: EmitContext) -> list[dict[str, Any]]:
    """Fetch each upstream step's folder, uploaded by its job, into this job's artifact root."""
    if not _PATH_SAFE.match(step.name):
        context.error(f"step name {step.name!r} cannot name an artifact folder for actions/upload-artifact "
                      "(letters, digits, _ . - only)", step=step,
                      fix="rename the step with @step(name=...), or set a remote artifact_root (s3://...)")
    upstream = dict.fromkeys(b.step for b in step.bindings if b.kind is ir.BindingKind.OUTPUT and b.step)
    return [{"name": f"Download the outputs of {jobs[name]}", "uses": uses["actions/download-artifact"],
             "with": {"name": artifact_name(jobs[name]), "path": f"{_run_dir(pipeline)}/{name}"}}
            for name in upstream]


def _upload(pipeline: ir.Pipeline, step: ir.Step, jobs: Mapping[str, str], uses: Mapping[str, str],
            context: EmitContext) -> dict[str, Any]:
    upload: dict[str, Any] = {"name": artifact_name(jobs[step.name]), "path": f"{_run_dir(pipeline)}/{step.name}",
                              "if-no-files-found": "error", "overwrite": True}
    retention = context.setting(pipeline, "artifact_retention_days", step=step)
    if retention is not None:
        if isinstance(retention, bool) or not isinstance(retention, int) or not 1 <= retention <= 90:
            context.error(f"artifact_retention_days must be a whole number of days from 1 to 90, got "
                          f"{retention!r}", step=step, fix="--set artifact_retention_days=7")
        else:
            upload["retention-days"] = retention
    return {"name": f"Upload the outputs of {jobs[step.name]}", "uses": uses["actions/upload-artifact"],
            "with": upload}


def _run_step(pipeline: ir.Pipeline, step: ir.Step, remote_root: str | None, runs_on: str | list[str],
              context: EmitContext) -> dict[str, Any]:
    params = {p.name: p for p in pipeline.parameters}
    used = [params[b.parameter] for b in step.bindings
            if b.kind is ir.BindingKind.PARAMETER and b.parameter in params]
    attempts = step.retry.attempts
    timeout = step.timeout_seconds
    # GitHub has no per-job retry, so the runtime retries inside the job; it then also bounds each try, and
    # it does so whenever the timeout is not whole minutes (GitHub's `timeout-minutes` unit).
    runtime_timeout = bool(timeout) and (attempts > 1 or (timeout or 0) % 60 != 0)
    syntax = EngineSyntax(
        run_id=_placeholder("PIPECAST_RUN_ID"),
        parameter=lambda p: _placeholder(param_env(p)),
        artifact_root=_placeholder("PIPECAST_ARTIFACT_ROOT"),
    )
    argv = step_command(pipeline, step, syntax, runtime_retry=True, runtime_timeout=runtime_timeout)
    env: dict[str, str] = {
        "PIPECAST_RUN_ID": "${{ github.run_id }}",
        "PIPECAST_ARTIFACT_ROOT": literal(remote_root) if remote_root else LOCAL_ROOT,
    }
    for param in dict.fromkeys(used):
        env[param_env(param)] = f"${{{{ inputs.{param.name} }}}}"
    script_lines = _defaults_prologue(pipeline, used)
    if attempts > 1:
        script_lines.append(f"# GitHub has no per-job retry: the runtime tries the step up to {attempts} times.")
    script_lines += _command_lines(argv, env)
    _user_env(pipeline, step, env, context)
    run: dict[str, Any] = {"name": f"Run step {step.name}" if "${{" not in step.name else "Run the step",
                           "shell": "bash"}
    workdir = context.setting(pipeline, "working_directory", step=step)
    if workdir:
        run["working-directory"] = literal(str(workdir))
    if timeout:
        total = attempts * timeout + sum(step.retry.delay_before(n) for n in range(2, attempts + 1))
        minutes = math.ceil(total / 60)
        run["timeout-minutes"] = minutes
        labels = [runs_on] if isinstance(runs_on, str) else runs_on
        if minutes > HOSTED_MAX_MINUTES and any(_HOSTED.match(label) for label in labels):
            context.unsupported(f"step {step.name!r} may run {minutes} minutes (tries × timeout plus retry delays); "
                                f"GitHub-hosted runners stop a job after {HOSTED_MAX_MINUTES}", step=step,
                                fix="shorten the timeout or the retries, or run it on a self-hosted runner")
    run["env"] = env
    run["run"] = "\n".join(script_lines) + "\n"
    return run


def _user_env(pipeline: ir.Pipeline, step: ir.Step, env: dict[str, str], context: EmitContext) -> None:
    for name, value in pipeline.env_of(step):
        if name in env or name.startswith(("PIPECAST_", "GITHUB_")):
            context.error(f"environment variable {name!r} is reserved (PIPECAST_* is pipecast's, GITHUB_* is "
                          "GitHub's)", step=step, fix="rename the variable")
            continue
        env[name] = literal(value)
    for secret in pipeline.secrets_of(step):
        name = secret_name(secret)
        if not _SECRET_NAME.match(name) or name.startswith("GITHUB_") or secret.env in env:
            context.error(f"secret {secret.name!r} (env {secret.env!r}) maps to GitHub secret {name!r}, which is "
                          "not allowed (letters, digits, _; not GITHUB_*; not a reserved env name)", step=step,
                          fix="rename the secret or its env variable")
            continue
        env[secret.env] = f"${{{{ secrets.{name} }}}}"


def _defaults_prologue(pipeline: ir.Pipeline, used: Sequence[ir.Parameter]) -> list[str]:
    """Lines that put the defaults in place of inputs a run did not get (see :func:`withheld_default`)."""
    used = list(dict.fromkeys(used))
    lines = []
    scheduled = [p for p in used if pipeline.schedule and not withheld_default(p)]
    if scheduled:
        lines += ['if [ "${GITHUB_EVENT_NAME}" != workflow_dispatch ]; then',
                  "  # A scheduled run has no inputs: use the parameters' defaults."]
        lines += [f'  {param_env(p)}="${{{default_env(p)}}}"' for p in scheduled]
        lines.append("fi")
    for param in used:
        if withheld_default(param):
            lines += [f'if [ -z "${{{param_env(param)}}}" ]; then',
                      "  # Empty (or a scheduled run): the default, which the input could not carry.",
                      f'  {param_env(param)}="${{{default_env(param)}}}"',
                      "fi"]
    return lines


def _placeholder(variable: str) -> str:
    return f"{_MARK}{variable}{_MARK}"


def _command_lines(argv: Sequence[str], env: dict[str, str]) -> list[str]:
    """The runtime command as shell lines, one ``--flag value`` per line, every word quoted."""
    words = [_shell_word(word, env) for word in argv]
    lines = [" ".join(words[:4])]  # python -m pipecast.runtime run
    index = 4
    while index < len(argv):
        if argv[index] in _NO_VALUE_FLAGS or index + 1 == len(argv):
            lines.append(words[index])
            index += 1
        else:
            lines.append(f"{words[index]} {words[index + 1]}")
            index += 2
    return [lines[0] + " \\"] + [f"  {line} \\" for line in lines[1:-1]] + [f"  {lines[-1]}"]


def _shell_word(word: str, env: dict[str, str]) -> str:
    """One argument as a shell word: placeholders expand env variables inside double quotes."""
    if _MARK in word:
        parts = word.split(_MARK)  # literal, variable, literal, variable, ..., literal
        quoted = []
        for position, part in enumerate(parts):
            if position % 2:
                quoted.append(f"${{{part}}}")
            else:
                quoted.append(re.sub(r'([\\"$`])', r"\\\1", part))
        return '"' + "".join(quoted) + '"'
    if "${{" in word:
        # GitHub would evaluate it even inside a quoted shell word: hand it over through env instead.
        variable = f"PIPECAST_ARG_{sum(1 for k in env if k.startswith('PIPECAST_ARG_')) + 1}"
        env[variable] = literal(word)
        return f'"${{{variable}}}"'
    return shlex.quote(word)
