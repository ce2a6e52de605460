"""Lowering a pipeline to SkyPilot task YAML (pure: nothing written, no SDK).

A SkyPilot task is one VM (or container on a VM) with its resources, the pipeline's import root as its
``workdir``, a ``setup`` script that installs pipecast and the requirements (:mod:`.code`), and a ``run``
script. Steps whose resources, image, env and secrets are the same run one after another inside one task;
steps that differ get a task of their own. One task is a plain task YAML (``sky launch``); several are a
SkyPilot *pipeline*: YAML documents separated by ``---``, the first holding only the pipeline's ``name``,
which ``sky jobs launch`` runs in order, one task after the other (SkyPilot's own chain DAG).

Values never become shell code: parameters, the artifact root and step env vars are task ``envs:``
(overridable with ``--env NAME=VALUE``), and the ``run`` script only references them as ``"${NAME}"``;
every other word of the script is quoted with :func:`shlex.quote`.
"""

from __future__ import annotations

import heapq
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names
from pipecast.compiler.units import parse_quantity
from pipecast.runtime.command import EngineSyntax
from pipecast.runtime.params import render_parameter
from pipecast.targets import lowering
from pipecast.targets.base import Bundle, EmitContext
from pipecast.targets.inline_flow import flow_command
from pipecast.targets.serialize import dump_yaml, dump_yaml_all
from pipecast.targets.skypilot.code import code_root, setup_script, workdir
from pipecast.targets.skypilot.settings import SkyPilotSettings
from pipecast.targets.skypilot.shell import (
    FINALLY_END,
    FINALLY_PRELUDE,
    FINALLY_STEP,
    RUN_ID_PRELUDE,
    RUN_ID_VAR,
    SCRIPT_ENV,
    shell_command,
    shell_word,
    var,
)

ROOT_ENV = "PIPECAST_ARTIFACT_ROOT"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # SkyPilot's own pattern for `envs:` keys
# Names a parameter cannot take as an env var: the shell's and SkyPilot's own.
RESERVED_ENV = frozenset({"PATH", "HOME", "USER", "SHELL", "PWD", "LANG", "PYTHONPATH", "IFS"})
RESERVED_PREFIXES = ("SKYPILOT_", "PIPECAST_")

# fsspec backends the VM needs for each object store (the runtime reads and writes through fsspec).
STORE_PACKAGES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}
NATIVE_STORE = {"aws": "s3://BUCKET/pipecast", "gcp": "gs://BUCKET/pipecast", "azure": "az://CONTAINER/pipecast"}

# GKE-style GPU names (what Kubernetes-minded pipelines write) mapped to SkyPilot's accelerator names.
GPU_NAMES = {
    "nvidia-tesla-t4": "T4",
    "nvidia-tesla-p4": "P4",
    "nvidia-tesla-k80": "K80",
    "nvidia-tesla-p100": "P100",
    "nvidia-tesla-v100": "V100",
    "nvidia-tesla-a100": "A100",
    "nvidia-a100-80gb": "A100-80GB",
    "nvidia-l4": "L4",
    "nvidia-h100-80gb": "H100",
    "nvidia-h100-mega-80gb": "H100-MEGA",
    "nvidia-h200-141gb": "H200",
    "nvidia-b200": "B200",
}

@dataclass
class TaskPlan:
    """One SkyPilot task: the steps it runs, in order, and what they share."""

    key: str
    resources: dict[str, Any]
    env: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]
    steps: list[ir.Step] = field(default_factory=list)


def _accelerators(context: EmitContext, step: ir.Step) -> Any:
    explicit = context.settings_for(step).accelerators
    if explicit is not None:
        return explicit if isinstance(explicit, str) else dict(explicit)
    gpu = step.resources
    if not gpu.gpu:
        return None
    if not gpu.gpu_type:
        context.error(f"step {step.name!r} asks for {gpu.gpu} GPU(s) without a type; a SkyPilot VM needs an "
                      f"accelerator name", step=step,
                      fix="give the step Resources(gpu_type='T4') or the setting accelerators='T4:1'")
        return None
    return {GPU_NAMES.get(gpu.gpu_type.lower(), gpu.gpu_type): gpu.gpu}


