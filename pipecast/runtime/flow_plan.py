"""What control flow means at run time, engine-independent: map items, conditions, instances, statuses.

A step inside maps runs once per item: each run is an *instance* named ``step[i]`` (``step[i][j]`` inside a nested
map; ``[`` is never in a step name, so instances cannot collide with steps). :class:`FlowPlan` answers, for one
pipeline, which maps and conditions enclose each step and how to resolve the values they read (parameters,
constants, step outputs, map items) at an instance's item path. The local runner drives it; engines that expand
maps and evaluate conditions themselves follow the same rules (documented in docs/control-flow.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError

Path = tuple[int, ...]
Status = Callable[[str], str]  # an instance's (or step's) status, by name
Instances = Callable[[str, Path], list[Path]]  # the instance paths of a mapped step under an item path

# The words for "it ran" of the local runner (done, cached) and of the runtime records (succeeded).
RAN = frozenset({"done", "cached", "succeeded"})
_FAILED = frozenset({"failed", "cancelled"})

_COMPARE: dict[ir.Comparison, Callable[[Any, Any], bool]] = {
    ir.Comparison.EQ: lambda a, b: bool(a == b),
    ir.Comparison.NE: lambda a, b: bool(a != b),
    ir.Comparison.LT: lambda a, b: bool(a < b),
    ir.Comparison.LE: lambda a, b: bool(a <= b),
    ir.Comparison.GT: lambda a, b: bool(a > b),
    ir.Comparison.GE: lambda a, b: bool(a >= b),
    ir.Comparison.IN: lambda a, b: a in b,
    ir.Comparison.NOT_IN: lambda a, b: a not in b,
}


class FlowError(PipecastError):
    """A map's list or a condition's value is not what the construct needs (reported as the step's failure)."""


def combined(lists: list[list[Any]], combine: str | None, mismatch: Callable[[list[int]], PipecastError]) -> list[Any]:
    """A map's items from its lists: the one list, their product (``combine`` "product"), or item i of each (zip).

    Zipped lists of different lengths raise ``mismatch(lengths)``. The local runner and every engine's runtime
    side build items here, so all expand a map alike.
    """
    if len(lists) == 1:
        return lists[0]
    if combine == ir.Combine.PRODUCT:  # a str enum: the IR's value and a command line's text alike
        return [list(combo) for combo in itertools.product(*lists)]
    lengths = sorted({len(v) for v in lists})
    if len(lengths) > 1:
        raise mismatch(lengths)
    return [list(combo) for combo in zip(*lists)]


def zip_mismatch(what: str) -> Callable[[list[int]], PipecastError]:
    """The error for zipped lists of different lengths, naming ``what`` (an engine's runtime side)."""
    return lambda lengths: PipecastError(f"{what}: zip pairs item i of each list, but the lists have lengths {lengths}")


def decision_outputs(pipeline: ir.Pipeline) -> dict[str, list[str]]:
    """Per step, the outputs a condition reads, in first-seen order: what an engine's step publishes for it."""
    found: dict[str, dict[str, None]] = {}
    for group in pipeline.groups:
        if group.condition is not None:
            for operand in group.condition.all_operands():
                if operand.kind is ir.BindingKind.OUTPUT and operand.step and operand.output:
                    found.setdefault(operand.step, {})[operand.output] = None
    return {step: list(outputs) for step, outputs in found.items()}


def instance_name(step: str, path: Path) -> str:
    """``step`` for a step outside maps, ``step[2]`` for item 2, ``step[2][0]`` inside a nested map."""
    return step + "".join(f"[{i}]" for i in path)


class FlowPlan:
    """The groups of a pipeline as the runner needs them: per step, its maps (outermost first) and conditions."""

    def __init__(self, pipeline: ir.Pipeline) -> None:
        self.pipeline = pipeline
        self.groups = {g.name: g for g in pipeline.groups}
        self.steps = {s.name: s for s in pipeline.steps}
        self.maps: dict[str, tuple[str, ...]] = {}
        self.conditions: dict[str, tuple[ir.Group, ...]] = {}
        self.members: dict[str, set[str]] = {g: set() for g in self.groups}  # every step inside each group
        self.chains: dict[str, list[ir.Group]] = {}  # if-chain -> its branches, in the order they are tried
        for group in sorted(pipeline.groups, key=lambda g: g.branch):
            if group.kind is ir.GroupKind.CONDITION and group.chain:
                self.chains.setdefault(group.chain, []).append(group)
        for step in pipeline.steps:
            chain = self.ancestors(step.group)
            self.maps[step.name] = tuple(g.name for g in reversed(chain) if g.kind is ir.GroupKind.MAP)
            self.conditions[step.name] = tuple(g for g in reversed(chain) if g.kind is ir.GroupKind.CONDITION)
            for group in chain:
                self.members[group.name].add(step.name)

    def ancestors(self, name: str | None) -> list[ir.Group]:
        """The group ``name`` and those around it, innermost first."""
        chain = []
        while name is not None:
            group = self.groups[name]
            chain.append(group)
            name = group.parent
        return chain

    def item_conditions(self, step: ir.Step) -> list[ir.Group]:
        """The branches between a step and its innermost map, innermost first ([] outside maps).

        Targets whose engines cannot test a condition per map item let the step's runtime decide these per item.
        """
        found: list[ir.Group] = []
        for group in self.ancestors(step.group):
            if group.kind is ir.GroupKind.MAP:
                return found
            if group.kind is ir.GroupKind.CONDITION:
                found.append(group)
        return []

    def depth(self, group: str) -> int:
        """How many maps enclose the group's items (0 for a top-level map)."""
        return sum(1 for g in self.ancestors(self.groups[group].parent) if g.kind is ir.GroupKind.MAP)

    def items(self, group: ir.Group, path: Path, resolve: Callable[[ir.Operand, Path], Any]) -> list[Any]:
        """The items of map ``group`` at item path ``path`` (the items of the maps around it)."""
        lists = []
        for operand in group.items:
            value = resolve(operand, path)
            if not isinstance(value, list):
                raise FlowError(f"map {group.name!r} ({group.location}) iterates {_describe(operand)}, which is "
                                f"{type(value).__name__} {value!r:.80} at run time, not a list")
            lists.append(value)
        return combined(lists, group.combine, lambda lengths: FlowError(
            f"map {group.name!r} ({group.location}) zips lists of different lengths {lengths}; "
            "zip pairs item i of each list, so give them one length (or use Product)"))

    def branch_runs(self, group: ir.Group, path: Path, resolve: Callable[[ir.Operand, Path], Any]) -> bool:
        """Whether branch ``group`` runs at ``path``: its condition holds and no earlier branch's did."""
        for earlier in self.chains.get(group.chain or "", [group]):
            if earlier.name == group.name:
                return group.condition is None or self.holds(group.condition, path, resolve)
            if earlier.condition is not None and self.holds(earlier.condition, path, resolve):
                return False
        return group.condition is None or self.holds(group.condition, path, resolve)

    def holds(self, condition: ir.Condition, path: Path, resolve: Callable[[ir.Operand, Path], Any]) -> bool:
        """Whether ``condition`` holds at item path ``path``."""
        if condition.op is ir.Comparison.AND:
            return all(self.holds(term, path, resolve) for term in condition.terms)
        if condition.op is ir.Comparison.OR:
            return any(self.holds(term, path, resolve) for term in condition.terms)
        if condition.op is ir.Comparison.NOT:
            return not self.holds(condition.terms[0], path, resolve)
        left, right = (resolve(o, path) for o in condition.operands)
        try:
            return compare(condition.op, left, right)
        except TypeError as err:
            raise FlowError(f"condition `{condition}` cannot compare {left!r:.60} with {right!r:.60}: {err}") from None


    def skip_reason(self, group: ir.Group, path: Path, resolve: Callable[[ir.Operand, Path], Any]) -> str:
        """Why branch ``group`` does not run at ``path``, in the words of the progress view."""
        why = "an earlier branch ran" if group.condition is None or self.holds(group.condition, path, resolve) \
            else f"`{group.condition}` is false"
        return f"{group.label or 'if'} branch {group.name!r}: {why}"

    def branches_around(self, group: ir.Group) -> list[ir.Group]:
        """The branches between inner map ``group`` and the map around it, outermost first.

        [] for a top-level map: its branches are decided as its steps' own conditions.
        """
        branches: list[ir.Group] = []
        for around in self.ancestors(group.parent):
            if around.kind is ir.GroupKind.MAP:
                return branches
            if around.kind is ir.GroupKind.CONDITION:
                branches.insert(0, around)
        return []

    def expansion_reads(self, step: str) -> list[ir.Operand]:
        """What expanding ``step``'s maps reads: their lists and the conditions deciding whether an inner map runs."""
        reads: list[ir.Operand] = []
        for name in self.maps[step]:
            group = self.groups[name]
            reads += [*group.items, *self._deciding(group)]
        return reads

    def _deciding(self, group: ir.Group) -> list[ir.Operand]:
        return [o for b in self.branches_around(group) for g in self.chains.get(b.chain or "", [b]) if g.condition
                for o in g.condition.all_operands()]

    def inner_map_skipped(self, group: ir.Group, path: Path, resolve: Callable[[ir.Operand, Path], Any],
                          not_ran: Callable[[str], str | None]) -> str | None:
        """Why inner map ``group`` has no items at outer item ``path`` (None: it expands).

        Engines skip a branch's whole block (KFP's condition sub-DAG, Argo's skipped DAG task, Azure ML's
        ``if_else`` block), so an inner loop in a branch that does not run at ``path`` never expands; nor does one
        whose deciding value or list comes from a step of the outer item that did not run. ``not_ran(instance)``
        is that instance's status when it did not run, else None.
        """
        branches = self.branches_around(group)
        for reads, decide in ((self._deciding(group), True), (list(group.items), False)):
            for operand in reads:
                if operand.kind is ir.BindingKind.OUTPUT and operand.step:
                    source = instance_name(operand.step, path[:len(self.maps[operand.step])])
                    status = not_ran(source)
                    if status is not None:
                        return f"upstream {source!r} {status}"
            for branch in branches if decide else ():
                if not self.branch_runs(branch, path, resolve):
                    return self.skip_reason(branch, path, resolve)
        return None

    # -- fan-ins over items that did not run --------------------------------------------------------------

    def fan_in_failure(self, step: ir.Step, path: Path, status: Status, instances: Instances) -> str | None:
        """Why instance ``step[path]``, which waits for every item of a mapped step, is skipped because of a failure.

        A fan-in gets the items that ran, but only a *condition* may leave an item out. An item that failed, was
        cancelled, or was skipped because something it reads did not run for that reason (at any depth: a chain,
        a nested map, a collected list) makes the fan-in skip, as every engine's native map does (Airflow's
        all_success: ``upstream_failed``; KFP/Argo/Tekton/GitHub run no task after a failed one). So a fan-in
        never runs on partial data when the run goes on after a failure (``--continue-on-failure``). Exit handlers
        and hooks run whatever happened and still get the items that ran. ``status(name)``: the status of an
        instance or step; ``instances(step, base)``: the instance paths of ``step`` under ``base`` (an outer item
        whose inner map did not expand is one path), [] when it was not expanded. None: nothing failed.
        """
        if step.trigger is not ir.Trigger.ALL_SUCCESS:
            return None
        failed = self._failed_read(step.name, path, status, instances, {}, waits_only=True)
        if failed is None:
            return None
        source = failed.split("[", 1)[0]
        item = f" (item {failed!r})" if failed != source else ""
        return f"upstream step {source!r} {status(failed)}{item}"

    def _failure_behind(self, step: str, path: Path, status: Status, instances: Instances,
                        seen: dict[str, str | None]) -> str | None:
        """The failed or cancelled instance that is why ``step[path]`` did not run (None: it ran, or a condition)."""
        name = instance_name(step, path)
        if name not in seen:
            state = status(name)
            seen[name] = name if state in _FAILED else \
                self._failed_read(step, path, status, instances, seen) if state == "skipped" else None
        return seen[name]

    def _failed_read(self, step: str, path: Path, status: Status, instances: Instances,
                     seen: dict[str, str | None], waits_only: bool = False) -> str | None:
        """The failed instance behind an input of ``step[path]`` that did not run (None: none).

        ``waits_only``: only the steps it waits for every item of (what it collects, or runs after).
        """
        maps = self.maps[step]
        if 0 < len(path) < len(maps):  # an outer item whose inner map did not expand: what expanding it read
            group = self.groups[maps[len(path)]]
            reads = [o.step for o in (*self._deciding(group), *group.items) if o.kind is ir.BindingKind.OUTPUT
                     and o.step]
            return next(filter(None, (self._failure_behind(s, path[:len(self.maps[s])], status, instances, seen)
                                      for s in reads)), None)
        not_taken: set[str] = set()  # the other branches of a OneOf one of whose branches ran (at this item)
        for binding in self.steps[step].bindings:
            sources = [s.step for s in binding.sources]
            if all(len(self.maps[s]) <= len(path) for s in sources) and any(
                    status(instance_name(s, path[:len(self.maps[s])])) in RAN for s in sources):
                not_taken.update(sources)
        for upstream in self.steps[step].upstream():
            depth = len(self.maps[upstream])
            aligned = self.maps[upstream] == maps[:depth]
            if upstream in not_taken or (waits_only and aligned):
                continue
            if aligned:  # item i of a chain, or a step outside the maps
                candidates = [path[:depth]]
            else:  # every item under the maps both share
                shared = next((i for i, (a, b) in enumerate(zip(self.maps[upstream], maps)) if a != b),
                              min(depth, len(maps)))
                candidates = instances(upstream, path[:shared]) or [path[:shared]]
            for candidate in candidates:
                failed = self._failure_behind(upstream, candidate, status, instances, seen)
                if failed:
                    return failed
        return None


def compare(op: ir.Comparison, left: Any, right: Any) -> bool:
    """One comparison with Python's meaning (TypeError when Python cannot compare them); engines reuse it."""
    return _COMPARE[op](left, right)


def _describe(operand: ir.Operand) -> str:
    if operand.kind is ir.BindingKind.PARAMETER:
        return f"pipeline parameter {operand.parameter!r}"
    if operand.kind is ir.BindingKind.OUTPUT:
        return f"output {operand.output!r} of step {operand.step!r}"
    if operand.kind is ir.BindingKind.ITEM:
        return f"the item of map {operand.group!r}"
    return f"the constant {operand.value_json}"


def final_status(states: list[tuple[str, str, str | None]]) -> dict[str, Any]:
    """The status an exit handler or hook gets, from ``(name, status, error)`` of the steps it covers.

    ``{"status": "succeeded" | "failed" | "cancelled", "failed_steps": [...], "error": first error or None}``,
    the shape of KFP's ``PipelineTaskFinalStatus`` in pipecast's words.
    """
    failed = [(name, error) for name, status, error in states if status == "failed"]
    cancelled = any(status == "cancelled" for _, status, _ in states)
    status = "failed" if failed else "cancelled" if cancelled else "succeeded"
    return {"status": status, "failed_steps": [name for name, _ in failed],
            "error": failed[0][1] if failed else None}
