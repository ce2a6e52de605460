"""The local target's runner: a whole pipeline on this machine, no server.

Independent steps run in parallel on a bounded thread pool, calling the same
:func:`~pipecast.runtime.executor.execute_step` as the engine runtime. A step with a timeout runs try by try
in a child process (:mod:`pipecast.runtime.supervisor`), killed with its process group at the deadline; child
processes die with the runner (even on ``kill -9``) and never record a result for an abandoned run. Every line
a step prints is prefixed with ``[step]`` and kept in the step's log file (``logs/<run id>/<step>.log`` beside
the run store, read by ``pipecast runs logs``). Fail-fast by default; ``fail_fast=False`` keeps running every step
whose inputs exist. Ctrl-C (or SIGTERM) cancels the run; with control flow its exit handlers and on_failure hook
still run (see :mod:`pipecast.runtime.flow_runner`). A rerun resumes: finished steps come from the cache.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.drawing import graph_record
from pipecast.compiler.graph import downstream_map
from pipecast.compiler.user_code import import_root
from pipecast.errors import PipecastError, RunFailedError
from pipecast.runs.store import RunStore, new_run_id
from pipecast.runtime.artifacts import ArtifactStore, default_root
from pipecast.runtime.command import invocation_for
from pipecast.runtime.executor import StepInvocation, describe_failure, execute_step, load_outputs
from pipecast.runtime.flow_plan import FlowPlan, Path, instance_name
from pipecast.runtime.include import ingest
from pipecast.runtime.params import resolve_parameters
from pipecast.runtime.process import Cancellation, StepCancelled
from pipecast.runtime.step_output import line_forwarder, prefixed_step_output, step_output
from pipecast.runtime.supervisor import supervise

_INDEX = re.compile(r"\[(\d+)\]")  # the item indices in an instance name, `step[2][0]`


@dataclass
class StepState:
    """A step's state in a local run."""

    name: str
    status: str = "pending"  # pending | running | cached | done | failed | skipped | cancelled
    attempts: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    seconds: float = 0.0
    error: str | None = None
    items: int | None = None  # a mapped step: how many items (each is a state of its own, ``step[i]``)


class RunInterrupted(KeyboardInterrupt):
    """The run was cancelled by SIGINT (Ctrl-C) or SIGTERM: ``signum`` says which (the CLI exits 128 + it)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class LocalRun:
    """A finished local run: status, per-step states, and access to the outputs."""

    id: str
    pipeline: ir.Pipeline
    parameters: dict[str, Any]
    artifact_root: str
    status: str
    steps: dict[str, StepState] = field(default_factory=dict)
    url: str = ""

    def step_outputs(self, step: str) -> dict[str, Any]:
        """Every output of ``step`` in this run; a mapped step's as a fan-in after its maps gets them.

        That is a list over the items that ran, in item order; inside a nested map a list of lists, one per outer
        item (``step[i][j]`` in row ``i``), ``[]`` for an outer item whose inner map did not run or is empty.
        """
        state = self.steps.get(step)
        if state is None or state.items is None:
            return load_outputs(self.artifact_root, self.pipeline.name, self.id, step)
        plan = FlowPlan(self.pipeline)
        found = {tuple(int(i) for i in _INDEX.findall(name[len(step):])): s.status
                 for name, s in self.steps.items() if name.startswith(step + "[")}

        def rows(base: Path) -> list[Any]:
            maps = plan.maps[step]
            if len(base) + 1 == len(maps):  # the innermost map: its items that ran
                ran = sorted(p for p, status in found.items() if p[:-1] == base and len(p) == len(maps)
                             and status in ("done", "cached"))
                return [load_outputs(self.artifact_root, self.pipeline.name, self.id, instance_name(step, p))
                        for p in ran]
            if base in found:  # an outer item whose inner map did not run: `step[i]`, skipped
                return []
            count = len(plan.items(plan.groups[maps[len(base)]], base, lambda o, p: self._resolve(plan, o, p)))
            return [rows((*base, i)) for i in range(count)]

        def pick(values: list[Any], name: str) -> list[Any]:
            return [pick(v, name) if isinstance(v, list) else v[name] for v in values]

        table = rows(())
        return {o.name: pick(table, o.name) for o in self.pipeline.step(step).outputs}

    def _resolve(self, plan: FlowPlan, operand: ir.Operand, path: Path) -> Any:
        """A value a map's list reads, at item path ``path``, as the run resolved it."""
        if operand.kind is ir.BindingKind.PARAMETER:
            return self.parameters[operand.parameter or ""]
        if operand.kind is ir.BindingKind.OUTPUT:
            source = operand.step or ""
            name = instance_name(source, path[:len(plan.maps[source])])
            return load_outputs(self.artifact_root, self.pipeline.name, self.id, name)[operand.output or ""]
        if operand.kind is ir.BindingKind.ITEM:
            group = operand.group or ""
            depth = plan.depth(group)
            item = plan.items(plan.groups[group], path[:depth], lambda o, p: self._resolve(plan, o, p))[path[depth]]
            return item if operand.index is None else item[operand.index]
        return operand.value

    @property
    def outputs(self) -> dict[str, Any]:
        """The pipeline's returned outputs by name (every step's outputs if it returns nothing).

        An output of a step that was skipped (its branch did not run) is None.
        """
        if self.pipeline.outputs:
            return {o.name: None if self.steps[o.step].status == "skipped" else self.step_outputs(o.step)[o.output]
                    for o in self.pipeline.outputs}
        return {name: self.step_outputs(name) for name, s in self.steps.items()
                if s.status in ("done", "cached") and "[" not in name}

    def __repr__(self) -> str:
        return f"<LocalRun {self.id} {self.status}>"


