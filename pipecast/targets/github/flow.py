"""Conditions, exit handlers and hooks as GitHub Actions job ``if:`` expressions (issue 16).

GitHub's rules, as its docs state them ("Using conditions to control job execution", "Status check
functions", "Evaluate expressions"): a job whose ``if:`` holds no status function gets ``success()`` added,
which is false when a job it needs failed or was skipped, so the skip propagates; ``always()`` runs it
whatever happened; ``failure()`` is true when an ancestor job failed. A branch's job tests the published
decision values (``fromJSON(needs.JOB.outputs.NAME)``, written by
:mod:`pipecast.runtime.publish_github`) and the parameters (``inputs.NAME``).

A lone ``If`` (or ``If``/``Else``) on numbers and booleans is tested natively: the ``If``'s job tests its
condition, the ``Else``'s its negation. Any other chain (an ``Elif``, or a comparison GitHub would read
differently from Python: it compares strings ignoring case and converts mismatched types to numbers) gets a
chain job, ``CHAIN_branch``, whose runtime decides with ``pipecast run``'s rules
(:meth:`~pipecast.runtime.flow_plan.FlowPlan.branch_runs`: in order, the first branch that holds) and outputs
the branch's place; each branch's job tests ``needs.CHAIN_branch.outputs.branch == 'K'``, so the workflow
grows linearly with the chain (repeating every earlier branch's negation grew it quadratically).

Maps are matrix jobs and their bounds ``strategy.max-parallel``
(:mod:`pipecast.targets.github.maps`, which refuses what GitHub cannot express: nested matrices, a whole-run
bound).

A condition inside a map cannot be a job's ``if:``: GitHub evaluates ``jobs.<id>.if`` before it expands
``strategy.matrix`` and the ``if:`` cannot read the ``matrix`` context. So it is emulated, as Airflow and Compose
do it: each step in such a branch, and every step that reads one that may skip items (:func:`item_steps`), runs
:mod:`pipecast.runtime.publish_github_flow`, whose runtime decides its own item from the artifact store with
``pipecast run``'s rules, records the item skipped and exits 0; a ``OneOf`` there reads that item's branch and a
fan-in the items that ran.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.targets.base import EmitContext

NUMBER_EXACT = 2**53  # GitHub's numbers are doubles
_OUTPUT_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_NUMERIC = (ir.TypeName.INT, ir.TypeName.FLOAT, ir.TypeName.BOOL)
_OPERATORS = {ir.Comparison.EQ: "==", ir.Comparison.NE: "!=", ir.Comparison.LT: "<", ir.Comparison.LE: "<=",
              ir.Comparison.GT: ">", ir.Comparison.GE: ">="}
_HOOKS = (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
_FIX = "move the decision inside one step, or run it with the local target (`pipecast run FILE`)"


_LAST_PLAN: list[tuple[ir.Pipeline, FlowPlan]] = []  # the plan of the pipeline being emitted (one at a time)
_DECIDED: dict[str, tuple[bool, dict[str, int]]] = {}  # that plan's chains: decided?, each branch's place
_NATIVE: list[dict[str, list[str]]] = []  # that plan's native_decisions (cleared with _DECIDED)
_ITEM_STEPS: list[tuple[FlowPlan, set[str]]] = []  # a plan's steps whose runtime decides item by item


def flow_plan(pipeline: ir.Pipeline) -> FlowPlan:
    """The pipeline's :class:`FlowPlan`, built once per pipeline emitted (every job asks for it)."""
    if not _LAST_PLAN or _LAST_PLAN[0][0] is not pipeline:
        _LAST_PLAN[:] = [(pipeline, FlowPlan(pipeline))]
        _DECIDED.clear()
        _NATIVE.clear()
    return _LAST_PLAN[0][1]


def in_map(plan: FlowPlan, group: ir.Group) -> bool:
    """Whether condition ``group`` sits inside a map (its steps' runtime decides it, item by item)."""
    return any(g.kind is ir.GroupKind.MAP for g in plan.ancestors(group.parent))


