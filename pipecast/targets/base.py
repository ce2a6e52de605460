"""The target contract (DESIGN §2): capabilities, a pure ``emit``, an optional ``submit``.

A target lowers the IR to an engine's files. Whatever the engine cannot express is reported through
:meth:`EmitContext.unsupported` (or the capability table, checked before ``emit``), and the compile
fails listing every problem at once, or warns if the user asked for that. Nothing is dropped silently.
"""

from __future__ import annotations

import difflib
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, ClassVar

from pipecast.compiler import ir
from pipecast.errors import (
    OutputError,
    ParameterError,
    PipecastError,
    Problem,
    Severity,
    SubmitError,
    UnsupportedFeatureError,
    UnsupportedFeatureWarning,
    ValidationError,
)
from pipecast.redaction import redact_credentials


class Support(str, Enum):
    """How a target handles a feature."""

    NATIVE = "native"
    EMULATED = "emulated"
    UNSUPPORTED = "unsupported"


class Feature(str, Enum):
    """IR features a pipeline may use, in the order ``pipecast targets`` shows them."""

    PARAMETERS = "parameters"
    DATA_PASSING = "data passing"
    AFTER = "after edges"
    RESOURCES = "cpu/memory"
    GPU = "gpu"
    RETRY = "retry"
    RETRY_BACKOFF = "retry backoff"
    TIMEOUT = "timeout"
    CACHE = "cache"
    SCHEDULE = "schedule"
    ENV = "env"
    SECRETS = "secrets"
    STEP_IMAGE = "per-step image"
    SUBMIT = "submit"
    STATUS = "status/wait/cancel"
    UI_URL = "ui url"


@dataclass(frozen=True, slots=True)
class Capability:
    """A target's support for one feature; ``note`` says how (for emulated) or why not."""

    support: Support
    note: str = ""


def native(note: str = "") -> Capability:
    return Capability(Support.NATIVE, note)


def emulated(note: str) -> Capability:
    return Capability(Support.EMULATED, note)


def unsupported(note: str = "") -> Capability:
    return Capability(Support.UNSUPPORTED, note)


@dataclass(frozen=True, slots=True)
class Bundle:
    """The files a target emits: relative POSIX paths mapped to text, in a fixed order."""

    target: str
    files: tuple[tuple[str, str], ...]
    warnings: tuple[Problem, ...] = ()

    def as_dict(self) -> dict[str, str]:
        return dict(self.files)

    def __getitem__(self, path: str) -> str:
        return self.as_dict()[path]

    @property
    def main_file(self) -> str:
        """The first file: the one a user deploys (DAG file, IR YAML, workflow...)."""
        return self.files[0][0]

    def write(self, out_dir: str) -> list[str]:
        """Write every file under ``out_dir``; nothing is left half-written if one write fails."""
        staged: list[tuple[str, str]] = []
        try:
            for relative, text in self.files:
                destination = os.path.join(out_dir, *relative.split("/"))
                os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
                fd, temporary = tempfile.mkstemp(dir=os.path.dirname(destination) or ".", prefix=".pipecast-")
                with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                    handle.write(text)
                staged.append((temporary, destination))
        except BaseException as err:
            for temporary, _ in staged:
                os.unlink(temporary)
            if isinstance(err, OSError):
                raise OutputError(f"cannot write the files under {out_dir!r}: {err.strerror or err}"
                                  f"{f' ({err.filename})' if err.filename else ''}") from None
            raise
        for temporary, destination in staged:
            os.replace(temporary, destination)
        return [destination for _, destination in staged]