def step_resources(context: EmitContext, pipeline: ir.Pipeline, step: ir.Step, cloud: str) -> dict[str, Any]:
    """The ``resources:`` of the task that runs ``step`` (SkyPilot's key order)."""
    settings: SkyPilotSettings = context.settings_for(step)
    resources: dict[str, Any] = {"cloud": cloud}
    for key in ("region", "zone", "instance_type"):
        value = getattr(settings, key)
        if value:
            resources[key] = value
    if step.resources.cpu:
        cpus = parse_quantity(step.resources.cpu)
        if cpus is None:
            context.error(f"cpu {step.resources.cpu!r} is not a quantity", step=step, fix="write cpu=2 or '500m'")
        else:
            resources["cpus"] = f"{cpus:g}+"  # SkyPilot reads "N+" as "at least N vCPUs"
    if step.resources.memory:
        memory = parse_quantity(step.resources.memory)
        if memory is None:
            context.error(f"memory {step.resources.memory!r} is not a quantity", step=step, fix="write '4Gi'")
        else:
            resources["memory"] = f"{round(memory / 2**30, 3):g}+"  # SkyPilot counts memory in GiB
    accelerators = _accelerators(context, step)
    if accelerators is not None:
        resources["accelerators"] = accelerators
    if settings.use_spot is not None:
        resources["use_spot"] = settings.use_spot
    if settings.disk_size is not None:
        resources["disk_size"] = settings.disk_size
    # Without an image the step runs on the VM itself.
    image = lowering.step_image(pipeline, step, context, required=False)
    if image:
        resources["image_id"] = f"docker:{image}"  # SkyPilot runs setup and run inside this container
    labels = _labels(context, pipeline, cloud)
    if labels:
        resources["labels"] = labels
    return resources


# SkyPilot checks labels with each cloud's rule (sky/clouds/*.py is_label_valid) and puts them on the VMs as
# AWS tags, GCP labels or Azure tags. Azure's rule is Azure's own tag-name rule; SkyPilot writes the key
# unquoted into its YAML template there, so pipecast also keeps it to plain characters.
LABEL_KEY_RULES = {
    "aws": (re.compile(r"^(?!aws:)\S{1,127}$"), "1-127 characters without spaces, not starting with aws:"),
    "gcp": (re.compile(r"^[a-z]([a-z0-9_-]{0,62})?$"), "a lower-case letter, then up to 62 lower-case letters, "
                                                       "digits, _ and -"),
    "azure": (re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,511}$"), "a letter or digit, then up to 511 letters, "
                                                                 "digits, _ . and -"),
}


def _labels(context: EmitContext, pipeline: ir.Pipeline, cloud: str) -> dict[str, str]:
    """The pipeline's tags as VM labels (``tag: ""``); a tag the cloud cannot carry is reported once."""
    pattern, rule = LABEL_KEY_RULES[cloud]
    labels: dict[str, str] = {}
    for tag in pipeline.tags:
        if pattern.match(tag):
            labels[tag] = ""
            continue
        message = f"tag {tag!r} cannot be a {cloud.upper()} label key on a SkyPilot VM ({rule})"
        if not any(p.message == message for p in context.problems):
            context.unsupported(message, location=str(pipeline.location) if pipeline.location else None,
                                fix="rename the tag, or --on-unsupported=warn to leave it off the VMs")
    return labels


def plan_tasks(pipeline: ir.Pipeline, context: EmitContext, cloud: str) -> list[TaskPlan]:
    """Group the steps into tasks, in an order where every step comes after its upstream steps.

    Among the steps ready to run, one that fits the current task is taken first, so steps with the same
    resources share a VM as often as the graph allows; ties keep the traced order (deterministic).
    """
    position = {s.name: i for i, s in enumerate(pipeline.steps)}
    by_name = {s.name: s for s in pipeline.steps}
    plans, key_of = _task_kinds(pipeline, context, cloud)
    indegree = {s.name: 0 for s in pipeline.steps}
    downstream: dict[str, list[str]] = {s.name: [] for s in pipeline.steps}
    for step in pipeline.steps:
        for up in step.upstream():
            if up in indegree:
                indegree[step.name] += 1
                downstream[up].append(step.name)
    ready_all: list[tuple[int, str]] = []
    ready_by_key: dict[str, list[tuple[int, str]]] = {}

    def push(name: str) -> None:
        item = (position[name], name)
        heapq.heappush(ready_all, item)
        heapq.heappush(ready_by_key.setdefault(key_of[name], []), item)

    for name, count in indegree.items():
        if count == 0:
            push(name)
    done: set[str] = set()
    tasks: list[TaskPlan] = []
    current: str | None = None
    while ready_all:
        same = ready_by_key.get(current or "", [])
        while same and same[0][1] in done:
            heapq.heappop(same)
        if same:
            _, name = heapq.heappop(same)
        else:
            _, name = heapq.heappop(ready_all)
            while name in done:
                _, name = heapq.heappop(ready_all)
        done.add(name)
        if key_of[name] != current:
            template = plans[key_of[name]]
            tasks.append(TaskPlan(template.key, template.resources, template.env, template.secrets))
            current = key_of[name]
        tasks[-1].steps.append(by_name[name])
        for child in downstream[name]:
            indegree[child] -= 1
            if indegree[child] == 0:
                push(child)
        while ready_all and ready_all[0][1] in done:
            heapq.heappop(ready_all)
    return tasks