def item_steps(plan: FlowPlan) -> set[str]:
    """The steps that run through the runtime's own decision: in a branch inside a map, or reading such a step.

    Transitive, as on Airflow (a step after one the runtime skipped must read its record to skip too: its job
    succeeded, exit 0). In a nested map, a branch between the outer and the inner map counts too (the outer
    item's runtime decides it, :mod:`pipecast.runtime.github_nested` with ``--decide``).
    """
    if not _ITEM_STEPS or _ITEM_STEPS[0][0] is not plan:
        found: set[str] = set()
        for step in plan.pipeline.steps:  # topological order
            conditions = [g for g in plan.conditions[step.name] if in_map(plan, g)]
            reads = set(step.upstream()) | {name for c in conditions for g in chain_branches(plan, c) if g.condition
                                            for name in g.condition.steps()}
            if conditions or reads & found:
                found.add(step.name)
        _ITEM_STEPS[:] = [(plan, found)]
    return _ITEM_STEPS[0][1]


def check_item_steps(plan: FlowPlan, context: EmitContext, lists: Mapping[str, list[str]]) -> None:
    """Report what the per-item emulation does not run: a handler or hook among its steps, and more.

    Also a step it may skip whose output a job's ``if:`` or a matrix reads (``lists``: the outputs maps count).
    A handler the nested maps' runtime runs is not refused: it builds the status from the instances' records.

    A step its runtime skipped still ends its job with success and no outputs, so GitHub would evaluate the
    expressions after it on empty values.
    """
    from pipecast.targets.github.nested import runs_items  # nested.py builds on this module

    decisions = native_decisions(plan)
    for step in plan.pipeline.steps:
        if step.name not in item_steps(plan):
            continue
        handler = step.trigger is not ir.Trigger.ALL_SUCCESS or any(b.kind is ir.BindingKind.STATUS
                                                                     for b in step.bindings)
        if handler and not runs_items(plan, step):  # the nested runtime builds it from the records
            context.error(f"step {step.name!r} is an exit handler or hook that reads a step a condition inside a map "
                          "may skip item by item; on GitHub Actions that condition is decided by each step's runtime "
                          "(a job's if: cannot read the matrix), which does not build a handler's status", step=step,
                          fix=_FIX)
        read = [*decisions.get(step.name, []), *lists.get(step.name, [])]
        if read:
            context.error(f"a condition or map after step {step.name!r} reads its output {read[0]!r} from its job's "
                          "outputs, but a condition inside a map may skip the step (its runtime decides, and the job "
                          "still succeeds without outputs)", step=step,
                          fix="read the value in a step inside the map, or run it with the local target "
                              "(`pipecast run FILE`)")


def native_decisions(plan: FlowPlan) -> dict[str, list[str]]:
    """Per step, the outputs a job's ``if:`` or a chain job reads: what its job publishes (conditions outside maps).

    A condition inside a map reads its values from the artifact store (the step's runtime decides it). Every
    job asks, so the answer is kept with the plan's other facts (one pass over the groups per pipeline, not per job).
    """
    if not _LAST_PLAN or _LAST_PLAN[0][1] is not plan:  # facts belong to the plan they were found in
        _LAST_PLAN[:] = [(plan.pipeline, plan)]
        _DECIDED.clear()
        _NATIVE.clear()
    if _NATIVE:
        return _NATIVE[0]
    found: dict[str, dict[str, None]] = {}
    for group in plan.pipeline.groups:
        if group.condition is not None and not in_map(plan, group):
            for operand in group.condition.all_operands():
                if operand.kind is ir.BindingKind.OUTPUT and operand.step and operand.output:
                    found.setdefault(operand.step, {})[operand.output] = None
    _NATIVE[:] = [{step: list(outputs) for step, outputs in found.items()}]
    return _NATIVE[0]


def job_conditions(plan: FlowPlan, step: ir.Step) -> list[ir.Group]:
    """The branches around the step that its job's ``if:`` tests (those outside every map)."""
    return [g for g in plan.conditions[step.name] if not in_map(plan, g)]


def chain_job(group: ir.Group) -> str:
    """The job that decides the chain of branch ``group``."""
    return f"{group.chain or group.name}_branch"


def chain_branches(plan: FlowPlan, group: ir.Group) -> list[ir.Group]:
    """The branches of ``group``'s chain, in the order they are tried."""
    return plan.chains.get(group.chain or "", [group])


