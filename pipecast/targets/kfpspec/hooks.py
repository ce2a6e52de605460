"""Pipeline hooks on the KFP IR: an exit handler around the whole pipeline, as kfp users write them.

KFP has no on_failure/on_success hook. Its users wrap the pipeline's body in ``dsl.ExitHandler(task)``: the body
becomes the ``exit-handler-1`` DAG and the task runs after it whatever happened, reading its
``PipelineTaskFinalStatus``. pipecast does the same: :func:`wrap` puts every step but the hook (and every
top-level group) in an exit group opened first, and the hook becomes that group's exit task. The engine runs it
on success and failure alike, so the runtime decides from the final status (``--kfp-hook``, see
:mod:`pipecast.runtime.publish_kfp`): when the hook's event did not happen it records the step skipped, writes
placeholder output parameters (the KFP launcher fails a task whose declared outputs are missing) and exits 0.

KFP runs one exit task per ExitHandler and kfp 2.17's compiler refuses an ExitHandler inside another ("Using an
ExitHandler within ExitHandler exit-handler-1 is not allowed", ``pipeline_spec_builder.py``,
``build_exit_handler_groups_recursively``), so a pipeline may have one hook, and no ExitHandler of its own.
"""

from __future__ import annotations

import dataclasses

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext

HOOKS = (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
GROUP = "pipecast_hooks"  # the exit group around the pipeline (a name the tracer never gives: exit_N)
STATUS_INPUT = "pipecast_final_status"  # the hook's final status input when the hook has no status input


def wrap(pipeline: ir.Pipeline, context: EmitContext) -> ir.Pipeline:
    """``pipeline`` with its body in the hook's exit group (unchanged without hooks; refused when KFP cannot)."""
    hooks = [s for s in pipeline.steps if s.trigger in HOOKS]
    if not hooks:
        return pipeline
    if len(hooks) > 1:
        context.unsupported(f"step {hooks[1].name!r} is a second pipeline hook; KFP runs one exit task per "
                            "ExitHandler and refuses nested ones, so a pipeline has one hook there", step=hooks[1],
                            fix="keep one hook that reads `status` and does what each event needs")
    exits = [g for g in pipeline.groups if g.kind is ir.GroupKind.EXIT]
    if len(hooks) > 1 or exits:
        if not exits:
            return pipeline
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
