"""The driver: the program inside the driver Job that runs a pipeline as one Kubernetes Job per step.

    python -m pipecast.targets.kubernetes.driver --plan /etc/pipecast/plan.yaml [--param NAME=VALUE]...

It needs ``pipecast[kubernetes]`` in its image. The run id is the driver Job's own name (read from the pod's
``batch.kubernetes.io/job-name`` label through the downward API, ``$PIPECAST_RUN_ID``); ``--param`` values
are canonical JSON, percent-encoded. The driver:

1. creates each step's Job from the plan's template once every upstream Job is Complete, at most
   ``max_parallel`` at a time, labelled ``pipecast.dev/run=<run id>`` and owned by the driver Job (so
   deleting the driver deletes them). A Job that already exists (a replaced driver pod) is adopted;
2. polls them (one list call per ``poll_seconds``). Retries are the Job's ``backoffLimit``; after a
   failed pod with tries left, the driver suspends the Job and resumes it when the step's delay has
   passed, so the wait is at least the delay (Kubernetes' own pod backoff applies when longer);
3. on a failed step deletes the running step Jobs and stops; on SIGTERM (the driver Job deleted) too. It
   deletes only Jobs labelled as its own run's (RBAC cannot scope a Role by label, so the driver checks);
4. records the run after each change as JSON in its own Job's ``pipecast.dev/state`` annotation.

A driver Job a CronJob made carries the tick it was made for (``batch.kubernetes.io/cronjob-scheduled-timestamp``,
Kubernetes >= 1.28): the driver reads it from its own Job and gives it to every step Job as
``$PIPECAST_LOGICAL_TIME`` (``pipecast.context().logical_time``); any other driver Job has none. A value that is
not an RFC 3339 time fails the run at once (exit 2), before any step starts.

API calls ride out a transient outage (:mod:`pipecast.targets.kubernetes.patience`).

Exit status: 0 succeeded, 1 a step failed (or cancelled), 2 bad input (a missing ``kubernetes`` package
too), 3 anything else: the API server failed the driver or the driver itself broke — not the pipeline's
verdict, so the driver Job's pod failure policy lets Kubernetes start a new driver pod, which adopts the run.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from pipecast.compiler import ir
from pipecast.errors import ContextError, PipecastError
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.params import decode_constant, render_parameter, resolve_parameters
from pipecast.targets.kubernetes import contract
from pipecast.targets.kubernetes.patience import API_PATIENCE, PatientApi

_DETAIL_LIMIT = 2000  # characters of a step's error kept in the state annotation
# Go's time.RFC3339 layout as time.Parse accepts it (fractional seconds optional); the controller writes whole ones.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


class JobApi(Protocol):
    """What the driver needs from the API server (:class:`pipecast.targets.kube.objects.Kube` has it)."""

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the object ``body`` describes."""

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """Read one object."""

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch one object."""

    def list(self, kind: str, selector: str) -> list[dict[str, Any]]:
        """The objects of ``kind`` whose labels match ``selector``."""

    def delete(self, kind: str, name: str, propagation: str = "Background") -> None:
        """Delete one object."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def scheduled_time(job: dict[str, Any]) -> str:
    """The tick a CronJob made ``job`` for (its scheduled-timestamp annotation), or ``""`` when it has none.

    A value that is not RFC 3339 is refused (ContextError): reading it as "no time" would hide a broken run.
    """
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(contract.SCHEDULED_ANNOTATION)
    if text is None:
        return ""
    try:
        if not isinstance(text, str) or not _RFC3339.fullmatch(text):
            raise ValueError(text)
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        name = (job.get("metadata") or {}).get("name")
        raise ContextError(
            f"driver Job {name!r}: annotation {contract.SCHEDULED_ANNOTATION}={text!r} is not an RFC 3339 time "
            "(the CronJob controller writes one such as 2025-01-06T05:00:00+01:00), so the run's logical time is "
            "unknown and no step was started; create the Job without that annotation (kubectl create job "
            "--from=cronjob/NAME, pipecast submit) or with an RFC 3339 time") from None
    return text


