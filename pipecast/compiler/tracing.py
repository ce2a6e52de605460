"""Tracing: run a pipeline function with symbolic values and record the step calls as IR.

Nothing here runs at import time. :func:`trace` opens a :class:`contextvars.ContextVar` scope, calls
the pipeline function with a :class:`ParamRef` per parameter, and each step call inside records a
node (with the caller's ``file:line``) and returns symbolic outputs. Problems found while tracing
(unknown arguments, unserialisable constants, bad option values) are collected, not raised, so a
user sees every problem at once.
"""

from __future__ import annotations

import json
import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from pipecast.compiler import ir
from pipecast.errors import PipelineDefinitionError, Problem

if TYPE_CHECKING:
    from pipecast.dsl import PipelineDef, StepDef

_CURRENT: ContextVar[Tracer | None] = ContextVar("pipecast_tracer", default=None)


def current_tracer() -> Tracer | None:
    """The tracer of the pipeline being traced in this context, if any."""
    return _CURRENT.get()


def _symbolic(what: str) -> NoReturn:
    raise PipelineDefinitionError(
        f"{what} is symbolic while the pipeline is traced: its value exists only when the pipeline runs. "
        "Pass it to a step and compute with it inside the step."
    )


class _Symbolic:
    """Operations that would need a real value fail with a clear message."""

    __slots__ = ()

    def _describe(self) -> str:
        raise NotImplementedError

    def __bool__(self) -> bool:
        _symbolic(self._describe())

    def __format__(self, spec: str) -> str:
        _symbolic(self._describe())

    def __iter__(self) -> Any:
        _symbolic(self._describe())

    def __add__(self, other: Any) -> Any:
        _symbolic(self._describe())

    __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __add__
    __lt__ = __le__ = __gt__ = __ge__ = __add__

    def __repr__(self) -> str:
        return f"<{self._describe()}>"


class ParamRef(_Symbolic):
    """A pipeline parameter during tracing."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _describe(self) -> str:
        return f"pipeline parameter {self.name!r}"


class OutputRef(_Symbolic):
    """One output of a traced step call."""

    __slots__ = ("node", "output")

    def __init__(self, node: _Node, output: str) -> None:
        self.node = node
        self.output = output

    def _describe(self) -> str:
        return f"output {self.output!r} of step {self.node.name!r}"

    def after(self, *others: Any) -> OutputRef:
        """Run this output's step after ``others`` (steps or outputs), with no data passed."""
        self.node.add_after(others)
        return self


class StepCall(_Symbolic):
    """The result of calling a step inside a pipeline.

    With one output it stands for that output; with several it unpacks into them
    (``a, b = split(x)``) and indexes by position or name (``res["train"]``).
    """

    __slots__ = ("node",)

    def __init__(self, node: _Node) -> None:
        self.node = node

    def _describe(self) -> str:
        return f"result of step {self.node.name!r}"

    @property
    def name(self) -> str:
        """The node's unique name in the pipeline."""
        return self.node.name

    @property
    def outputs(self) -> dict[str, OutputRef]:
        return {o.name: OutputRef(self.node, o.name) for o in self.node.step.spec.outputs}

    def __iter__(self) -> Any:
        outputs = self.node.step.spec.outputs
        if len(outputs) < 2:
            raise PipelineDefinitionError(
                f"step {self.node.name!r} has {len(outputs)} output(s) and cannot be unpacked; "
                "annotate it with tuple[...] or pass outputs=(...) to @step"
            )
        return iter([OutputRef(self.node, o.name) for o in outputs])

    def __getitem__(self, key: int | str) -> OutputRef:
        outputs = self.node.step.spec.outputs
        names = [o.name for o in outputs]
        if isinstance(key, int):
            if not -len(names) <= key < len(names):
                raise PipelineDefinitionError(f"step {self.node.name!r} has no output number {key}")
            return OutputRef(self.node, names[key])
        if key not in names:
            raise PipelineDefinitionError(f"step {self.node.name!r} has no output {key!r}; it has {names!r}")
        return OutputRef(self.node, key)

    def after(self, *others: Any) -> StepCall:
        """Run this step after ``others`` (steps or outputs), with no data passed."""
        self.node.add_after(others)
        return self


