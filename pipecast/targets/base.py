"""The target contract (DESIGN §2).

A settings class, a complete capability table, a pure ``emit``, and an optional submit module.

A target lowers the IR to an engine's files. Whatever the engine cannot express is reported through
:meth:`EmitContext.unsupported` (or the capability table, checked before ``emit``), and the compile
fails listing every problem at once, or warns if the user asked for that. Nothing is dropped silently.
The flow around it (compile, submit, record, track) is :mod:`pipecast.flow`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from pipecast.compiler import ir
from pipecast.errors import MissingExtraError, Problem, SubmitError
from pipecast.runs.status import EngineRun

if TYPE_CHECKING:
    from pipecast.targets.map_limits import MapLimit
    from pipecast.targets.settings import Settings

__all__ = ["Bundle", "Capability", "EmitContext", "Feature", "SubmitRequest", "Support", "Target", "emulated",
           "features_used", "native", "unsupported"]


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
    MAP = "map (fan-out/fan-in)"
    CONDITION = "conditions"
    EXIT_HANDLER = "exit handler"
    HOOKS = "on_failure/on_success hooks"
    PARALLELISM = "parallelism bound"


# Control flow (issue 16) is lowered target by target. Until a target declares how it handles a construct, the
# construct is refused for it by this one default, named in the support matrix and in the error.
CONTROL_FLOW = (Feature.MAP, Feature.CONDITION, Feature.EXIT_HANDLER, Feature.HOOKS, Feature.PARALLELISM)
_CONSTRUCT = {Feature.MAP: "a map (ParallelFor/expand)", Feature.CONDITION: "a condition (If/Elif/Else)",
              Feature.EXIT_HANDLER: "an exit handler (ExitHandler)", Feature.HOOKS: "an on_failure/on_success hook",
              Feature.PARALLELISM: "a parallelism bound"}


@dataclass(frozen=True, slots=True)
class Capability:
    """A target's support for one feature; ``note`` says how (for emulated) or why not, ``fix`` what to do."""

    support: Support
    note: str = ""
    fix: str = ""


def native(note: str = "") -> Capability:
    """The engine expresses the feature itself."""
    return Capability(Support.NATIVE, note)


def emulated(note: str) -> Capability:
    """The feature is provided by pipecast on this engine; ``note`` says how."""
    return Capability(Support.EMULATED, note)


def unsupported(note: str = "", fix: str = "") -> Capability:
    """The feature cannot be expressed: a pipeline using it is reported, with ``fix`` when there is one."""
    return Capability(Support.UNSUPPORTED, note, fix)


@dataclass(frozen=True, slots=True)
class Bundle:
    """The files a target emits: relative POSIX paths mapped to text, in a fixed order.

    ``settings`` are the target's settings the files were compiled with (set by the compile), for what a submit
    needs that the files cannot hold (Kubeflow's service account is a property of the run, not of the IR).
    """

    target: str
    files: tuple[tuple[str, str], ...]
    warnings: tuple[Problem, ...] = ()
    settings: Any = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, str]:
        """The files as a ``{path: content}`` mapping."""
        return dict(self.files)

    def __getitem__(self, path: str) -> str:
        return self.as_dict()[path]

    @property
    def main_file(self) -> str:
        """The first file: the one a user deploys (DAG file, IR YAML, workflow...)."""
        return self.files[0][0]

    def write(self, out_dir: str) -> list[str]:
        """Write every file under ``out_dir``; nothing is left half-written if one write fails.

        For a folder of the user's, where earlier compiles' files must go, use
        :func:`pipecast.targets.out_dir.write_owned` (what ``pipecast compile --out`` does).
        """
        from pipecast.targets.out_dir import commit, stage

        staged = stage(self.files, out_dir)
        commit(staged)
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
    settings: Any = None  # the target's settings class, parsed for the whole pipeline
    step_settings: dict[str, Any] = field(default_factory=dict)  # steps with settings of their own
    # Images built for this compile (``pipecast build``, run by submit before emit): step name -> REPO@sha256:...
    images: Mapping[str, str] = field(default_factory=dict)
    missing_images: list[str] = field(default_factory=list)  # steps that needed an image and had none

    def settings_for(self, step: ir.Step | None) -> Any:
        """The settings in effect for ``step`` (the pipeline's, unless the step sets some of its own)."""
        if step is None:
            return self.settings
        return self.step_settings.get(step.name, self.settings)

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