@dataclass
class EmitContext:
    """What ``emit`` gets besides the IR: settings and the one way to report unsupported features.

    Settings precedence, lowest first: the target's defaults, the pipeline's ``settings=``, the command
    line's ``--set``, then a step's own ``settings=`` for that step.
    """

    target: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # unsupported features: errors, or warnings
    errors: list[Problem] = field(default_factory=list)  # bad settings or values: always errors

    def setting(self, pipeline: ir.Pipeline, key: str, default: Any = None, step: ir.Step | None = None) -> Any:
        """The value of setting ``key`` for the pipeline, or for ``step`` when given."""
        if step is not None:
            for item in step.settings:
                if item.target == self.target and item.key == key:
                    return item.value
        if key in self.overrides:
            return self.overrides[key]
        for item in pipeline.settings:
            if item.target == self.target and item.key == key:
                return item.value
        return default

    def unsupported(self, message: str, *, step: ir.Step | None = None, fix: str | None = None,
                    location: str | None = None) -> None:
        """Report something the engine cannot express."""
        self.problems.append(Problem(
            message, step=step.name if step else None,
            location=str(step.location) if step else location, fix=fix, target=self.target,
        ))

    def error(self, message: str, *, step: ir.Step | None = None, fix: str | None = None,
              location: str | None = None) -> None:
        """Report a bad setting or value (always an error, whatever ``on_unsupported`` says)."""
        self.errors.append(Problem(
            message, step=step.name if step else None,
            location=str(step.location) if step else location, fix=fix, target=self.target,
        ))


@dataclass(frozen=True, slots=True)
class EmitOptions:
    """Options of one compile: ``--set`` settings and what to do with unsupported features."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    on_unsupported: str = "error"  # or "warn"


class RunStatus(str, Enum):
    """A run's state, the same for every engine."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class RunHandle:
    """One run on an engine: its id, UI URL, and ``status()`` / ``wait()`` / ``cancel()``.

    Subclasses implement :meth:`fetch_status` and :meth:`cancel`; ``wait`` polls with a bound.
    ``run_id`` is pipecast's id in the run store; ``engine_run_id`` is the engine's.
    """

    poll_interval = 2.0

    def __init__(self, *, run_id: str, target: str, engine_run_id: str, url: str | None) -> None:
        self.run_id = run_id
        self.target = target
        self.engine_run_id = engine_run_id
        self.url = url
        self.detail = ""

    @property
    def id(self) -> str:
        return self.run_id

    def fetch_status(self) -> RunStatus:
        raise NotImplementedError

    def status(self) -> RunStatus:
        """Ask the engine for the run's status and record it in the run store."""
        current = self.fetch_status()
        from pipecast.runs.store import RunStore

        RunStore.default().update_status(self.run_id, current.value, detail=self.detail or None)
        return current

    def wait(self, timeout: float | None = 3600.0) -> RunStatus:
        """Poll until the run finishes or ``timeout`` seconds pass (a SubmitError then)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.status()
            if current.finished:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise SubmitError(f"run {self.engine_run_id!r} on {self.target} still {current.value} "
                                  f"after {timeout:g}s")
            time.sleep(self.poll_interval)

    def cancel(self) -> None:
        raise NotImplementedError(f"target {self.target!r} cannot cancel runs")

    def __repr__(self) -> str:
        return redact_credentials(f"<run {self.run_id} on {self.target}: {self.url or self.engine_run_id}>")


class Target:
    """Base class of every target. Subclass, fill the class attributes, implement :meth:`emit`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    extra: ClassVar[str | None] = None  # pip extra that installs the SDK ``submit`` needs
    sdk_modules: ClassVar[tuple[str, ...]] = ()  # modules that extra provides (checked, never imported)
    # stable: emitted files and submit proven against the engine's real software here.
    # beta: files accepted by the engine's own validator or SDK, task commands replayed, submit proven with the
    #   engine's real client against a local server that answers as its documented API (no live engine here).
    # experimental: part of the run path has never met the engine's real behaviour.
    status: ClassVar[str] = "beta"
    capabilities: ClassVar[Mapping[Feature, Capability]] = {}
    settings_help: ClassVar[Mapping[str, str]] = {}  # every compile setting (``--set``, ``settings=``) it reads
    # Connection settings (``-c``) its submit reads; a pipeline's or step's ``settings=`` may hold them too.
    config_help: ClassVar[Mapping[str, str]] = {}
    # Whether a parameter whose value is None reaches the steps as None. Engines pass parameters as typed text
    # with no common "no value", so only targets that carry JSON (local) can; the others refuse None.
    carries_null_parameters: ClassVar[bool] = False

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """Lower the IR to files. Pure: no I/O, clock, network or randomness."""
        raise NotImplementedError

    def submit(self, pipeline: ir.Pipeline, bundle: Bundle, parameters: Mapping[str, Any],
               config: Mapping[str, Any], run_id: str) -> RunHandle:
        """Send the bundle to the engine, start a run, return its handle."""
        raise SubmitError(f"target {self.name!r} does not submit runs; deploy {bundle.main_file!r} yourself")

    def handle(self, record: Mapping[str, Any], config: Mapping[str, Any]) -> RunHandle:
        """Rebuild the handle of a recorded run (for ``pipecast runs wait|cancel``)."""
        raise SubmitError(f"target {self.name!r} cannot track runs")

    def check(self, pipeline: ir.Pipeline, context: EmitContext) -> None:
        """Report every feature the pipeline uses that the capability table marks unsupported."""
        for feature, steps in features_used(pipeline).items():
            capability = self.capabilities.get(feature)
            if capability is None or capability.support is not Support.UNSUPPORTED:
                continue
            reason = f": {capability.note}" if capability.note else ""
            if not steps:
                context.unsupported(f"{self.name} does not support {feature.value}{reason}",
                                    location=str(pipeline.location) if pipeline.location else None)
            for step in steps:
                context.unsupported(f"{self.name} does not support {feature.value}{reason}", step=step)


