"""Tracing: run a pipeline function with symbolic values and record the step calls as IR.

Nothing here runs at import time. :func:`trace` opens a :class:`contextvars.ContextVar` scope, calls
the pipeline function with a :class:`~pipecast.compiler.symbolic.ParamRef` per parameter, and each step
call inside records a node (with the caller's ``file:line``) and returns symbolic outputs. Problems found
while tracing (unknown arguments, unserialisable constants, bad option values, an exception the function
raised) are collected, not raised, so a user sees every problem at once. All tracing state lives in the
:class:`Tracer`; the definitions it reads never change.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipecast.compiler import ir
from pipecast.compiler.gather import build
from pipecast.compiler.groups import GroupRecord, GroupStack
from pipecast.compiler.naming import name_problem
from pipecast.compiler.symbolic import (
    Cond,
    ItemRef,
    OneOfRef,
    OutputRef,
    ParamRef,
    StatusRef,
    StepCall,
    SymbolicValueError,
    is_symbolic,
)
from pipecast.compiler.user_code import caller_location, problem_from_exception
from pipecast.errors import PipelineDefinitionError, Problem

if TYPE_CHECKING:
    from pipecast.dsl import PipelineDef, StepDef, StepSpec

_CURRENT: ContextVar[Tracer | None] = ContextVar("pipecast_tracer", default=None)


def current_tracer() -> Tracer | None:
    """The tracer of the pipeline being traced in this context, if any."""
    return _CURRENT.get()


@dataclass(slots=True)
class _Node:
    tracer: Tracer
    name: str
    step: StepDef[..., Any]
    spec: StepSpec
    location: ir.Location
    bindings: list[ir.Binding]
    explicit_name: bool
    after: list[str] = field(default_factory=list)
    group: GroupRecord | None = None
    trigger: ir.Trigger = ir.Trigger.ALL_SUCCESS
    gathered: list[ir.Binding] = field(default_factory=list)  # the element bindings of the input being bound

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


class Tracer:
    """Records the step calls of one pipeline being traced."""

    def __init__(self, pipeline: PipelineDef) -> None:
        self.pipeline = pipeline
        self.nodes: list[_Node] = []
        self.names: dict[str, _Node] = {}
        self.counters: dict[str, int] = {}
        self.problems: list[Problem] = []
        self.specs: dict[StepDef[..., Any], StepSpec] = {}  # each step definition's signature, read once per trace
        self.groups = GroupStack(self)

    def add_call(self, step: StepDef[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepCall:
        """Record one call of ``step`` and return its symbolic result."""
        location = caller_location(3)
        spec = self.specs.get(step)
        name = self._unique_name(step, location)
        if spec is None:
            spec = self.specs[step] = step.read_spec()
            for problem in spec.problems:  # once per step definition, where it is first used
                self.problems.append(Problem(problem, step=name, location=str(location)))
        inputs = spec.inputs
        if len(args) > len(inputs):
            self.problems.append(Problem(
                f"step {step.base_name!r} takes {len(inputs)} input(s) but {len(args)} were given positionally",
                step=name, location=str(location), fix="pass inputs by name",
            ))
        node = _Node(self, name, step, spec, location, [], explicit_name=step.options.name is not None,
                     group=self.groups.current)
        given = [(input_spec.name, value) for input_spec, value in zip(inputs, args)] + list(kwargs.items())
        for key, value in given:
            node.bindings.append(self._bind(node, key, value))
            node.bindings.extend(node.gathered)  # a literal list or dict's hidden element inputs, after it
            node.gathered.clear()
        self.groups.place(node)
        self.nodes.append(node)
        self.names[name] = node
        return StepCall(node)

    def _unique_name(self, step: StepDef[..., Any], location: ir.Location) -> str:
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

    def _bind(self, node: _Node, input_name: str, value: Any) -> ir.Binding:
        step_name, location = node.name, node.location
        if isinstance(value, ParamRef):
            return ir.Binding(input=input_name, kind=ir.BindingKind.PARAMETER, parameter=value.name)
        if isinstance(value, StepCall) and len(value.node.spec.outputs) == 1:
            value = OutputRef(value.node, value.node.spec.outputs[0].name)
        if isinstance(value, OutputRef):
            collected = self.groups.collected_over(value.node, node)
            if collected is not None:  # made once per item of a map the consumer is not in: a list, in item order
                return ir.Binding(input=input_name, kind=ir.BindingKind.COLLECTED, step=value.node.name,
                                  output=value.output, group=collected)
            return ir.Binding(input=input_name, kind=ir.BindingKind.OUTPUT, step=value.node.name,
                              output=value.output)
        if isinstance(value, (ItemRef, StatusRef, OneOfRef)):
            return self.groups.bind_control(node, input_name, value)

        def invalid(description: str, message: str, fix: str) -> ir.Binding:
            self.problems.append(Problem(f"input {input_name!r} gets {description}{message}", step=step_name,
                                         location=str(location), fix=fix))
            return ir.Binding(input=input_name, kind=ir.BindingKind.INVALID, description=description)

        if isinstance(value, StepCall):
            names = [o.name for o in value.node.spec.outputs]
            return invalid(
                f"the result of step {value.node.name!r}", f", which has {len(names)} outputs {names!r}",
                f"pass one of them: {value.node.name}_result[{names[0]!r}] (or unpack them: "
                f"{', '.join(names)} = {value.node.step.base_name}(...))" if names else
                f"step {value.node.name!r} returns nothing; pass another value",
            )
        if isinstance(value, (list, tuple, dict, set, frozenset)) and _symbolic_items(value):
            return self._gather(node, input_name, value, invalid)
        try:
            text = ir.canonical_json(value)
        except (TypeError, ValueError, SymbolicValueError):
            return invalid(
                f"{type(value).__name__} value {_short_repr(value)}",
                ", which cannot be serialised to JSON; constants must be str, int, float, bool, None, or "
                "lists/dicts of those",
                "produce the value inside a step and pass that step's output instead",
            )
        return ir.Binding(input=input_name, kind=ir.BindingKind.CONSTANT, value_json=text)


    def _gather(self, node: _Node, input_name: str, value: Any,
                invalid: Callable[[str, str, str], ir.Binding]) -> ir.Binding:
        """A literal list or dict holding step outputs or parameters: a GATHER binding plus one per element."""
        kind = type(value).__name__
        if node.group is not None:
            return invalid(f"a {kind} of {_held(value)}", f" inside {node.group.kind.value} group "
                           f"{node.group.name!r}; a literal {kind} of several values is gathered only by a step "
                           "outside every map, condition and exit group yet",
                           "give the step one input per value, or call it outside the group")
        built = build(value, input_name, is_symbolic, lambda name, element: self._bind(node, name, element))
        if isinstance(built, str):
            return invalid(f"a {kind} of {_held(value)}", f", which cannot be passed as one input: {built}",
                           "pass a list, or a dict with str keys, of step outputs, parameters and constants")
        template, elements = built
        for element in elements:
            if element.kind is ir.BindingKind.INVALID:  # reported when it was bound
                return ir.Binding(input=input_name, kind=ir.BindingKind.INVALID, description=element.description)
            if element.kind not in (ir.BindingKind.OUTPUT, ir.BindingKind.PARAMETER):
                what = {ir.BindingKind.COLLECTED: "a mapped output (made once per item of a map)",
                        ir.BindingKind.ONE_OF: "a OneOf of branch outputs"}.get(element.kind,
                                                                               f"a {element.kind.value} value")
                return invalid(f"a {kind} holding {what}", "; a literal list or dict given as one input gathers "
                               "only step outputs, pipeline parameters and constants yet",
                               "pass that value as its own input")
        node.gathered.extend(elements)
        return ir.Binding(input=input_name, kind=ir.BindingKind.GATHER, value_json=ir.canonical_json(template))


def _held(container: Any) -> str:
    """What a literal holds, for messages: the steps whose outputs and the parameters it names."""
    held = _symbolic_items(container)
    steps = sorted({v.node.name for v in held if isinstance(v, (OutputRef, StepCall))})
    params = sorted({v.name for v in held if isinstance(v, ParamRef)})
    parts = []
    if steps:
        parts.append(f"outputs of step{'s' if len(steps) > 1 else ''} {', '.join(map(repr, steps))}")
    if params:
        parts.append(f"pipeline parameter{'s' if len(params) > 1 else ''} {', '.join(map(repr, params))}")
    return " and ".join(parts) or "symbolic values"


def _symbolic_items(value: Any) -> list[Any]:
    if is_symbolic(value):
        return [value]
    if isinstance(value, dict):
        return [item for v in (*value.keys(), *value.values()) for item in _symbolic_items(v)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [item for v in value for item in _symbolic_items(v)]
    return []


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class TraceResult:
    """The IR of a traced pipeline and the problems found while tracing it."""

    pipeline: ir.Pipeline
    problems: tuple[Problem, ...]


def trace(pipeline: PipelineDef) -> TraceResult:
    """Trace ``pipeline`` and return its IR, with every problem found (an exception its function raised too)."""
    if _CURRENT.get() is not None:
        raise PipelineDefinitionError(
            f"pipeline {pipeline.name!r} was called while another pipeline is being traced; "
            "nested pipelines are not supported — call its steps directly"
        )
    tracer = Tracer(pipeline)
    params, param_problems = pipeline.read_parameters()
    token = _CURRENT.set(tracer)
    returned = None
    try:
        returned = pipeline.fn(**{p.name: ParamRef(p.name) for p in params})
        tracer.groups.add_hooks(pipeline.hooks)
    except Exception as err:  # the user's code failed: report it at their line, never crash
        tracer.problems.append(problem_from_exception(err, pipeline))
    finally:
        _CURRENT.reset(token)
    outputs = _pipeline_outputs(returned, tracer)
    steps = tuple(_node_to_step(node) for node in tracer.nodes)
    problems = pipeline.problems + param_problems + tuple(tracer.problems)
    return TraceResult(pipeline.to_ir(params, steps, outputs, tracer.groups.to_ir()), problems)


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
    where = str(tracer.pipeline.location)
    for name, value in items:
        problem = name_problem("pipeline output name", name)
        if problem:
            tracer.problems.append(Problem(problem, location=where))
            continue
        if isinstance(value, StepCall) and len(value.node.spec.outputs) == 1:
            value = OutputRef(value.node, value.node.spec.outputs[0].name)
        if isinstance(value, OutputRef) and value.node.group is not None:
            tracer.problems.append(Problem(
                f"the pipeline returns {value._describe()} as {name!r}, which is made inside "
                f"{value.node.group.kind.value} group {value.node.group.name!r}: it may run once per item or "
                "not at all", location=where,
                fix="pass it to a step outside the group (a mapped output arrives there as a list) and return "
                    "that step's output"))
        elif isinstance(value, OutputRef):
            outputs.append(ir.PipelineOutput(name=str(name), step=value.node.name, output=value.output))
        else:
            what = value._describe() if is_symbolic(value) else type(value).__name__
            tracer.problems.append(Problem(
                f"the pipeline returns {what} as {name!r}; a pipeline can only return "
                "step outputs (one, a tuple of them, or a dict of them)",
                location=where, fix="conditions are for `with pipecast.If(...)`; compute a value in a step to "
                                    "return it" if isinstance(value, Cond) else None,
            ))
    return tuple(outputs)


def _node_to_step(node: _Node) -> ir.Step:
    spec = node.spec
    options = node.step.options
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
        packages=options.packages,
        group=node.group.name if node.group else None,
        trigger=node.trigger,
    )
