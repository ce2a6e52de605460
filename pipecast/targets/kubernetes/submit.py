"""The kubernetes target's submit module: apply ``pipeline.yaml``, create the driver Job, read it back.

Connection settings (``pipecast submit --config KEY=VALUE``): ``kubeconfig``, ``context`` and ``in_cluster``
(see :func:`pipecast.targets.kube.client.connect`), ``namespace`` (default: the namespace in the manifests),
``dashboard_url`` (a Kubernetes Dashboard base URL for the run's link). The framework records the run;
nothing here writes the run store.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from packaging.version import Version

from pipecast.compiler import ir
from pipecast.errors import SubmitError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.runtime.params import render_parameter
from pipecast.targets import versions
from pipecast.targets.base import SubmitRequest
from pipecast.targets.kube.client import KubeError, check_config, connect
from pipecast.targets.kube.limits import argument_bytes_over, refuse_oversized
from pipecast.targets.kube.objects import RUN_ANNOTATION, Kube, apply_all, create_run_object
from pipecast.targets.kubernetes import contract
from pipecast.targets.kubernetes.manifests import driver_args
from pipecast.targets.kubernetes.settings import DEFAULT_NAMESPACE, KubernetesConnection

UI_SETTING = "dashboard_url"
# The CronJob controller writes the scheduled-timestamp annotation (a scheduled run's logical time) from 1.28 on.
LOGICAL_TIME_SINCE = Version("1.28")


def dashboard_link(base: str | None, namespace: str, name: str) -> str | None:
    """The Kubernetes Dashboard page of a Job, if a dashboard base URL is configured."""
    if not base:
        return None
    return f"{base.rstrip('/')}/#/job/{namespace}/{name}?namespace={namespace}"


def _in_namespace(document: dict[str, Any], namespace: str) -> dict[str, Any]:
    document = json.loads(json.dumps(document))
    document["metadata"]["namespace"] = namespace
    for subject in document.get("subjects", []):
        subject["namespace"] = namespace
    return document


def submit(request: SubmitRequest) -> KubernetesRun:
    """Apply the pipeline's objects, then create its driver Job named after the run id."""
    config = request.config
    check_config(request.target.name, config, KubernetesConnection.spec())
    documents = [d for d in yaml.safe_load_all(request.bundle["pipeline.yaml"]) if d]
    driver = yaml.safe_load(request.bundle["run.yaml"])
    namespace = str(config.get("namespace") or driver["metadata"]["namespace"])
    name = contract.run_name(request.run_id)
    driver = _in_namespace(driver, namespace)
    driver["metadata"].pop("generateName", None)
    driver["metadata"]["name"] = name
    for meta in (driver["metadata"], driver["spec"]["template"]["metadata"]):  # the run's id on the Job and its pods
        meta["labels"][contract.LABEL_RUN] = name
    driver["metadata"]["annotations"][RUN_ANNOTATION] = request.run_id
    container = driver["spec"]["template"]["spec"]["containers"][0]
    container["args"] = [*container["args"], *driver_args(dict(request.parameters))]
    documents = [_in_namespace(document, namespace) for document in documents]
    _check_limits(documents, driver, request.parameters)
    api = Kube(connect(config), namespace)
    versions.check_cluster(request.target.name, api.cluster)  # too old: refused before anything is made
    if request.pipeline.schedule:
        _warn_without_logical_time(api)
    apply_all(api, documents)
    url = dashboard_link(config.get(UI_SETTING), namespace, name)
    plan = driver["metadata"]["annotations"][contract.ANNOTATION_PLAN]
    metadata = {"namespace": namespace, "job": name, "plan": plan}
    request.note(engine_run_id=name, url=url, **metadata)  # before a create whose answer may be lost
    create_run_object(api, driver, request.run_id, role="driver")
    return KubernetesRun(api, run_id=request.run_id, name=name, url=url, metadata=metadata)


def _warn_without_logical_time(api: Kube) -> None:
    """Warn when the cluster's CronJob controller gives its runs no scheduled time: steps would read None."""
    from kubernetes import client

    from pipecast.targets.kube.client import call_api, request_timeout

    cluster = api.cluster
    try:
        answer = call_api(cluster, "read the Kubernetes version", lambda: client.VersionApi(
            cluster.api_client).get_code(_request_timeout=request_timeout(), _preload_content=False))
        reported = json.loads(answer.data or b"{}").get("gitVersion")
    except (KubeError, ValueError, AttributeError):
        return  # the version check has said it cannot tell
    version = versions.parse(reported)
    if version is not None and version < LOGICAL_TIME_SINCE:
        warnings.warn(f"Kubernetes at {cluster.host} is version {reported}: before 1.28 the CronJob controller does "
                      f"not annotate its Jobs with {contract.SCHEDULED_ANNOTATION}, so the steps of this pipeline's "
                      "scheduled runs read pipecast.context().logical_time as None; upgrade the cluster to 1.28 or "
                      "later to get the scheduled time",
                      versions.EngineVersionWarning, stacklevel=2)


