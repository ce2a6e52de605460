"""Conditions (If/Elif/Else) as SageMaker ``ConditionStep``s on property files (issue 16).

SageMaker's rules, as AWS and the sagemaker SDK state them:

- A ``ConditionStep`` evaluates its ``Conditions`` (all must hold) and marks its ``IfSteps`` ready for execution,
  else its ``ElseSteps`` (the SDK's ``ConditionStep``; AWS developer guide, "Condition step"). Branch steps are
  written inside the condition step (the SDK's ``StepsCompiler._build_condition_step``), so an ``Elif`` is a
  condition step inside the ``ElseSteps`` of the one before, and an ``If`` inside a branch one inside its
  ``IfSteps``.
- A step starts only when every step it depends on completed: a step that reads a branch that did not run never
  starts, and neither does anything after it — pipecast's skip. For the same reason a step after *both*
  branches never starts (aws/sagemaker-python-sdk#3565), so ``OneOf`` is refused.
- A condition reads a step's value with ``Std:JsonGet`` on a *property file* the step's processing job writes
  (:mod:`pipecast.runtime.publish_sagemaker`); training jobs have no property files, so a step whose outputs a
  condition reads must be a processing step.
- Condition types are the SDK's: ``Equals``, ``GreaterThan``, ``GreaterThanOrEqualTo``, ``LessThan``,
  ``LessThanOrEqualTo``, ``In`` (``QueryValue``, ``Values``), ``Not`` (``Condition``) and ``Or``
  (``Conditions``). ``and`` is the condition list itself at the top, ``Not(Or(Not …))`` inside an ``Or``.

Only comparisons whose meaning is the same in SageMaker and Python are lowered: ordering on numbers; equality
and membership on two values of one JSON type (int, float, text or boolean). Anything else is refused at
compile time with the alternative.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.targets.base import EmitContext

PROPERTY_FILE = "decisions"  # PropertyFileName and the OutputName of the processing output holding it
LOCAL_PATH = "/opt/ml/processing/pipecast-decisions"  # where the job writes it (uploaded at the job's end)
FILE_PATH = "decisions.json"
# Condition steps nested at most this deep: each level nests the definition's JSON three levels deeper (a step, its
# Arguments, its ElseSteps list: a 99-level chain is 307 levels of JSON), and Python's json module, which writes the
# definition here and reads it wherever Python loads it, raises RecursionError at 1,000 (its recursion limit, less
# the caller's frames). 100 keeps a wide margin. SageMaker documents no bound of its own.
MAX_DEPTH = 100
# Part of the refusal past MAX_DEPTH: why, for a user who never sees the JSON.
DEPTH_REASON = ("each level nests the pipeline definition's JSON three levels deeper, and Python's json module, "
                "which writes and reads that file, stops at 1,000 levels (a RecursionError); SageMaker itself "
                "documents no depth limit")
# Deeper than this, the definition is written without indentation: indenting makes its size grow with the square of
# the depth (a 100-branch elif chain: 2.5 MB indented, a tenth of that without).
INDENTED_DEPTH = 10
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an output name that is one plain JsonPath member
_BINARY = {ir.Comparison.EQ: "Equals", ir.Comparison.GT: "GreaterThan", ir.Comparison.GE: "GreaterThanOrEqualTo",
           ir.Comparison.LT: "LessThan", ir.Comparison.LE: "LessThanOrEqualTo"}
_KINDS = {ir.TypeName.INT: "int", ir.TypeName.FLOAT: "float", ir.TypeName.BOOL: "bool", ir.TypeName.STR: "str"}
_SAY = {"int": "an integer", "float": "a float", "bool": "a boolean", "str": "text"}
_ONE_OF = ("sagemaker cannot run OneOf (the output of whichever branch ran): a step starts only when every step it "
           "depends on completed, so a step after both branches never starts (aws/sagemaker-python-sdk#3565)")
_FIX = ("compare numbers, or two values of one type (e.g. return a bool or a number decision from a step), or run "
        "it with the local target (`pipecast run FILE`)")


def all_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every step of a definition's ``Steps``, with those inside condition steps' branches (depth first)."""
    found: list[dict[str, Any]] = []
    pending = list(reversed(steps))
    while pending:
        step = pending.pop()
        found.append(step)
        if step.get("Type") == "Condition":
            arguments = step["Arguments"]
            pending.extend(reversed([*arguments.get("IfSteps", []), *arguments.get("ElseSteps", [])]))
    return found


def depth(pipeline: ir.Pipeline) -> int:
    """How deep the definition's condition steps nest (0: none)."""
    plan = FlowPlan(pipeline)
    return max((_depth(plan, g) for g in pipeline.groups if g.kind is ir.GroupKind.CONDITION), default=0)


