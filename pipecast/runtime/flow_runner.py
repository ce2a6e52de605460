"""The local runner's scheduler for pipelines with control flow (maps, conditions, exit handlers, hooks).

Steps are released in topological order once every upstream step has ended. A released step is skipped (with
the reason shown in the progress view and the run store) when its trigger says so — an upstream step failed or
was skipped, no ``OneOf`` branch ran, a hook's event did not happen — or else expanded into its instances: one
per item of the maps around it (``step[i]``), each skipped when a condition around it is false at that item.
An inner map inside a branch that does not run at outer item ``i`` is not expanded there, as engines skip the
branch's whole block: its steps get one instance ``step[i]``, skipped, and a fan-in an empty list for that item.
Instances run on the shared thread pool within the pipeline's bound (``parallelism`` and ``workers``) and each
map's own ``parallelism``, with the step's retries and cache, through the same executor as every other step.

Items chain as KFP runs each ``ParallelFor`` iteration's sub-DAG: a step in the same map as the step it reads is
expanded as soon as that step is, and its item ``i`` starts once item ``i`` before it has ended, whatever the
other items do (when the map's list itself, a collected list or a ``OneOf`` is read, the step waits for every item).

Ctrl-C or SIGTERM stops the run as ``argo stop`` does: running steps are cancelled, nothing new starts, and then
the exit handlers and the on_failure hook run (they see status ``cancelled``), bounded by
:attr:`FlowScheduler.grace_seconds`; a second signal aborts them too.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.graph import topological_order
from pipecast.runtime.command import invocation_for
from pipecast.runtime.executor import StepInvocation, Upstream, load_outputs
from pipecast.runtime.flow_plan import FlowError, FlowPlan, Path, final_status, instance_name
from pipecast.runtime.local_runner import StepState, _now, _Scheduler
from pipecast.runtime.process import Cancellation

_FINAL = frozenset({"done", "cached", "failed", "skipped", "cancelled"})
_RAN = frozenset({"done", "cached"})
_HOOKS = (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
_FINALLY = (ir.Trigger.ALWAYS, ir.Trigger.ON_FAILURE)  # what still runs after Ctrl-C
_CANCELLED = "the run was cancelled"


class FlowScheduler(_Scheduler):
    """Runs a pipeline with groups and triggers (see the module docstring)."""

    grace_seconds = 300.0  # how long exit handlers and hooks may run after a cancellation

    def run(self) -> None:
        """Release, expand and run every step until none is left (or the run is interrupted)."""
        self.plan = FlowPlan(self.pipeline)
        self.finally_cancellation = Cancellation()  # exit handlers and hooks: they outlive a first Ctrl-C
        self.items: dict[tuple[str, Path], list[Any]] = {}  # (map group, item path) -> its items
        self.outputs: dict[str, dict[str, Any]] = {}  # instance -> its outputs, loaded once
        self.paths: dict[str, list[Path]] = {}  # step -> the item paths of its instances
        self.closed: dict[str, str] = {}  # instance `step[i]` of an inner map that did not run -> why
        self.queue: deque[tuple[ir.Step, Path]] = deque()
        self.ticks = 0  # counts steps and items ending without running, so the loop knows something changed
        self.left: dict[str, int] = {}  # step -> how many of its instances have not ended
        self.busy: Counter[str] = Counter()  # map group -> its instances running now
        steps = {s.name: s for s in self.pipeline.steps}
        pending = [steps[name] for name in topological_order(self.pipeline)]
        self.running: dict[Future[None], tuple[ir.Step, Path]] = {}
        pending = self._drive(pending, lambda: self.interrupted)
        if self.interrupted and self.signalled is not None and not self.aborted:
            self._wind_down(pending)
        if not self.interrupted:
            for state in self.run_.steps.values():
                if state.status == "pending":
                    self._end(state, "skipped", "never started")

    def cancellation_for(self, step: ir.Step) -> Cancellation:
        """Exit handlers and hooks obey their own stop request, so a first Ctrl-C lets them run."""
        return self.cancellation if step.trigger is ir.Trigger.ALL_SUCCESS else self.finally_cancellation

    def cancel(self) -> None:
        """Stop everything, exit handlers and hooks included."""
        self.finally_cancellation.cancel(_CANCELLED)
        super().cancel()

    def _drive(self, pending: list[ir.Step], stop: Callable[[], bool]) -> list[ir.Step]:
        """Release and run steps until none is left or ``stop()``; return the steps never released."""
        running = self.running
        bound = min(self.workers, self.pipeline.parallelism or math.inf)
        pool = ThreadPoolExecutor(max_workers=int(bound), thread_name_prefix="pipecast-step")
        try:
            while not stop():
                ticks = self.ticks
                pending = self._release(pending)
                while self.queue and len(running) < bound:
                    chosen = self._next()
                    if chosen is None:
                        break
                    step, path = chosen
                    invocation = self._invocation(step, path)
                    if invocation is None:
                        continue
                    for group in self.plan.maps[step.name]:
                        self.busy[group] += 1
                    name = instance_name(step.name, path)
                    running[pool.submit(self._run_step, replace(step, name=name), invocation)] = (step, path)
                if not running:
                    if not self.queue and pending and self.ticks != ticks:
                        continue  # steps ended without running (skipped): release what waited on them
                    break  # all done, or nothing can start (a bound of 0 is refused by validation)
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    step, path = running.pop(future)
                    for group in self.plan.maps[step.name]:
                        self.busy[group] -= 1
                    state = self.run_.steps[instance_name(step.name, path)]
                    self.left[step.name] -= 1
                    if state.status not in _RAN:
                        self._ended_without_result(state, future)
                        if self.fail_fast and step.trigger is ir.Trigger.ALL_SUCCESS:
                            self.stopping = True
                    self._settle(step)
                self.flush()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return pending

    def _wind_down(self, pending: list[ir.Step]) -> None:
        """After Ctrl-C: cancel every step but the exit handlers and hooks, then run those (bounded)."""
        self.winding_down = self.stopping = True
        self.cancellation.cancel(_CANCELLED)  # kills steps in child processes; in-thread ones stop at their end
        for future, (step, _) in list(self.running.items()):
            if step.trigger is ir.Trigger.ALL_SUCCESS:
                del self.running[future]  # abandoned: it cannot record a result any more
                for group in self.plan.maps[step.name]:
                    self.busy[group] -= 1
        finishing = {step.name for step, _ in self.running.values()}
        # A queued on_success hook was decided before the run was cancelled: it no longer applies.
        self.queue = deque((step, path) for step, path in self.queue if step.trigger in _FINALLY)
        finishing |= {step.name for step, _ in self.queue}
        pending = [step for step in pending if step.trigger is not ir.Trigger.ALL_SUCCESS]  # on_success: skipped
        finishing |= {step.name for step in pending}
        for name, state in list(self.run_.steps.items()):
            if state.status in ("pending", "running") and name.split("[", 1)[0] not in finishing:
                self._end(state, "cancelled", _CANCELLED)
        self.flush(force=True)
        deadline = time.monotonic() + self.grace_seconds
        self._drive(pending, lambda: self.aborted or time.monotonic() > deadline)
        if self.running:  # aborted by a second signal, or out of time: stop the handlers still running
            self.finally_cancellation.cancel(_CANCELLED if self.aborted else
                                             f"exit handlers ran out of time ({self.grace_seconds:g}s) after Ctrl-C")

    def outcome(self) -> str:
        """Failed if a step failed or was cancelled; skipped branches and items do not fail a run."""
        steps = [self.run_.steps[s.name] for s in self.pipeline.steps]
        return "failed" if any(s.status in ("failed", "cancelled", "pending", "running") for s in steps) \
            else "succeeded"

    # -- releasing steps ---------------------------------------------------------------------------------------

    def _release(self, pending: list[ir.Step]) -> list[ir.Step]:
        """Decide every pending step whose upstream steps have all ended; return those still waiting."""
        changed = True
        while changed:
            changed, waiting = False, []
            for step in pending:
                if self._releasable(step):
                    self._decide(step)
                    changed = True
                else:
                    waiting.append(step)
            pending = waiting
        return pending

    def _releasable(self, step: ir.Step) -> bool:
        """Every upstream step has ended, or (item chains) is in the same map and already expanded."""
        waiting = [u for u in step.upstream() if self.run_.steps[u].status not in _FINAL]
        if not waiting:
            return True
        if step.trigger is not ir.Trigger.ALL_SUCCESS or self.stopping:
            return False
        for upstream in waiting:
            if upstream not in self.paths or not self._aligned(step, upstream):
                return False
        return all(self.run_.steps[o.step].status in _FINAL  # the lists its maps iterate have their values
                   for o in self.plan.expansion_reads(step.name) if o.kind is ir.BindingKind.OUTPUT and o.step)

    def _aligned(self, step: ir.Step, upstream: str) -> bool:
        """Whether item ``i`` of ``step`` reads only item ``i`` of ``upstream`` (whose maps are a prefix of its own)."""
        maps = self.plan.maps[upstream]
        if not maps or maps != self.plan.maps[step.name][:len(maps)]:
            return False
        return not any((b.kind is ir.BindingKind.COLLECTED and b.step == upstream)
                       or any(s.step == upstream for s in b.sources) for b in step.bindings)

    def _decide(self, step: ir.Step) -> None:
        state = self.run_.steps[step.name]
        reason = self._skip_reason(step) or self._outside_branch_skip(step)
        if reason:
            return self._end(state, "skipped", reason)
        try:
            paths = self._expand(step)
        except FlowError as err:
            if self.fail_fast:
                self.stopping = True
            return self._end(state, "failed", str(err))
        self.paths[step.name] = paths
        self.left[step.name] = len(paths)
        if self.plan.maps[step.name]:
            state.items = len(paths)
            state.started_at = _now()
            for path in paths:
                self.run_.steps[instance_name(step.name, path)] = StepState(instance_name(step.name, path))
        self.queue.extend((step, path) for path in paths)
        self._settle(step)

    def _skip_reason(self, step: ir.Step) -> str | None:
        if step.trigger in _HOOKS:
            failed = [s.name for s in self.pipeline.steps
                      if s.trigger not in _HOOKS and self.run_.steps[s.name].status in ("failed", "cancelled")]
            if step.trigger is ir.Trigger.ON_FAILURE and not failed:
                return "on_failure hook: no step failed"
            if step.trigger is ir.Trigger.ON_SUCCESS and failed:
                return f"on_success hook: step {failed[0]!r} {self.run_.steps[failed[0]].status}"
            return None
        if step.trigger is ir.Trigger.ALWAYS:
            for binding in step.bindings:  # an exit handler runs whatever happened, but needs its inputs
                if binding.kind is ir.BindingKind.OUTPUT and self.run_.steps[binding.step or ""].status not in _RAN:
                    return f"its input {binding.input!r} has no value: step {binding.step!r} did not run"
            return None
        if self.stopping:
            return "not started: a step failed and the run stops (fail-fast)"
        tolerated = {s.step for b in step.bindings for s in b.sources} - _data_steps(step)
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.ONE_OF and not any(
                    self.run_.steps[s.step].status in _RAN for s in binding.sources):
                return f"input {binding.input!r}: no branch of its OneOf ran"
        for upstream in step.upstream():
            status = self.run_.steps[upstream].status
            if status in ("failed", "cancelled"):
                return f"upstream step {upstream!r} {status}"
            if status == "skipped" and upstream not in tolerated:
                behind = None if self.plan.maps[step.name] else self._fan_in_failure(step, ())
                return behind or f"upstream step {upstream!r} was skipped"  # a failure behind it says more
        return None

    def _outside_branch_skip(self, step: ir.Step) -> str | None:
        """Why a mapped step inside a branch (around its outermost map) that does not run is skipped whole.

        Engines skip the branch's block before its loop expands (KFP's condition sub-DAG, Airflow's skipped
        publisher, Argo's and GitHub's skipped task or job), so its list is never made: a list that could not be
        made there fails nothing.
        """
        maps = self.plan.maps[step.name]
        if not maps:
            return None
        for group in reversed(self.plan.ancestors(self.plan.groups[maps[0]].parent)):  # outermost first
            if group.kind is ir.GroupKind.CONDITION and not self.plan.branch_runs(group, (), self._resolve):
                return self.plan.skip_reason(group, (), self._resolve)
        return None

    def _expand(self, step: ir.Step) -> list[Path]:
        """The item paths of the step's instances; an outer item whose inner map does not run is one path."""
        paths: list[Path] = [()]
        closed: list[Path] = []
        for name in self.plan.maps[step.name]:
            group = self.plan.groups[name]
            grown = []
            for path in paths:
                reason = self.plan.inner_map_skipped(group, path, self._resolve, self._not_ran) if path else None
                if reason:  # as the engines skip the inner loop of a branch that did not run: `step[i]` skipped
                    self.closed[instance_name(step.name, path)] = reason
                    closed.append(path)
                    continue
                key = (name, path)
                if key not in self.items:
                    self.items[key] = self.plan.items(group, path, self._resolve)
                grown += [(*path, i) for i in range(len(self.items[key]))]
            paths = grown
        return sorted(paths + closed)

    def _settle(self, step: ir.Step) -> None:
        """Give a mapped step the status of its items once every item has ended."""
        state = self.run_.steps[step.name]
        if not self.plan.maps[step.name] or state.status in _FINAL:
            return
        if self.left.get(step.name):
            if state.status != "running":
                state.status = "running"
                self._changed(state)
            return
        items = [self.run_.steps[instance_name(step.name, p)] for p in self.paths.get(step.name, ())]
        statuses = {s.status for s in items}
        failed = [s for s in items if s.status == "failed"]
        status = "failed" if failed else "cancelled" if "cancelled" in statuses else \
            "skipped" if statuses == {"skipped"} else "done"
        state.attempts = sum(s.attempts for s in items)
        self._end(state, status, f"item {failed[0].name!r}: {failed[0].error}" if failed else None)

    def _end(self, state: StepState, status: str, error: str | None) -> None:
        self.ticks += 1
        state.status, state.error, state.ended_at = status, error, _now()
        self._changed(state)

    # -- running instances -------------------------------------------------------------------------------------

    def _next(self) -> tuple[ir.Step, Path] | None:
        """The first queued instance its maps' parallelism lets start now (None if every one must wait)."""
        for index, (step, path) in enumerate(self.queue):
            if self._waits(step, path):
                continue
            if all(self.plan.groups[g].parallelism is None or self.busy[g] < (self.plan.groups[g].parallelism or 0)
                   for g in self.plan.maps[step.name]):
                del self.queue[index]
                return step, path
        return None

    def _waits(self, step: ir.Step, path: Path) -> bool:
        """Whether an item of a step in the same map that this instance reads has not ended yet (item chains)."""
        for upstream in step.upstream():
            depth = len(self.plan.maps[upstream])
            if depth and self.plan.maps[upstream] == self.plan.maps[step.name][:depth]:
                state = self.run_.steps.get(instance_name(upstream, path[:depth]))
                if state is not None and state.status not in _FINAL:
                    return True
        return False

    def _invocation(self, step: ir.Step, path: Path) -> StepInvocation | None:
        """The instance's invocation; None when it is skipped or failed before it starts (its state says why)."""
        name = instance_name(step.name, path)
        state = self.run_.steps[name]
        if self.stopping and step.trigger is ir.Trigger.ALL_SUCCESS:
            self._end(state, "skipped", "not started: a step failed and the run stops (fail-fast)")
            self.left[step.name] -= 1
            self._settle(step)
            return None
        try:
            reason = self._instance_skip(step, path)
            if reason:
                self._end(state, "skipped", reason)
                self.left[step.name] -= 1
                self._settle(step)
                return None
            return self._build(step, path, name)
        except FlowError as err:
            self._end(state, "failed", str(err))
            self.left[step.name] -= 1
            if self.fail_fast:
                self.stopping = True
            self._settle(step)
            return None

    def _instance_skip(self, step: ir.Step, path: Path) -> str | None:
        closed = self.closed.get(instance_name(step.name, path))
        if closed:  # an outer item whose inner map did not run (see _expand)
            return closed
        for binding in step.bindings:  # a OneOf of branches in this step's map: one of this item's ran
            if binding.kind is ir.BindingKind.ONE_OF and not any(
                    self.run_.steps[self._instance(s.step, path)].status in _RAN for s in binding.sources):
                return f"input {binding.input!r}: no branch of its OneOf ran for this item"
        tolerated = {s.step for b in step.bindings for s in b.sources} - _data_steps(step)
        if step.trigger is ir.Trigger.ALWAYS:  # an exit handler runs whatever its group's items did
            tolerated |= {u for u in step.upstream() if u not in _data_steps(step)}
        for upstream in step.upstream():  # item i of a step in the same map needs item i of the one it reads
            depth = len(self.plan.maps[upstream])
            if upstream in tolerated:
                continue
            if depth and self.plan.maps[upstream] == self.plan.maps[step.name][:depth]:
                status = self.run_.steps[instance_name(upstream, path[:depth])].status
                if status not in _RAN:
                    return f"upstream {instance_name(upstream, path[:depth])!r} {status}"
        failure = self._fan_in_failure(step, path)  # only a condition may leave an item out of a fan-in
        if failure:
            return failure
        for group in self.plan.conditions[step.name]:
            if not self.plan.branch_runs(group, path, self._resolve):
                return self.plan.skip_reason(group, path, self._resolve)
        return None

    def _build(self, step: ir.Step, path: Path, name: str) -> StepInvocation:
        base = invocation_for(self.pipeline, step, self.run_.id, self.run_.artifact_root, self.run_.parameters)
        values = dict(base.values)
        upstream: dict[str, Upstream | tuple[Any, ...]] = {}
        for binding in step.bindings:
            kind = binding.kind
            if kind is ir.BindingKind.OUTPUT:
                source = binding.step or ""
                upstream[binding.input] = Upstream(instance_name(source, path[:len(self.plan.maps[source])]),
                                                   binding.output or "")
            elif kind is ir.BindingKind.ITEM:
                values[binding.input] = self._resolve(
                    ir.Operand(kind=kind, group=binding.group, index=binding.index), path)
            elif kind is ir.BindingKind.COLLECTED:
                source = binding.step or ""
                shared = _shared(self.plan.maps[source], self.plan.maps[step.name])
                upstream[binding.input] = self._collect(source, binding.output or "", path[:shared])
            elif kind is ir.BindingKind.ONE_OF:  # the branch that ran (for this item, inside a map)
                ran = next(s for s in binding.sources if self.run_.steps[self._instance(s.step, path)].status in _RAN)
                upstream[binding.input] = Upstream(self._instance(ran.step, path), ran.output)
            elif kind is ir.BindingKind.STATUS:
                values[binding.input] = self._status(binding.group, step, path)
        invocation = replace(base, step=name, values=values, upstream=upstream)
        return invocation if self.cache else replace(invocation, cache=False)

    def _collect(self, step: str, output: str, base: Path) -> Upstream | tuple[Any, ...]:
        maps = self.plan.maps[step]
        if len(base) == len(maps):
            return Upstream(instance_name(step, base), output)
        # An outer item whose inner map did not run has no items there: its list is empty.
        count = len(self.items.get((maps[len(base)], base), ()))
        kept = [(*base, i) for i in range(count)
                if len(base) + 1 < len(maps) or self.run_.steps[instance_name(step, (*base, i))].status in _RAN]
        return tuple(self._collect(step, output, p) for p in kept)  # items skipped by a condition are left out

    def _fan_in_failure(self, step: ir.Step, path: Path) -> str | None:
        """Why ``step[path]`` skips: an item of a step it waits for every item of did not run because of a failure."""
        def status(name: str) -> str:  # an instance of a step that was not expanded: the step's own status
            state = self.run_.steps.get(name) or self.run_.steps[name.split("[", 1)[0]]
            return state.status

        return self.plan.fan_in_failure(step, path, status, lambda source, base: [
            p for p in self.paths.get(source, ()) if p[:len(base)] == base])

    def _not_ran(self, instance: str) -> str | None:
        status = self.run_.steps[instance].status
        return None if status in _RAN else status

    def _instance(self, step: str, path: Path) -> str:
        """The instance of ``step`` that item ``path`` of a step in the same maps reads."""
        return instance_name(step, path[:len(self.plan.maps[step])])

    def _status(self, group: str | None, handler: ir.Step, path: Path = ()) -> dict[str, Any]:
        """The final status of the group's steps; a handler inside a map gets its own item's (``path``)."""
        members = self.plan.members[group] if group else {s.name for s in self.pipeline.steps
                                                          if s.trigger not in _HOOKS and s.name != handler.name}
        states = []
        for step in self.pipeline.steps:
            if step.name not in members:
                continue
            paths = self.paths.get(step.name) if self.plan.maps[step.name] else None
            if paths is not None:  # a mapped step that was expanded: its items say what failed
                states += [self.run_.steps[instance_name(step.name, p)] for p in paths if p[:len(path)] == path]
            else:
                states.append(self.run_.steps[step.name])
        return final_status([(s.name, s.status, s.error) for s in states])

    def _resolve(self, operand: ir.Operand, path: Path) -> Any:
        kind = operand.kind
        if kind is ir.BindingKind.PARAMETER:
            return self.run_.parameters[operand.parameter or ""]
        if kind is ir.BindingKind.CONSTANT:
            return operand.value
        if kind is ir.BindingKind.OUTPUT:
            source = operand.step or ""
            name = instance_name(source, path[:len(self.plan.maps[source])])
            if name not in self.outputs:
                if self.run_.steps[name].status not in _RAN:
                    raise FlowError(f"output {operand.output!r} of step {name!r} has no value: it "
                                    f"{self.run_.steps[name].status}")
                self.outputs[name] = load_outputs(self.run_.artifact_root, self.pipeline.name, self.run_.id, name)
            return self.outputs[name][operand.output or ""]
        depth = self.plan.depth(operand.group or "")
        item = self.items[(operand.group or "", path[:depth])][path[depth]]
        return item if operand.index is None else item[operand.index]


def _data_steps(step: ir.Step) -> set[str]:
    return {b.step for b in step.bindings if b.kind in (ir.BindingKind.OUTPUT, ir.BindingKind.COLLECTED) and b.step}


def _shared(first: tuple[str, ...], second: tuple[str, ...]) -> int:
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count