@dataclass
class SubmitRequest:
    """What a target's ``submit`` gets: the compiled bundle, the run's values, and how to note what it learns.

    Attributes:
        target: The target submitting.
        pipeline: The pipeline's IR.
        bundle: The files ``emit`` produced (read them from here; never compile or parse the YAML again).
        parameters: The run's parameter values, defaults applied.
        config: Connection settings (``-c``): host, namespace, credentials' sources...
        run_id: pipecast's id of the run, to name engine objects after.
        note: ``note(engine_run_id=..., url=..., **metadata)`` records what identifies the run as soon as it is
            known, and before a request whose answer may be lost, so ``pipecast runs wait`` can find the run.
    """

    target: Target
    pipeline: ir.Pipeline
    bundle: Bundle
    parameters: Mapping[str, Any]
    config: Mapping[str, Any]
    run_id: str
    note: Callable[..., None] = field(default=lambda **_: None)


class Target:
    """Base class of every target.

    A target has a settings class, a complete capability table, ``emit``, and optionally a submit module.

    The submit module (``submit_module``, imported only when a run is submitted or tracked, after the target's
    extra is checked) defines ``submit(request: SubmitRequest) -> EngineRun`` and
    ``reconnect(record, config) -> EngineRun``. Neither writes the run store: the framework records runs.
    """

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
    settings_class: ClassVar[type[Settings]]  # every compile setting (``--set``, ``settings=``)
    # Connection settings (``-c``) its submit reads, declared like settings (for help and the checks before emit).
    connection_class: ClassVar[type[Settings] | None] = None
    # Whether submit also reads them from the pipeline's ``settings=`` (KFP); else they are unknown settings there.
    connection_in_settings: ClassVar[bool] = False
    submit_module: ClassVar[str | None] = None
    # Whether a parameter whose value is None reaches the steps as None. Engines pass parameters as typed text
    # with no common "no value", so only targets that carry JSON (local) can; the others refuse None.
    carries_null_parameters: ClassVar[bool] = False
    # The module ``pipecast schedules list|delete`` uses on this engine (see :mod:`pipecast.schedules`).
    schedules_module: ClassVar[str | None] = None

    def connection_keys(self) -> tuple[str, ...]:
        """The connection settings' names in declaration order (none without a connection class)."""
        return tuple(self.connection_class.spec()) if self.connection_class is not None else ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an abstract family base (KFP, Compose...): its concrete targets are checked
        planned = unsupported(f"not lowered to {cls.name} yet (planned)",
                              fix="run it with the local target (`pipecast run FILE`), which runs control flow "
                                  "natively, or move the loop or decision inside one step")
        cls.capabilities = {**dict.fromkeys(CONTROL_FLOW, planned), **cls.capabilities}
        missing = [feature.value for feature in Feature if feature not in cls.capabilities]
        if missing:
            raise TypeError(f"target {cls.name!r} leaves {missing!r} undecided: its capability table must say "
                            "native(...), emulated(...) or unsupported(...) for every Feature")
        if getattr(cls, "settings_class", None) is None:
            raise TypeError(f"target {cls.name!r} has no settings class: set settings_class to a Settings subclass "
                            "(an empty one if the target takes no settings)")

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """Lower the IR to files. Pure: no I/O, clock, network or randomness."""
        raise NotImplementedError

    @property
    def can_submit(self) -> bool:
        """Whether runs can be submitted to this target."""
        return self.submit_module is not None

    def start(self, request: SubmitRequest) -> EngineRun:
        """Submit ``request`` through the target's submit module (its SDK checked first)."""
        api: Any = self._submit_api()
        run: EngineRun = api.submit(request)
        return run

    def reconnect(self, record: Mapping[str, Any], config: Mapping[str, Any]) -> EngineRun:
        """The engine's view of a recorded run (for ``pipecast runs wait|cancel``)."""
        api: Any = self._submit_api()
        run: EngineRun = api.reconnect(record, config)
        return run

    def logs(self, record: Mapping[str, Any], config: Mapping[str, Any], step: str | None = None,
             follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """A recorded run's log lines (``pipecast runs logs``): its engine run's :meth:`~EngineRun.logs`.

        A target whose engine keeps no logs pipecast can read overrides this to say which and why.
        """
        return self.reconnect(record, config).logs(step, follow, timeout)

    def schedules(self) -> Any:
        """The module that lists and deletes this target's schedules on its engine (its SDK checked first).

        Raises SubmitError saying why when the engine keeps no schedule pipecast can reach.
        """
        if self.schedules_module is None:
            capability = self.capabilities.get(Feature.SCHEDULE)
            note = capability.note if capability and capability.note else "none"
            if capability is not None and capability.support is Support.EMULATED:
                raise SubmitError(f"target {self.name!r} keeps no schedule on an engine for pipecast to list or "
                                  f"delete ({note}); manage it where you installed it")
            raise SubmitError(f"pipecast cannot list or delete the schedules of target {self.name!r} (its "
                              f"schedule: {note}); use the engine's own tools")
        self.require_extra()
        return importlib.import_module(self.schedules_module)

    def _submit_api(self) -> object:
        if self.submit_module is None:
            raise SubmitError(f"target {self.name!r} does not submit or track runs; deploy its files yourself")
        self.require_extra()
        return importlib.import_module(self.submit_module)

    def extra_installed(self) -> bool:
        """Whether the modules the target's SDK extra provides can be imported (without importing them)."""
        for module in self.sdk_modules:
            try:
                if importlib.util.find_spec(module) is None:
                    return False
            except (ImportError, ValueError):
                return False
        return True

    def require_extra(self) -> None:
        """Raise MissingExtraError with the exact pip command if the target's SDK is missing."""
        if not self.extra_installed():
            raise MissingExtraError(
                f"target {self.name!r} needs its SDK ({', '.join(self.sdk_modules)}), which is not installed.\n\n"
                f"    python -m pip install 'pipecast[{self.extra}]'"
            )

    def map_limit(self, settings: Any) -> MapLimit | None:
        """The most items (or bytes) the engine expands one map into, with its rule and how to raise it.

        ``settings``: the target's parsed settings (None when they did not parse). pipecast checks maps over list
        parameters against it before submitting (:mod:`pipecast.targets.map_limits`). Default: no limit.
        """
        return None

    def image_requirements(self, pipeline: ir.Pipeline, settings: Any) -> tuple[str, ...]:
        """Requirements an image pipecast builds for ``pipeline`` needs besides the steps' own (``settings``: parsed).

        For pods the target runs pipecast in besides the steps (a driver, a schedule's creator pod) when they use
        the built image. Default: none.
        """
        return ()

    def check(self, pipeline: ir.Pipeline, context: EmitContext) -> None:
        """Report every feature the pipeline uses that the capability table marks unsupported.

        Unsupported control flow is always an error (``--on-unsupported=warn`` cannot drop a loop or a branch:
        the run would do something else), and the target does not emit.
        """
        for feature, steps in features_used(pipeline).items():
            capability = self.capabilities[feature]
            if capability.support is not Support.UNSUPPORTED:
                continue
            reason = f": {capability.note}" if capability.note else ""
            fix = capability.fix or None
            if feature in CONTROL_FLOW:
                self._refuse_control_flow(pipeline, feature, steps, capability, context)
                continue
            if not steps:
                context.unsupported(f"{self.name} does not support {feature.value}{reason}", fix=fix,
                                    location=str(pipeline.location) if pipeline.location else None)
            for step in steps:
                context.unsupported(f"{self.name} does not support {feature.value}{reason}", step=step, fix=fix)

    def _refuse_control_flow(self, pipeline: ir.Pipeline, feature: Feature, steps: list[ir.Step],
                             capability: Capability, context: EmitContext) -> None:
        """One error per construct, at its first step, naming the others that use it."""
        others = [s.name for s in steps[1:]]
        more = f" (also steps {', '.join(map(repr, others[:5]))}{', ...' if len(others) > 5 else ''})" \
            if others else ""
        reason = f": {capability.note}" if capability.note else ""
        message = f"{self.name} cannot run {_CONSTRUCT[feature]}{reason}{more}"
        if steps:
            context.error(message, step=steps[0], fix=capability.fix or None)
        else:
            context.error(message, fix=capability.fix or None,
                          location=str(pipeline.location) if pipeline.location else None)

    def refuses_control_flow(self, pipeline: ir.Pipeline) -> bool:
        """Whether the pipeline uses control flow this target does not handle (then it must not emit)."""
        return any(self.capabilities[f].support is Support.UNSUPPORTED for f in features_used(pipeline)
                   if f in CONTROL_FLOW)


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
    if pipeline.uses_control_flow:
        _control_flow_used(pipeline, mark)
    return used


def _control_flow_used(pipeline: ir.Pipeline, mark: Callable[..., None]) -> None:
    """Mark the control-flow features a pipeline uses, on the steps that use them."""
    groups = {g.name: g for g in pipeline.groups}
    if pipeline.parallelism is not None:
        mark(Feature.PARALLELISM)
    for step in pipeline.steps:
        name, kinds = step.group, set[object]()
        while name is not None and name in groups:
            kinds.add(groups[name].kind)
            if groups[name].parallelism is not None:
                kinds.add("parallelism")
            name = groups[name].parent
        if ir.GroupKind.MAP in kinds or any(b.kind is ir.BindingKind.COLLECTED for b in step.bindings):
            mark(Feature.MAP, step)
        if "parallelism" in kinds:
            mark(Feature.PARALLELISM, step)
        if ir.GroupKind.CONDITION in kinds or any(b.kind is ir.BindingKind.ONE_OF for b in step.bindings):
            mark(Feature.CONDITION, step)
        if step.trigger is ir.Trigger.ALWAYS:
            mark(Feature.EXIT_HANDLER, step)
        if step.trigger in (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS):
            mark(Feature.HOOKS, step)


