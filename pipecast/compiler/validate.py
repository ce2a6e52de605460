"""The rule book: every check that does not depend on a target, in one place.

:func:`validate` returns every problem it finds; :func:`build_pipeline` traces a pipeline, validates it
and raises one :class:`~pipecast.errors.ValidationError` listing all problems (tracing's included).
Target capability checks live with the targets (:mod:`pipecast.targets.base`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipecast.compiler import gather, ir
from pipecast.compiler.graph import find_cycle
from pipecast.compiler.naming import name_problem
from pipecast.compiler.requirements import REQUIREMENTS_FIX, requirement_problem
from pipecast.compiler.units import cron_problem, parse_quantity
from pipecast.errors import Problem, Severity, ValidationError

if TYPE_CHECKING:
    from pipecast.dsl import PipelineDef

_JSON_TYPES: dict[ir.TypeName, tuple[type, ...]] = {
    ir.TypeName.STR: (str,),
    ir.TypeName.INT: (int,),
    ir.TypeName.FLOAT: (int, float),
    ir.TypeName.BOOL: (bool,),
    ir.TypeName.DICT: (dict,),
    ir.TypeName.LIST: (list,),
}


def build_pipeline(pipeline: PipelineDef) -> ir.Pipeline:
    """Trace ``pipeline`` and validate it; raise ValidationError with every problem found."""
    from pipecast.compiler.tracing import trace
    from pipecast.targets.gcpause import paused_gc

    # Tracing allocates many small objects that all stay alive; the cyclic GC would rescan them again and
    # again (making big pipelines superlinear) while finding nothing to free.
    with paused_gc():
        result = trace(pipeline)
        # The IR validator repeats some of tracing's checks (it also guards IR read from JSON): report each once.
        problems = list(dict.fromkeys([*result.problems, *validate(result.pipeline)]))
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors:
        raise ValidationError(problems, summary=f"pipeline {pipeline.name!r} is invalid ({len(errors)} "
                                                f"problem{'s' if len(errors) != 1 else ''})")
    return result.pipeline


def validate(pipeline: ir.Pipeline) -> list[Problem]:
    """Return every target-independent problem in ``pipeline``."""
    problems: list[Problem] = []
    problems += _check_pipeline(pipeline)
    outputs = {(s.name, o.name): o for s in pipeline.steps for o in s.outputs}
    params = {p.name: p for p in pipeline.parameters}
    for step in pipeline.steps:
        problems += _check_bindings(step, params, outputs)
        problems += _check_options(step)
    if pipeline.uses_control_flow:
        from pipecast.compiler.validate_control import check_control_flow

        problems += check_control_flow(pipeline)
    cycle = find_cycle(pipeline)
    if cycle:
        first = pipeline.step(cycle[0])
        problems.append(Problem(
            f"steps {cycle!r} depend on each other in a cycle (through .after() or data)",
            step=first.name, location=str(first.location),
            fix="remove one of the .after() calls that closes the loop",
        ))
    return problems


def _check_pipeline(pipeline: ir.Pipeline) -> list[Problem]:
    problems = []
    where = str(pipeline.location) if pipeline.location else None
    name = name_problem("pipeline name", pipeline.name)
    if name:
        problems.append(Problem(name, location=where, fix="pass a valid name=... to @pipeline"))
    if pipeline.schedule is not None:
        reason = cron_problem(pipeline.schedule)
        if reason:
            problems.append(Problem(
                f"schedule {pipeline.schedule!r} is not a valid cron expression: {reason}",
                location=where, fix="use five fields, e.g. '0 3 * * *' for 03:00 every day, or '@daily'",
            ))
    for param in pipeline.parameters:
        if param.default_json is not None and param.type in _JSON_TYPES:
            value = json.loads(param.default_json)
            if value is not None and not _matches(param.type, value):
                problems.append(Problem(
                    f"pipeline parameter {param.name!r} is {param.type.value} but its default is "
                    f"{type(value).__name__} {value!r}",
                    location=where, fix="make the default match the annotation",
                ))
    for output in pipeline.outputs:
        try:
            step = pipeline.step(output.step)
        except KeyError:
            continue
        if output.output not in {o.name for o in step.outputs}:
            problems.append(Problem(f"pipeline output {output.name!r} refers to a missing output", location=where))
    for requirement in pipeline.requirements:
        problem = requirement_problem(requirement)
        if problem:
            problems.append(Problem(f"requirements: {problem}", location=where, fix=REQUIREMENTS_FIX))
    return problems


def _matches(kind: ir.TypeName, value: Any) -> bool:
    allowed = _JSON_TYPES.get(kind)
    if allowed is None:
        return True
    if isinstance(value, bool) and kind is not ir.TypeName.BOOL:
        return False
    return isinstance(value, allowed)


def _compatible(source: ir.TypeName, target: ir.TypeName) -> bool:
    if ir.TypeName.ANY in (source, target):
        return True
    return source is target or (source is ir.TypeName.INT and target is ir.TypeName.FLOAT)


def _check_bindings(
    step: ir.Step,
    params: dict[str, ir.Parameter],
    outputs: dict[tuple[str, str], ir.OutputSpec],
) -> list[Problem]:
    problems = []
    where = str(step.location)
    inputs = {i.name: i for i in step.inputs}

    def add(message: str, fix: str | None = None) -> None:
        problems.append(Problem(message, step=step.name, location=where, fix=fix))

    hidden = _gathered_inputs(step, inputs, add)
    seen: set[str] = set()
    for binding in step.bindings:
        spec = inputs.get(binding.input) or hidden.get(binding.input)
        if binding.input in seen:
            add(f"input {binding.input!r} is given twice", fix="pass it once, by position or by name")
        seen.add(binding.input)
        if spec is None and any(o.name == binding.input and o.artifact for o in step.outputs):
            add(f"{binding.input!r} is an output parameter of step {step.function.qualname!r} (OutputPath or "
                "Output[...]): the runtime gives the step a path to write", fix=f"do not pass {binding.input!r}; "
                f"use the step's result (result[{binding.input!r}]) downstream")
            continue
        if spec is None:
            close = difflib.get_close_matches(binding.input, list(inputs), n=1)
            add(f"step {step.function.qualname!r} has no input {binding.input!r}; its inputs are "
                f"{list(inputs)!r}", fix=f"did you mean {close[0]!r}?" if close else "check the spelling")
            continue
        # An INVALID binding was reported by the tracer, which saw the Python value (a list of step outputs,
        # an object JSON cannot hold) and said what to pass instead.
        if binding.kind is ir.BindingKind.PARAMETER:
            param = params.get(binding.parameter or "")
            if param is None:
                add(f"input {binding.input!r} refers to unknown pipeline parameter {binding.parameter!r}")
            elif not _compatible(param.type, spec.type):
                add(f"{_named(binding.input, hidden)} is {spec.type_label or spec.type.value} but pipeline parameter "
                    f"{param.name!r} is {param.type.value}",
                    fix="make the annotations agree")
        elif binding.kind is ir.BindingKind.CONSTANT:
            value = binding.value
            if value is not None and not _matches(spec.type, value):
                add(f"input {binding.input!r} is {spec.type_label or spec.type.value} but gets "
                    f"{type(value).__name__} {value!r}", fix="pass a value of the annotated type")
        elif binding.kind is ir.BindingKind.GATHER:
            shape = ir.TypeName.DICT if "dict" in json.loads(binding.value_json or "{}") else ir.TypeName.LIST
            if spec.type not in (shape, ir.TypeName.ANY):
                add(f"input {binding.input!r} is {spec.type_label or spec.type.value} but gets a {shape.value} of "
                    "step outputs or parameters", fix=f"annotate it {shape.value}[...] or pass one value")
        elif binding.kind is ir.BindingKind.OUTPUT:
            upstream = outputs.get((binding.step or "", binding.output or ""))
            if upstream is None:
                add(f"input {binding.input!r} refers to missing output {binding.output!r} of step {binding.step!r}")
            elif not _compatible(upstream.type, spec.type):
                add(f"{_named(binding.input, hidden)} is {spec.type_label or spec.type.value} but output "
                    f"{binding.output!r} of step {binding.step!r} is {upstream.type_label or upstream.type.value}",
                    fix="make the annotations agree")
    for spec in step.inputs:
        if spec.required and spec.name not in seen:
            add(f"required input {spec.name!r} of step {step.function.qualname!r} is not given",
                fix=f"pass {spec.name}=... when calling the step")
    return problems


def _gathered_inputs(step: ir.Step, inputs: dict[str, ir.InputSpec],
                     add: Callable[[str, str | None], None]) -> dict[str, ir.InputSpec]:
    """The hidden element inputs of the step's GATHER bindings, each typed as one element of its input."""
    hidden = {}
    for binding in step.bindings:
        if binding.kind is not ir.BindingKind.GATHER:
            continue
        spec = inputs.get(binding.input)
        label = spec.type_label if spec else ""
        kind = gather.element_type(label) or ir.TypeName.ANY
        for name in gather.holes(json.loads(binding.value_json or "{}")):
            if name in inputs:
                add(f"input {name!r} of step {step.function.qualname!r} has the name pipecast gives element "
                    f"of the list or dict passed to {binding.input!r}", f"rename input {name!r}")
            hidden[name] = ir.InputSpec(name=name, type=kind, type_label=kind.value)  # one element of ``label``
    return hidden


