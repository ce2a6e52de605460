"""The driver for pipelines with control flow: maps, conditions, exit handlers, hooks, parallelism bounds.

The plan of such a pipeline carries the part of its IR the driver reads (``flow``, :mod:`.flow_ir`). The driver
runs it with the local runner's scheduler (:class:`pipecast.runtime.flow_runner.FlowScheduler`), so instance
names, item lists, zip/product, branch order, skips and the exit handler's status follow exactly the rules
``pipecast run`` follows (:mod:`pipecast.runtime.flow_plan`); only the place a step instance runs differs: each
instance is a Job of its own, made from the step's template in the plan. The driver reads the values that
decide a map or a condition from the artifact store, as the local runner does (its pod mounts the artifact PVC).

An item's Job is ``<run>-<step>-<i>`` (``-<i>-<j>`` in a nested map), labelled ``pipecast.dev/step=<step>`` and
``pipecast.dev/item=<i>`` so ``kubectl get jobs -l`` selects a step's items, and annotated with the instance's
pipecast name (``train[2]``). Its container runs the instance's own runtime command: the item's value and the
collected lists as arguments (``--const``, ``--collected``, as the local runner passes them to a try).

Resilience is the plain driver's: every API call rides out an outage (patience); a call that still fails ends
the driver with exit 3, and the replaced driver pod re-creates the same Job names, adopting (409) the Jobs that
exist and reading the outcome of those that ended.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.runs.store import RunStore
from pipecast.runtime.command import TryOptions, try_args
from pipecast.runtime.executor import StepInvocation
from pipecast.runtime.flow_runner import FlowScheduler
from pipecast.runtime.local_runner import LocalRun, StepState, _now
from pipecast.targets.kubernetes import contract
from pipecast.targets.kubernetes.driver import _DETAIL_LIMIT, Driver, StepRun

_STATUS = {"done": "succeeded", "cached": "succeeded"}  # the local runner's words in the driver's vocabulary
_PASSED_ON = ("--code-sha256", "--code-package")  # template arguments an instance's command keeps


def instance_job(run_id: str, job: str, instance: str) -> tuple[str, str]:
    """The Job name of instance ``step[2][0]`` of the step whose plan Job is ``job``, and its item label."""
    item = "-".join(part.rstrip("]") for part in instance.split("[")[1:])
    return contract.step_job_name(run_id, f"{job}-{item}" if item else job), item


@dataclass
class FlowDriver(Driver):
    """A :class:`Driver` whose step instances are scheduled by :class:`JobScheduler`."""

    jobs: dict[str, str] = field(default_factory=dict)  # instance -> its Job name
    broken: PipecastError | None = None  # an API failure in an instance's thread: the driver exits 3

    def run(self) -> int:
        """Run the pipeline's instances as Jobs to the end; return the exit code."""
        self._claim()
        flow = self.plan["flow"]
        pipeline = ir.Pipeline.from_json(json.dumps(flow["ir"]))
        self.run_ = LocalRun(self.run_id, pipeline, dict(self.parameters), flow["artifact_root"], "running",
                             {s.name: StepState(s.name) for s in pipeline.steps})
        from pipecast.runtime.progress import PlainProgress

        with tempfile.TemporaryDirectory(prefix="pipecast-driver-") as scratch:
            scheduler = JobScheduler(self.run_, self.max_parallel, True, True, PlainProgress(sys.stdout),
                                     RunStore(f"{scratch}/runs.db"), scratch)
            scheduler.driver = self
            watcher = threading.Thread(target=self._watch_stop, args=(scheduler,), daemon=True)
            watcher.start()
            self.log(f"run {self.run_id}: {len(pipeline.steps)} steps with control flow, "
                     f"at most {self.max_parallel} at once")
            try:
                scheduler.run()
            except Exception as err:  # recording the state failed, or the driver broke: threads stop watching
                self._broke(err)
                raise
        if self.broken is not None:
            raise self.broken
        if self.stop.is_set():
            self.status, self.detail = "cancelled", "the driver was stopped"
            try:
                self._record()
            except PipecastError:
                pass  # the driver Job itself is being deleted
            return contract.EXIT_PIPELINE_FAILED
        self.status = scheduler.outcome()
        failed = [s for s in self.run_.steps.values() if s.status == "failed" and "[" not in s.name]
        self.detail = "; ".join(f"step {s.name!r} failed: {s.error}" for s in failed)
        self._record()
        self.log(f"run {self.run_id} {self.status}{': ' + self.detail if self.detail else ''}")
        return 0 if self.status == "succeeded" else contract.EXIT_PIPELINE_FAILED

    def _broke(self, err: Exception) -> None:
        """Remember the first error that is not a step's verdict: the driver exits 3 with it."""
        if self.broken is None:
            self.broken = err if isinstance(err, PipecastError) else PipecastError(f"the driver broke: {err!r}")

    def _watch_stop(self, scheduler: JobScheduler) -> None:
        self.stop.wait()
        scheduler.interrupted = True

    def run_instance(self, name: str, invocation: StepInvocation, state: StepState) -> None:
        """Create the instance's Job (or adopt it) and follow it to its end, setting ``state``."""
        from pipecast.targets.kube.client import KubeError

        base = self.steps[name.split("[", 1)[0]]
        job_name, item = instance_job(self.run_id, self.plan_jobs[base.name], name)
        run = StepRun(name=name, job=job_name, upstream=(), retry=base.retry, template=base.template)
        self.jobs[name] = job_name
        body = self.instance_manifest(run, invocation, item)
        try:
            self.api.create(body)
            self.log(f"step {name!r}: created Job {job_name!r}")
        except KubeError as err:
            if err.status != 409:
                raise
            self.log(f"step {name!r}: Job {job_name!r} exists; watching it")
        run.status, run.attempts = "running", 1
        while True:
            if self.broken is not None:  # another call failed: leave the Job to the next driver pod
                state.status, state.error = "cancelled", "the driver is exiting (exit 3)"
                return
            if self.stop.wait(self.poll):
                self._delete(run)
                state.status, state.error = "cancelled", "the driver was stopped"
                return
            job = self.api.get("Job", job_name)
            status = job.get("status") or {}
            ended = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
            failures = int(status.get("failed") or 0)
            if "Complete" in ended:
                state.status, state.attempts = "done", failures + 1
                return
            if "Failed" in ended:
                state.status, state.attempts = "failed", max(failures, 1)
                state.error = f"Job {job_name!r} {ended['Failed'].get('reason', 'Failed')}: " \
                              f"{ended['Failed'].get('message', '')}"
                return
            self._pace_retries(run, job, failures)
            state.attempts = run.attempts

    @property
    def plan_jobs(self) -> dict[str, str]:
        """Each step's Job name in the plan (before the run id and the item are added)."""
        return {s["name"]: s["job"] for s in self.plan["steps"]}

    def instance_manifest(self, run: StepRun, invocation: StepInvocation, item: str) -> dict[str, Any]:
        """The instance's Job: the step's, named and labelled for the item, running the instance's command."""
        job = self.job_manifest(run)
        job["metadata"]["annotations"][contract.ANNOTATION_STEP] = run.name
        pod = job["spec"]["template"]
        if item:
            job["metadata"]["labels"][contract.LABEL_ITEM] = item
            pod["metadata"]["labels"][contract.LABEL_ITEM] = item
        container = pod["spec"]["containers"][0]
        kept = container["args"]
        args = try_args(invocation, TryOptions())
        for flag in _PASSED_ON:
            if flag in kept and flag not in args:
                args += [flag, kept[kept.index(flag) + 1]]
        container["args"] = [contract.escape(arg) for arg in args]
        return job

    def state(self) -> dict[str, Any]:
        """The run as recorded on the driver Job: every step, and every item as ``step[i]``."""
        state: dict[str, Any] = {"status": self.status}
        if self.detail:
            state["detail"] = self.detail[:_DETAIL_LIMIT]
        if self.logical_time:
            state["logical_time"] = self.logical_time
        steps: dict[str, Any] = {}
        run: LocalRun | None = getattr(self, "run_", None)
        for name, s in run.steps.items() if run else ():
            data: dict[str, Any] = {"status": _STATUS.get(s.status, s.status), "attempts": s.attempts}
            if name in self.jobs:
                data["job"] = self.jobs[name]
            if s.items is not None:
                data["items"] = s.items
            for key in ("started_at", "ended_at"):
                if getattr(s, key):
                    data[key] = getattr(s, key)
            if s.error:
                data["detail"] = s.error[:_DETAIL_LIMIT]
            steps[name] = data
        state["steps"] = steps
        return state


class JobScheduler(FlowScheduler):
    """The local runner's control-flow scheduler, running each step instance as a Job through the driver."""

    driver: FlowDriver

    def _run_step(self, step: ir.Step, invocation: StepInvocation | None = None) -> None:
        state = self.run_.steps[step.name]
        state.status, state.started_at = "running", _now()
        self._changed(state)
        try:
            if invocation is None:  # FlowScheduler always passes one; kept for the base class's signature
                raise PipecastError(f"step {step.name!r} has no invocation")
            self.driver.run_instance(step.name, invocation, state)
        except Exception as err:  # the API server failed the driver (or the driver broke): not the step's verdict
            self.driver._broke(err)
            self.interrupted = True
            state.status, state.error = "cancelled", str(err)
        state.ended_at = _now()
        self._changed(state)

    def flush(self, force: bool = False) -> None:
        """Record the run on the driver Job (instead of a local run store)."""
        self.driver._record()