class Progress:
    """Receives step events; the default does nothing."""

    def start(self, run: LocalRun) -> None:
        """Called once, before the first step starts."""

    def update(self, state: StepState) -> None:
        """Called whenever a step's state changes."""

    def finish(self, run: LocalRun) -> None:
        """Called once, when the run has ended."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def run_pipeline(
    pipeline: ir.Pipeline,
    parameters: Mapping[str, Any] | None = None,
    *,
    workers: int | None = None,
    cache: bool = True,
    fail_fast: bool = True,
    artifact_root: str | None = None,
    progress: Progress | None = None,
    store: RunStore | None = None,
    raise_on_failure: bool = True,
) -> LocalRun:
    """Run ``pipeline`` here and return the run; raise RunFailedError if a step failed."""
    values = resolve_parameters(pipeline, dict(parameters or {}))
    root = ArtifactStore(artifact_root or pipeline.artifact_root or default_root()).uri
    values = ingest(pipeline, values, root)  # IncludeFile parameters: stored once, before any step runs
    run_id = new_run_id(pipeline.name)
    artifacts = ArtifactStore(root)
    url = artifacts.url(artifacts.run_dir(pipeline.name, run_id))
    store = store or RunStore.default()
    store.reap_stale_local_runs()
    log_dir = local_log_dir(store, run_id)
    store.create_run(run_id, pipeline=pipeline.name, target="local", parameters=values, status="running", url=url,
                     metadata={"artifact_root": root, "pid": os.getpid(), "host": socket.gethostname(),
                               "log_dir": log_dir})
    store.record_graph(run_id, graph_record(pipeline))
    run = LocalRun(run_id, pipeline, values, root, "running", {s.name: StepState(s.name) for s in pipeline.steps},
                   url)
    progress = progress or Progress()
    kind = _Scheduler
    if pipeline.uses_control_flow:
        from pipecast.runtime.flow_runner import FlowScheduler

        kind = FlowScheduler
    scheduler = kind(run, workers or min(8, os.cpu_count() or 2), cache, fail_fast, progress, store, log_dir)
    progress.start(run)
    restore = _interrupt_cancels(scheduler)
    try:
        with prefixed_step_output():
            scheduler.run()
        if scheduler.interrupted:
            raise RunInterrupted(scheduler.signalled or signal.SIGINT)
    except KeyboardInterrupt as stop:
        scheduler.cancel()
        run.status = "cancelled"
        signum = getattr(stop, "signum", signal.SIGINT)
        store.update_status(run_id, "cancelled", detail=f"interrupted ({signal.Signals(signum).name})")
        scheduler.flush(force=True)
        progress.finish(run)
        raise
    finally:
        restore()
    failed = [s for s in run.steps.values() if s.status == "failed"]
    unfinished = [s for s in run.steps.values() if s.status not in ("done", "cached", "failed", "skipped")]
    run.status = scheduler.outcome()
    scheduler.flush(force=True)
    detail = "; ".join([f"{s.name}: {s.error}" for s in failed]
                       + [f"{s.name}: ended {s.status}" for s in unfinished]) or None
    store.update_status(run_id, run.status, detail=detail)
    progress.finish(run)
    if run.status != "succeeded" and raise_on_failure:
        raise RunFailedError(f"run {run_id} failed: {detail}")
    return run


def local_log_dir(store: RunStore, run_id: str) -> str:
    """Where a local run's step logs go: ``logs/<run id>/`` beside the run store (one ``<step>.log`` each)."""
    return os.path.join(os.path.dirname(os.path.abspath(store.path)), "logs", run_id)