@dataclass(slots=True)
class _Node:
    tracer: Tracer
    name: str
    step: StepDef
    location: ir.Location
    bindings: list[ir.Binding]
    explicit_name: bool
    after: list[str] = field(default_factory=list)

    def add_after(self, others: tuple[Any, ...]) -> None:
        for other in others:
            if isinstance(other, (list, tuple)):
                self.add_after(tuple(other))
            elif isinstance(other, (StepCall, OutputRef)):
                if other.node.name not in self.after:
                    self.after.append(other.node.name)
            else:
                self.tracer.problems.append(Problem(
                    f".after() takes step results, got {type(other).__name__}",
                    step=self.name, location=str(self.location),
                    fix="pass the value a step call returned, e.g. b.after(a)",
                ))


_RELATIVE_FILES: dict[tuple[str, str], str] = {}


def relative_file(filename: str, module: str) -> str:
    """The file's path relative to its import root (``pkg/mod.py``), so the IR is the same on any machine."""
    key = (filename, module)
    cached = _RELATIVE_FILES.get(key)
    if cached is None:
        path = os.path.abspath(filename)
        depth = 1 if module == "__main__" else module.count(".") + 1
        if os.path.basename(path) == "__init__.py":
            depth += 1
        parts = path.split(os.sep)
        cached = _RELATIVE_FILES[key] = "/".join(parts[-depth:])
    return cached


def caller_location(depth: int = 2) -> ir.Location:
    """The ``file:line`` of the code ``depth`` frames up (cheap: no ``inspect.stack()``)."""
    frame = sys._getframe(depth)
    module = frame.f_globals.get("__name__", "__main__")
    return ir.Location(file=relative_file(frame.f_code.co_filename, module), line=frame.f_lineno)