def features_used(pipeline: ir.Pipeline) -> dict[Feature, list[ir.Step]]:
    """Which features a pipeline uses, with the steps that use them (empty list: pipeline-level)."""
    used: dict[Feature, list[ir.Step]] = {}

    def mark(feature: Feature, step: ir.Step | None = None) -> None:
        bucket = used.setdefault(feature, [])
        if step is not None:
            bucket.append(step)

    if pipeline.parameters:
        mark(Feature.PARAMETERS)
    if pipeline.schedule:
        mark(Feature.SCHEDULE)
    for step in pipeline.steps:
        if any(b.kind is ir.BindingKind.OUTPUT for b in step.bindings):
            mark(Feature.DATA_PASSING, step)
        if step.after:
            mark(Feature.AFTER, step)
        if step.resources.cpu or step.resources.memory:
            mark(Feature.RESOURCES, step)
        if step.resources.gpu:
            mark(Feature.GPU, step)
        if step.retry.attempts > 1:
            mark(Feature.RETRY, step)
            if step.retry.backoff != 1.0:
                mark(Feature.RETRY_BACKOFF, step)
        if step.timeout_seconds:
            mark(Feature.TIMEOUT, step)
        if pipeline.env_of(step):
            mark(Feature.ENV, step)
        if pipeline.secrets_of(step):
            mark(Feature.SECRETS, step)
        if step.image and step.image != pipeline.image:
            mark(Feature.STEP_IMAGE, step)
    return used


def compile_pipeline(pipeline: ir.Pipeline, target_name: str, options: EmitOptions | None = None) -> Bundle:
    """Check and emit ``pipeline`` for a target; raise with every problem, or attach them as warnings."""
    from pipecast.targets.registry import get_target

    options = options or EmitOptions()
    target = get_target(target_name)
    context = EmitContext(target=target.name, overrides=dict(options.settings))
    pipeline = check_settings(pipeline, target, options.settings, context)
    check_null_parameters(pipeline, target, context)
    target.check(pipeline, context)
    try:
        bundle = target.emit(pipeline, context)
    except ValidationError as err:  # e.g. engine names that collide
        context.errors.extend(err.problems)
        bundle = Bundle(target.name, ())
    return _finish(bundle, context, options)


