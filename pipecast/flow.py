"""The flow, in one place: build → compile → submit → track, and run here.

``pipecast`` commands and ``PipelineDef`` methods call these functions; targets implement the contract in
:mod:`pipecast.targets.base` and never record runs themselves.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipecast.compiler import ir
from pipecast.errors import (
    ParameterError,
    PipecastError,
    Problem,
    Severity,
    SubmitError,
    SubmitOutcomeUnknownError,
    UnsupportedFeatureError,
    UnsupportedFeatureWarning,
    ValidationError,
)
from pipecast.redaction import redact_credentials
from pipecast.runs.tracking import RunHandle, track
from pipecast.targets.base import Bundle, EmitContext, Feature, SubmitRequest

if TYPE_CHECKING:
    from pipecast.runtime.local_runner import LocalRun

__all__ = ["EmitOptions", "RunHandle", "compile_pipeline", "run_here", "submit_pipeline", "track"]


@dataclass(frozen=True, slots=True)
class EmitOptions:
    """Options of one compile: ``--set`` settings and what to do with unsupported features."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    on_unsupported: str = "error"  # or "warn"





def compile_pipeline(pipeline: ir.Pipeline, target_name: str, options: EmitOptions | None = None) -> Bundle:
    """Check and emit ``pipeline`` for a target; raise with every problem, or attach them as warnings."""
    from pipecast.targets.checks import check_null_parameters, parse_settings
    from pipecast.targets.registry import get_target

    options = options or EmitOptions()
    target = get_target(target_name)
    context = EmitContext(target=target.name, overrides=dict(options.settings))
    pipeline = parse_settings(pipeline, target, options.settings, context)
    check_null_parameters(pipeline, target, context)
    target.check(pipeline, context)
    try:
        bundle = target.emit(pipeline, context)
    except ValidationError as err:  # e.g. engine names that collide
        context.errors.extend(err.problems)
        bundle = Bundle(target.name, ())
    return _finish(replace(bundle, settings=context.settings), context, options)


def _finish(bundle: Bundle, context: EmitContext, options: EmitOptions) -> Bundle:
    if not context.problems and not context.errors:
        return bundle
    if options.on_unsupported == "warn" and not context.errors:
        warnings = tuple(
            Problem(p.message, p.step, p.location, p.fix, Severity.WARNING, p.target) for p in context.problems
        )
        return replace(bundle, warnings=bundle.warnings + warnings)
    problems = context.errors + context.problems
    hint = "" if context.errors else "; --on-unsupported=warn to compile anyway"
    raise UnsupportedFeatureError(
        problems,
        summary=f"cannot compile for {context.target!r} ({len(problems)} problem"
                f"{'s' if len(problems) != 1 else ''}{hint})",
    )


def submit_pipeline(
    pipeline: ir.Pipeline,
    target_name: str,
    parameters: Mapping[str, Any],
    settings: Mapping[str, Any],
    config: Mapping[str, Any],
    on_unsupported: str = "error",
    warn: Callable[[str], None] | None = None,
) -> RunHandle:
    """Compile, submit and record a run; return its handle.

    With ``on_unsupported="warn"`` each feature the engine cannot express goes to ``warn`` (default: a Python
    :class:`~pipecast.errors.UnsupportedFeatureWarning`) and into the run's record, and the run is submitted.
    The run is recorded before the target submits it; what the target notes (the engine's run id, its URL) is
    recorded as soon as it is known, so a submit whose answer is lost can still be tracked.
    """
    from pipecast.runs.store import RunStore, new_run_id
    from pipecast.runtime.params import resolve_parameters
    from pipecast.targets.checks import null_parameter_reason
    from pipecast.targets.registry import get_target

    target = get_target(target_name)
    if not target.can_submit:  # refused before anything is compiled or recorded
        how = target.capabilities.get(Feature.SUBMIT)
        detail = f": {how.note}" if how and how.note else "; compile it with --out DIR and deploy the files yourself"
        raise SubmitError(f"target {target.name!r} does not submit runs{detail}")
    values = resolve_parameters(pipeline, parameters)
    nulls = sorted(name for name, value in parameters.items() if value is None and name in values)
    if nulls and not target.carries_null_parameters:
        raise ParameterError(f"parameter{'s' if len(nulls) > 1 else ''} {', '.join(map(repr, nulls))} "
                             f"given as None: {null_parameter_reason(target)}; pass a real value of its type "
                             "(e.g. 0, '', [] or {}) that the step treats as 'not set'")
    bundle = compile_pipeline(pipeline, target_name, EmitOptions(settings=settings, on_unsupported=on_unsupported))
    notices = [problem.render() for problem in bundle.warnings]
    for notice in notices:
        if warn is None:
            warnings.warn(notice, UnsupportedFeatureWarning, stacklevel=3)
        else:
            warn(notice)
    store = RunStore.default()
    run_id = new_run_id(pipeline.name)
    store.create_run(run_id, pipeline=pipeline.name, target=target.name, parameters=values, status="pending",
                     metadata={"warnings": notices} if notices else None)

    def note(*, engine_run_id: str | None = None, url: str | None = None, **metadata: Any) -> None:
        store.note_run(run_id, engine_run_id=engine_run_id, url=url, metadata=metadata)

    request = SubmitRequest(target, pipeline, bundle, values, config, run_id, note)
    try:
        engine = target.start(request)
    except BaseException as err:
        if isinstance(err, PipecastError):  # its message may quote a -c URL with a password in it
            err.args = (redact_credentials(str(err)),)
        if isinstance(err, SubmitOutcomeUnknownError):
            store.update_status(run_id, "unknown", detail=f"submit outcome unknown: {err}; `pipecast runs wait "
                                                          f"{run_id}` asks the engine again")
        else:
            store.update_status(run_id, "failed", detail=f"submit failed: {err}")
        raise
    store.note_run(run_id, engine_run_id=engine.engine_run_id, url=engine.url, metadata=engine.metadata)
    return RunHandle(engine, store)


def run_here(pipeline: ir.Pipeline, parameters: Mapping[str, Any] | None = None, **options: Any) -> LocalRun:
    """Run ``pipeline`` on this machine (the ``local`` target) and return the finished run."""
    from pipecast.runtime.local_runner import run_pipeline

    return run_pipeline(pipeline, dict(parameters or {}), **options)