def _check_limits(documents: list[dict[str, Any]], driver: dict[str, Any], parameters: Mapping[str, Any]) -> None:
    """Check etcd's object limit and Linux's argument limit, before anything is created."""
    refuse_oversized([*documents, driver])
    plan = contract.configmap_plan(next(d for d in documents if d["kind"] == "ConfigMap"))
    types = {p["name"]: p["type"] for p in plan["parameters"]}
    for arg in driver["spec"]["template"]["spec"]["containers"][0]["args"]:
        if argument_bytes_over(arg):
            raise SubmitError(f"a driver argument is {len(arg.encode())} bytes; Linux refuses arguments of "
                              f"{contract.MAX_ARG_BYTES} with their NUL: pass large data as a step output, not a "
                              "parameter")
    for name, value in parameters.items():
        text = contract.escape(render_parameter(ir.TypeName(types[name]), value))
        if argument_bytes_over(text):
            raise SubmitError(f"parameter {name!r} is {len(text.encode())} bytes as a step pod's env var; Linux "
                              f"refuses values of {contract.MAX_ARG_BYTES} with their NUL: pass large data as a step "
                              "output")


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> KubernetesRun:
    """The run of a record (``pipecast runs wait|cancel``): its driver Job."""
    check_config(str(record["target"]), config, KubernetesConnection.spec())
    cluster = connect(config)
    metadata = record.get("metadata") or {}
    namespace = str(config.get("namespace") or metadata.get("namespace") or cluster.namespace or DEFAULT_NAMESPACE)
    return KubernetesRun(Kube(cluster, namespace), run_id=record["id"], name=record["engine_run_id"],
                         url=record.get("url"), last_status=record.get("status"))


class KubernetesRun(EngineRun):
    """A run: its driver Job. Status from the Job's conditions and the state the driver records on it."""

    def __init__(self, api: Kube, *, run_id: str, name: str, url: str | None, last_status: str | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(run_id=run_id, target="kubernetes", engine_run_id=name, url=url, metadata=metadata)
        self.api = api
        self.name = name
        self.last_status = last_status
        self.steps: dict[str, Any] = {}

    def fetch_status(self) -> RunStatus:
        """Read the driver Job: its conditions, and the run's state the driver records on it."""
        try:
            job = self.api.get("Job", self.name)
        except KubeError as err:
            if err.status != 404:
                raise
            if self.last_status == RunStatus.CANCELLED.value:
                return RunStatus.CANCELLED
            self.detail = (f"driver Job {self.name!r} no longer exists in namespace {self.api.namespace!r} "
                           f"(deleted, or removed by ttlSecondsAfterFinished)")
            known = RunStatus(self.last_status) if self.last_status in {s.value for s in RunStatus} else None
            return known if known is not None and known.finished else RunStatus.FAILED
        state = _state(job)
        self.steps = state.get("steps", {})
        conditions = {c.get("type") for c in (job.get("status") or {}).get("conditions") or []
                      if c.get("status") == "True"}
        recorded = state.get("status")
        self.detail = str(state.get("detail") or "")
        if "Complete" in conditions:
            return RunStatus.SUCCEEDED
        if "Failed" in conditions:
            if not self.detail:
                failed: dict[str, Any] = next(
                    (c for c in job["status"]["conditions"] if c.get("type") == "Failed"), {})
                self.detail = f"driver Job {failed.get('reason', 'failed')}: {failed.get('message', '')}".strip()
            return RunStatus.CANCELLED if recorded == "cancelled" else RunStatus.FAILED
        if recorded == "running" or (job.get("status") or {}).get("active"):
            return RunStatus.RUNNING
        return RunStatus.PENDING

    def cancel(self) -> None:
        """Delete the driver Job (Foreground: its pods and owned step Jobs go first) and the run's step Jobs."""
        try:
            self.api.delete("Job", self.name, propagation="Foreground")
        except KubeError as err:
            if err.status != 404:
                raise
        # The step Jobs only: the driver Job has the run label too, and is already going in the foreground.
        self.api.delete_all("Job", f"{contract.LABEL_RUN}={self.name},{contract.LABEL_ROLE}=step",
                            propagation="Background")
        self.last_status = RunStatus.CANCELLED.value

    def logs(self, step: str | None = None, follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """The step pods' logs: the pods of the run's step Jobs carry ``pipecast.dev/run=<run>``."""
        from pipecast.targets.kube.logs import PodLogs, pod_logs

        where = PodLogs(f"{contract.LABEL_RUN}={self.name},{contract.LABEL_ROLE}=step", contract.STEP_CONTAINER)
        return pod_logs(self.api, where, self.run_id, lambda: self.fetch_status().finished, step, follow, timeout)


def _state(job: dict[str, Any]) -> dict[str, Any]:
    text = ((job.get("metadata") or {}).get("annotations") or {}).get(contract.ANNOTATION_STATE)
    try:
        state = json.loads(text) if text else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}
