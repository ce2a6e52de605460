"""The local target's runner: a whole pipeline on this machine, no server.

Independent steps run in parallel on a bounded thread pool, calling the same
:func:`~pipecast.runtime.executor.execute_step` as the engine runtime. A step with a timeout runs in a
child process (``python -m pipecast.runtime``) so it can really be stopped. Fail-fast by default;
``fail_fast=False`` keeps running every step whose inputs exist. A rerun resumes: finished steps come
from the cache.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.graph import downstream_map
from pipecast.errors import PipecastError, RunFailedError, StepFailedError
from pipecast.runs.store import RunStore, new_run_id
from pipecast.runtime.artifacts import ArtifactStore, default_root
from pipecast.runtime.command import EngineSyntax, invocation_for, step_command
from pipecast.runtime.executor import execute_step, load_outputs
from pipecast.runtime.params import render_parameter, resolve_parameters


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
        """Every output of ``step`` in this run."""
        return load_outputs(self.artifact_root, self.pipeline.name, self.id, step)

    @property
    def outputs(self) -> dict[str, Any]:
        """The pipeline's returned outputs by name (every step's outputs if it returns nothing)."""
        if self.pipeline.outputs:
            return {o.name: self.step_outputs(o.step)[o.output] for o in self.pipeline.outputs}
        return {name: self.step_outputs(name) for name, s in self.steps.items() if s.status in ("done", "cached")}

    def __repr__(self) -> str:
        return f"<LocalRun {self.id} {self.status}>"


class Progress:
    """Receives step events; the default does nothing."""

    def start(self, run: LocalRun) -> None: ...

    def update(self, state: StepState) -> None: ...

    def finish(self, run: LocalRun) -> None: ...


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def import_root(module: str) -> str | None:
    """The sys.path entry ``module`` was imported from (for child processes' PYTHONPATH)."""
    loaded = sys.modules.get(module)
    path = getattr(loaded, "__file__", None)
    if not path:
        return None
    root = os.path.dirname(os.path.abspath(path))
    for _ in range(module.count(".") + (1 if path.endswith("__init__.py") else 0)):
        root = os.path.dirname(root)
    return root


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
    run_id = new_run_id(pipeline.name)
    artifacts = ArtifactStore(root)
    url = artifacts.url(artifacts.run_dir(pipeline.name, run_id))
    store = store or RunStore.default()
    store.reap_stale_local_runs()
    store.create_run(run_id, pipeline=pipeline.name, target="local", parameters=values, status="running", url=url,
                     metadata={"artifact_root": root, "pid": os.getpid(), "host": socket.gethostname()})
    run = LocalRun(run_id, pipeline, values, root, "running", {s.name: StepState(s.name) for s in pipeline.steps},
                   url)
    scheduler = _Scheduler(run, workers or min(8, os.cpu_count() or 2), cache, fail_fast, progress or Progress(),
                           store)
    try:
        scheduler.run()
    except KeyboardInterrupt:
        scheduler.cancel()
        run.status = "cancelled"
        store.update_status(run_id, "cancelled", detail="interrupted")
        scheduler.flush(force=True)
        (progress or Progress()).finish(run)
        raise
    failed = [s for s in run.steps.values() if s.status == "failed"]
    run.status = "failed" if failed else "succeeded"
    scheduler.flush(force=True)
    detail = "; ".join(f"{s.name}: {s.error}" for s in failed) or None
    store.update_status(run_id, run.status, detail=detail)
    (progress or Progress()).finish(run)
    if failed and raise_on_failure:
        raise RunFailedError(f"run {run_id} failed: {detail}")
    return run


class _Scheduler:
    def __init__(self, run: LocalRun, workers: int, cache: bool, fail_fast: bool, progress: Progress,
                 store: RunStore) -> None:
        self.run_ = run
        self.pipeline = run.pipeline
        self.workers = workers
        self.cache = cache
        self.fail_fast = fail_fast
        self.progress = progress
        self.store = store
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()
        self.pending_rows: dict[str, StepState] = {}
        self.last_flush = 0.0
        self.stopping = False

    def run(self) -> None:
        steps = {s.name: s for s in self.pipeline.steps}
        downstream = downstream_map(self.pipeline)
        waiting = {name: len(step.upstream()) for name, step in steps.items()}
        ready = [name for name, count in waiting.items() if count == 0]
        self.progress.start(self.run_)
        running: dict[Future[None], str] = {}
        pool = self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pipecast-step")
        # No ``with``: its exit would wait for running steps, and Ctrl-C must not.
        try:
            while ready or running:
                while ready and not self.stopping:
                    name = ready.pop(0)
                    running[pool.submit(self._run_step, steps[name])] = name
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    state = self.run_.steps[name]
                    if state.status == "failed":
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
        for state in self.run_.steps.values():
            if state.status == "pending":
                state.status = "skipped"
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

    def _run_step(self, step: ir.Step) -> None:
        state = self.run_.steps[step.name]
        state.status = "running"
        state.started_at = _now()
        self._changed(state)
        began = time.perf_counter()
        try:
            if step.timeout_seconds:
                cached = self._run_in_child(step, state)
            else:
                invocation = invocation_for(self.pipeline, step, self.run_.id, self.run_.artifact_root,
                                            self.run_.parameters)
                if not self.cache:
                    invocation = _without_cache(invocation)
                result = execute_step(invocation, enforce_timeout=False,
                                      on_attempt=lambda n: _set_attempt(state, n))
                cached = result.cached
            state.status = "cached" if cached else "done"
        except StepFailedError as err:
            state.status = "failed"
            state.error = str(err)
        except PipecastError as err:
            state.status = "failed"
            state.error = str(err)
        except Exception as err:
            state.status = "failed"
            state.error = f"{type(err).__name__}: {err}"
        state.seconds = time.perf_counter() - began
        state.ended_at = _now()
        self._changed(state)

    def _run_in_child(self, step: ir.Step, state: StepState) -> bool:
        params = {p.name: p for p in self.pipeline.parameters}
        syntax = EngineSyntax(
            run_id=self.run_.id,
            parameter=lambda p: render_parameter(params[p.name].type, self.run_.parameters[p.name]),
            artifact_root=self.run_.artifact_root,
            python=sys.executable,
        )
        command = step_command(self.pipeline, step, syntax, runtime_retry=True, runtime_timeout=True)
        if not self.cache and "--no-cache" not in command:
            command.append("--no-cache")
        env = dict(os.environ)
        root = import_root(step.function.module)
        if root:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        retry = step.retry
        budget = (step.timeout_seconds or 0) * retry.attempts + sum(
            retry.delay_before(n) for n in range(2, retry.attempts + 1)) + 30
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with self.lock:
            self.children[step.name] = child
        try:
            _, stderr = child.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise StepFailedError(f"step {step.name!r} did not finish within {budget:g}s") from None
        finally:
            with self.lock:
                self.children.pop(step.name, None)
        text = stderr.decode(errors="replace").strip()
        if child.returncode != 0:
            last = text.splitlines()[-1] if text else f"exit status {child.returncode}"
            raise StepFailedError(last.removeprefix("pipecast: "))
        meta = ArtifactStore(self.run_.artifact_root).read_json(
            ArtifactStore(self.run_.artifact_root).step_dir(self.pipeline.name, self.run_.id, step.name) + "/meta.json")
        state.attempts = meta.get("attempt", 1)
        return bool(meta.get("cached"))

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
        self.stopping = True
        with self.lock:
            children = list(self.children.values())
        for child in children:
            child.kill()
        for state in self.run_.steps.values():
            if state.status in ("pending", "running"):
                state.status = "cancelled"
                self._changed(state)


def _set_attempt(state: StepState, attempt: int) -> None:
    state.attempts = attempt


def _without_cache(invocation: Any) -> Any:
    from dataclasses import replace

    return replace(invocation, cache=False)

