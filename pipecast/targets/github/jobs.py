"""One job per step: runner, container, setup, artifact transfer and the runtime command's script.

The ``run:`` script is fixed text: every value reaches it through ``env:`` (escaped with
:func:`~pipecast.targets.github.syntax.literal`) and is expanded as ``"${VAR}"``; every fixed word is
shell-quoted.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from pipecast.compiler import ir
from pipecast.runtime.command import EngineSyntax
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.runtime.github_fail_fast import FAIL_FAST_ENV
from pipecast.runtime.publish_tekton import condition_arg
from pipecast.targets.base import EmitContext
from pipecast.targets.github import nested
from pipecast.targets.github.flow import (
    chain_branches,
    chain_needs,
    chain_operand_problem,
    deciding_jobs,
    extra_needs,
    flow_plan,
    item_steps,
    job_condition,
    native_decisions,
    one_of_expression,
    status_steps,
)
from pipecast.targets.github.layout import (
    declared_packages,
    inferred_working_directory,
    install_script,
    requirements_file,
)
from pipecast.targets.github.maps import (
    INDEX_ENV,
    counting_jobs,
    empty_tests,
    list_sources,
    map_args,
    published_lists,
    step_map,
    strategy,
)
from pipecast.targets.github.settings import GitHubSettings
from pipecast.targets.github.syntax import (
    LOCAL_ROOT,
    artifact_name,
    decode_line,
    default_env,
    literal,
    param_env,
    secret_name,
    withheld_default,
    workflow_path,
)
from pipecast.targets.inline_flow import mini_plan, plan_json
from pipecast.targets.lowering import (
    env_in_effect,
    retry_plan,
    runtime_command,
    secrets_in_effect,
    set_by_step,
    step_image,
    worst_case_seconds,
)

# GitHub's usage limits (docs.github.com: "Usage limits" for GitHub-hosted and for self-hosted runners): a job
# on a GitHub-hosted runner is stopped after 6 hours, one on a self-hosted runner after 5 days.
HOSTED_MAX_MINUTES = 360
SELF_HOSTED_MAX_MINUTES = 5 * 24 * 60
JOB_DEFAULT_MINUTES = 360  # a job's timeout-minutes when it sets none
SETUP_MINUTES = 30  # room for checkout, install and artifact transfer around a step's own timeout

# Runner labels of GitHub-hosted runners (their 6-hour job limit applies).
_HOSTED = re.compile(r"^(ubuntu|windows|macos)-")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_NO_VALUE_FLAGS = {"--no-cache"}
FLOW_MODULE = "pipecast.runtime.publish_github_flow"  # a step whose runtime decides item by item runs it
_MARK = "\x00"  # brackets a placeholder inside a runtime argument; NUL can never be in a real argument


def _runs_on(step: ir.Step, context: EmitContext) -> str | list[str]:
    settings: GitHubSettings = context.settings_for(step)
    chosen = settings.runs_on
    if step.resources.gpu and not set_by_step(step, context, "runs_on"):
        if settings.gpu_runs_on is None:
            context.unsupported(f"step {step.name!r} asks for {step.resources.gpu} GPU(s); GitHub's standard "
                                "runners have none", step=step,
                                fix="set gpu_runs_on (or the step's runs_on) to a GPU runner's labels, e.g. "
                                    "--set 'gpu_runs_on=[\"self-hosted\", \"gpu\"]'")
        else:
            chosen = settings.gpu_runs_on
    if isinstance(chosen, str):
        return chosen
    return chosen[0] if len(chosen) == 1 else list(chosen)


def build_job(pipeline: ir.Pipeline, step: ir.Step, jobs: Mapping[str, str], remote_root: str | None,
              uses: Mapping[str, str], context: EmitContext) -> dict[str, Any]:
    """The job of ``step``.

    Args:
        pipeline: The pipeline.
        step: The step the job runs.
        jobs: Every step's job id.
        remote_root: The remote artifact root, or None to pass data as GitHub artifacts.
        uses: The ``uses:`` ref of each action.
        context: Settings and the problem report.
    """
    job: dict[str, Any] = {}
    if jobs[step.name] != step.name:
        job["name"] = literal(step.name)
    plan = flow_plan(pipeline)
    covered = [n for b in step.bindings if b.kind is ir.BindingKind.STATUS for n in status_steps(plan, b.group, step)]
    needs = list(dict.fromkeys([*counting_jobs(plan, covered),  # a handler sees a failed count as a failure
                                *deciding_jobs(plan, covered),  # and a failed decision
                                *(jobs[name] for name in [*step.upstream(), *extra_needs(plan, step)]),
                                *chain_needs(plan, step),
                                *list_sources(plan, step, jobs),
                                *_fan_in_lists(plan, step, jobs)]))
    if needs:
        job["needs"] = needs
    group = step_map(plan, step)
    empty = empty_tests(plan, jobs)
    condition = job_condition(plan, step, jobs, context, empty)
    if step.name in empty:  # GitHub fails a job whose matrix is empty; pipecast run runs no items
        condition = f"{condition} && {_not(empty[step.name])}" if condition else \
            f"success() && {_not(empty[step.name])}"  # success() stated, as for a branch: GitHub's default rule
    if condition:
        job["if"] = f"${{{{ {condition} }}}}"
    if group is not None:
        job["strategy"] = strategy(plan, group, jobs)
    published = native_decisions(plan).get(step.name, [])
    lists = published_lists(pipeline).get(step.name, [])
    outputs = [*published, *(f"items_{name}" for name in lists)]
    if outputs:
        job["outputs"] = {name: f"${{{{ steps.run.outputs.{name} }}}}" for name in outputs}
    runs_on = _runs_on(step, context)
    job["runs-on"] = runs_on
    image = step_image(pipeline, step, context, required=False)
    if image:
        container: dict[str, Any] = {"image": literal(image)}
        if step.resources.gpu:
            container["options"] = "--gpus all"
        job["container"] = container
    steps = _setup_steps(pipeline, step, bool(image), uses, context)
    if remote_root is None:
        steps += _downloads(pipeline, step, jobs, uses, context)
    run_step = _run_step(pipeline, step, remote_root, runs_on, context, jobs=jobs, publish=published, lists=lists)
    steps.append(run_step)
    if remote_root is None:
        steps.append(_upload(pipeline, step, jobs, uses, context))
    # GitHub would stop the whole job after 360 minutes: give it the step's time plus setup, within the runner's limit.
    minutes = min(run_step.get("timeout-minutes", 0) + SETUP_MINUTES, job_limit_minutes(runs_on))
    if minutes > JOB_DEFAULT_MINUTES:
        job["timeout-minutes"] = minutes
    job["steps"] = steps
    return job


def build_chain_job(pipeline: ir.Pipeline, chain: ir.Group, jobs: Mapping[str, str], uses: Mapping[str, str],
                    context: EmitContext) -> dict[str, Any]:
    """The job that decides an if/elif/else chain (:mod:`pipecast.runtime.publish_github`) and outputs ``branch``.

    It runs where the chain's first step runs (runner, image, install), reads the decision values its branches
    test from the jobs that published them and the parameters from the run's inputs, and no user code.
    """
    plan = flow_plan(pipeline)
    branches = chain_branches(plan, chain)
    near = next(s for s in pipeline.steps if any(g.name in {b.name for b in branches} for g in plan.conditions[s.name]))
    operands = [o for b in branches if b.condition is not None for o in b.condition.all_operands()]
    argv = ["python", "-m", "pipecast.runtime.publish_github"]
    argv += [a for k, b in enumerate(branches) for a in ("--branch", f"{k}={condition_arg(b.condition)}")]
    env: dict[str, str] = {}
    needs: dict[str, None] = {}
    used: list[ir.Parameter] = []
    values: set[str] = set()
    for operand in operands:
        problem = chain_operand_problem(plan, operand)
        if problem:
            context.error(f"chain {chain.name!r} cannot be decided on GitHub Actions: {problem}", step=near,
                          location=str(chain.location), fix="test a step's output (e.g. one that returns the "
                          "parameter), or run it with the local target (`pipecast run FILE`)")
        elif operand.kind is ir.BindingKind.PARAMETER:
            param = pipeline.parameter(operand.parameter or "")
            if param not in used:
                used.append(param)
                env[param_env(param)] = f"${{{{ inputs.{param.name} }}}}"
                argv += ["--param", f"{param.name}={param.type.value}:{_placeholder(param_env(param))}"]
        elif operand.kind is ir.BindingKind.OUTPUT:
            ref = f"{operand.step}/{operand.output}"
            if ref not in values:  # one --value per output, however many branches read it
                values.add(ref)
                variable = f"PIPECAST_VALUE_{sum(1 for k in env if k.startswith('PIPECAST_VALUE_')) + 1}"
                env[variable] = f"${{{{ needs.{jobs[operand.step or '']}.outputs.{operand.output} }}}}"
                argv += ["--value", f"{ref}={_placeholder(variable)}"]
            needs[jobs[operand.step or ""]] = None
    job: dict[str, Any] = {}
    if needs:
        job["needs"] = list(needs)
    runs_on = _runs_on(near, context)
    job["runs-on"] = runs_on
    image = step_image(pipeline, near, context, required=False)
    if image:
        job["container"] = {"image": literal(image)}
    job["outputs"] = {"branch": "${{ steps.decide.outputs.branch }}"}
    words = [_shell_word(word, env) for word in argv]
    lines = [" ".join(words[:3])] + [f"{words[i]} {words[i + 1]}" for i in range(3, len(words), 2)]
    script = _defaults_prologue(pipeline, used)
    script += [lines[0] + " \\"] + [f"  {line} \\" for line in lines[1:-1]] + [f"  {lines[-1]}"]
    steps = _setup_steps(pipeline, near, bool(image), uses, context)
    steps.append({"name": f"Decide the branch of {chain.name}", "id": "decide", "shell": "bash", "env": env,
                  "run": "\n".join(script) + "\n"})
    job["steps"] = steps
    return job


def _fan_in_lists(plan: FlowPlan, step: ir.Step, jobs: Mapping[str, str]) -> list[str]:
    """The jobs publishing the lists of the maps a fan-in collects (it tests whether they were empty)."""
    if plan.maps[step.name]:
        return []
    return [job for b in step.bindings if b.kind is ir.BindingKind.COLLECTED and b.step
            for job in list_sources(plan, plan.steps[b.step], jobs)]


def _not(empty: str) -> str:
    """``X == '[]'`` as ``X != '[]'``: the matrix has items."""
    return empty.replace(" == ", " != ", 1)


def job_limit_minutes(runs_on: str | list[str]) -> int:
    """The longest a job may run on these runner labels (GitHub-hosted labels: 6 hours; else self-hosted: 5 days).

    A GitHub larger runner has labels of its own choosing, so it is taken for a self-hosted one.
    """
    labels = [runs_on] if isinstance(runs_on, str) else runs_on
    return HOSTED_MAX_MINUTES if any(_HOSTED.match(label) for label in labels) else SELF_HOSTED_MAX_MINUTES


def _setup_steps(pipeline: ir.Pipeline, step: ir.Step, in_image: bool, uses: Mapping[str, str],
                 context: EmitContext) -> list[dict[str, Any]]:
    """Checkout, then Python (pip's cache keyed by the workflow and the requirements) and the install.

    Without an image the install is the pinned pipecast, the pipeline's ``requirements=`` (else the import
    root's ``requirements.txt``) and the step's ``packages=``
    (:func:`~pipecast.targets.github.layout.install_script`); in an image, nothing unless ``install`` says.
    """
    settings: GitHubSettings = context.settings_for(step)
    steps: list[dict[str, Any]] = [{"name": "Check out the repository", "uses": uses["actions/checkout"],
                                    "with": {"persist-credentials": False}}]
    packages = declared_packages(pipeline, step)
    for package in packages:
        if "${{" in package:
            context.error(f"requirement {package!r} holds '${{{{', which GitHub Actions would evaluate as an "
                          "expression in the install script", step=step,
                          fix="write the requirement without '${{', or install it with the install= setting")
    # Declared requirements replace the import root's requirements.txt, as in pipecast build.
    requirements = None if pipeline.requirements else requirements_file(step)
    if not in_image:
        # The workflow pins pipecast's version, so it belongs in pip's cache key with the requirements.
        keyed = [workflow_path(pipeline)] + ([requirements] if requirements else [])
        steps.append({"name": "Set up Python", "uses": uses["actions/setup-python"],
                      "with": {"python-version": literal(settings.python_version), "cache": "pip",
                               "cache-dependency-path": "\n".join(keyed)}})
    install = (settings.install if settings.install is not None else
               None if in_image else install_script(requirements, packages))
    if install:
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
    branches = dict.fromkeys(s.step for b in step.bindings for s in b.sources if s.step not in upstream)
    downloads: list[dict[str, Any]] = []
    for name in [*upstream, *branches]:
        download: dict[str, Any] = {"name": f"Download the outputs of {jobs[name]}"}
        if name in branches:  # a OneOf branch: only the one that ran has outputs
            download["if"] = f"${{{{ needs.{jobs[name]}.result == 'success' }}}}"
        download["uses"] = uses["actions/download-artifact"]
        download["with"] = {"name": artifact_name(jobs[name]), "path": f"{_run_dir(pipeline)}/{name}"}
        downloads.append(download)
    return downloads


def _upload(pipeline: ir.Pipeline, step: ir.Step, jobs: Mapping[str, str], uses: Mapping[str, str],
            context: EmitContext) -> dict[str, Any]:
    upload: dict[str, Any] = {"name": artifact_name(jobs[step.name]), "path": f"{_run_dir(pipeline)}/{step.name}",
                              "if-no-files-found": "error", "overwrite": True}
    retention = context.settings_for(step).artifact_retention_days
    if retention is not None:
        upload["retention-days"] = retention
    return {"name": f"Upload the outputs of {jobs[step.name]}", "uses": uses["actions/upload-artifact"],
            "with": upload}


def _run_step(pipeline: ir.Pipeline, step: ir.Step, remote_root: str | None, runs_on: str | list[str],
              context: EmitContext, *, jobs: Mapping[str, str], publish: Sequence[str],
              lists: Sequence[str]) -> dict[str, Any]:
    params = {p.name: p for p in pipeline.parameters}
    used = [params[b.parameter] for b in step.bindings
            if b.kind is ir.BindingKind.PARAMETER and b.parameter in params]
    attempts = step.retry.attempts
    timeout = step.timeout_seconds
    # GitHub has no per-job retry, so the runtime retries inside the job; it then also bounds each try, and
    # it does so whenever the timeout is not whole minutes (GitHub's `timeout-minutes` unit).
    plan = retry_plan(step, engine_retries=False)
    syntax = EngineSyntax(
        run_id=_placeholder("PIPECAST_RUN_ID"),
        parameter=lambda p: _placeholder(param_env(p)),
        artifact_root=_placeholder("PIPECAST_ARTIFACT_ROOT"),
    )
    argv = runtime_command(pipeline, step, syntax, plan, runtime_timeout=plan.runtime or bool((timeout or 0) % 60))
    env: dict[str, str] = {
        "PIPECAST_RUN_ID": "${{ github.run_id }}",
        "PIPECAST_ARTIFACT_ROOT": literal(remote_root) if remote_root else LOCAL_ROOT,
    }
    plan_of_flow = flow_plan(pipeline)
    # a step that runs inner-map items decides its items' branches in that runtime (github_nested --decide)
    emulated = step.name in item_steps(plan_of_flow) and not nested.runs_items(plan_of_flow, step)
    flow: list[str] = []
    if emulated:  # its runtime decides its item's branch (flow.py): the inline emulation's plan and parameters
        flow, flow_params = _item_flow(pipeline, step, env)
        used += flow_params
    for param in dict.fromkeys(used):
        env[param_env(param)] = f"${{{{ inputs.{param.name} }}}}"
    if nested.runs_items(plan_of_flow, step):  # its runtime runs the inner maps' items (or a handler's item)
        argv = nested.nested_args(plan_of_flow, step, argv, _placeholder, env)
        argv += [word for name in publish for word in ("--github-output", name)]
        covered = [n for b in step.bindings if b.kind is ir.BindingKind.STATUS
                   for n in status_steps(plan_of_flow, b.group, step)]
        if covered:  # its runtime builds the status from the records; a job that left none, from its result
            env["PIPECAST_GITHUB_NEEDS"] = "${{ toJSON(needs) }}"
            env["PIPECAST_GITHUB_STEPS"] = literal(json.dumps({jobs[name]: name for name in covered}))
    else:
        argv += _flow_args(pipeline, step, jobs, publish, env, emulated=emulated)
        if not emulated:
            argv = map_args(plan_of_flow, step, argv, _placeholder, env)
        elif step_map(plan_of_flow, step) is not None:
            env[INDEX_ENV] = "${{ matrix.index }}"
    for name in lists:
        argv += ["--github-items", name]
    if step_map(plan_of_flow, step) is not None and step.trigger is ir.Trigger.ALL_SUCCESS:
        env[FAIL_FAST_ENV] = literal(step.name)  # a failed item stops the items that start after it
    script_lines = _defaults_prologue(pipeline, used)
    if attempts > 1:
        script_lines.append(f"# GitHub has no per-job retry: the runtime tries the step up to {attempts} times.")
    if emulated:  # python -m pipecast.runtime.publish_github_flow --flow PLAN ... run ARGS
        head = [f"{shlex.quote(argv[0])} -m {FLOW_MODULE}"]
        head += [f"{_shell_word(flow[i], env)} {_shell_word(flow[i + 1], env)}" for i in range(0, len(flow), 2)]
        lines = _command_lines(argv, env)
        script_lines += [f"{head[0]} \\"] + [f"  {line} \\" for line in [*head[1:], "run"]] + lines[1:]
    else:
        script_lines += _command_lines(argv, env)
    _user_env(pipeline, step, env, context)
    run: dict[str, Any] = {"name": f"Run step {step.name}" if "${{" not in step.name else "Run the step",
                           "shell": "bash"}
    if publish or lists:
        run["id"] = "run"  # the job's outputs read the decision values this step publishes
    workdir = context.settings_for(step).working_directory or inferred_working_directory(step)
    if workdir:
        run["working-directory"] = literal(workdir)
    total = worst_case_seconds(step)
    if total is not None:
        minutes = math.ceil(total / 60)
        limit = job_limit_minutes(runs_on)
        if minutes > limit:
            hosted = limit == HOSTED_MAX_MINUTES
            context.unsupported(
                f"step {step.name!r} may run {minutes} minutes (tries × timeout plus retry delays); GitHub stops a "
                f"job on {'a GitHub-hosted' if hosted else 'a self-hosted'} runner after {limit} minutes",
                step=step, fix="shorten the timeout or the retries" + (", or run it on a self-hosted runner (5 days)"
                                                                       if hosted else "")
                + f"; with --on-unsupported=warn its timeout-minutes is capped at {limit}")
            minutes = limit
        run["timeout-minutes"] = minutes
    run["env"] = env
    run["run"] = "\n".join(script_lines) + "\n"
    return run


def _item_flow(pipeline: ir.Pipeline, step: ir.Step, env: dict[str, str]) -> tuple[list[str], list[ir.Parameter]]:
    """``--flow PLAN`` and ``--flow-param`` of a step whose runtime decides item by item, and those parameters.

    The plan (the step, what it reads and the groups around them) is :func:`pipecast.targets.inline_flow.mini_plan`,
    Compose's; it reaches the script through ``env`` (``PIPECAST_FLOW``), as every value does.
    """
    plan = mini_plan(pipeline, step)
    env["PIPECAST_FLOW"] = literal(plan_json(plan))
    args = ["--flow", _placeholder("PIPECAST_FLOW")]
    read = {o.parameter for g in plan.groups for o in g.all_operands() if o.kind is ir.BindingKind.PARAMETER}
    params = [p for p in pipeline.parameters if p.name in read]
    for param in params:
        args += ["--flow-param", f"{param.name}={param.type.value}:{_placeholder(param_env(param))}"]
    return args, params


def _flow_args(pipeline: ir.Pipeline, step: ir.Step, jobs: Mapping[str, str], publish: Sequence[str],
               env: dict[str, str], *, emulated: bool = False) -> list[str]:
    """Runtime arguments for control flow: decision values to publish, OneOf's branch, a handler's status.

    A step whose runtime decides item by item finds its ``OneOf`` branch itself (that item's instance).
    """
    args: list[str] = []
    for binding in step.bindings:
        if binding.kind is ir.BindingKind.ONE_OF and emulated:
            continue
        if binding.kind is ir.BindingKind.ONE_OF:
            variable = f"PIPECAST_ONE_OF_{sum(1 for k in env if k.startswith('PIPECAST_ONE_OF_')) + 1}"
            env[variable] = f"${{{{ {one_of_expression(binding, jobs)} }}}}"
            args += ["--upstream", f"{binding.input}={_placeholder(variable)}"]
        elif binding.kind is ir.BindingKind.STATUS:
            args += ["--github-status", binding.input]
            covered = status_steps(flow_plan(pipeline), binding.group, step)
            env["PIPECAST_GITHUB_NEEDS"] = "${{ toJSON(needs) }}"
            env["PIPECAST_GITHUB_STEPS"] = literal(json.dumps(
                {**counting_jobs(flow_plan(pipeline), covered), **deciding_jobs(flow_plan(pipeline), covered),
                 **{jobs[name]: name for name in covered}}))
    for name in publish:
        args += ["--github-output", name]
    return args


def _user_env(pipeline: ir.Pipeline, step: ir.Step, env: dict[str, str], context: EmitContext) -> None:
    for name, value in env_in_effect(pipeline, step):
        if name in env or name.startswith(("PIPECAST_", "GITHUB_")):
            context.error(f"environment variable {name!r} is reserved (PIPECAST_* is pipecast's, GITHUB_* is "
                          "GitHub's)", step=step, fix="rename the variable")
            continue
        env[name] = literal(value)
    for secret in secrets_in_effect(pipeline, step):
        problem = secret_name_problem(secret)
        if problem is None and secret.env in env:
            problem = f"its env variable {secret.env!r} is already set by the step or by pipecast"
        if problem:
            context.error(f"secret {secret.name!r} (env {secret.env!r}) cannot be read on GitHub: {problem}",
                          step=step, fix="rename the secret (or its env variable) so it follows GitHub's rule")
            continue
        env[secret.env] = f"${{{{ secrets.{secret_name(secret)} }}}}"


def secret_name_problem(secret: ir.SecretRef) -> str | None:
    """Why the GitHub secret a reference maps to cannot exist, or None.

    GitHub's rule ("Naming your secrets", docs.github.com): letters, digits and ``_`` only, not starting
    with a digit or with ``GITHUB_``; names are case-insensitive.
    """
    name = secret_name(secret)
    if not _SECRET_NAME.match(name):
        return f"GitHub secret {name!r} would start with a digit (or be empty); GitHub secret names cannot"
    if name.startswith("GITHUB_"):
        return f"GitHub secret {name!r} starts with GITHUB_, which GitHub keeps for itself"
    return None


def check_secret_names(pipeline: ir.Pipeline, context: EmitContext) -> None:
    """Two different secret references must not read one GitHub secret (names are case-insensitive)."""
    seen: dict[str, ir.SecretRef] = {}
    reported: set[tuple[str, str | None]] = set()
    for step in pipeline.steps:
        for secret in secrets_in_effect(pipeline, step):
            other = seen.setdefault(secret_name(secret), secret)
            if (other.name, other.key) != (secret.name, secret.key) and (secret.name, secret.key) not in reported:
                reported.add((secret.name, secret.key))
                context.error(f"secrets {other.name!r}{_key(other)} and {secret.name!r}{_key(secret)} both map to "
                              f"GitHub secret {secret_name(secret)!r} (GitHub secret names hold only letters, digits "
                              "and _, and ignore case)", step=step, fix="rename one of the secrets")


def _key(secret: ir.SecretRef) -> str:
    return f" (key {secret.key!r})" if secret.key else ""


def _defaults_prologue(pipeline: ir.Pipeline, used: Sequence[ir.Parameter]) -> list[str]:
    """Lines that put the defaults in place of inputs a run did not get (see :func:`withheld_default`)."""
    used = list(dict.fromkeys(used))
    lines = []
    scheduled = [p for p in used if pipeline.schedule and not withheld_default(p)]
    if scheduled:
        lines += ['if [ "${GITHUB_EVENT_NAME}" != workflow_dispatch ]; then',
                  "  # A scheduled run has no inputs: use the parameters' defaults."]
        lines += [f"  {line}" for p in scheduled for line in decode_line(param_env(p), default_env(p))]
        lines.append("fi")
    for param in used:
        if withheld_default(param):
            lines += [f'if [ -z "${{{param_env(param)}}}" ]; then',
                      "  # Empty (or a scheduled run): the default, which the input could not carry.",
                      *(f"  {line}" for line in decode_line(param_env(param), default_env(param))),
                      "fi"]
    return lines


def _placeholder(variable: str) -> str:
    return f"{_MARK}{variable}{_MARK}"


def _command_lines(argv: Sequence[str], env: dict[str, str]) -> list[str]:
    """The runtime command as shell lines, one ``--flag value`` per line, every word quoted."""
    words = [_shell_word(word, env) for word in argv]
    index = 3 if argv[2] != "pipecast.runtime" else 4  # python -m pipecast.runtime run, or a flow's runtime
    lines = [" ".join(words[:index])]
    while index < len(argv):
        if argv[index] in _NO_VALUE_FLAGS or argv[index] == "run" or index + 1 == len(argv):
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