@dataclass
class StepRun:
    """One step of the run as the driver tracks it."""

    name: str
    job: str  # the step Job's name in this run
    upstream: tuple[str, ...]
    retry: ir.RetryPolicy
    template: dict[str, Any]
    status: str = "pending"  # pending | running | succeeded | failed | skipped | cancelled
    attempts: int = 0
    failures_seen: int = 0
    resume_at: float | None = None
    detail: str = ""
    started_at: str | None = None
    ended_at: str | None = None

    def record(self) -> dict[str, Any]:
        """The step as the run's state records it: status, Job, tries, times and a shortened detail."""
        data: dict[str, Any] = {"status": self.status, "job": self.job, "attempts": self.attempts}
        for key in ("started_at", "ended_at"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        if self.detail:
            data["detail"] = self.detail[:_DETAIL_LIMIT]
        return data


@dataclass
class Driver:
    """Runs one pipeline run: ``run()`` returns the exit status."""

    plan: dict[str, Any]
    parameters: dict[str, Any]
    run_id: str
    api: JobApi
    log: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    stop: threading.Event = field(default_factory=threading.Event)
    patience: float = API_PATIENCE  # seconds API calls ride out an unreachable API server

    def __post_init__(self) -> None:
        if not isinstance(self.api, PatientApi):
            self.api = PatientApi(self.api, self.stop, self.log, patience=self.patience, clock=self.clock)
        types = {p["name"]: ir.TypeName(p["type"]) for p in self.plan["parameters"]}
        self.rendered = {name: contract.escape(render_parameter(types[name], value))
                         for name, value in self.parameters.items()}
        self.steps = {s["name"]: StepRun(
            name=s["name"], job=contract.step_job_name(self.run_id, s["job"]), upstream=tuple(s["upstream"]),
            retry=contract.retry_policy(s.get("retry") or {}), template=s["template"],
        ) for s in self.plan["steps"]}
        self.max_parallel = int(self.plan.get("max_parallel") or 1)
        self.poll = float(self.plan.get("poll_seconds") or 5)
        self.status = "running"
        self.detail = ""
        self.logical_time = ""  # the CronJob's tick (RFC 3339) when a CronJob made the driver Job; see _claim
        self._recorded = ""

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        """Run the steps to the end, recording the state on the driver Job; return the exit code."""
        self._claim()
        self._adopt(self._observe())
        self.log(f"run {self.run_id}: {len(self.steps)} steps, at most {self.max_parallel} at once")
        while True:
            self._start_ready()
            self._record()
            running = [s for s in self.steps.values() if s.status == "running"]
            if not running:
                break
            if self.stop.wait(self.poll):
                return self._cancel()
            self._update(self._observe())
            if any(s.status == "failed" for s in self.steps.values()):
                self._halt()
                break
        for step in self.steps.values():
            if step.status == "pending":
                step.status = "skipped"
        failed = [s for s in self.steps.values() if s.status == "failed"]
        self.status = "failed" if failed else "succeeded"
        self.detail = "; ".join(f"step {s.name!r} failed: {s.detail}" for s in failed)
        self._record()
        self.log(f"run {self.run_id} {self.status}{': ' + self.detail if self.detail else ''}")
        return contract.EXIT_PIPELINE_FAILED if failed else 0

    def _claim(self) -> None:
        """Read the driver Job (the step Jobs' owner and the CronJob's tick) and label it with the run id."""
        own = self.api.get("Job", self.run_id)
        self.owner = {"apiVersion": "batch/v1", "kind": "Job", "name": self.run_id,
                      "uid": own["metadata"]["uid"]}
        if (own["metadata"].get("labels") or {}).get(contract.LABEL_RUN) != self.run_id:
            # A CronJob's driver Job gets its name (the run id) from the CronJob: label it so runs are selectable.
            self.api.patch("Job", self.run_id, {"metadata": {"labels": {contract.LABEL_RUN: self.run_id}}})
        try:
            self.logical_time = scheduled_time(own)
        except ContextError as err:
            self.status, self.detail = "failed", str(err)
            self._record()
            raise
        if self.logical_time:
            self.log(f"run {self.run_id}: logical time {self.logical_time} (the CronJob's scheduled time)")

    def _observe(self) -> dict[str, dict[str, Any]]:
        jobs = self.api.list("Job", f"{contract.LABEL_RUN}={self.run_id},{contract.LABEL_ROLE}=step")
        return {j["metadata"]["name"]: j for j in jobs}

    def _adopt(self, existing: dict[str, dict[str, Any]]) -> None:
        """A replaced driver pod carries on with the step Jobs its predecessor created."""
        for step in self.steps.values():
            job = existing.get(step.job)
            if job is not None:
                step.status = "running"
                step.failures_seen = int(job.get("status", {}).get("failed") or 0)
                step.attempts = step.failures_seen + 1
                if job.get("spec", {}).get("suspend"):
                    step.resume_at = self.clock()
                self.log(f"step {step.name!r}: adopted Job {step.job!r}")
        self._update(existing)

    def _start_ready(self) -> None:
        running = sum(1 for s in self.steps.values() if s.status == "running")
        for step in self.steps.values():
            if running >= self.max_parallel:
                return
            if step.status == "pending" and all(self.steps[u].status == "succeeded" for u in step.upstream):
                self._create(step)
                running += 1

    def _create(self, step: StepRun) -> None:
        from pipecast.targets.kube.client import KubeError

        job = self.job_manifest(step)
        try:
            self.api.create(job)
            self.log(f"step {step.name!r}: created Job {step.job!r}")
        except KubeError as err:
            if err.status != 409:
                raise
            self.log(f"step {step.name!r}: Job {step.job!r} exists; watching it")
        step.status = "running"
        step.attempts = 1
        step.started_at = _now()

    def job_manifest(self, step: StepRun) -> dict[str, Any]:
        """The step's Job in this run: the plan's template with name, run label, owner and parameter values."""
        job = copy.deepcopy(step.template)
        meta = job["metadata"]
        meta["name"] = step.job
        meta["namespace"] = getattr(self.api, "namespace", None) or meta.get("namespace")
        meta["labels"][contract.LABEL_RUN] = self.run_id
        meta["ownerReferences"] = [self.owner]
        pod = job["spec"]["template"]
        pod["metadata"]["labels"][contract.LABEL_RUN] = self.run_id
        for container in pod["spec"]["containers"]:
            for item in container.get("env", []):
                parameter = item["name"].removeprefix(contract.PARAM_ENV_PREFIX)
                if item["name"].startswith(contract.PARAM_ENV_PREFIX) and parameter in self.rendered:
                    item["value"] = self.rendered[parameter]
                elif item["name"] == LOGICAL_TIME_VAR and item.get("value") == "" and self.logical_time:
                    item["value"] = contract.escape(self.logical_time)  # the emitted "" (a user's value is kept)
        return job

    def _update(self, jobs: dict[str, dict[str, Any]]) -> None:
        for step in self.steps.values():
            if step.status != "running":
                continue
            job = jobs.get(step.job)
            if job is None:
                continue  # just created: not listed yet
            status = job.get("status") or {}
            conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
            failures = int(status.get("failed") or 0)
            if "Complete" in conditions:
                step.status, step.ended_at = "succeeded", _now()
                step.attempts = failures + 1
                self.log(f"step {step.name!r}: succeeded")
            elif "Failed" in conditions:
                step.status, step.ended_at = "failed", _now()
                step.attempts = max(failures, 1)
                condition = conditions["Failed"]
                step.detail = f"Job {step.job!r} {condition.get('reason', 'Failed')}: {condition.get('message', '')}"
                self.log(f"step {step.name!r}: failed ({step.detail})")
            else:
                self._pace_retries(step, job, failures)

    def _pace_retries(self, step: StepRun, job: dict[str, Any], failures: int) -> None:
        if failures > step.failures_seen:
            step.failures_seen = failures
            step.attempts = failures + 1
            wanted = step.retry.delay_before(failures + 1)
            active = int((job.get("status") or {}).get("active") or 0)
            if failures < step.retry.attempts and wanted > 0:
                if active:
                    self.log(f"step {step.name!r}: try {failures + 1} already started (Kubernetes' pod backoff "
                             f"ran out before the driver saw the failure)")
                else:
                    self.api.patch("Job", step.job, {"spec": {"suspend": True}})
                    step.resume_at = self.clock() + wanted
                    self.log(f"step {step.name!r}: try {failures} failed; retrying in {wanted:g}s")
        if step.resume_at is not None and self.clock() >= step.resume_at:
            self.api.patch("Job", step.job, {"spec": {"suspend": False}})
            step.resume_at = None
            self.log(f"step {step.name!r}: resumed for try {step.attempts}")

    def _halt(self) -> None:
        """A step failed: stop every running step Job (fail fast, as ``pipecast run`` does)."""
        for step in self.steps.values():
            if step.status == "running":
                self._delete(step)
                step.status, step.ended_at = "cancelled", _now()
                step.detail = "stopped: another step failed"

    def _cancel(self) -> int:
        self.log(f"run {self.run_id}: stopping (SIGTERM)")
        for step in self.steps.values():
            if step.status == "running":
                self._delete(step)
            if step.status in ("running", "pending"):
                step.status = "cancelled"
        self.status, self.detail = "cancelled", "the driver was stopped"
        try:
            self._record()
        except PipecastError:
            pass  # the driver Job itself is being deleted
        return contract.EXIT_PIPELINE_FAILED

    def _delete(self, step: StepRun) -> None:
        """Delete a step's Job, after checking it is this run's: the Role allows deleting any Job in the namespace."""
        from pipecast.targets.kube.client import KubeError

        try:
            job = self.api.get("Job", step.job)
            labels = (job.get("metadata") or {}).get("labels") or {}
            if labels.get(contract.LABEL_RUN) != self.run_id or \
                    labels.get(contract.LABEL_PIPELINE) != self.template_labels(step).get(contract.LABEL_PIPELINE):
                self.log(f"step {step.name!r}: Job {step.job!r} is not labelled as this run's; not deleting it")
                return
            self.api.delete("Job", step.job, propagation="Background")
        except KubeError as err:
            if err.status != 404:
                raise

    @staticmethod
    def template_labels(step: StepRun) -> dict[str, str]:
        """The labels the plan gives the step's Job."""
        return dict((step.template.get("metadata") or {}).get("labels") or {})

    def state(self) -> dict[str, Any]:
        """The run as recorded on the driver Job."""
        state: dict[str, Any] = {"status": self.status}
        if self.detail:
            state["detail"] = self.detail[:_DETAIL_LIMIT]
        if self.logical_time:
            state["logical_time"] = self.logical_time
        state["steps"] = {s.name: s.record() for s in self.steps.values()}
        return state

    def _record(self) -> None:
        text = json.dumps(self.state(), sort_keys=True, separators=(",", ":"))
        if text != self._recorded:
            self.api.patch("Job", self.run_id, {"metadata": {"annotations": {contract.ANNOTATION_STATE: text}}})
            self._recorded = text


def parse_parameters(plan: dict[str, Any], given: Sequence[str]) -> dict[str, Any]:
    """``NAME=ENCODED`` arguments over the plan's defaults, type-checked."""
    values: dict[str, Any] = {}
    for item in given:
        name, sep, encoded = item.partition("=")
        if not sep:
            raise PipecastError(f"--param {item!r} is not NAME=VALUE")
        try:
            values[name] = decode_constant(encoded)
        except ValueError:
            raise PipecastError(f"--param {name!r}: {encoded!r} is not percent-encoded JSON") from None
    return resolve_parameters(contract.plan_pipeline(plan), values)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the driver; see the module docstring."""
    import os

    parser = argparse.ArgumentParser(prog=f"python -m {contract.DRIVER_MODULE}",
                                     description="Run a pipecast pipeline as Kubernetes Jobs (the driver Job).")
    parser.add_argument("--plan", required=True, help="the plan file (mounted from the plan ConfigMap)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter: canonical JSON, percent-encoded; repeatable")
    parser.add_argument("--run-id", default=os.environ.get(contract.RUN_ID_ENV),
                        help=f"default: ${contract.RUN_ID_ENV}")
    parser.add_argument("--namespace", default=os.environ.get(contract.NAMESPACE_ENV),
                        help=f"default: ${contract.NAMESPACE_ENV}")
    ns = parser.parse_args(argv)
    try:
        if not ns.run_id or not ns.namespace:
            raise PipecastError(f"the run id and namespace are unknown: set ${contract.RUN_ID_ENV} and "
                                f"${contract.NAMESPACE_ENV} (the emitted Job does, through the downward API)")
        with open(ns.plan, "rb") as handle:
            plan = contract.load_plan(handle.read())
        parameters = parse_parameters(plan, ns.param)
        _check_client()
        from pipecast.targets.kube.client import connect
        from pipecast.targets.kube.objects import Kube

        api = Kube(connect({}), ns.namespace)  # in a pod: its service account (the Job's serviceAccountName)
    except (PipecastError, OSError, ValueError) as err:
        print(f"pipecast driver: {err}", file=sys.stderr, flush=True)
        return contract.EXIT_BAD_INPUT
    from pipecast.targets.kubernetes import patience

    kind = Driver
    if plan.get("flow"):  # maps, conditions, exit handlers, hooks: see flow_driver
        from pipecast.targets.kubernetes.flow_driver import FlowDriver

        kind = FlowDriver
    driver = kind(plan, parameters, ns.run_id, api, log=lambda line: print(line, flush=True),
                  patience=patience.API_PATIENCE)
    signal.signal(signal.SIGTERM, lambda *_: driver.stop.set())
    again = f"exit {contract.EXIT_INFRASTRUCTURE}: Kubernetes starts a new driver pod, which carries on with the run"
    try:
        return driver.run()
    except ContextError as err:  # the run's own input is wrong (its Job's annotation): a new driver pod cannot mend it
        print(f"pipecast driver: {err}", file=sys.stderr, flush=True)
        return contract.EXIT_BAD_INPUT
    except PipecastError as err:
        print(f"pipecast driver: {err} ({again})", file=sys.stderr, flush=True)
    except Exception:  # whatever broke, it is not the pipeline's verdict: never exit 1 for it
        traceback.print_exc()
        print(f"pipecast driver: unexpected error ({again})", file=sys.stderr, flush=True)
    return contract.EXIT_INFRASTRUCTURE


def _check_client() -> None:
    """Fail with the fix when the image lacks the Kubernetes client (not with a traceback and exit 1)."""
    try:
        import kubernetes  # noqa: F401
        import urllib3  # noqa: F401
    except ImportError as err:
        raise PipecastError(
            f"the driver image has no Kubernetes client ({err}); the driver needs pipecast's kubernetes extra: "
            "build the image with `pip install 'pipecast[kubernetes]'`, or point --set driver_image=IMAGE at an "
            "image that has it") from None


if __name__ == "__main__":
    sys.exit(main())
