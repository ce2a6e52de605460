"""The authoring API: ``@step``, ``@pipeline`` and their option types.

Decorating records the function and its options only; nothing is traced or built at import time.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from pipecast.compiler import ir
from pipecast.compiler.naming import name_problem
from pipecast.compiler.signatures import (
    SignatureError,
    read_inputs,
    read_outputs,
    resolve_hints,
    source_hash,
    type_name,
)
from pipecast.compiler.units import normalize_quantity, parse_duration
from pipecast.compiler.user_code import relative_file
from pipecast.errors import Problem
from pipecast.typed_artifacts import IncludeFile

if TYPE_CHECKING:
    from pipecast.runs.tracking import RunHandle
    from pipecast.targets.base import Bundle

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Resources:
    """Compute for a step: ``Resources(cpu=2, memory="4Gi", gpu=1, gpu_type="nvidia-tesla-t4")``.

    ``cpu`` and ``memory`` use Kubernetes quantities (``"500m"``, ``"512Mi"``); numbers are accepted.
    """

    cpu: str | int | float | None = None
    memory: str | int | None = None
    gpu: int = 0
    gpu_type: str | None = None

    def to_ir(self) -> ir.Resources:
        """The IR form, with the CPU and memory quantities normalized."""
        return ir.Resources(
            cpu=None if self.cpu is None else normalize_quantity(self.cpu),
            memory=None if self.memory is None else normalize_quantity(self.memory),
            gpu=self.gpu,
            gpu_type=self.gpu_type,
        )


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry a failed step: ``attempts`` counts every try (``attempts=3`` is the first try plus 2 retries).

    ``delay`` is the wait before the first retry (``"30s"``, ``"5m"`` or seconds); each later wait is
    multiplied by ``backoff``, up to ``max_delay``.
    """

    attempts: int = 1
    delay: str | int | float = 0
    backoff: float = 1.0
    max_delay: str | int | float | None = None


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret the engine holds, exposed to the step as the environment variable ``env``.

    ``Secret("db-credentials", key="password", env="DB_PASSWORD")`` names a Kubernetes secret and key,
    a GitHub secret, an Airflow variable... Its value is never written anywhere by pipecast.
    """

    name: str
    key: str | None = None
    env: str | None = None

    def to_ir(self) -> ir.SecretRef:
        """The IR form; ``env`` defaults to the key (or name) upper-cased, other characters as ``_``."""
        env = self.env or re.sub(r"[^A-Za-z0-9]", "_", self.key or self.name).upper()
        return ir.SecretRef(name=self.name, key=self.key, env=env)


@dataclass(frozen=True, slots=True)
class StepOptions:
    """The options of a step, already converted to IR values."""

    name: str | None = None
    resources: ir.Resources = field(default_factory=ir.Resources)
    retry: ir.RetryPolicy = field(default_factory=ir.RetryPolicy)
    timeout_seconds: float | None = None
    cache: bool = True
    image: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[ir.SecretRef, ...] = ()
    settings: tuple[ir.Setting, ...] = ()
    outputs: tuple[str, ...] | None = None
    packages: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StepSpec:
    """What a step function declares, read once from its signature."""

    function: ir.FunctionRef
    inputs: tuple[ir.InputSpec, ...]
    outputs: tuple[ir.OutputSpec, ...]
    description: str
    problems: tuple[str, ...]


def _options(
    *,
    name: str | None = None,
    resources: Resources | None = None,
    retry: Retry | int | None = None,
    timeout: str | int | float | None = None,
    cache: bool = True,
    image: str | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[Secret | str] = (),
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    outputs: Sequence[str] | None = None,
    packages: Sequence[str] = (),
) -> StepOptions:
    """Convert ``@step`` options to IR values; a bad option becomes a problem, reported where the step is used."""
    problems: list[str] = []
    timeout_seconds = None
    if timeout is not None:
        timeout_seconds = parse_duration(timeout)
        if timeout_seconds is None or timeout_seconds == 0:
            problems.append(f"timeout {timeout!r} is not a duration (use e.g. '90s', '30m', '1h30m' or seconds)")
            timeout_seconds = None
    if resources is not None and not isinstance(resources, Resources):
        problems.append(f"resources must be Resources(cpu=..., memory=..., gpu=...), got {resources!r}")
        resources = None
    if not isinstance(cache, bool):
        problems.append(f"cache must be True or False, got {cache!r}")
        cache = True
    if outputs is not None and not _is_text_sequence(outputs):
        problems.append(f"outputs must be a tuple of output names, e.g. outputs=('train', 'test'), got {outputs!r}")
        outputs = None
    return StepOptions(
        name=_text_option("name", name, problems),
        resources=resources.to_ir() if resources else ir.Resources(),
        retry=_retry_policy(retry, problems),
        timeout_seconds=timeout_seconds,
        cache=cache,
        image=_text_option("image", image, problems),
        env=_env(env, problems),
        secrets=_secrets(secrets, problems),
        settings=_settings(settings, problems),
        outputs=tuple(outputs) if outputs is not None else None,
        packages=_requirement_list("packages", packages, problems),
        problems=tuple(problems),
    )


def _requirement_list(option: str, value: Any, problems: list[str]) -> tuple[str, ...]:
    """A list of requirement specifiers, stripped; each is checked by validation (PEP 508)."""
    if not _is_text_sequence(value):
        problems.append(f"{option} must be a list of requirement specifiers, e.g. {option}=['torch==2.5.1'], "
                        f"got {value!r}")
        return ()
    return tuple(item.strip() for item in value)


def _text_option(option: str, value: Any, problems: list[str]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    problems.append(f"{option} must be a string, got {type(value).__name__} {value!r}")
    return None


def _is_text_sequence(value: Any) -> bool:
    """A list or tuple of strings; a bare string is refused (``tuple("ab")`` would silently be two names)."""
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _retry_policy(retry: Retry | int | None, problems: list[str]) -> ir.RetryPolicy:
    if retry is None:
        return ir.RetryPolicy()
    if isinstance(retry, int) and not isinstance(retry, bool):
        retry = Retry(attempts=retry + 1)
    if not isinstance(retry, Retry):
        problems.append(f"retry must be Retry(...) or a number of retries, got {type(retry).__name__}")
        return ir.RetryPolicy()
    delay = parse_duration(retry.delay)
    max_delay = None if retry.max_delay is None else parse_duration(retry.max_delay)
    if delay is None:
        problems.append(f"retry delay {retry.delay!r} is not a duration (use e.g. '30s' or seconds)")
    if retry.max_delay is not None and max_delay is None:
        problems.append(f"retry max_delay {retry.max_delay!r} is not a duration")
    if not isinstance(retry.attempts, int) or retry.attempts < 1:
        problems.append(f"retry attempts must be an integer >= 1 (the first try counts), got {retry.attempts!r}")
    if retry.backoff < 1:
        problems.append(f"retry backoff must be >= 1.0, got {retry.backoff!r}")
    return ir.RetryPolicy(
        attempts=max(int(retry.attempts), 1) if isinstance(retry.attempts, int) else 1,
        delay_seconds=delay or 0.0,
        backoff=float(retry.backoff),
        max_delay_seconds=max_delay,
    )


def _env(env: Mapping[str, str] | None, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if env is not None and not isinstance(env, Mapping):
        problems.append(f"env must be a dict of variable name to value, got {env!r}")
        return ()
    items = []
    for key, value in sorted((env or {}).items(), key=lambda item: str(item[0])):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)):
            problems.append(f"environment variable name {key!r} is invalid (letters, digits, _; no leading digit)")
        items.append((str(key), str(value)))
    return tuple(items)


def _secrets(secrets: Iterable[Secret | str], problems: list[str]) -> tuple[ir.SecretRef, ...]:
    if isinstance(secrets, (str, Secret)) or not isinstance(secrets, Iterable):
        problems.append(f"secrets must be a list of Secret(...) or secret names, e.g. secrets=[Secret('db')], "
                        f"got {secrets!r}")
        return ()
    refs = []
    for value in secrets:
        secret = value if isinstance(value, Secret) else Secret(value) if isinstance(value, str) else None
        if secret is None or not isinstance(secret.name, str) or not secret.name:
            problems.append(f"secret {value!r} is not Secret('name', key=..., env=...) or a secret name")
            continue
        refs.append(secret.to_ir())
    return tuple(refs)


def _settings(settings: Mapping[str, Mapping[str, Any]] | None, problems: list[str]) -> tuple[ir.Setting, ...]:
    if settings is not None and not isinstance(settings, Mapping):
        problems.append(f"settings must be a dict of target name to settings, e.g. "
                        f"settings={{'airflow': {{'mode': 'kubernetes'}}}}, got {settings!r}")
        return ()
    result = []
    for target, values in sorted((settings or {}).items(), key=lambda item: str(item[0])):
        if not isinstance(values, Mapping):
            problems.append(f"settings[{target!r}] must be a dict of setting name to value")
            continue
        for key, value in sorted(values.items()):
            try:
                text = ir.canonical_json(value)
            except (TypeError, ValueError):
                problems.append(f"setting {target}.{key} = {value!r} is not JSON-serialisable")
                continue
            result.append(ir.Setting(target=target, key=str(key), value_json=text))
    return tuple(result)


class _Immutable:
    """Definitions never change once made: tracing state lives in the tracer, options in new copies."""

    _sealed = False

    def _seal(self) -> None:
        object.__setattr__(self, "_sealed", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._sealed:
            raise AttributeError(f"{type(self).__name__} is immutable; cannot set {name!r} "
                                 "(steps: use .with_options(...); pipelines: pass the option to @pipeline)")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; cannot delete {name!r}")


_STEP_OPTIONS = tuple(inspect.signature(_options).parameters)


def _check_option_names(given: Iterable[str], where: str) -> None:
    for option in given:
        if option not in _STEP_OPTIONS:
            close = difflib.get_close_matches(option, _STEP_OPTIONS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{where} got an unknown option {option!r}.{hint} Options: {', '.join(_STEP_OPTIONS)}")


class StepDef(_Immutable, Generic[P, R]):
    """A step function. Called inside a pipeline it records a node; outside, it just runs."""

    def __init__(self, fn: Callable[P, R], options: StepOptions) -> None:
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)
        self._seal()

    @property
    def base_name(self) -> str:
        """The node name before de-duplication: the ``name`` option, else the function's name."""
        return self.options.name or self.fn.__name__

    def read_spec(self) -> StepSpec:
        """Inputs, outputs, function reference and problems, read from the signature.

        The tracer keeps them for the length of one trace, so annotations defined after the step resolve.
        """
        problems = list(self.options.problems)
        hints = resolve_hints(self.fn)
        try:
            inputs = read_inputs(self.fn, hints)
        except SignatureError as err:
            problems.append(str(err))
            inputs = ()
        try:
            outputs = read_outputs(self.fn, hints, self.options.outputs)
        except SignatureError as err:
            problems.append(str(err))
            outputs = ()
        for kind, name in [("step name", self.base_name), *(("output name", o.name) for o in outputs)]:
            problem = name_problem(kind, name)
            if problem:
                problems.append(problem)
        if "<locals>" in self.fn.__qualname__:
            problems.append(
                f"step function {self.fn.__qualname__!r} is defined inside another function; engines import "
                "steps by module path, so define it at module level"
            )
        return StepSpec(
            function=ir.FunctionRef(module=_module_of(self.fn), qualname=self.fn.__qualname__,
                                    source_hash=source_hash(self.fn)),
            inputs=inputs,
            outputs=outputs,
            description=inspect.cleandoc(self.fn.__doc__ or "").split("\n\n")[0],
            problems=tuple(problems),
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function; while a pipeline is traced, record a call of the step and return its symbolic result."""
        from pipecast.compiler.tracing import current_tracer

        tracer = current_tracer()
        if tracer is None:
            return self.fn(*args, **kwargs)
        # While tracing, the symbolic StepCall stands for the R the user's code is typed against.
        return tracer.add_call(self, args, kwargs)  # type: ignore[return-value]

    def partial(self, **fixed: Any) -> Partial:
        """The step with some inputs fixed, to :meth:`Partial.expand` over the others (Airflow's ``.partial``)."""
        return Partial(self, fixed)

    def expand(self, *, combine: str | None = None, parallelism: int | None = None, **lists: Any) -> Any:
        """Call the step once per item of each list given by name (a map); see :meth:`Partial.expand`."""
        return Partial(self, {}).expand(combine=combine, parallelism=parallelism, **lists)

    def with_options(self, **overrides: Any) -> StepDef[P, R]:
        """A copy of this step with some options changed, e.g. ``load.with_options(name="load_eval")``."""
        _check_option_names(overrides, "with_options()")
        current = {
            "name": self.options.name,
            "cache": self.options.cache,
            "image": self.options.image,
            "outputs": self.options.outputs,
        }
        converted = _options(**{k: v for k, v in {**current, **overrides}.items()})
        keep = {
            f: getattr(self.options, f)
            for f in ("resources", "retry", "timeout_seconds", "env", "secrets", "settings", "packages")
        }
        mapping = {"resources": "resources", "retry": "retry", "timeout": "timeout_seconds",
                   "env": "env", "secrets": "secrets", "settings": "settings", "packages": "packages"}
        for option, attr in mapping.items():
            if option in overrides:
                keep[attr] = getattr(converted, attr)
        return StepDef(self.fn, replace(converted, **keep, problems=self.options.problems + converted.problems))

    def __repr__(self) -> str:
        return f"<step {self.base_name!r}>"


class Partial:
    """A step with some inputs fixed (``train.partial(data=data)``), to be mapped over the others."""

    def __init__(self, step: StepDef[..., Any], fixed: Mapping[str, Any]) -> None:
        self.step, self.fixed = step, dict(fixed)

    def expand(self, *, combine: str | None = None, parallelism: int | None = None, **lists: Any) -> Any:
        """Call the step once per item: ``train.partial(data=d).expand(rate=rates)``.

        Several lists need ``combine="zip"`` (item i of each) or ``combine="product"`` (every combination).
        Mapping over the result of another ``expand`` continues that map item by item (a chained map). The
        result, passed to a step outside the map, arrives as a list in item order.
        """
        from pipecast.compiler.user_code import caller_location
        from pipecast.control import ParallelFor, Product, Zip
        from pipecast.errors import PipelineDefinitionError

        if not lists:
            raise PipelineDefinitionError(f"expand() of step {self.step.base_name!r} needs a list to map over, "
                                          "by input name: expand(rate=rates)")
        chained = _chained_group(lists.values())
        if chained is not None and combine is None and parallelism is None:
            from pipecast.compiler.tracing import current_tracer

            tracer = current_tracer()
            assert tracer is not None  # _chained_group found step outputs, so a trace is under way
            with tracer.groups.reopen(chained, caller_location(2)):
                return self.step(**self.fixed, **lists)
        if len(lists) > 1 and combine not in ("zip", "product"):
            raise PipelineDefinitionError(
                f"expand() of step {self.step.base_name!r} maps over {len(lists)} lists "
                f"({', '.join(lists)}): say how to pair their items with combine='zip' or combine='product'")
        items: Any = next(iter(lists.values())) if len(lists) == 1 else \
            (Zip if combine == "zip" else Product)(*lists.values())
        with ParallelFor(items, parallelism=parallelism) as item:
            values = dict(zip(lists, item)) if len(lists) > 1 else {next(iter(lists)): item}
            return self.step(**self.fixed, **values)


def _chained_group(values: Iterable[Any]) -> Any:
    """The map group every value was made in, when each is a step output made directly in one map."""
    from pipecast.compiler.symbolic import OutputRef, StepCall

    groups = set()
    for value in values:
        if not isinstance(value, (OutputRef, StepCall)) or value.node.group is None:
            return None
        groups.add(value.node.group)
    if len(groups) != 1:
        return None
    (group,) = groups
    return group if group.kind is ir.GroupKind.MAP else None


def _module_of(fn: Callable[..., Any]) -> str:
    module = fn.__module__
    if module == "__main__":
        import sys

        main_file: str | None = getattr(sys.modules.get("__main__"), "__file__", None)
        if main_file:
            import os

            return os.path.splitext(os.path.basename(main_file))[0]
    return module


@overload
def step(fn: Callable[P, R], /) -> StepDef[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    resources: Resources | None = None,
    retry: Retry | int | None = None,
    timeout: str | int | float | None = None,
    cache: bool = True,
    image: str | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[Secret | str] = (),
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    outputs: Sequence[str] | None = None,
    packages: Sequence[str] = (),
) -> Callable[[Callable[P, R]], StepDef[P, R]]: ...


def step(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Mark a function as a pipeline step.

    Args:
        fn: The function, when ``@step`` is written without parentheses.
        name: Node name (default: the function's name; repeated calls get ``name_2``, ``name_3``...).
        resources: CPU, memory and GPUs the step needs.
        retry: A :class:`Retry` policy, or a number of retries.
        timeout: Longest time one try may run (``"1h"``, ``"90s"`` or seconds).
        cache: Whether a run may reuse this step's earlier outputs for the same inputs and code.
        image: Container image for engines that run containers (default: the pipeline's image).
        env: Environment variables for the step.
        secrets: :class:`Secret` references (or secret names) exposed as environment variables.
        settings: Per-target settings, e.g. ``{"airflow": {"mode": "kubernetes"}}``.
        outputs: Names of the outputs when the function returns a tuple.
        packages: Requirement specifiers this step needs besides the pipeline's (``["torch==2.5.1"]``); steps
            with different packages run in different images.

    Example:
        >>> @step(retry=Retry(attempts=3, delay="30s"), timeout="1h")
        ... def load(source: str) -> dict:
        ...     return {"source": source}
        >>> load("x.csv")
        {'source': 'x.csv'}
    """
    _check_option_names(options, "@step")
    if fn is not None:
        return StepDef(fn, _options())

    def decorate(func: Callable[..., Any]) -> StepDef[Any, Any]:
        return StepDef(func, _options(**options))

    return decorate


class PipelineDef(_Immutable):
    """A pipeline function. Trace it with :meth:`build`, run it with :meth:`run` or by calling it.

    A definition never changes: its option problems are found once, here; everything a trace finds
    belongs to that trace, so every :meth:`build` reports the same problems.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        image: str | None = None,
        schedule: str | None = None,
        artifact_root: str | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Iterable[Secret | str] = (),
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        tags: Iterable[str] = (),
        requirements: Sequence[str] | str = (),
        parallelism: int | None = None,
        on_failure: StepDef[..., Any] | None = None,
        on_success: StepDef[..., Any] | None = None,
    ) -> None:
        problems: list[str] = []
        self.fn = fn
        if parallelism is not None and (not isinstance(parallelism, int) or isinstance(parallelism, bool)
                                        or parallelism < 1):
            problems.append(f"parallelism must be a whole number >= 1, got {parallelism!r}")
            parallelism = None
        self.parallelism = parallelism
        hooks: list[tuple[ir.Trigger, StepDef[..., Any]]] = []
        for option, hook, trigger in (("on_failure", on_failure, ir.Trigger.ON_FAILURE),
                                      ("on_success", on_success, ir.Trigger.ON_SUCCESS)):
            if hook is None:
                continue
            if not isinstance(hook, StepDef):
                problems.append(f"{option} must be a @step function (it may take a `status: dict` input), "
                                f"got {hook!r}")
            else:
                hooks.append((trigger, hook))
        self.hooks = tuple(hooks)
        self.name = _text_option("name", name, problems) or fn.__name__
        given = _text_option("description", description, problems)
        self.description = given if given is not None else inspect.cleandoc(fn.__doc__ or "")
        self.image = _text_option("image", image, problems)
        self.schedule = schedule if schedule is None or isinstance(schedule, str) else None
        self.artifact_root = _text_option("artifact_root", artifact_root, problems)
        self.env = _env(env, problems)
        self.secrets = _secrets(secrets, problems)
        self.settings = _settings(settings, problems)
        listed = sorted(tags, key=str) if isinstance(tags, (set, frozenset)) else tags  # a set has no order
        if not _is_text_sequence(listed):
            problems.append(f"tags must be a list of strings, e.g. tags=['nightly'], got {tags!r}")
            listed = ()
        self.tags = tuple(listed)
        code = fn.__code__
        self.location = ir.Location(file=relative_file(code.co_filename, _module_of(fn)), line=code.co_firstlineno)
        where = str(self.location)
        file_problems: list[Problem] = []
        if isinstance(requirements, str):
            from pipecast.compiler.requirements import read_requirements_file

            self.requirements = read_requirements_file(requirements, code.co_filename, where, file_problems)
        else:
            self.requirements = _requirement_list("requirements", requirements, problems)
        self.problems = (tuple(Problem(p, location=where) for p in problems) + tuple(file_problems)
                         + _schedule_problems(schedule, where))
        functools.update_wrapper(self, fn)
        self._seal()

    def read_parameters(self) -> tuple[tuple[ir.Parameter, ...], tuple[Problem, ...]]:
        """The pipeline's parameters from its signature, with the problems found in them.

        Types come from annotations or defaults; each parameter carries the ``file:line`` where it is declared.
        """
        hints = resolve_hints(self.fn)
        lines = _parameter_lines(self.fn)
        params: list[ir.Parameter] = []
        problems: list[Problem] = []
        for param in inspect.signature(self.fn).parameters.values():
            location = replace(self.location, line=lines.get(param.name, self.location.line))
            params.append(_parameter(param, hints.get(param.name, param.annotation), location, problems))
        return tuple(params), tuple(problems)

    def to_ir(
        self,
        params: tuple[ir.Parameter, ...],
        steps: tuple[ir.Step, ...],
        outputs: tuple[ir.PipelineOutput, ...],
        groups: tuple[ir.Group, ...] = (),
    ) -> ir.Pipeline:
        """The IR pipeline of one trace's parameters, steps, outputs and groups, with this definition's options."""
        return ir.Pipeline(
            name=self.name,
            description=self.description,
            location=self.location,
            parameters=params,
            steps=steps,
            outputs=outputs,
            image=self.image,
            schedule=self.schedule,
            artifact_root=self.artifact_root,
            env=self.env,
            secrets=self.secrets,
            settings=self.settings,
            tags=self.tags,
            requirements=self.requirements,
            groups=groups,
            parallelism=self.parallelism,
        )

    def build(self) -> ir.Pipeline:
        """Trace and validate; raise :class:`~pipecast.errors.ValidationError` listing every problem."""
        from pipecast.compiler.validate import build_pipeline

        return build_pipeline(self)

    def compile(
        self, target: str, *, settings: Mapping[str, Any] | None = None, on_unsupported: str = "error"
    ) -> Bundle:
        """Compile for ``target`` and return the files (nothing is written)."""
        from pipecast.flow import EmitOptions, compile_pipeline

        return compile_pipeline(
            self.build(), target, EmitOptions(settings=dict(settings or {}), on_unsupported=on_unsupported)
        )

    def run(self, parameters: Mapping[str, Any] | None = None, *, stack: str | None = None, **options: Any) -> Any:
        """Run on the active stack and return the finished run.

        The stack is ``stack=``, else ``$PIPECAST_STACK``, else ``pipecast stack use``'s, else ``local``: a LocalRun
        with its outputs on ``local``, a DockerRun on ``local_docker``, a waited run handle elsewhere.
        ``options`` are the local runner's (``workers``, ``cache``...); see :mod:`pipecast.stacks.running`.
        """
        from pipecast.stacks.files import active_stack
        from pipecast.stacks.running import run_on_stack

        return run_on_stack(self.build(), dict(parameters or {}), active_stack(stack), **options)

    def submit(
        self,
        target: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        on_unsupported: str = "error",
        **config: Any,
    ) -> RunHandle:
        """Compile for ``target``, submit it to the engine and return a run handle.

        ``config`` holds the connection settings (host, namespace...); ``on_unsupported="warn"`` submits despite
        features the engine cannot express, each reported as an ``UnsupportedFeatureWarning``.
        """
        from pipecast.flow import submit_pipeline

        return submit_pipeline(self.build(), target, dict(parameters or {}), dict(settings or {}), config,
                               on_unsupported=on_unsupported)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the pipeline on the active stack, the arguments being its parameters (see :meth:`run`)."""
        names = [p.name for p in inspect.signature(self.fn).parameters.values()]
        params = dict(zip(names, args))
        params.update(kwargs)
        return self.run(params)

    def __repr__(self) -> str:
        return f"<pipeline {self.name!r}>"


def _schedule_problems(schedule: Any, where: str) -> tuple[Problem, ...]:
    if schedule is None or isinstance(schedule, str):
        return ()  # the cron syntax is checked by validation
    return (Problem(
        f"schedule must be a cron string, got {type(schedule).__name__} {schedule!r}", location=where,
        fix="schedules are cron strings: '0 3 * * *' is 03:00 every day; timedelta(days=1) is '@daily', "
            "timedelta(hours=1) is '@hourly'",
    ),)


def _parameter(param: inspect.Parameter, annotation: Any, location: ir.Location,
               problems: list[Problem]) -> ir.Parameter:
    where = str(location)
    has_default = param.default is not param.empty
    include = annotation is IncludeFile  # a str on every engine: the stored input's URI
    if annotation is param.empty and has_default and param.default is not None:
        kind = type_name(type(param.default))
    else:
        kind = ir.TypeName.STR if include else type_name(annotation)
    if kind is ir.TypeName.ANY:
        problems.append(Problem(
            f"pipeline parameter {param.name!r} has type {annotation!r}; parameters must be "
            "str, int, float, bool, dict or list so every engine can pass them",
            location=where, fix=f"annotate it, e.g. {param.name}: str",
        ))
    default_json = None
    if has_default:
        try:
            default_json = ir.canonical_json(param.default)
        except (TypeError, ValueError):
            problems.append(Problem(
                f"default of pipeline parameter {param.name!r} is not JSON-serialisable: {param.default!r}",
                location=where,
            ))
    return ir.Parameter(name=param.name, type=kind, default_json=default_json, location=location,
                        include_file=include)


def _parameter_lines(fn: Callable[..., Any]) -> dict[str, int]:
    """The line of each parameter in the function's ``def`` (empty when the source cannot be read)."""
    try:
        lines, first = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return {}
    definition = tree.body[0] if tree.body else None
    if not isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return {}
    args = definition.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, *filter(None, (args.vararg, args.kwarg))]
    return {arg.arg: first + arg.lineno - 1 for arg in every}


def pipeline(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    image: str | None = None,
    schedule: str | None = None,
    artifact_root: str | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[Secret | str] = (),
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    tags: Iterable[str] = (),
    requirements: Sequence[str] | str = (),
    parallelism: int | None = None,
    on_failure: StepDef[..., Any] | None = None,
    on_success: StepDef[..., Any] | None = None,
) -> Any:
    """Mark a function as a pipeline; its parameters become the pipeline's typed parameters.

    Args:
        fn: The function, when ``@pipeline`` is written without parentheses.
        name: Pipeline name (default: the function's name).
        description: Text shown by engines (default: the docstring).
        image: Default container image of its steps.
        schedule: A five-field cron expression (or ``@daily``...) for engines that schedule runs.
        artifact_root: Where outputs are stored (``file://``, ``s3://``, ``gs://``, ``az://``).
        env: Environment variables for every step.
        secrets: :class:`Secret` references for every step.
        settings: Per-target settings, e.g. ``{"airflow": {"mode": "kubernetes"}}``.
        tags: Labels shown by engines that have them.
        requirements: What every step's image installs: requirement specifiers (``["pandas==2.2.3"]``), or
            the path of a requirements file relative to the pipeline's file. When not given, ``pipecast build``
            reads ``requirements.txt`` or ``pyproject.toml`` at the import root.
        parallelism: How many steps (map items included) may run at once in a run.
        on_failure: A step run after every other step when one failed; a ``status`` input gets the final status.
        on_success: A step run after every other step when none failed.
    """
    def define(func: Callable[..., Any]) -> PipelineDef:
        return PipelineDef(func, name=name, description=description, image=image, schedule=schedule,
                           artifact_root=artifact_root, env=env, secrets=secrets, settings=settings, tags=tags,
                           requirements=requirements, parallelism=parallelism, on_failure=on_failure,
                           on_success=on_success)

    return define(fn) if fn is not None else define