class Tracer:
    """Records the step calls of one pipeline being traced."""

    def __init__(self, pipeline: PipelineDef) -> None:
        self.pipeline = pipeline
        self.nodes: list[_Node] = []
        self.names: dict[str, _Node] = {}
        self.counters: dict[str, int] = {}
        self.problems: list[Problem] = []

    def add_call(self, step: StepDef, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepCall:
        """Record one call of ``step`` and return its symbolic result."""
        location = caller_location(3)
        spec = step.spec
        name = self._unique_name(step, location)
        bindings: list[ir.Binding] = []
        inputs = spec.inputs
        if len(args) > len(inputs):
            self.problems.append(Problem(
                f"step {step.base_name!r} takes {len(inputs)} input(s) but {len(args)} were given positionally",
                step=name, location=str(location), fix="pass inputs by name",
            ))
        for input_spec, value in zip(inputs, args):
            bindings.append(self._bind(name, location, input_spec.name, value))
        for key, value in kwargs.items():
            bindings.append(self._bind(name, location, key, value))
        node = _Node(self, name, step, location, bindings, explicit_name=step.options.name is not None)
        self.nodes.append(node)
        self.names[name] = node
        for problem in spec.problems:
            self.problems.append(Problem(problem, step=name, location=str(location)))
        return StepCall(node)

    def _unique_name(self, step: StepDef, location: ir.Location) -> str:
        base = step.base_name
        if step.options.name is not None:
            if base in self.names:
                self.problems.append(Problem(
                    f"two steps are named {base!r}; explicit step names must be unique",
                    step=base, location=str(location),
                    fix=f"give one of them another name (first at {self.names[base].location})",
                ))
                base = f"{base}__duplicate"
            else:
                return base
        count = self.counters.get(base, 1)
        name = base if count == 1 and base not in self.names else f"{base}_{count}"
        while name in self.names:
            count += 1
            name = f"{base}_{count}"
        self.counters[base] = count + 1
        return name

    def _bind(self, step_name: str, location: ir.Location, input_name: str, value: Any) -> ir.Binding:
        if isinstance(value, ParamRef):
            return ir.Binding(input=input_name, kind=ir.BindingKind.PARAMETER, parameter=value.name)
        if isinstance(value, OutputRef):
            return ir.Binding(input=input_name, kind=ir.BindingKind.OUTPUT, step=value.node.name,
                              output=value.output)
        if isinstance(value, StepCall):
            outputs = value.node.step.spec.outputs
            if len(outputs) == 1:
                return ir.Binding(input=input_name, kind=ir.BindingKind.OUTPUT, step=value.node.name,
                                  output=outputs[0].name)
            return ir.Binding(
                input=input_name, kind=ir.BindingKind.INVALID,
                description=f"the result of step {value.node.name!r}, which has {len(outputs)} outputs",
            )
        try:
            text = _constant_json(value)
        except _NestedSymbolic as nested:
            return ir.Binding(input=input_name, kind=ir.BindingKind.INVALID,
                              description=f"a container holding {nested.args[0]}")
        except (TypeError, ValueError):
            return ir.Binding(input=input_name, kind=ir.BindingKind.INVALID,
                              description=f"{type(value).__name__} value {_short_repr(value)}")
        return ir.Binding(input=input_name, kind=ir.BindingKind.CONSTANT, value_json=text)


class _NestedSymbolic(TypeError):
    pass


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class TraceResult:
    """The IR of a traced pipeline and the problems found while tracing it."""

    pipeline: ir.Pipeline
    problems: tuple[Problem, ...]


def trace(pipeline: PipelineDef) -> TraceResult:
    """Trace ``pipeline`` and return its IR, with every tracing problem collected."""
    if _CURRENT.get() is not None:
        raise PipelineDefinitionError(
            f"pipeline {pipeline.name!r} was called while another pipeline is being traced; "
            "nested pipelines are not supported — call its steps directly"
        )
    tracer = Tracer(pipeline)
    params = pipeline.parameter_specs()
    token = _CURRENT.set(tracer)
    try:
        returned = pipeline.fn(**{p.name: ParamRef(p.name) for p in params})
    finally:
        _CURRENT.reset(token)
    outputs = _pipeline_outputs(returned, tracer)
    steps = tuple(_node_to_step(node) for node in tracer.nodes)
    return TraceResult(pipeline.to_ir(params, steps, outputs), tuple(pipeline.problems + tracer.problems))


def _pipeline_outputs(returned: Any, tracer: Tracer) -> tuple[ir.PipelineOutput, ...]:
    if returned is None:
        return ()
    if isinstance(returned, dict):
        items = list(returned.items())
    elif isinstance(returned, tuple):
        items = [(f"output_{i}", v) for i, v in enumerate(returned)]
    else:
        items = [("output", returned)]
    outputs = []
    for name, value in items:
        if isinstance(value, StepCall) and len(value.node.step.spec.outputs) == 1:
            value = OutputRef(value.node, value.node.step.spec.outputs[0].name)
        if isinstance(value, OutputRef):
            outputs.append(ir.PipelineOutput(name=str(name), step=value.node.name, output=value.output))
        else:
            tracer.problems.append(Problem(
                f"the pipeline returns {type(value).__name__} as {name!r}; a pipeline can only return "
                "step outputs (one, a tuple of them, or a dict of them)",
                location=str(tracer.pipeline.location),
            ))
    return tuple(outputs)


def _node_to_step(node: _Node) -> ir.Step:
    step = node.step
    spec = step.spec
    options = step.options
    return ir.Step(
        name=node.name,
        function=spec.function,
        location=node.location,
        inputs=spec.inputs,
        bindings=tuple(node.bindings),
        outputs=spec.outputs,
        after=tuple(node.after),
        explicit_name=node.explicit_name,
        image=options.image,
        resources=options.resources,
        retry=options.retry,
        timeout_seconds=options.timeout_seconds,
        cache=options.cache,
        env=options.env,
        secrets=options.secrets,
        settings=options.settings,
        description=spec.description,
    )


def is_symbolic(value: Any) -> bool:
    """Whether ``value`` is a tracing placeholder."""
    return isinstance(value, _Symbolic)


def _json_default(value: Any) -> Any:
    if is_symbolic(value):
        raise _NestedSymbolic(repr(value))
    raise TypeError(type(value).__name__)


def _constant_json(value: Any) -> str:
    """Canonical JSON of a constant; symbolic values nested in it raise :class:`_NestedSymbolic`."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_json_default)
