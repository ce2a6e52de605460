"""Control flow run by a step's own runtime, for engines that run a fixed graph of containers (Docker Compose).

Compose starts each step's service once, after its upstream services exited 0; it can neither expand a map nor
skip a service. So the step's runtime does both, by the rules of :mod:`pipecast.runtime.flow_plan` (the local
runner's)::

    python -m pipecast.runtime.inline_flow --flow PLAN [--flow-param NAME=TYPE:VALUE]... run ARGS

``PLAN`` (compact IR JSON) holds the step, the steps it reads and the groups around them; ``--flow-param``
gives the pipeline parameters a map or condition reads; ``run ARGS`` is the step's ordinary runtime command.

* **Trigger.** An upstream step that was skipped (or a ``OneOf`` none of whose branches ran) skips the step: it
  writes a ``meta.json`` with ``"status": "skipped"`` and the reason, and exits 0, so the services after it
  start and skip too (their own check reads that record).
* **Map.** A step inside maps reads the lists (parameters, constants, upstream outputs from the artifact store;
  zip/product), and runs each item as instance ``step[i]`` in a child ``python -m pipecast.runtime run``: its own
  retries, timeout, cache entry and ``meta.json``, at most the map's ``parallelism`` at once (else
  :data:`DEFAULT_WORKERS`, the local runner's default; a pipeline's bound too, which reaches the plan only on
  engines that run one step at a time). Item ``i`` reads item ``i`` of the same map's upstream
  steps; an item whose condition is false, or whose upstream item did not run, is skipped (recorded). The first
  failed item stops new ones from starting (fail-fast); the step's own ``meta.json`` then says which item failed.
  A step after the map gets the items' outputs as a list in item order (those that ran).
* **Condition.** Evaluated at each instance from the artifact store, before it runs; the chain's earlier branches
  first (if/elif/else), as the local runner does.
* **Exit handlers and hooks** (engines that run every step's command in order, whatever happened: SkyPilot's run
  script). Once a step failed, the script sets :data:`STOPPED_ENV`: a later ordinary step records itself skipped
  (the local runner's fail-fast), while an exit handler still runs and a hook runs only on its event. A handler's
  or hook's ``status`` input is built from the records of its group's steps (their items), in the local runner's
  shape (:func:`pipecast.runtime.flow_plan.final_status`). On Compose (every ``depends_on`` ``required: false``) a
  handler or hook starts only once each step it follows has exited; :data:`ENDED_ENV` says so, and a step found
  without a record then counts as failed (its container ended before its runtime could write one). There an
  ordinary step may start after a step it does not depend on failed: :data:`FAIL_FAST_ENV` makes it look first at
  the run's failure mark (:data:`FAILED_MARK`, written by every failing step) and record itself skipped as under
  :data:`STOPPED_ENV`.
  Once the run was cancelled (SkyPilot's run script traps TERM and INT), the script sets :data:`CANCELLED_ENV`: a
  later ordinary step records itself cancelled without running, while handlers and hooks decide as above (the
  local runner runs the exit handlers and the on_failure hook after a cancel; an on_success hook is skipped).

SIGTERM (``docker stop``) is passed on to every running item, which records itself cancelled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.command import TryOptions, parse_command, try_args
from pipecast.runtime.executor import StepInvocation, Upstream, load_outputs, now
from pipecast.runtime.flow_plan import FlowError, FlowPlan, Path, final_status, instance_name
from pipecast.runtime.params import decode_parameter
from pipecast.runtime.process import Cancellation, StepCancelled, start_child

DEFAULT_WORKERS = min(8, os.cpu_count() or 2)  # the local runner's default bound
_RAN = ("succeeded",)
_HOOKS = (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
# Set (to any text) by a run script once one of its steps failed: later ordinary steps do not start (fail-fast).
STOPPED_ENV = "PIPECAST_FLOW_STOPPED"
STOPPED = "not started: a step failed and the run stops (fail-fast)"  # the local runner's reason, word for word
# Set (to any text) by a run script once the run was cancelled (its TERM/INT trap: SkyPilot's run script): a later
# ordinary step records itself cancelled, as the local runner records every step not started when it is cancelled.
# Only a cancelled run cancels a step, so a step after a cancelled one records the same (Compose's wind-down).
CANCELLED_ENV = "PIPECAST_FLOW_CANCELLED"
CANCELLED = "the run was cancelled"  # the local runner's words (flow_runner._CANCELLED)
# Set (to any text) on a handler or hook that starts only after every step it follows has ended (Compose): a step
# without a record then failed (its container died first). Elsewhere (GitHub) a step without one never started.
ENDED_ENV = "PIPECAST_FLOW_UPSTREAM_ENDED"
# Set (to any text) on an ordinary step that may start after another step failed without depending on it (Compose
# with exit handlers or hooks: every dependency optional). The step looks at the run's failure mark first and, once
# any step failed, records itself skipped as under STOPPED_ENV (the local runner's fail-fast).
FAIL_FAST_ENV = "PIPECAST_FLOW_FAIL_FAST"
FAILED_MARK = ".pipecast-failed.json"  # in the run's folder, written by every failing step (see run_failed)
_NO_RECORD = "ended without a record (its container exited before its runtime wrote one; see its log)"


class InlineStep:
    """One step of a pipeline with control flow, run by its own runtime (see the module docstring)."""

    def __init__(self, plan: ir.Pipeline, params: dict[str, Any], base: StepInvocation,
                 cancellation: Cancellation) -> None:
        self.plan = FlowPlan(plan)
        self.step = self.plan.steps[base.step]
        self.params, self.base, self.cancellation = params, base, cancellation
        self.store = ArtifactStore(base.artifact_root)
        self.items: dict[tuple[str, Path], list[Any]] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.failed: str | None = None
        self.children: set[subprocess.Popen[bytes]] = set()

    # -- records in the artifact store ------------------------------------------------------------------

    def _meta_path(self, name: str) -> str:
        return f"{self.store.step_dir(self.base.pipeline, self.base.run_id, name)}/meta.json"

    def record(self, name: str) -> dict[str, Any]:
        """The ``meta.json`` of step or instance ``name`` in this run ({} when it has none)."""
        if name not in self.records:
            path = self._meta_path(name)
            self.records[name] = dict(self.store.read_json(path)) if self.store.exists(path) else {}
        return self.records[name]

    def status(self, name: str) -> str:
        """The recorded status of ``name`` (``succeeded``, ``skipped``, ``failed``...)."""
        return str(self.record(name).get("status") or "without a record")

    def final(self, name: str) -> str:
        """``name``'s status as a handler or hook counts it: with ENDED_ENV, no record means it failed."""
        status = self.status(name)
        return "failed" if status == "without a record" and os.environ.get(ENDED_ENV) else status

    def _failed_mark(self) -> str:
        # Beside the steps' folders, under a name no step or item can have (a step name is an identifier).
        return f"{self.store.run_dir(self.base.pipeline, self.base.run_id)}/{FAILED_MARK}"

    def run_failed(self) -> bool:
        """Whether any step (or item) of this run has failed so far: one look at the run's failure mark.

        Each failing step writes the mark (:meth:`mark_failed`), so the question costs one read however many steps
        the run has, where listing every record costs one read per step (and one listing) at each step.
        """
        return bool(self.store.exists(self._failed_mark()))

    def mark_failed(self, name: str, error: str | None) -> None:
        """Mark the run failed (step or item ``name``): read by the steps with :data:`FAIL_FAST_ENV`."""
        self.store.write_json(self._failed_mark(), {"step": name, "error": error, "at": now()})

    def write(self, name: str, status: str, reason: str | None = None, **extra: Any) -> None:
        """Record ``name`` (the step, or one of its items) as skipped, failed or cancelled by the flow itself."""
        record = {"step": name, "status": status, "ended_at": now(), **extra}
        if reason:
            record["error" if status != "skipped" else "reason"] = reason
        self.store.write_json(self._meta_path(name), record)
        self.records[name] = record
        if status == "failed":
            self.mark_failed(name, reason)
        if status == "skipped":
            print(f"pipecast: step {name!r} skipped: {reason}", file=sys.stderr, flush=True)

    # -- deciding ---------------------------------------------------------------------------------------

    def run(self) -> int:
        """Decide, expand and run the step; return the exit status."""
        if self.step.trigger is ir.Trigger.ALL_SUCCESS and (os.environ.get(CANCELLED_ENV) or any(
                self.status(upstream) == "cancelled" for upstream in self.step.upstream())):
            # Exit handlers and hooks go on to their own decision: the local runner still runs them after a cancel.
            self.write(self.step.name, "cancelled", CANCELLED)
            print(f"pipecast: step {self.step.name!r} cancelled: {CANCELLED}", file=sys.stderr, flush=True)
            return 0
        reason = self.skip_reason()
        if reason:
            self.write(self.step.name, "skipped", reason)
            return 0
        try:
            paths = self.expand()
            if self.plan.maps[self.step.name]:
                return self.run_items(paths)
            reason = self.instance_skip(())
            if reason:
                self.write(self.step.name, "skipped", reason)
                return 0
            argv = self.argv(())
        except FlowError as err:
            self.write(self.step.name, "failed", str(err))
            print(f"pipecast: step {self.step.name!r} failed: {err}", file=sys.stderr, flush=True)
            return 1
        from pipecast.runtime.__main__ import main as run_step

        code = run_step(argv)
        if code != 0:
            self.records.pop(self.step.name, None)  # its runtime wrote it
            if self.status(self.step.name) == "failed":
                self.mark_failed(self.step.name, self.record(self.step.name).get("error"))
        return code

    def skip_reason(self) -> str | None:
        """Why the whole step is skipped, as the local runner decides it (None: it runs)."""
        step = self.step
        if step.trigger in _HOOKS:
            failed = [s.name for s in self.plan.pipeline.steps
                      if s.trigger not in _HOOKS and self.final(s.name) in ("failed", "cancelled")]
            if step.trigger is ir.Trigger.ON_FAILURE and not failed:
                return "on_failure hook: no step failed"
            if step.trigger is ir.Trigger.ON_SUCCESS and failed:
                return f"on_success hook: step {failed[0]!r} {self.final(failed[0])}"
            return None
        if step.trigger is ir.Trigger.ALWAYS:
            for binding in step.bindings:  # an exit handler runs whatever happened, but needs its inputs
                if binding.kind is ir.BindingKind.OUTPUT and self.status(binding.step or "") not in _RAN:
                    return f"its input {binding.input!r} has no value: step {binding.step!r} did not run"
            return None
        if os.environ.get(STOPPED_ENV) or (os.environ.get(FAIL_FAST_ENV) and self.run_failed()):
            return STOPPED
        data = {b.step for b in step.bindings if b.kind in (ir.BindingKind.OUTPUT, ir.BindingKind.COLLECTED)}
        tolerated = {s.step for b in step.bindings for s in b.sources} - data
        for binding in step.bindings:  # branches in this step's own map: decided item by item (instance_skip)
            if binding.kind is ir.BindingKind.ONE_OF and not any(
                    self.status(s.step) in _RAN or self._aligned(s.step) for s in binding.sources):
                return f"input {binding.input!r}: no branch of its OneOf ran"
        for upstream in step.upstream():
            status = self.status(upstream)
            if status == "skipped" and upstream not in tolerated:
                behind = None if self.plan.maps[step.name] else self.fan_in_failure(())
                return behind or f"upstream step {upstream!r} was skipped"  # a failure behind it says more
            if status not in _RAN and status != "skipped":
                return f"upstream step {upstream!r} {status}"
        return None

    def expand(self) -> list[Path]:
        """The item paths of the step's instances (``[()]`` outside maps)."""
        return self.paths_of(self.step.name)

    def paths_of(self, step: str) -> list[Path]:
        """The item paths of step ``step``'s instances, sorted (``[()]`` outside maps).

        An outer item whose inner map does not run there (FlowPlan.inner_map_skipped) is one path, recorded skipped.
        """
        paths: list[Path] = [()]
        closed: list[Path] = []
        for name in self.plan.maps[step]:
            grown: list[Path] = []
            for path in paths:
                if path and self.inner_skipped(name, path):
                    closed.append(path)
                else:
                    grown += [(*path, i) for i in range(len(self.map_items(name, path)))]
            paths = grown
        return sorted(paths + closed)

    def inner_skipped(self, group: str, path: Path) -> str | None:
        """Why inner map ``group`` has no items at outer item ``path`` (None: it expands)."""
        return self.plan.inner_map_skipped(self.plan.groups[group], path, self.resolve,
                                           lambda name: None if self.status(name) in _RAN else self.status(name))

    def map_items(self, group: str, path: Path) -> list[Any]:
        """The items of map ``group`` at ``path``, computed once."""
        key = (group, path)
        if key not in self.items:
            self.items[key] = self.plan.items(self.plan.groups[group], path, self.resolve)
        return self.items[key]

    def instance_skip(self, path: Path) -> str | None:
        """Why the instance at ``path`` is skipped (None: it runs)."""
        maps = self.plan.maps[self.step.name]
        if len(path) < len(maps):  # an outer item whose inner map did not run
            return self.inner_skipped(maps[len(path)], path)
        for binding in self.step.bindings:  # a OneOf of branches in this step's map: one of this item's ran
            if binding.kind is ir.BindingKind.ONE_OF and not any(
                    self.status(self._instance(s.step, path)) in _RAN for s in binding.sources):
                return f"input {binding.input!r}: no branch of its OneOf ran for this item"
        one_of = {s.step for b in self.step.bindings if b.kind is ir.BindingKind.ONE_OF for s in b.sources}
        if self.step.trigger is ir.Trigger.ALWAYS:  # an exit handler runs whatever its group's items did
            one_of |= set(self.step.upstream()) - {
                b.step for b in self.step.bindings if b.kind in (ir.BindingKind.OUTPUT, ir.BindingKind.COLLECTED)}
        for upstream in self.step.upstream():  # item i of a step in the same map needs item i of the one it reads
            depth = len(self.plan.maps.get(upstream, ()))
            if upstream in one_of:
                continue
            if depth and self.plan.maps[upstream] == maps[:depth]:
                name = instance_name(upstream, path[:depth])
                if self.status(name) not in _RAN:
                    return f"upstream {name!r} {self.status(name)}"
        failure = self.fan_in_failure(path)  # only a condition may leave an item out of a fan-in
        if failure:
            return failure
        for group in self.plan.conditions[self.step.name]:
            if not self.plan.branch_runs(group, path, self.resolve):
                why = "an earlier branch ran" if group.condition is None or self.plan.holds(
                    group.condition, path, self.resolve) else f"`{group.condition}` is false"
                return f"{group.label or 'if'} branch {group.name!r}: {why}"
        return None

    def fan_in_failure(self, path: Path) -> str | None:
        """Why instance ``path`` skips: an item it collects did not run because of a failure (None: none).

        :meth:`FlowPlan.fan_in_failure` on the records, as ``pipecast run`` decides it.
        """
        return self.plan.fan_in_failure(self.step, path, self.status, self.instance_paths)

    def instance_paths(self, step: str, base: Path) -> list[Path]:
        """The instance paths of mapped ``step`` under ``base``, as :meth:`collect` walks them ([]: not expanded)."""
        maps = self.plan.maps[step]
        own = self.record(step)
        if not base and own.get("status") in ("skipped", "failed", "cancelled") and "instances" not in own:
            return []  # decided as a whole (its upstream did not run): its record says why
        try:
            if len(base) == len(maps) or (base and self.inner_skipped(maps[len(base)], base)):
                return [base]
            return [p for i in range(len(self.map_items(maps[len(base)], base)))
                    for p in self.instance_paths(step, (*base, i))]
        except FlowError:  # its list was never made: the step did not run as a whole (its record says why)
            return []

    def resolve(self, operand: ir.Operand, path: Path) -> Any:
        """The value of ``operand`` at item path ``path``."""
        kind = operand.kind
        if kind is ir.BindingKind.PARAMETER:
            if operand.parameter not in self.params:
                raise FlowError(f"parameter {operand.parameter!r} was not passed (--flow-param)")
            return self.params[operand.parameter or ""]
        if kind is ir.BindingKind.CONSTANT:
            return operand.value
        if kind is ir.BindingKind.OUTPUT:
            source = operand.step or ""
            name = instance_name(source, path[:len(self.plan.maps[source])])
            if name not in self.outputs:
                if self.status(name) not in _RAN:
                    raise FlowError(f"output {operand.output!r} of step {name!r} has no value: it "
                                    f"{self.status(name)}")
                self.outputs[name] = load_outputs(self.base.artifact_root, self.base.pipeline, self.base.run_id, name)
            return self.outputs[name][operand.output or ""]
        depth = self.plan.depth(operand.group or "")
        item = self.map_items(operand.group or "", path[:depth])[path[depth]]
        return item if operand.index is None else item[operand.index]

    # -- the instance's command -------------------------------------------------------------------------

    def argv(self, path: Path) -> list[str]:
        """``run ARGS`` of the instance at ``path``: its item, its upstream items, collected lists, its OneOf."""
        step, base = self.step, self.base
        values = dict(base.values)
        upstream: dict[str, Upstream | tuple[Any, ...]] = {}
        for binding in step.bindings:
            kind, source = binding.kind, binding.step or ""
            if kind is ir.BindingKind.OUTPUT:
                upstream[binding.input] = Upstream(instance_name(source, path[:len(self.plan.maps[source])]),
                                                   binding.output or "")
            elif kind is ir.BindingKind.ITEM:
                values[binding.input] = self.resolve(
                    ir.Operand(kind=kind, group=binding.group, index=binding.index), path)
            elif kind is ir.BindingKind.COLLECTED:
                shared = _shared(self.plan.maps[source], self.plan.maps[step.name])
                upstream[binding.input] = self.collect(source, binding.output or "", path[:shared])
            elif kind is ir.BindingKind.ONE_OF:
                ran = next(s for s in binding.sources if self.status(self._instance(s.step, path)) in _RAN)
                upstream[binding.input] = Upstream(self._instance(ran.step, path), ran.output)
            elif kind is ir.BindingKind.STATUS:
                values[binding.input] = self.group_status(binding.group, path)
        invocation = replace(base, step=instance_name(step.name, path), values=values, upstream=upstream)
        args = try_args(invocation, TryOptions())
        retry = base.retry
        if retry.attempts > 1:
            args += ["--attempts", str(retry.attempts), "--retry-delay", f"{retry.delay_seconds:g}",
                     "--retry-backoff", f"{retry.backoff:g}"]
            if retry.max_delay_seconds is not None:
                args += ["--retry-max-delay", f"{retry.max_delay_seconds:g}"]
        if base.timeout_seconds:
            args += ["--timeout", f"{base.timeout_seconds:g}"]
        return args

    def group_status(self, group: str | None, path: Path) -> dict[str, Any]:
        """The final status of exit group ``group`` (None: every step but the hooks), from the steps' records.

        As the local runner's: a mapped step that was expanded counts by its items (for a handler inside a map,
        only those under its own item ``path``); any other step by its own record.
        """
        members = self.plan.members[group] if group else {
            s.name for s in self.plan.pipeline.steps if s.trigger not in _HOOKS and s.name != self.step.name}
        states: list[tuple[str, str, str | None]] = []
        prefix = instance_name("", path)
        for step in self.plan.pipeline.steps:
            if step.name not in members:
                continue
            instances = self.record(step.name).get("instances") if self.plan.maps[step.name] else None
            names = [n for n in instances if _under(n[len(step.name):], prefix)] if instances is not None \
                else [step.name]
            states += [(n, self.final(n), self._report_error(n)) for n in names]
        return final_status(states)

    def _report_error(self, name: str) -> str | None:
        """A failed record's error in the words of ``pipecast run``'s report (StepFailedError in executor.py)."""
        record = self.record(name)
        if not record and self.final(name) == "failed":
            return f"step {name!r} {_NO_RECORD}"
        error, tries = record.get("error"), record.get("attempt")
        if record.get("status") == "failed" and isinstance(tries, int) and error:  # the runtime's own record
            return f"step {name!r} failed after {tries} tr{'y' if tries == 1 else 'ies'}: {error}"
        return error

    def _aligned(self, source: str) -> bool:
        """Whether ``source`` is inside this step's own map (its instance for each item is this item's)."""
        depth = len(self.plan.maps[source])
        return bool(depth) and self.plan.maps[source] == self.plan.maps[self.step.name][:depth]

    def _instance(self, source: str, path: Path) -> str:
        """The instance of ``source`` that item ``path`` of this step reads (the step itself outside maps)."""
        return instance_name(source, path[:len(self.plan.maps[source])])

    def collect(self, step: str, output: str, base: Path) -> Upstream | tuple[Any, ...]:
        """The items of ``step`` under ``base`` that ran, as the executor reads a collected input."""
        maps = self.plan.maps[step]
        if len(base) == len(maps):
            return Upstream(instance_name(step, base), output)
        if base and self.inner_skipped(maps[len(base)], base):
            return ()  # an outer item whose inner map did not run: an empty list, as pipecast run gives
        count = len(self.map_items(maps[len(base)], base))
        kept = [(*base, i) for i in range(count)
                if len(base) + 1 < len(maps) or self.status(instance_name(step, (*base, i))) in _RAN]
        return tuple(self.collect(step, output, p) for p in kept)  # items skipped by a condition are left out

    # -- running the items ------------------------------------------------------------------------------

    def run_items(self, paths: list[Path]) -> int:
        """Run every item (bounded, fail-fast), then record the step's own result."""
        bounds = [self.plan.groups[g].parallelism for g in self.plan.maps[self.step.name]]
        bounds.append(self.plan.pipeline.parallelism)  # kept only where steps run one at a time (SkyPilot)
        workers = min([b for b in bounds if b] or [DEFAULT_WORKERS])
        started = now()
        names = [instance_name(self.step.name, p) for p in paths]
        print(f"pipecast: step {self.step.name!r}: {len(paths)} items, at most {workers} at once",
              file=sys.stderr, flush=True)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pipecast-item")
        futures: list[Future[None]] = [pool.submit(self.run_item, path) for path in paths]
        try:
            pending = set(futures)
            while pending:
                with self.cancellation.interruptible():
                    _, pending = wait(pending, timeout=5.0, return_when=FIRST_COMPLETED)
        except StepCancelled as stop:
            self.stop_children()
            wait(futures)
            self.write(self.step.name, "cancelled", stop.reason, items=len(names), instances=names)
            raise
        finally:
            pool.shutdown(wait=True)
        for future in futures:
            future.result()  # a broken flow (not an item's failure) surfaces here
        statuses = [self.status(name) for name in names]
        status = "failed" if self.failed else "skipped" if statuses and set(statuses) == {"skipped"} \
            else "succeeded"
        self.write(self.step.name, status, self.failed, items=len(names), instances=names, started_at=started)
        print(f"pipecast: step {self.step.name!r} {status}: "
              f"{sum(s in _RAN for s in statuses)} of {len(names)} items ran", file=sys.stderr, flush=True)
        return 1 if self.failed else 0

    def run_item(self, path: Path) -> None:
        """Run (or skip) one item in a child runtime and record what happened."""
        name = instance_name(self.step.name, path)
        try:
            if self.cancellation.requested:
                return self.write(name, "cancelled", "not started: the step was stopped")
            if self.failed:
                return self.write(name, "skipped", "not started: an item failed and the step stops (fail-fast)")
            reason = self.instance_skip(path)
            if reason:
                return self.write(name, "skipped", reason)
            argv = self.argv(path)
        except FlowError as err:
            self.write(name, "failed", str(err))
            return self._fail(name, str(err))
        code = self._child([sys.executable, "-m", "pipecast.runtime", *argv], name)
        self.records.pop(name, None)  # the child wrote it
        if code != 0 and self.status(name) in _RAN:
            return None
        if code != 0:
            error = self.record(name).get("error") or (
                f"its process was killed by signal {-code} (out of memory?)" if code < 0 else
                f"its process exited with status {code}")
            if self.status(name) != "cancelled":
                if self.status(name) == "failed":
                    self.mark_failed(name, str(error))  # the item's runtime wrote the record
                else:
                    self.write(name, "failed", error)
                self._fail(name, str(error))

    def _fail(self, name: str, error: str) -> None:
        with self.lock:
            if self.failed is None:
                self.failed = f"item {name!r}: {error}"

    def _child(self, command: list[str], name: str) -> int:
        with self.lock:
            if self.cancellation.requested:
                return 143
            child = start_child(command, dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.children.add(child)
        assert child.stdout is not None
        prefix = f"[{name}] ".encode()
        for line in child.stdout:  # each item's lines, prefixed, to the container's log
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.buffer.flush()
        code = child.wait()
        with self.lock:
            self.children.discard(child)
        return code

    def stop_children(self) -> None:
        """Pass the stop on: SIGTERM to every item's process group (each records itself cancelled)."""
        with self.lock:
            for child in self.children:
                try:
                    os.killpg(child.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass


def _under(suffix: str, prefix: str) -> bool:
    """Whether an instance's item suffix (``[1][0]``) lies under the item path ``prefix`` (``[1]``, not ``[10]``)."""
    return suffix == prefix or suffix.startswith(prefix + "[")


def _shared(first: tuple[str, ...], second: tuple[str, ...]) -> int:
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


def split_argv(argv: list[str]) -> tuple[ir.Pipeline, dict[str, Any], list[str]]:
    """The plan, the flow parameters and ``run ARGS`` from this module's command line."""
    plan: ir.Pipeline | None = None
    params: dict[str, Any] = {}
    index = 0
    while index < len(argv) and argv[index] != "run":
        flag = argv[index]
        if flag not in ("--flow", "--flow-param") or index + 1 >= len(argv):
            raise PipecastError(f"unexpected argument {flag!r}: expected --flow PLAN, --flow-param NAME=TYPE:VALUE "
                                "and then `run ARGS`")
        value = argv[index + 1]
        if flag == "--flow":
            plan = ir.Pipeline.from_json(value)
        else:
            name, _, typed = value.partition("=")
            kind, _, text = typed.partition(":")
            params[name] = decode_parameter(kind, text)
        index += 2
    if plan is None:
        raise PipecastError("--flow PLAN is required")
    return plan, params, argv[index:]


# A control-flow runtime's start: the step's plan, parameters, the rest of its argv and the run's cancellation.
Start = Callable[[ir.Pipeline, dict[str, Any], list[str], Cancellation], tuple[StepInvocation, Callable[[], int]]]


def step_main(argv: list[str] | None, start: Start) -> int:
    """The entry every control-flow runtime shares: cancellation first, version check, one-line errors.

    ``start`` parses the rest of the argv (the step's runtime command, and any flags of its own) and returns the
    step's invocation and what runs it, called once the step's pipecast version is checked.
    """
    from pipecast.runtime.process import die_with_parent
    from pipecast.runtime.verify import check_version

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    cancellation = Cancellation()
    step = "?"
    try:
        cancellation.install()  # first: a cancelled run's SIGTERM (docker stop, a runner) must never be ignored
        die_with_parent()
        plan, params, rest = split_argv(list(sys.argv[1:] if argv is None else argv))
        base, run = start(plan, params, rest, cancellation)
        step = base.step
        check_version(step, base.pipecast_version)
        return run()
    except StepCancelled as stop:
        print(f"pipecast: step {step!r} cancelled: {stop.reason}", file=sys.stderr)
        return stop.exit_code
    except PipecastError as err:
        print(f"pipecast: error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Run one step with its control flow; the exit status as ``python -m pipecast.runtime``'s."""
    def start(plan: ir.Pipeline, params: dict[str, Any], rest: list[str],
              cancellation: Cancellation) -> tuple[StepInvocation, Callable[[], int]]:
        base, _ = parse_command(rest)
        return base, lambda: InlineStep(plan, params, base, cancellation).run()

    return step_main(argv, start)


if __name__ == "__main__":
    sys.exit(main())
