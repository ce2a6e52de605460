"""Pipeline hooks on the KFP IR: an exit handler around the whole pipeline, as kfp users write them.

KFP has no on_failure/on_success hook. Its users wrap the pipeline's body in ``dsl.ExitHandler(task)``: the body
becomes the ``exit-handler-1`` DAG and the task runs after it whatever happened, reading its
``PipelineTaskFinalStatus``. pipecast does the same: :func:`wrap` puts every step but the hook (and every
top-level group) in an exit group opened first, and the hook becomes that group's exit task. The engine runs it
on success and failure alike, so the runtime decides from the final status (``--kfp-hook``, see
:mod:`pipecast.runtime.publish_kfp`): when the hook's event did not happen it records the step skipped, writes
placeholder output parameters (the KFP launcher fails a task whose declared outputs are missing) and exits 0.

KFP runs one exit task per ExitHandler: kfp 2.17's compiler refuses an ExitHandler inside another ("Using an
ExitHandler within ExitHandler exit-handler-1 is not allowed", ``pipeline_spec_builder.py``,
``build_exit_handler_groups_recursively``), and the backend keeps one exit hook per group (``argocompiler/dag.go``,
``DAG``: ``taskToExitTemplate[dep] = name``, so a second exit task of the same group would silently replace the
first). A hook therefore excludes an ExitHandler of the pipeline's own. **Both hooks** are one exit task, as a kfp
user writes them (one exit component that branches on ``status.state``): :data:`TASK`, whose command holds each
hook's runtime arguments, separated by ``--kfp-hook-or`` (:func:`pipecast.runtime.publish_kfp.choose_hook`). The
runtime records the hook whose event did not happen skipped and runs the other. One task has one container, so
the two hooks must agree on what is the container's or the task's (image, env, resources, Kubernetes settings,
engine retries, cache): :func:`combine` refuses them otherwise, naming what differs. The task declares only the
folder artifact of the hook that ran: the hooks' output parameters may clash (both ``output``, of two types),
and nothing on KFP can read an exit task's outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext
from pipecast.targets.kfpspec.outputs import OUTPUT_ARTIFACT

HOOKS = (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
GROUP = "pipecast_hooks"  # the exit group around the pipeline (a name the tracer never gives: exit_N)
STATUS_INPUT = "pipecast_final_status"  # the hook's final status input when the hook has no status input
TASK = "pipecast-hooks"  # the one exit task of both hooks (a step named pipecast_hooks is refused)
OR_OPTION = "--kfp-hook-or"  # pipecast/runtime/publish_kfp.py: the next hook's arguments follow


def wrap(pipeline: ir.Pipeline, context: EmitContext) -> ir.Pipeline:
    """``pipeline`` with its body in the hook's exit group (unchanged without hooks; refused when KFP cannot)."""
    hooks = [s for s in pipeline.steps if s.trigger in HOOKS]
    if not hooks:
        return pipeline
    exits = [g for g in pipeline.groups if g.kind is ir.GroupKind.EXIT]
    if exits:
        context.unsupported(f"the pipeline's hook {hooks[0].name!r} is an ExitHandler around the whole pipeline, and "
                            f"exit handler {exits[0].name!r} ({exits[0].location}) would be inside it; kfp 2.17 "
                            "refuses an ExitHandler within another", step=hooks[0],
                            fix="use the hook or the ExitHandler, and read the status in its handler")
        return pipeline
    group = ir.Group(name=GROUP, kind=ir.GroupKind.EXIT, location=pipeline.location or hooks[0].location)
    groups = (group, *(g if g.parent else dataclasses.replace(g, parent=GROUP) for g in pipeline.groups))
    hook_names = {h.name for h in hooks}
    steps = []
    for step in pipeline.steps:
        if step.name in hook_names:
            step = dataclasses.replace(step, bindings=tuple(
                dataclasses.replace(b, group=GROUP) if b.kind is ir.BindingKind.STATUS else b for b in step.bindings))
        elif step.group is None:
            step = dataclasses.replace(step, group=GROUP)
        steps.append(step)
    return dataclasses.replace(pipeline, groups=groups, steps=tuple(steps))


def status_input(step: ir.Step) -> str:
    """The hook's input that gets the group's final status: its own ``status`` input, or :data:`STATUS_INPUT`."""
    return next((b.input for b in step.bindings if b.kind is ir.BindingKind.STATUS), STATUS_INPUT)