def _task_kinds(pipeline: ir.Pipeline, context: EmitContext,
                cloud: str) -> tuple[dict[str, TaskPlan], dict[str, str]]:
    """The kinds of task the steps need (one per resources, env and secrets), and each step's kind."""
    plans: dict[str, TaskPlan] = {}
    key_of: dict[str, str] = {}
    for step in pipeline.steps:
        resources = step_resources(context, pipeline, step, cloud)
        env = lowering.env_in_effect(pipeline, step)
        secrets = tuple(s.env for s in lowering.secrets_in_effect(pipeline, step))
        key = repr((sorted(resources.items(), key=lambda kv: kv[0]), env, secrets))
        key_of[step.name] = key
        plans.setdefault(key, TaskPlan(key, resources, env, secrets))
    return plans, key_of


def artifact_root(pipeline: ir.Pipeline, context: EmitContext) -> str:
    """The object-store URI every task reads and writes; an error unless every VM can reach it."""
    root = lowering.artifact_root(pipeline, context, remote=True)
    scheme = root.partition("://")[0].lower()
    if root != lowering.MISSING_ARTIFACT_ROOT and not lowering.is_node_local(root) and scheme not in STORE_PACKAGES:
        context.error(f"artifact root {root!r} is not an object store the VMs' setup can install a client for "
                      f"({', '.join(sorted(f'{s}://' for s in STORE_PACKAGES))})",
                      fix="set an object-store URI every VM can reach, e.g. --set artifact_root="
                          f"{NATIVE_STORE.get(context.target.removeprefix('vm_'), 's3://BUCKET/pipecast')}")
    return root


def _parameter_envs(pipeline: ir.Pipeline, context: EmitContext, taken: set[str]) -> dict[str, str | None]:
    envs: dict[str, str | None] = {}
    for param in pipeline.parameters:
        fix = "rename the pipeline parameter (it becomes a SkyPilot env var of the same name)"
        if not ENV_NAME.match(param.name):
            context.error(f"parameter {param.name!r} is not a valid SkyPilot env var name ([A-Za-z_][A-Za-z0-9_]*)",
                          fix=fix)
        elif param.name in RESERVED_ENV or param.name.startswith(RESERVED_PREFIXES):
            context.error(f"parameter {param.name!r} would replace the env var the shell or SkyPilot uses",
                          fix=fix)
        elif param.name in taken:
            context.error(f"parameter {param.name!r} has the name of a step env var or secret", fix=fix)
        # A required parameter is a null env: SkyPilot refuses to launch until `--env NAME=VALUE` gives it.
        envs[param.name] = None if param.required else render_parameter(param.type, param.default)
    return envs


def emit_tasks(pipeline: ir.Pipeline, context: EmitContext, cloud: str) -> Bundle:
    """The SkyPilot YAML of ``pipeline`` for ``cloud`` (``aws``, ``gcp`` or ``azure``)."""
    settings: SkyPilotSettings = context.settings
    root = artifact_root(pipeline, context)
    tasks = plan_tasks(pipeline, context, cloud)
    taken = {name for task in tasks for name, _ in task.env} | {name for task in tasks for name in task.secrets}
    parameter_envs = _parameter_envs(pipeline, context, taken)
    for task in tasks:
        for name in (*(n for n, _ in task.env), *task.secrets):
            if name == ROOT_ENV or name in SCRIPT_ENV or name.startswith("SKYPILOT_"):
                context.error(f"env var {name!r} is set by pipecast or SkyPilot", step=task.steps[0],
                              fix="rename the step's env var or secret")
    _check_finally_tasks(pipeline, tasks, context)
    syntax = EngineSyntax(run_id=var(RUN_ID_VAR), parameter=lambda p: var(p.name),
                          artifact_root=var(ROOT_ENV), python=settings.python)
    code = code_root(pipeline, context)
    pipeline_name = engine_names(context.target, [pipeline.name], target=context.target)[pipeline.name]
    if len(tasks) == 1:
        names = {tasks[0].steps[0].name: pipeline_name}
    else:
        # Each task is named after its first step: step names are unique, so task names are too.
        names = engine_names(context.target, [t.steps[0].name for t in tasks], target=context.target,
                             locations={s.name: str(s.location) for s in pipeline.steps})
    # Each task's VM installs what its own steps add with @step(packages=...) too.
    setups = [setup_script(pipeline, settings, root, code, [p for step in task.steps for p in step.packages])
              for task in tasks]
    documents = [_task_document(pipeline, task, names[task.steps[0].name], workdir(code, settings),
                                parameter_envs, root, setup, syntax) for task, setup in zip(tasks, setups, strict=True)]
    filename = f"{pipeline.name}.sky.yaml"
    text = dump_yaml(documents[0]) if len(documents) == 1 else dump_yaml_all([{"name": pipeline_name}, *documents])
    files = [(filename, text)]
    if pipeline.schedule:
        files.append((f"{pipeline.name}.crontab", crontab(pipeline, filename, pipeline_name)))
    return Bundle(context.target, tuple(files))