def decided(plan: FlowPlan, group: ir.Group) -> bool:
    """Whether a chain job decides ``group``'s chain (an elif, or a comparison GitHub cannot make as Python).

    Never inside a map: there each step's runtime decides its own item.
    """
    return not in_map(plan, group) and _chain_facts(plan, group)[0]


def _chain_facts(plan: FlowPlan, group: ir.Group) -> tuple[bool, dict[str, int]]:
    """Whether the chain is decided, and each branch's place: once per chain (every step of it asks)."""
    key = group.chain or group.name
    if not _LAST_PLAN or _LAST_PLAN[0][1] is not plan:  # facts belong to the plan they were found in
        _LAST_PLAN[:] = [(plan.pipeline, plan)]
        _DECIDED.clear()
        _NATIVE.clear()
    if key not in _DECIDED:
        branches = chain_branches(plan, group)
        _DECIDED[key] = (_decide(plan, branches), {b.name: k for k, b in enumerate(branches)})
    return _DECIDED[key]


def _decide(plan: FlowPlan, branches: list[ir.Group]) -> bool:
    leaves = [c for b in branches if b.condition is not None for c in _comparisons(b.condition)]
    if any(o.kind is ir.BindingKind.ITEM for c in leaves for o in c.operands):
        return False  # a map item: the condition is inside a map, decided by each item's runtime (never a job)
    return (len(branches) > 2 or any(b.condition is not None for b in branches[1:])
            or not all(_native(plan, c) for c in leaves))


def decided_chains(plan: FlowPlan) -> list[ir.Group]:
    """The first branch (the ``If``) of every chain a chain job decides, in pipeline order."""
    return [g for g in plan.pipeline.groups if g.kind is ir.GroupKind.CONDITION
            and chain_branches(plan, g)[0].name == g.name and decided(plan, g)]


def chain_needs(plan: FlowPlan, step: ir.Step) -> list[str]:
    """The chain jobs whose ``branch`` the job's ``if:`` tests."""
    return list(dict.fromkeys(chain_job(g) for g in plan.conditions[step.name] if decided(plan, g)))


def deciding_jobs(plan: FlowPlan, steps: list[str]) -> dict[str, str]:
    """The chain jobs deciding the branches of ``steps``, each → the first of those steps in its chain.

    A failed decision (e.g. a comparison Python cannot make) is that step's failure, as the local runner
    reports it.
    """
    found: dict[str, str] = {}
    for name in steps:
        for group in plan.conditions[name]:
            if decided(plan, group):
                found.setdefault(chain_job(group), name)
    return found


def extra_needs(plan: FlowPlan, step: ir.Step) -> list[str]:
    """Steps the job must wait for beyond its data: the conditions' steps, a handler's group, a hook's run."""
    names: dict[str, None] = {}
    for group in plan.conditions[step.name]:
        if decided(plan, group):
            continue  # its chain job reads the condition's steps
        for earlier in plan.chains.get(group.chain or "", [group]):
            if earlier.condition is not None:
                names.update(dict.fromkeys(earlier.condition.steps()))
            if earlier.name == group.name:
                break
    if step.trigger in _HOOKS:
        names.update(dict.fromkeys(s.name for s in plan.pipeline.steps if s.trigger not in _HOOKS))
    for binding in step.bindings:
        if binding.kind is ir.BindingKind.STATUS:
            names.update(dict.fromkeys(status_steps(plan, binding.group, step)))
    names.pop(step.name, None)
    return list(names)


def status_steps(plan: FlowPlan, group: str | None, handler: ir.Step) -> list[str]:
    """The steps whose outcome a status covers: the exit group's, or every step but hooks and the handler."""
    if group:
        return [s.name for s in plan.pipeline.steps if s.name in plan.members[group]]
    return [s.name for s in plan.pipeline.steps if s.trigger not in _HOOKS and s.name != handler.name]