def both(pipeline: ir.Pipeline) -> bool:
    """Whether the pipeline has both hooks, which share the exit task :data:`TASK`."""
    return len({s.trigger for s in pipeline.steps if s.trigger in HOOKS}) == len(HOOKS)


def task_names(pipeline: ir.Pipeline, names: Mapping[str, str], context: EmitContext) -> dict[str, str]:
    """``names`` (task name by step) with both hooks on :data:`TASK` when the pipeline has both."""
    if not both(pipeline):
        return dict(names)
    for step in pipeline.steps:
        if names[step.name] == TASK and step.trigger not in HOOKS:
            context.error(f"step {step.name!r} has the task name {TASK!r}, the exit task of the pipeline's hooks",
                          step=step, fix="rename the step")
    return {s.name: TASK if s.trigger in HOOKS else names[s.name] for s in pipeline.steps}


def task_input(step: ir.Step) -> str:
    """The input holding one hook's own runtime options (``--step``, ``--const``) in the shared exit task."""
    return f"pipecast_task_{step.trigger.value}"


@dataclass(frozen=True, slots=True)
class Lowered:
    """One hook lowered as if it were alone: its container, Kubernetes config, component and task."""

    step: ir.Step
    container: dict[str, Any]
    config: dict[str, Any] | None
    component: dict[str, Any]
    task: dict[str, Any]


# What one task holds once for both hooks, and how to say it when the two differ.
_SHARED = (("image", "image"), ("env", "env"), ("resources", "resources"), ("command", "command"))
_TASK_SHARED = (("cachingOptions", "engine cache"), ("retryPolicy", "retries"))


def combine(lowered: Sequence[Lowered], context: EmitContext) -> tuple[dict[str, Any], dict[str, Any],
                                                                          dict[str, Any] | None, dict[str, Any]]:
    """The shared exit task of both hooks: its component, container, Kubernetes config and task.

    Each hook's arguments are what it would run alone; the container runs them as alternatives (on_failure first).
    """
    first, second = sorted(lowered, key=lambda low: HOOKS.index(low.step.trigger))
    differ = [what for key, what in _SHARED if first.container.get(key) != second.container.get(key)]
    differ += [what for key, what in _TASK_SHARED if first.task.get(key) != second.task.get(key)]
    if first.config != second.config:
        differ.append("Kubernetes settings (secrets, node selector, tolerations, timeout)")
    inputs: dict[str, Any] = {}
    arguments: dict[str, Any] = {}
    for low in (first, second):  # a hook's inputs are `status` and pipeline parameters: a clash is a pipecast bug
        for name, spec in low.component["inputDefinitions"]["parameters"].items():
            if inputs.setdefault(name, spec) != spec:
                differ.append(f"input {name!r}")
        for name, source in low.task["inputs"]["parameters"].items():
            if arguments.setdefault(name, source) != source and f"input {name!r}" not in differ:
                differ.append(f"input {name!r}")
    if differ:
        context.unsupported(
            f"the on_failure hook {first.step.name!r} and the on_success hook {second.step.name!r} differ in "
            f"{', '.join(dict.fromkeys(differ))}; KFP runs one exit task per ExitHandler (kfp refuses nested ones and "
            "the backend keeps one exit hook per group), so both hooks run in one task, which has one container",
            step=second.step, fix="give both hooks the same image, env, resources, retries and settings, or keep "
            "one hook that reads `status`")
    container = dict(first.container, args=[*first.container["args"], OR_OPTION, *second.container["args"]])
    folder = first.component["outputDefinitions"]["artifacts"][OUTPUT_ARTIFACT]
    component = {"executorLabel": f"exec-{TASK}", "inputDefinitions": {"parameters": dict(sorted(inputs.items()))},
                 "outputDefinitions": {"artifacts": {OUTPUT_ARTIFACT: folder}}}
    task = dict(first.task, componentRef={"name": f"comp-{TASK}"},
                inputs={"parameters": dict(sorted(arguments.items()))}, taskInfo={"name": TASK})
    deps = sorted({*first.task.get("dependentTasks", ()), *second.task.get("dependentTasks", ())})
    if deps:
        task["dependentTasks"] = deps
    return component, container, first.config, dict(sorted(task.items()))
