"""Lowering a pipeline to one GitHub Actions workflow file (``.github/workflows/<pipeline>.yml``).

This module builds the workflow's top level: name, the ``run-name`` that carries pipecast's run id (and the
pipeline's tags: GitHub has no tags on workflows or runs, the run's title is where they show),
``workflow_dispatch`` inputs and ``schedule``, permissions, concurrency and the parameters' defaults;
:mod:`.jobs` builds one job per step, ``needs:`` from data and ``.after()`` edges.

Values never meet GitHub's template engine unescaped, and never a shell unquoted (DESIGN §3): every value
reaches the script through ``env:`` and is expanded there as ``"${VAR}"``. A literal that contains ``${{``
is written as ``${{ '${{' }}`` so GitHub gives the text back verbatim instead of evaluating it, except in the
workflow's ``env:`` (the parameters' defaults), which a runner may evaluate more than once: there values are
base64, decoded by the job's script.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names
from pipecast.compiler.units import cron_min_interval_minutes
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import EmitContext
from pipecast.targets.github import layout
from pipecast.targets.github.flow import chain_job, check_item_steps, decided_chains, flow_plan
from pipecast.targets.github.jobs import build_chain_job, build_job, check_secret_names
from pipecast.targets.github.maps import check_maps, items_jobs, published_lists
from pipecast.targets.github.settings import ACTIONS, GitHubSettings
from pipecast.targets.github.syntax import (
    RUN_ID_INPUT,
    default_env,
    encoded,
    literal,
    title_prefix,
    withheld_default,
)
from pipecast.targets.lowering import given_artifact_root, is_node_local
from pipecast.targets.serialize import dump_yaml

MAX_INPUTS = 25  # workflow_dispatch inputs per workflow (GitHub's limit, the run-id input included)
MIN_CRON_MINUTES = 5  # GitHub runs scheduled workflows at most every 5 minutes
MAX_RUN_MINUTES = 35 * 24 * 60  # GitHub cancels a workflow run after 35 days (its "Usage limits")
NUMBER_EXACT = 2**53  # `number` inputs are doubles: integers beyond this are not exact

_INPUT_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_INPUT_TYPES = {
    ir.TypeName.STR: "string", ir.TypeName.INT: "number", ir.TypeName.FLOAT: "number",
    ir.TypeName.BOOL: "boolean", ir.TypeName.DICT: "string", ir.TypeName.LIST: "string",
}
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


def build_workflow(pipeline: ir.Pipeline, context: EmitContext) -> str:
    """The workflow file's text (pure: the same IR and settings give the same bytes)."""
    layout.clear_cache()
    jobs = engine_names("github", [s.name for s in pipeline.steps],
                        locations={s.name: str(s.location) for s in pipeline.steps}, target=context.target)
    settings: GitHubSettings = context.settings
    root = given_artifact_root(pipeline, context)
    remote_root = root if root and not is_node_local(root) else None
    triggers = _triggers(pipeline, context)
    workflow: dict[str, Any] = {
        "name": pipeline.name,
        # Shows the id `pipecast submit` passes, so it can tell its run from concurrent dispatches.
        "run-name": f"{literal(title_prefix(pipeline))} (${{{{ inputs.{RUN_ID_INPUT} || github.event_name }}}})",
        "on": triggers,
        "permissions": dict(settings.permissions),
    }
    for tag in pipeline.tags:
        if not tag.isprintable():
            context.unsupported(f"tag {tag!r} holds a line break or control character, which the run's title "
                                "(where the github target shows tags) cannot show",
                                location=str(pipeline.location) if pipeline.location else None,
                                fix="remove those characters from the tag")
    if settings.concurrency is not None:
        workflow["concurrency"] = {"group": literal(settings.concurrency),
                                   "cancel-in-progress": settings.cancel_in_progress}
    elif settings.cancel_in_progress:
        context.error("setting 'cancel_in_progress' cancels the running run of a concurrency group, but no "
                      "'concurrency' group is set", fix="--set concurrency=GROUP, or drop cancel_in_progress")
    # Base64: GitHub evaluates the workflow's `env:` again where jobs read it (act does it twice too), so
    # no `${{` escape survives every evaluation; base64 text has no `$` at all. The scripts decode it.
    defaults = {default_env(p): encoded(render_parameter(p.type, p.default))
                for p in pipeline.parameters if not p.required and (pipeline.schedule or withheld_default(p))}
    if defaults:
        # The scripts read these when a run has no inputs (scheduled) or an input's default was withheld.
        workflow["env"] = defaults
    uses = {name: f"{name}@{settings.actions.get(name, ref)}" for name, ref in ACTIONS.items()}
    workflow["jobs"] = {
        jobs[step.name]: build_job(pipeline, step, jobs, remote_root, uses, context) for step in pipeline.steps
    }
    if pipeline.uses_control_flow:
        counting = items_jobs(flow_plan(pipeline), settings.runs_on if isinstance(settings.runs_on, str)
                              else list(settings.runs_on), jobs)
        for name in counting:
            if name in workflow["jobs"]:
                context.error(f"job id {name!r} counts a map's items, but a step's job has that id",
                              fix="rename the step")
        workflow["jobs"] = {**counting, **workflow["jobs"]}
        plan = flow_plan(pipeline)
        for chain in decided_chains(plan):
            if chain_job(chain) in workflow["jobs"]:
                context.error(f"job id {chain_job(chain)!r} decides chain {chain.name!r}, but a step's job has "
                              "that id", fix="rename the step")
            workflow["jobs"][chain_job(chain)] = build_chain_job(pipeline, chain, jobs, uses, context)
    check_secret_names(pipeline, context)
    if pipeline.uses_control_flow:
        check_maps(flow_plan(pipeline), remote_root, context)
        check_item_steps(flow_plan(pipeline), context, published_lists(pipeline))
    _check_run_length(pipeline, {s.name: workflow["jobs"][jobs[s.name]] for s in pipeline.steps}, context)
    text = dump_yaml(workflow)
    # PyYAML quotes the key `on` (a YAML 1.1 boolean); GitHub and actionlint read YAML 1.2, where it is a
    # plain string. Only `name` and `run-name` come before it at column 0, and neither holds a line break.
    text = text.replace("\n'on':\n", "\non:\n", 1)
    return _header(pipeline) + text


def _check_run_length(pipeline: ir.Pipeline, built: Mapping[str, Any], context: EmitContext) -> None:
    """Report a chain of steps whose timeouts add up to more than GitHub lets a workflow run last."""
    longest: dict[str, int] = {}
    for step in pipeline.steps:  # traced order: every step after its upstream steps
        own = max((s.get("timeout-minutes", 0) for s in built[step.name]["steps"]), default=0)
        longest[step.name] = own + max((longest.get(up, 0) for up in step.upstream()), default=0)
        if longest[step.name] > MAX_RUN_MINUTES:
            context.unsupported(f"the steps up to {step.name!r} may run {longest[step.name]} minutes one after the "
                                f"other (their timeouts); GitHub cancels a workflow run after {MAX_RUN_MINUTES} "
                                "minutes (35 days)", step=step, fix="shorten the timeouts or split the pipeline")
            return


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