def check_depth(pipeline: ir.Pipeline, context: EmitContext) -> bool:
    """Refuse condition steps nested deeper than :data:`MAX_DEPTH` (each elif nests one level); False if so."""
    plan = FlowPlan(pipeline)
    for group in pipeline.groups:
        if group.kind is not ir.GroupKind.CONDITION or group.condition is None:
            continue
        depth = _depth(plan, group)
        if depth > MAX_DEPTH:
            context.error(f"this {group.label or 'if'} is a condition step nested {depth} deep "
                          f"(each elif nests the next one in the ElseSteps of the one before); pipecast writes at "
                          f"most {MAX_DEPTH} levels: {DEPTH_REASON}", location=str(group.location),
                          fix="write the chain as independent If blocks whose conditions exclude each other "
                              "(`with If(x == 1):` ... `with If(x == 2):`: siblings, one level each, not nested), "
                              "or decide inside one step and branch on its result with fewer branches")
            return False
    return True


def _depth(plan: FlowPlan, group: ir.Group) -> int:
    """How many condition steps hold the branch's own, itself included (an else branch has none of its own)."""
    depth, current = 0, group
    while True:
        depth += current.branch + (1 if current.condition is not None else 0)
        parent = current.parent
        while parent is not None and plan.groups[parent].kind is not ir.GroupKind.CONDITION:
            parent = plan.groups[parent].parent
        if parent is None:
            return depth
        current = plan.groups[parent]


def property_file_arguments(output_uri: Any, outputs: list[str]) -> tuple[list[str], dict[str, Any],
                                                                        list[dict[str, str]]]:
    """The runtime's publish arguments, the job's ``ProcessingOutputConfig`` and the step's ``PropertyFiles``."""
    argv = ["--sagemaker-property-file", f"{LOCAL_PATH}/{FILE_PATH}"]
    for name in outputs:
        argv += ["--sagemaker-publish", name]
    config = {"Outputs": [{"OutputName": PROPERTY_FILE, "S3Output": {
        "S3Uri": output_uri, "LocalPath": LOCAL_PATH, "S3UploadMode": "EndOfJob"}}]}
    files = [{"PropertyFileName": PROPERTY_FILE, "OutputName": PROPERTY_FILE, "FilePath": FILE_PATH}]
    return argv, config, files


def refuse_one_of(pipeline: ir.Pipeline, context: EmitContext) -> None:
    """Refuse OneOf (with the other constructs a target refuses, before anything is emitted)."""
    for step in pipeline.steps:
        if any(b.kind is ir.BindingKind.ONE_OF for b in step.bindings):
            context.error(_ONE_OF, step=step, fix="call the step inside each branch (under its own name), make the "
                                                  "decision inside one step, or run it with the local target "
                                                  "(`pipecast run FILE`)")


def check_sources(pipeline: ir.Pipeline, context: EmitContext, decisions: Mapping[str, list[str]]) -> None:
    """Refuse conditions on a training step's outputs: only processing jobs have property files."""
    steps = {s.name: s for s in pipeline.steps}
    for name, outputs in decisions.items():
        source = steps[name]
        if context.settings_for(source).step_type != "processing":
            context.error(f"a condition reads output(s) {', '.join(map(repr, outputs))} of step {name!r}, a "
                          "training step; SageMaker reads decision values from a processing job's property file "
                          "and training jobs have none", step=source,
                          fix="settings={'sagemaker': {'step_type': 'processing'}} on that step")