def _named(name: str, hidden: dict[str, ir.InputSpec]) -> str:
    """How a message names an input: a literal's element by its place in the literal."""
    if name not in hidden:
        return f"input {name!r}"
    parent, _, index = name.rpartition("__")
    return f"value {index} of the literal given to input {parent!r}"


def _check_options(step: ir.Step) -> list[Problem]:
    problems = []
    where = str(step.location)
    for package in step.packages:
        problem = requirement_problem(package)
        if problem:
            problems.append(Problem(f"packages: {problem}", step=step.name, location=where, fix=REQUIREMENTS_FIX))
    res = step.resources
    if res.cpu is not None and parse_quantity(res.cpu) in (None, 0.0):
        problems.append(Problem(
            f"cpu {res.cpu!r} is not a valid CPU quantity", step=step.name, location=where,
            fix="use a number of cores (2, 0.5) or millicores ('500m')",
        ))
    if res.memory is not None and parse_quantity(res.memory) in (None, 0.0):
        problems.append(Problem(
            f"memory {res.memory!r} is not a valid memory quantity", step=step.name, location=where,
            fix="use Kubernetes notation: '512Mi', '4Gi', '1G' (not '4GB')",
        ))
    if not isinstance(res.gpu, int) or isinstance(res.gpu, bool) or res.gpu < 0:
        problems.append(Problem(f"gpu must be a whole number >= 0, got {res.gpu!r}", step=step.name, location=where))
    elif res.gpu_type and not res.gpu:
        problems.append(Problem(
            f"gpu_type {res.gpu_type!r} is set but gpu is 0", step=step.name, location=where,
            fix="set gpu=1 (or more) with gpu_type",
        ))
    for secret in step.secrets:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", secret.env):
            problems.append(Problem(f"secret {secret.name!r} env name {secret.env!r} is invalid",
                                    step=step.name, location=where))
    return problems