def job_condition(plan: FlowPlan, step: ir.Step, jobs: Mapping[str, str], context: EmitContext,
                  empty: Mapping[str, str] | None = None) -> str | None:
    """The job's ``if:`` expression (without ``${{ }}``), or None when GitHub's default is the rule.

    ``empty``: per mapped step over a run-time list, the test that its list is empty (its job is then skipped:
    :func:`pipecast.targets.github.maps.empty_tests`); a fan-in after it runs anyway, as ``pipecast run``'s does.
    """
    branches = [_branch(plan, group, jobs, step, context) for group in job_conditions(plan, step)]
    empty = empty or {}
    fan_in = {b.step: empty[b.step] for b in step.bindings if b.kind is ir.BindingKind.COLLECTED and b.step
              and b.step in empty and not plan.maps[step.name]}

    def ran(name: str) -> str:
        return f"{_succeeded(jobs, name)} || {fan_in[name]}" if name in fan_in else _succeeded(jobs, name)

    if step.trigger is ir.Trigger.ON_FAILURE:
        terms = ["failure()"]
    elif step.trigger is ir.Trigger.ON_SUCCESS:
        terms = ["!failure()", "!cancelled()"]  # a skipped branch does not stop the on_success hook
    elif step.trigger is ir.Trigger.ALWAYS:
        terms = ["always()"] + [_succeeded(jobs, b.step) for b in step.bindings
                                if b.kind is ir.BindingKind.OUTPUT and b.step]
    elif any(b.kind is ir.BindingKind.ONE_OF for b in step.bindings):
        tolerated = {s.step for b in step.bindings for s in b.sources}
        data = {b.step for b in step.bindings if b.kind is ir.BindingKind.OUTPUT}
        terms = ["!cancelled()", "!failure()"]
        terms += [ran(name) for name in step.upstream() if name not in tolerated or name in data]
        terms += [" || ".join(_succeeded(jobs, s.step) for s in b.sources) for b in step.bindings
                  if b.kind is ir.BindingKind.ONE_OF]
    elif fan_in:  # success() would skip it after a skipped (empty) matrix: every job it needs, tested one by one
        terms = ["!cancelled()", "!failure()"]
        terms += [ran(name) for name in dict.fromkeys([*step.upstream(), *extra_needs(plan, step)])]
    elif branches:
        terms = ["success()"]
    else:
        return None
    return " && ".join(f"({t})" if " " in t and not t.startswith("!") else t for t in terms + branches)


def one_of_expression(binding: ir.Binding, jobs: Mapping[str, str]) -> str:
    """A GitHub expression giving ``STEP/OUTPUT`` of the branch that ran (for ``--upstream``)."""
    picks = [f"{_succeeded(jobs, s.step)} && {_string(f'{s.step}/{s.output}')}" for s in binding.sources]
    return " || ".join(picks + ["''"])


def _succeeded(jobs: Mapping[str, str], step: str) -> str:
    return f"needs.{jobs[step]}.result == 'success'"


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _branch(plan: FlowPlan, group: ir.Group, jobs: Mapping[str, str], step: ir.Step, context: EmitContext) -> str:
    """Whether ``group``'s branch runs: its chain job chose it (or, native: earlier branches false, its own true)."""
    if decided(plan, group):
        place = _chain_facts(plan, group)[1][group.name]
        return f"needs.{chain_job(group)}.outputs.branch == '{place}'"
    terms = []
    for earlier in plan.chains.get(group.chain or "", [group]):
        if earlier.name == group.name:
            break
        if earlier.condition is not None:
            terms.append(f"!({_condition(plan, earlier.condition, jobs, step, context)})")
    if group.condition is not None:
        terms.append(f"({_condition(plan, group.condition, jobs, step, context)})")
    return " && ".join(terms) if terms else "true"


