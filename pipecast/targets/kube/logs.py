"""Pod logs for the Kubernetes-based targets (kubernetes, argo, tekton), through the one client module.

Every step pod of a run carries labels its target put there: the run's (``pipecast.dev/run`` on the
kubernetes target's step Jobs, ``workflows.argoproj.io/workflow`` that Argo sets, ``tekton.dev/pipelineRun``
that Tekton sets) and the step's (``pipecast.dev/step``, the step's DNS-1123 name, from the emitted templates;
on Tekton ``tekton.dev/pipelineTask``, the pipeline task's name, which Tekton sets on the pods of shared Tasks).
The pods are listed by those labels, ordered by creation (a retried step has a pod per try), and each one's
log is read with ``GET /api/v1/namespaces/{ns}/pods/{pod}/log?container=...`` — with ``follow=true`` to stream
it until the container ends. A container that has not started yet has no log: following waits for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipecast.compiler.naming import rule_for
from pipecast.runs.logs import Deadline, LineBuffer, StepLog, engine_logs, lines_of
from pipecast.targets.kube.client import KubeError, call_api
from pipecast.targets.kube.crd import STEP_LABEL
from pipecast.targets.kube.objects import Kube


@dataclass(frozen=True)
class PodLogs:
    """Where a run's step logs are: the label its pods carry, and the container that runs the step."""

    run_selector: str  # e.g. "tekton.dev/pipelineRun=train-x"
    container: str  # e.g. "step-run"
    step_label: str = STEP_LABEL  # e.g. "tekton.dev/pipelineTask", whose value is the pipeline task's name


def pod_logs(api: Kube, where: PodLogs, run_id: str, run_over: Callable[[], bool], step: str | None,
             follow: bool, timeout: float | None) -> Iterator[str]:
    """The run's step logs (``step``: its pipecast name, mapped to the pods' step label)."""
    dns = rule_for("dns1123_label").apply
    engine_step = dns(step) if step is not None else None

    def listing() -> list[StepLog]:
        pods = api.list("Pod", where.run_selector)
        pods = [p for p in pods if where.step_label in ((p.get("metadata") or {}).get("labels") or {})]
        pods.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))
        # The label holds the step's DNS name, or (argo's shared templates) its pipecast name: both read as the former.
        return [StepLog(key=p["metadata"]["name"], step=dns(p["metadata"]["labels"][where.step_label]),
                        note=f"pod {p['metadata']['name']}", read=_reader(api, p["metadata"]["name"], where))
                for p in pods]

    return engine_logs(run_id, listing, run_over, engine_step, follow, timeout)


def _reader(api: Kube, pod: str, where: PodLogs) -> Callable[[Deadline | None], Iterator[str]]:
    return lambda deadline: read_pod_log(api, pod, where.container, deadline)


def read_pod_log(api: Kube, pod: str, container: str, deadline: Deadline | None) -> Iterator[str]:
    """One container's log lines; with a deadline, wait for it to start and stream it until it ends."""
    while True:
        try:
            if deadline is None:
                yield from lines_of(_send(api, pod, container, follow=False).data)
                return
            yield from _stream(api, pod, container, deadline)
            return
        except KubeError as err:
            if err.status != 400 or "waiting to start" not in str(err):
                raise
            if deadline is None or deadline.expired():
                yield f"pipecast: no log yet: {str(err).split(': 400 ', 1)[-1]}"
                return
            deadline.sleep()


def _stream(api: Kube, pod: str, container: str, deadline: Deadline) -> Iterator[str]:
    from urllib3.exceptions import HTTPError

    response = _send(api, pod, container, follow=True, read_timeout=max(1.0, deadline.end - time.monotonic()))
    buffer = LineBuffer()
    try:
        for chunk in response.stream(64 * 1024):
            yield from buffer.feed(chunk)
            if deadline.expired():
                break
    except (OSError, HTTPError):  # read timed out at the deadline, or the stream was cut
        if not deadline.expired():
            raise
    finally:
        response.release_conn()
    yield from buffer.rest()


def _send(api: Kube, pod: str, container: str, *, follow: bool, read_timeout: float = 30.0) -> Any:
    """``GET .../pods/{pod}/log`` through :func:`call_api` (its retries and error messages); the raw response."""
    core = api._api("CoreV1Api")

    def send() -> Any:
        return core.read_namespaced_pod_log(pod, api.namespace, container=container, follow=follow,
                                            _preload_content=False, _request_timeout=(30.0, read_timeout))

    return call_api(api.cluster, f"read the log of pod {pod!r} in namespace {api.namespace!r}", send)