def _interrupt_cancels(scheduler: _Scheduler) -> Any:
    """Make Ctrl-C and SIGTERM cancel the run from the scheduler's loop; return what restores the old handlers.

    The handler only sets flags: a KeyboardInterrupt raised at an arbitrary point of the scheduler could
    leave a lock of concurrent.futures held and hang the cancellation. While exit handlers run after a
    cancellation, a second signal aborts them (as ``argo terminate`` after ``argo stop``); otherwise a second
    signal raises at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals reach the main thread only; there, KeyboardInterrupt still cancels

    def interrupted(signum: int, frame: Any) -> None:
        if not scheduler.interrupted:
            scheduler.interrupted, scheduler.signalled = True, signum
        elif scheduler.winding_down and not scheduler.aborted:
            scheduler.aborted = True
        else:
            raise RunInterrupted(signum)

    previous = {signum: signal.signal(signum, interrupted) for signum in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(signum, handler) for signum, handler in previous.items()]


class _Scheduler:
    def __init__(self, run: LocalRun, workers: int, cache: bool, fail_fast: bool, progress: Progress,
                 store: RunStore, log_dir: str) -> None:
        self.run_ = run
        self.log_dir = log_dir
        self.pipeline = run.pipeline
        self.workers = workers
        self.cache = cache
        self.fail_fast = fail_fast
        self.progress = progress
        self.store = store
        self.cancellation = Cancellation()
        self.lock = threading.Lock()
        self.pending_rows: dict[str, StepState] = {}
        self.last_flush = 0.0
        self.stopping = False
        self.interrupted = False  # set by Ctrl-C; the loop below cancels the run
        self.signalled: int | None = None  # the signal that interrupted the run (None: stopped from code)
        self.winding_down = False  # exit handlers run after the interruption; a second signal sets ``aborted``
        self.aborted = False

    def run(self) -> None:
        steps = {s.name: s for s in self.pipeline.steps}
        downstream = downstream_map(self.pipeline)
        waiting = {name: len(step.upstream()) for name, step in steps.items()}
        ready = [name for name, count in waiting.items() if count == 0]
        running: dict[Future[None], str] = {}
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pipecast-step")
        # No ``with``: its exit would wait for running steps, and Ctrl-C must not.
        try:
            while (ready or running) and not self.interrupted:
                while ready and not self.stopping:
                    name = ready.pop(0)
                    running[pool.submit(self._run_step, steps[name])] = name
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    state = self.run_.steps[name]
                    if state.status not in ("done", "cached"):
                        self._ended_without_result(state, future)
                        if self.fail_fast:
                            self.stopping = True
                        self._skip_downstream(name, downstream)
                        continue
                    for child in downstream[name]:
                        waiting[child] -= 1
                        if waiting[child] == 0 and self.run_.steps[child].status == "pending":
                            ready.append(child)
                self.flush()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if self.interrupted:
            return
        for state in self.run_.steps.values():
            if state.status == "pending":
                state.status = "skipped"
                self._changed(state)

    def outcome(self) -> str:
        """The run's status once the loop has ended: every step done (or cached), else failed."""
        return "succeeded" if all(s.status in ("done", "cached") for s in self.run_.steps.values()) else "failed"

    def _ended_without_result(self, state: StepState, future: Future[None]) -> None:
        """A step is done only when it says so: anything else that ended is a failure (never "running")."""
        if state.status in ("failed", "cancelled"):
            return
        error = future.exception()
        state.status = "failed"
        state.error = state.error or (describe_failure(error) if error else "the step ended without a result")
        self._changed(state)

    def _skip_downstream(self, name: str, downstream: Mapping[str, tuple[str, ...]]) -> None:
        stack = list(downstream[name])
        while stack:
            child = stack.pop()
            state = self.run_.steps[child]
            if state.status == "pending":
                state.status = "skipped"
                state.error = f"upstream step {name!r} failed"
                self._changed(state)
                stack.extend(downstream[child])

    def _run_step(self, step: ir.Step, invocation: StepInvocation | None = None) -> None:
        state = self.run_.steps[step.name]
        state.status = "running"
        state.started_at = _now()
        self._changed(state)
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, f"{step.name}.log"), "a", encoding="utf-8") as log:
            self._execute(step, state, log, invocation)
            # The last line says how the step ended, as the runtime's does in an engine's task log.
            ended = state.status if state.status in ("done", "cached") else f"{state.status}: {state.error}"
            log.write(f"pipecast: step {step.name!r} {ended}\n")
        self._changed(state)

    def _execute(self, step: ir.Step, state: StepState, log: Any, invocation: StepInvocation | None = None) -> None:
        began = time.perf_counter()
        if invocation is None:
            invocation = invocation_for(self.pipeline, step, self.run_.id, self.run_.artifact_root,
                                        self.run_.parameters)
        if not self.cache:
            invocation = replace(invocation, cache=False)
        cancellation = self.cancellation_for(step)  # bound now: a later cancellation must not let this step commit
        try:
            if step.timeout_seconds:
                result = supervise(invocation, cancellation=cancellation,
                                   on_attempt=lambda n: _set_attempt(state, n),
                                   forward=line_forwarder(step.name, log), env=self._child_env(step))
            else:
                with step_output(step.name, log):
                    result = execute_step(invocation, on_attempt=lambda n: _set_attempt(state, n),
                                          cancellation=cancellation,
                                          may_commit=lambda: not cancellation.requested)
            state.attempts = result.attempts or state.attempts
            state.status = "cached" if result.cached else "done"
        except StepCancelled as stop:
            state.status = "cancelled"
            state.error = stop.reason
        except PipecastError as err:
            state.status = "failed"
            state.error = str(err)
        except BaseException as err:  # whatever a step raises fails that step, not the runner
            state.status = "failed"
            state.error = describe_failure(err)
        state.seconds = time.perf_counter() - began
        state.ended_at = _now()

    def _child_env(self, step: ir.Step) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"  # the step's lines reach the terminal as it prints them
        root = import_root(step.function.module)
        if root:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        return env

    def cancellation_for(self, step: ir.Step) -> Cancellation:
        """The stop request ``step`` obeys (one for every step here; exit handlers have their own with flow)."""
        return self.cancellation

    def _changed(self, state: StepState) -> None:
        with self.lock:
            self.pending_rows[state.name] = state
        self.progress.update(state)

    def flush(self, force: bool = False) -> None:
        """Write step states to the run store, at most every quarter second unless forced."""
        now = time.monotonic()
        if not force and now - self.last_flush < 0.25:
            return
        with self.lock:
            rows = list(self.pending_rows.values())
            self.pending_rows.clear()
        self.last_flush = now
        if rows:
            self.store.record_steps(self.run_.id, [
                {"step": s.name, "status": s.status, "cached": s.status == "cached", "attempts": s.attempts,
                 "started_at": s.started_at, "ended_at": s.ended_at, "error": s.error} for s in rows
            ])

    def cancel(self) -> None:
        """Stop: kill every child process, mark what has not finished as cancelled; nothing more is recorded."""
        self.stopping = True
        self.cancellation.cancel("the run was cancelled")
        for state in self.run_.steps.values():
            if state.status in ("pending", "running"):
                state.status = "cancelled"
                self._changed(state)


def _set_attempt(state: StepState, attempt: int) -> None:
    state.attempts = attempt