def _condition(plan: FlowPlan, condition: ir.Condition, jobs: Mapping[str, str], step: ir.Step,
               context: EmitContext) -> str:
    def term(sub: ir.Condition) -> str:
        return _condition(plan, sub, jobs, step, context)

    if condition.op is ir.Comparison.AND:
        return " && ".join(f"({term(t)})" for t in condition.terms)
    if condition.op is ir.Comparison.OR:
        return " || ".join(f"({term(t)})" for t in condition.terms)
    if condition.op is ir.Comparison.NOT:
        return f"!({term(condition.terms[0])})"
    left, right = condition.operands
    try:
        if condition.op in (ir.Comparison.IN, ir.Comparison.NOT_IN):
            values = right.value if right.kind is ir.BindingKind.CONSTANT else None
            if not isinstance(values, list) or not all(_plain_number(v) for v in values):
                raise _Refused("membership is lowered only in a constant list of numbers or booleans")
            found = f"contains(fromJSON({_string(json.dumps(values))}), {_operand(plan, left, jobs)})"
            return found if condition.op is ir.Comparison.IN else f"!{found}"
        return f"{_operand(plan, left, jobs)} {_OPERATORS[condition.op]} {_operand(plan, right, jobs)}"
    except _Refused as refused:
        # Only a map item gets here (a comparison GitHub makes unlike Python goes to a chain job), and a condition
        # on the item is inside a map, which no job's if: tests (job_conditions): this is a safety net.
        if not plan.maps[step.name]:
            context.error(f"condition `{condition}` cannot be tested by GitHub Actions: {refused}", step=step,
                          fix=_FIX)
        return "false"


def _comparisons(condition: ir.Condition) -> list[ir.Condition]:
    """The comparisons (leaves) of a condition's and/or/not tree."""
    return [condition] if condition.operands else [c for t in condition.terms for c in _comparisons(t)]


class _AnyJob(dict[str, str]):
    """Job ids for :func:`_native`'s trial lowering (only whether it lowers counts)."""

    def __missing__(self, key: str) -> str:
        return key


def _native(plan: FlowPlan, comparison: ir.Condition) -> bool:
    """Whether GitHub's expressions make the comparison with Python's meaning (numbers and booleans)."""
    left, right = comparison.operands
    try:
        if comparison.op in (ir.Comparison.IN, ir.Comparison.NOT_IN):
            values = right.value if right.kind is ir.BindingKind.CONSTANT else None
            if not isinstance(values, list) or not all(_plain_number(v) for v in values):
                return False
            _operand(plan, left, _AnyJob())
        else:
            _operand(plan, left, _AnyJob())
            _operand(plan, right, _AnyJob())
    except _Refused:
        return False
    return True


def chain_operand_problem(plan: FlowPlan, operand: ir.Operand) -> str | None:
    """Why a chain job cannot be given ``operand`` (None when it can)."""
    # A parameter needs no check: in a scheduled run the job's script puts the default in place, as a step's does.
    if operand.kind is ir.BindingKind.OUTPUT and not _OUTPUT_ID.match(operand.output or ""):
        return f"output {operand.output!r} of step {operand.step!r} is not a GitHub output id"
    return None


class _Refused(Exception):
    """An operand GitHub's expressions cannot compare with Python's meaning (the reason)."""


def _operand(plan: FlowPlan, operand: ir.Operand, jobs: Mapping[str, str]) -> str:
    pipeline = plan.pipeline
    if operand.kind is ir.BindingKind.PARAMETER:
        param = pipeline.parameter(operand.parameter or "")
        if param.type not in _NUMERIC:
            raise _Refused(f"parameter {param.name!r} is {param.type.value}")
        if pipeline.schedule:
            raise _Refused(f"parameter {param.name!r} has no input in a scheduled run")
        return f"inputs.{param.name}"
    if operand.kind is ir.BindingKind.OUTPUT:
        source = plan.steps[operand.step or ""]
        spec = next(o for o in source.outputs if o.name == operand.output)
        if spec.type not in _NUMERIC:
            raise _Refused(f"output {spec.name!r} of step {source.name!r} is {spec.type.value}")
        if not _OUTPUT_ID.match(spec.name):
            raise _Refused(f"output {spec.name!r} is not a GitHub output id")
        return f"fromJSON(needs.{jobs[source.name]}.outputs.{spec.name})"
    if operand.kind is ir.BindingKind.CONSTANT and _plain_number(operand.value):
        return json.dumps(operand.value)
    if operand.kind is ir.BindingKind.CONSTANT:
        raise _Refused(f"the constant {operand.value_json} is not a number or a boolean")
    # GitHub's context availability table: a job's `if:` sees github, needs, vars and inputs, never `matrix`.
    raise _Refused("it reads a map item, and a job's if: cannot read the matrix context (only github, needs, vars "
                   "and inputs)")


def _plain_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) <= NUMBER_EXACT
    return isinstance(value, float) and math.isfinite(value)