class ConditionLowering:
    """Arranges the lowered steps into condition steps, and lowers each branch's condition."""

    def __init__(self, pipeline: ir.Pipeline, context: EmitContext, names: Mapping[str, str],
                 parameter_names: Mapping[str, str]) -> None:
        self.pipeline = pipeline
        self.context = context
        self.names = names  # step and condition-group names -> SageMaker step names
        self.parameter_names = parameter_names
        self.plan = FlowPlan(pipeline)
        self.steps = {s.name: s for s in pipeline.steps}

    def arrange(self, lowered: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The definition's ``Steps``: steps outside branches, and a condition step per top-level chain."""
        return self._entries(None, lowered)

    def _entries(self, scope: str | None, lowered: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """What sits directly in branch ``scope`` (None: the top), in the pipeline's step order."""
        return [lowered[name] if kind == "step" else self._condition_step(self.plan.chains[name], 0, lowered)
                for kind, name in self.children.get(scope, [])]

    @cached_property
    def children(self) -> dict[str | None, list[tuple[str, str]]]:
        """Per branch (None: the top), its steps and the chains directly in it, in the pipeline's step order.

        One pass over the steps: each step adds, at every branch around it, the chain it is in below that branch.
        """
        found: dict[str | None, list[tuple[str, str]]] = {}
        seen: set[tuple[str | None, str]] = set()
        for step in self.pipeline.steps:
            scope: str | None = None
            for group in self.plan.conditions[step.name]:  # outermost first
                chain = group.chain or group.name
                if (scope, chain) not in seen:
                    seen.add((scope, chain))
                    found.setdefault(scope, []).append(("chain", chain))
                scope = group.name
            found.setdefault(scope, []).append(("step", step.name))
        return found

    def _condition_step(self, branches: list[ir.Group], index: int,
                        lowered: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        branch = branches[index]
        condition = branch.condition
        assert condition is not None  # an Else only ever follows another branch
        rest = branches[index + 1:]
        if not rest:
            otherwise: list[dict[str, Any]] = []
        elif rest[0].condition is None:
            otherwise = self._entries(rest[0].name, lowered)
        else:
            otherwise = [self._condition_step(branches, index + 1, lowered)]
        result: dict[str, Any] = {"Name": self.names[branch.name], "Type": "Condition",
                                  "Description": f"{branch.label or 'if'} {condition}"[:4096]}
        depends = [self.names[name] for name in condition.steps()]
        if depends:
            result["DependsOn"] = depends
        first = next((s for s in self.pipeline.steps if s.name in self.plan.members[branch.name]), None)
        result["Arguments"] = {"Conditions": self.conditions(condition, first),
                               "IfSteps": self._entries(branch.name, lowered), "ElseSteps": otherwise}
        return result

    def conditions(self, condition: ir.Condition, step: ir.Step | None) -> list[dict[str, Any]]:
        """The condition as SageMaker's ``Conditions`` list (which all must hold)."""
        try:
            if condition.op is ir.Comparison.AND:
                return [c for term in condition.terms for c in self.conditions(term, step)]
            return [self._one(condition)]
        except _Refused as refused:
            self.context.error(f"condition `{condition}` cannot be tested by a SageMaker ConditionStep: {refused}",
                               step=step, fix=_FIX)
            return []

    def _one(self, condition: ir.Condition) -> dict[str, Any]:
        op = condition.op
        if op is ir.Comparison.AND:  # inside an Or: SageMaker has no And condition
            return _not({"Type": "Or", "Conditions": [_not(self._one(t)) for t in condition.terms]})
        if op is ir.Comparison.OR:
            return {"Type": "Or", "Conditions": [self._one(t) for t in condition.terms]}
        if op is ir.Comparison.NOT:
            return _not(self._one(condition.terms[0]))
        left, right = condition.operands
        if op in (ir.Comparison.IN, ir.Comparison.NOT_IN):
            values = right.value if right.kind is ir.BindingKind.CONSTANT else None
            if not isinstance(values, list):
                raise _Refused("membership is lowered only in a constant list")
            query, kind = self._operand(left)
            for value in values:
                if _constant_kind(value) != kind:
                    raise _Refused(f"{value!r} in the list is not {_SAY[kind]}, like the value it is compared with")
            found = {"Type": "In", "QueryValue": query, "Values": values}
            return found if op is ir.Comparison.IN else _not(found)
        (lhs, left_kind), (rhs, right_kind) = self._operand(left), self._operand(right)
        if op in (ir.Comparison.EQ, ir.Comparison.NE):
            if left_kind != right_kind:
                raise _Refused(f"it compares {_SAY[left_kind]} with {_SAY[right_kind]}")
        elif {left_kind, right_kind} - {"int", "float"}:
            raise _Refused(f"it orders {_SAY[left_kind]} and {_SAY[right_kind]}; only numbers are ordered")
        binary = {"Type": _BINARY[ir.Comparison.EQ if op is ir.Comparison.NE else op], "LeftValue": lhs,
                  "RightValue": rhs}
        return _not(binary) if op is ir.Comparison.NE else binary

    def _operand(self, operand: ir.Operand) -> tuple[Any, str]:
        """The operand as a SageMaker value, and its kind."""
        if operand.kind is ir.BindingKind.PARAMETER:
            param = self.pipeline.parameter(operand.parameter or "")
            if param.type not in _KINDS:
                raise _Refused(f"parameter {param.name!r} is {param.type.value}")
            return {"Get": f"Parameters.{self.parameter_names[param.name]}"}, _KINDS[param.type]
        if operand.kind is ir.BindingKind.OUTPUT:
            source = self.steps[operand.step or ""]
            spec = next(o for o in source.outputs if o.name == operand.output)
            if spec.type not in _KINDS:
                raise _Refused(f"output {spec.name!r} of step {source.name!r} is {spec.type.value}")
            if not _PATH.match(spec.name):
                raise _Refused(f"output {spec.name!r} is not a plain JsonPath member")
            reference = {"Get": f"Steps.{self.names[source.name]}.PropertyFiles.{PROPERTY_FILE}"}
            return {"Std:JsonGet": {"PropertyFile": reference, "Path": spec.name}}, _KINDS[spec.type]
        if operand.kind is ir.BindingKind.CONSTANT:
            kind = _constant_kind(operand.value)
            if kind is None:
                raise _Refused(f"the constant {operand.value_json} is not a number, a boolean or text")
            return operand.value, kind
        raise _Refused("it reads a map item (maps are refused on sagemaker)")


class _Refused(Exception):
    """A comparison SageMaker cannot make with Python's meaning (the reason)."""


def _not(condition: dict[str, Any]) -> dict[str, Any]:
    return condition["Condition"] if condition["Type"] == "Not" else {"Type": "Not", "Condition": condition}


def _constant_kind(value: Any) -> str | None:
    kinds: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str"}
    return kinds.get(type(value))
