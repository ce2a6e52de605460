"""Running a pipeline on a stack: here for ``local``, with Docker for ``local_docker``, else submit and wait.

``pipecast run REF`` and calling a pipeline in Python (``quickstart(n=20)``) come here with the active stack.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError, RunFailedError
from pipecast.stacks.model import Stack


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _inside_a_step() -> bool:
    """Whether this process is a step's runtime (``python -m pipecast.runtime``), which imports user modules."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "pipecast.runtime.__main__"


def stack_settings(stack: Stack) -> dict[str, Any]:
    """The ``--set`` settings a run on ``stack`` compiles with (its artifact root among them)."""
    settings = dict(stack.settings)
    if stack.artifact_root and stack.target not in ("local", "local_docker"):
        settings["artifact_root"] = stack.artifact_root
    return settings


def stack_config(stack: Stack) -> dict[str, Any]:
    """The stack's ``-c`` connection settings, each reference (``env:``, ``keyring:``) replaced by its value."""
    from pipecast.stacks.secrets import resolve

    return resolve(stack.name, stack.config)


def run_on_stack(pipeline: ir.Pipeline, parameters: Mapping[str, Any] | None, stack: Stack, *,
                 echo: Callable[[str], None] | None = None, wait: bool = True, timeout: float | None = None,
                 raise_on_failure: bool = True, on_unsupported: str = "error", **local_options: Any) -> Any:
    """Run ``pipeline`` on ``stack`` and return the run: a LocalRun, a DockerRun, or a waited RunHandle.

    ``local_options`` are the local runner's (workers, cache...); only the ``local`` stack takes them. Other
    stacks print where the run is (its UI URL) through ``echo`` (default: stderr), then wait for it.
    """
    from pipecast.stacks.validate import check_stack

    echo = echo or _stderr
    if stack.target != "local" and _inside_a_step():
        raise PipecastError(f"pipeline {pipeline.name!r} was called while a step runs (a call at the top of a "
                            f"module the steps import?), and would be sent to stack {stack.name!r} from inside its "
                            "own task; put the call under `if __name__ == \"__main__\":`")
    check_stack(stack)
    values = dict(parameters or {})
    if stack.target == "local":
        from pipecast.runtime.local_runner import run_pipeline

        root = local_options.pop("artifact_root", None) or stack.artifact_root
        run = run_pipeline(pipeline, values, artifact_root=root, raise_on_failure=False, **local_options)
        _note(run.id, stack)
        if raise_on_failure and run.status != "succeeded":
            from pipecast.runs.store import RunStore

            raise RunFailedError(f"run {run.id} failed: {RunStore.default().get(run.id)['detail']}")
        return run
    if local_options:
        raise PipecastError(f"{', '.join(sorted(local_options))} apply to the local stack only; stack "
                            f"{stack.name!r} runs on {stack.target!r}")
    if stack.target == "local_docker":
        from pipecast.flow import run_with_docker

        echo(f"running {pipeline.name!r} on stack {stack.name!r} (local_docker)")
        result = run_with_docker(pipeline, values, settings=stack.settings, artifact_root=stack.artifact_root,
                                 warn=echo, code=stack.code, build=stack.build, on_unsupported=on_unsupported)
        _note(result.id, stack)
        echo(f"run {result.id}: {result.status} ({result.url})")
        if raise_on_failure and result.status != "succeeded":
            raise RunFailedError(f"run {result.id} on stack {stack.name!r} {result.status}; its logs: "
                                 f"`pipecast runs logs {result.id}`")
        return result
    return _submit(pipeline, values, stack, echo, wait, timeout, raise_on_failure, on_unsupported)


def _submit(pipeline: ir.Pipeline, values: dict[str, Any], stack: Stack, echo: Callable[[str], None], wait: bool,
            timeout: float | None, raise_on_failure: bool, on_unsupported: str) -> Any:
    from pipecast.flow import submit_pipeline
    from pipecast.redaction import redact_credentials

    handle = submit_pipeline(pipeline, stack.target, values, stack_settings(stack), stack_config(stack),
                             on_unsupported, warn=lambda text: echo(redact_credentials(text)), build=stack.build,
                             code=stack.code)
    _note(handle.run_id, stack)
    echo(redact_credentials(f"run {handle.run_id} on stack {stack.name!r}: {handle.url or handle.engine_run_id}"))
    if not wait:
        return handle
    try:
        status = handle.wait(timeout)
    except KeyboardInterrupt:  # stop waiting; the run is the engine's and goes on there
        echo(f"stopped waiting: run {handle.run_id} goes on; `pipecast runs wait {handle.run_id}` waits again, "
             f"`pipecast runs cancel {handle.run_id}` cancels it")
        raise
    echo(redact_credentials(f"{status.value}{': ' + handle.detail if handle.detail else ''}"))
    if raise_on_failure and status.value != "succeeded":
        raise RunFailedError(f"run {handle.run_id} on stack {stack.name!r} {status.value}"
                             f"{': ' + handle.detail if handle.detail else ''}")
    return handle


def _note(run_id: str, stack: Stack) -> None:
    note_stack(run_id, stack.name)


def note_stack(run_id: str, name: str) -> None:
    """Record in the run store that run ``run_id`` ran on stack ``name`` (through the tracking layer)."""
    from pipecast.runs.tracking import record_stack

    record_stack(run_id, name)


def stack_submission(stack_name: str | None, target: str | None, settings: dict[str, Any], config: dict[str, Any],
                     build: dict[str, Any], code: str | None) -> tuple[str, str, dict[str, Any], dict[str, Any],
                                                                       dict[str, Any], str | None]:
    """``pipecast submit --stack``: the stack's target and settings, with the command line's flags over them.

    Returns (stack name, target, settings, config, build settings, code mode).
    """
    from pipecast.errors import StackError
    from pipecast.stacks.files import active_stack
    from pipecast.stacks.validate import check_stack

    stack = active_stack(stack_name)
    if target is not None and target != stack.target:
        raise StackError(f"--target {target} differs from stack {stack.name!r}'s target {stack.target!r}; leave "
                         "--target out, or leave --stack out to submit without a stack")
    if stack.target in ("local", "local_docker"):
        raise StackError(f"stack {stack.name!r} runs on this machine ({stack.target}); use `pipecast run "
                         f"--stack {stack.name}`, or pass --target/--stack for an engine")
    check_stack(stack)
    given_build = {k: v for k, v in build.items() if v is not None}
    return (stack.name, stack.target, {**stack_settings(stack), **settings}, {**stack_config(stack), **config},
            {**stack.build, **given_build}, code or stack.code)