def runs_finally(pipeline: ir.Pipeline) -> bool:
    """Whether a step runs after others whatever happened (an exit handler or a hook)."""
    return any(step.trigger is not ir.Trigger.ALL_SUCCESS for step in pipeline.steps)


def _check_finally_tasks(pipeline: ir.Pipeline, tasks: list[TaskPlan], context: EmitContext) -> None:
    """An exit handler or hook must run in the task of every step it follows.

    A SkyPilot pipeline (``sky jobs launch``) runs its tasks as a chain and stops at the first failed task, so a
    handler in a later task than a failed step would never run.
    """
    task_of = {step.name: index for index, task in enumerate(tasks) for step in task.steps}
    for step in pipeline.steps:
        if step.trigger is ir.Trigger.ALL_SUCCESS:
            continue
        other = next((u for u in step.upstream() if task_of[u] != task_of[step.name]), None)
        if other is None:
            continue
        what = "exit handler" if step.trigger is ir.Trigger.ALWAYS else f"{step.trigger.value} hook"
        context.error(f"{what} {step.name!r} and step {other!r} run in different SkyPilot tasks (their resources, "
                      "image, env or secrets differ); a SkyPilot pipeline stops at its first failed task, so the "
                      f"{what} would not run after {other!r} failed", step=step,
                      fix="give the steps it follows the same resources, image, env and secrets as the handler "
                          "(one task), or run it with the local or kubernetes target")


def crontab(pipeline: ir.Pipeline, filename: str, job_name: str) -> str:
    """A cron line that launches the YAML as a managed job: SkyPilot has no scheduler of its own."""
    assert pipeline.schedule is not None
    command = " ".join(shell_word(w) for w in
                       ["sky", "jobs", "launch", "--yes", "--detach-run", "--name", job_name, filename])
    return (
        f"# Launches {filename} on SkyPilot on the pipeline's schedule (SkyPilot has no scheduler).\n"
        "# Install it on a machine that stays up, where `sky` is logged in to your API server, from the\n"
        f"# folder you compiled in, with {filename} copied there (a relative workdir is read from there):\n"
        f"#   (crontab -l 2>/dev/null; sed \"s|@DIR@|$PWD|\" {shlex.quote(pipeline.name + '.crontab')}) | crontab -\n"
        "# cron uses the machine's local time and a short PATH: write the full path of `sky` if needed.\n"
        f"{pipeline.schedule} cd '@DIR@' && {command} >>sky-schedule.log 2>&1\n"
    )


def _task_document(pipeline: ir.Pipeline, task: TaskPlan, name: str, workdir: str,
                   parameter_envs: dict[str, str | None], root: str, setup: str,
                   syntax: EngineSyntax) -> dict[str, Any]:
    envs: dict[str, str | None] = {**parameter_envs, ROOT_ENV: root, **dict(task.env)}
    # SkyPilot has neither retries nor timeouts per command: the runtime does both.
    # Control flow: each step's runtime skips it or runs its items (pipecast.runtime.inline_flow).
    commands = [shell_command(flow_command(pipeline, step, lowering.runtime_command(
                    pipeline, step, syntax, lowering.retry_plan(step, engine_retries=False), runtime_timeout=True),
                    syntax))
                for step in task.steps]
    document: dict[str, Any] = {"name": name}
    if workdir:
        document["workdir"] = workdir
    document["resources"] = task.resources
    document["envs"] = envs
    if task.secrets:
        # No inline value: SkyPilot takes it at launch (`--secret NAME`, pipecast submit does the same)
        # or from its managed secrets provider. The value never enters this file.
        document["secrets"] = dict.fromkeys(task.secrets)
    document["setup"] = setup
    if runs_finally(pipeline):  # the script goes on after a failed step (see shell.FINALLY_PRELUDE)
        document["run"] = (RUN_ID_PRELUDE + FINALLY_PRELUDE + "".join(c + FINALLY_STEP + "\n" for c in commands)
                           + FINALLY_END)
    else:
        document["run"] = RUN_ID_PRELUDE + "\n".join(commands) + "\n"
    return document