def check_settings(pipeline: ir.Pipeline, target: Target, overrides: Mapping[str, Any],
                   context: EmitContext) -> ir.Pipeline:
    """Report every setting ``target`` does not know, wherever it was given (``--set``, the pipeline's or a
    step's ``settings=``), and settings for a misspelt target name; return the pipeline without the unknown
    settings, so the target's own reading never reports them a second time."""
    from pipecast.targets.registry import target_paths

    for key in overrides:
        if key not in target.settings_help:
            _unknown_setting(context, target, key, "--set", target.settings_help,
                             connection=key in target.config_help)
    known = {**target.settings_help, **target.config_help}
    registered = list(target_paths())
    misspelt: set[str] = set()
    found = False
    pipeline_location = str(pipeline.location) if pipeline.location else None
    for step, settings in [(None, pipeline.settings), *((s, s.settings) for s in pipeline.steps)]:
        origin = "the step's settings=" if step else "the pipeline's settings="
        location = None if step else pipeline_location
        for item in settings:
            if item.target == target.name and item.key not in known:
                found = True
                _unknown_setting(context, target, item.key, origin, known, step=step, location=location)
            elif item.target not in registered and item.target not in misspelt:
                # A name like no target's may belong to a target installed elsewhere; a near miss is a typo.
                close = difflib.get_close_matches(item.target, registered, n=1)
                if close:
                    misspelt.add(item.target)
                    context.error(f"{origin} names target {item.target!r}, which does not exist; did you mean "
                                  f"{close[0]!r}?", step=step, location=location,
                                  fix=f"write settings={{{close[0]!r}: {{...}}}}")
    if not found:
        return pipeline

    def kept(settings: tuple[ir.Setting, ...]) -> tuple[ir.Setting, ...]:
        return tuple(s for s in settings if s.target != target.name or s.key in known)

    return replace(pipeline, settings=kept(pipeline.settings),
                   steps=tuple(replace(s, settings=kept(s.settings)) for s in pipeline.steps))


def _unknown_setting(context: EmitContext, target: Target, key: str, origin: str, known: Mapping[str, str], *,
                     connection: bool = False, step: ir.Step | None = None, location: str | None = None) -> None:
    if connection:
        context.error(f"setting {key!r} given with --set is a connection setting of {target.name!r}",
                      fix=f"pass it to submit with -c {key}=...")
        return
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    fix = f"known settings of {target.name!r}: {', '.join(sorted(known))}" if known else \
        f"target {target.name!r} takes no settings; remove it"
    context.error(f"unknown setting {key!r} for target {target.name!r} in {origin}{hint}", step=step,
                  location=location, fix=fix)


def null_parameter_reason(target: Target) -> str:
    """Why ``target`` refuses a parameter whose value is None: the one explanation compile and submit give."""
    return (f"{target.name} passes parameters as typed text, and engines have no common 'no value' (None would "
            "arrive as 'null' or 'false', or be refused)")


_TYPED_DEFAULTS = {ir.TypeName.STR: "''", ir.TypeName.INT: "0", ir.TypeName.FLOAT: "0.0",
                   ir.TypeName.BOOL: "False", ir.TypeName.LIST: "[]", ir.TypeName.DICT: "{}"}


def check_null_parameters(pipeline: ir.Pipeline, target: Target, context: EmitContext) -> None:
    """Refuse parameters that default to None on a target that cannot carry None (most engines)."""
    if target.carries_null_parameters:
        return
    for param in pipeline.parameters:
        if param.default_json == "null":
            example = _TYPED_DEFAULTS.get(param.type, "0, '', [] or {}")
            context.error(
                f"pipeline parameter {param.name!r} defaults to None: {null_parameter_reason(target)}",
                location=str(param.location) if param.location else None,
                fix=f"give it a real default of its type (e.g. {param.name}: {param.type.value} = {example}) and "
                    "treat that value as 'not set' in the step; `pipecast run` (the local target) accepts None",
            )


def _finish(bundle: Bundle, context: EmitContext, options: EmitOptions) -> Bundle:
    if not context.problems and not context.errors:
        return bundle
    if options.on_unsupported == "warn" and not context.errors:
        warnings = tuple(
            Problem(p.message, p.step, p.location, p.fix, Severity.WARNING, p.target) for p in context.problems
        )
        return Bundle(bundle.target, bundle.files, bundle.warnings + warnings)
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
    """
    from pipecast.runs.store import RunStore, new_run_id
    from pipecast.runtime.params import resolve_parameters
    from pipecast.targets.registry import get_target

    target = get_target(target_name)
    if type(target).submit is Target.submit:  # refused before anything is compiled or recorded
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
    try:
        handle = target.submit(pipeline, bundle, values, config, run_id)
    except BaseException as err:
        if isinstance(err, PipecastError):  # its message may quote a -c URL with a password in it
            err.args = (redact_credentials(str(err)),)
        store.update_status(run_id, "failed", detail=f"submit failed: {err}")
        raise
    store.set_engine_run(run_id, engine_run_id=handle.engine_run_id, url=handle.url)
    return handle
