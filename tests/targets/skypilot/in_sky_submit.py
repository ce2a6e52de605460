"""Run inside SkyPilot's interpreter: submit and track runs with SkyPilot's client functions replaced.

No SkyPilot API server or cloud is reachable here, so ``sky.launch``, ``sky.jobs.launch``,
``sky.stream_and_get``, ``sky.get``, ``sky.job_status``, ``sky.cancel``, ``sky.jobs.queue_v2`` and
``sky.jobs.cancel`` are replaced by recorders that answer as SkyPilot documents (request ids, then
``(job_id, handle)``, ``{job_id: sky.JobStatus}``, ``ManagedJobRecord`` lists). Everything else is real:
the YAML goes through ``sky.Task.from_yaml_config`` and ``sky.Dag``, and pipecast's ``submit_pipeline``,
run store and handles run unchanged.

Usage: ``python in_sky_submit.py OUT.json``; writes what every scenario observed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import sky
import sky.jobs
from sky.schemas.api.responses import ManagedJobRecord

from pipecast.errors import SubmitError
from pipecast.flow import submit_pipeline
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from tests.helpers.cases import case

CALLS: list[dict[str, Any]] = []
ANSWERS: dict[str, list[Any]] = {}  # scripted results of sky.get, by the request's function name
FAIL_LAUNCH: list[BaseException] = []
FAIL_STREAM: list[BaseException] = []  # the stream of a launch request breaks (the server goes on with it)
AWS = {"artifact_root": "s3://bucket/pipecast"}


def _task(task: Any) -> dict[str, Any]:
    (resources,) = task.resources
    return {
        "name": task.name,
        "envs": dict(task.envs),
        # Only a digest of each secret's value leaves this process: the test checks it arrived.
        "secrets": {k: hashlib.sha256(v.encode()).hexdigest()[:12] for k, v in
                    sky.task.get_plaintext_secrets(task.secrets).items()},
        "secret_refs": sorted(ref.name for ref in task.managed_secret_refs),
        "resources": str(resources),
        "run": task.run,
        "file_mounts": dict(task.file_mounts or {}),
    }


def _request(function: str, **details: Any) -> str:
    CALLS.append({"call": function, **details})
    return f"request-{len(CALLS)}-{function}"


def fake_launch(task: Any, cluster_name: str | None = None, **kwargs: Any) -> str:
    if FAIL_LAUNCH:
        raise FAIL_LAUNCH.pop()
    return _request("sky.launch", task=_task(task), cluster_name=cluster_name, kwargs=kwargs)


def fake_jobs_launch(dag: Any, name: str | None = None, **kwargs: Any) -> str:
    return _request("sky.jobs.launch", dag=dag.name, is_chain=dag.is_chain(), name=name, kwargs=kwargs,
                    tasks=[_task(t) for t in dag.tasks],
                    edges=[[a.name, b.name] for a, b in dag.graph.edges])


def fake_stream_and_get(request_id: str) -> Any:
    CALLS.append({"call": "sky.stream_and_get", "request_id": request_id})
    if FAIL_STREAM:
        raise FAIL_STREAM.pop()
    return ([7], None) if request_id.endswith("sky.jobs.launch") else (1, None)


def fake_get(request_id: str) -> Any:
    CALLS.append({"call": "sky.get", "request_id": request_id})
    answer = ANSWERS[request_id.rsplit("-", 1)[-1]].pop(0)
    if isinstance(answer, BaseException):
        raise answer
    return answer


def install_fakes() -> None:
    import os

    from pipecast.targets.skypilot import code, launch

    # This interpreter imports pipecast from the source tree (no installed distribution to make a wheel from):
    # the wheel comes from the test's own interpreter, where pipecast_mount's choice is tested. What is proven
    # here is that SkyPilot's Task takes the mount as submit hands it over.
    wheel = os.environ["PIPECAST_TEST_WHEEL"]
    launch.pipecast_mount = lambda pipeline, setups: (
        {code.remote_wheel(): wheel} if any(code.wheel_file() in s for s in setups) else {})
    sky.launch = fake_launch
    sky.jobs.launch = fake_jobs_launch
    sky.stream_and_get = fake_stream_and_get
    sky.get = fake_get
    sky.job_status = lambda cluster_name, job_ids=None: _request("sky.job_status", cluster=cluster_name,
                                                                 job_ids=job_ids)
    sky.cancel = lambda cluster_name, job_ids=None, **kw: _request("sky.cancel", cluster=cluster_name,
                                                                   job_ids=job_ids, kwargs=kw)
    sky.jobs.queue_v2 = lambda refresh, **kw: _request("sky.jobs.queue_v2", refresh=refresh, kwargs=kw)
    sky.jobs.cancel = lambda **kw: _request("sky.jobs.cancel", kwargs=kw)


def record(job_id: int, task_id: int, task: str, status: str, reason: str | None = None) -> ManagedJobRecord:
    return ManagedJobRecord(job_id=job_id, task_id=task_id, task_name=task, job_name="ml_training",
                            status=sky.ManagedJobStatus[status], failure_reason=reason)


def scenario_cluster() -> dict[str, Any]:
    CALLS.clear()
    handle = submit_pipeline(case("quickstart").build(), "vm_aws", {"n": 20, "label": "twenty"}, AWS, {})
    launched = list(CALLS)
    ANSWERS["sky.job_status"] = [{1: sky.JobStatus.SETTING_UP}, {1: sky.JobStatus.SUCCEEDED},
                                 {1: sky.JobStatus.FAILED_SETUP}, sky.exceptions.ClusterDoesNotExist("gone")]
    statuses = [handle.status().value for _ in range(3)]
    try:
        handle.status()
        gone = None
    except SubmitError as err:
        gone = str(err)
    CALLS.clear()
    ANSWERS["sky.cancel"] = [None]
    handle.cancel()
    stored = RunStore.default().get(handle.run_id)
    return {"launched": launched, "statuses": statuses, "gone": gone, "cancel": list(CALLS),
            "engine_run_id": handle.engine_run_id, "url": handle.url, "stored": _stored(stored)}


def scenario_jobs() -> dict[str, Any]:
    CALLS.clear()
    handle = submit_pipeline(case("ml_training").build(), "vm_gcp", {"epochs": 5},
                             {"artifact_root": "gs://bucket/pipecast"}, {})
    launched = list(CALLS)
    tasks = ["make_dataset", "split_data", "train_model", "evaluate"]
    ANSWERS["sky.jobs.queue_v2"] = [
        ([record(7, i, t, "PENDING") for i, t in enumerate(tasks)], 4, {}, 4),
        ([record(7, i, t, s) for i, (t, s) in enumerate(zip(tasks, ["SUCCEEDED", "RUNNING", "PENDING",
                                                                     "PENDING"]))], 4, {}, 4),
        ([record(7, i, t, s) for i, (t, s) in enumerate(zip(tasks, ["SUCCEEDED", "SUCCEEDED", "PENDING",
                                                                     "PENDING"]))], 4, {}, 4),
        ([record(7, i, t, s, "exit code 1" if s == "FAILED" else None)
          for i, (t, s) in enumerate(zip(tasks, ["SUCCEEDED", "SUCCEEDED", "FAILED", "CANCELLED"]))], 4, {}, 4),
        ([record(7, i, t, "SUCCEEDED") for i, t in enumerate(tasks)], 4, {}, 4),
        ([], 0, {}, 0),
    ]
    observed = []
    for _ in range(6):
        status = handle.status()
        observed.append([status.value, handle.detail])
    queue_calls = [c for c in CALLS if c["call"] == "sky.jobs.queue_v2"]
    CALLS.clear()
    ANSWERS["sky.jobs.cancel"] = [None]
    # A new process reconnects from the run store, as `pipecast runs cancel` does.
    reconnected = track(handle.run_id, {})
    reconnected.cancel()
    return {"launched": launched, "observed": observed, "queue_call": queue_calls[0], "cancel": list(CALLS),
            "engine_run_id": handle.engine_run_id, "url": handle.url,
            "stored": _stored(RunStore.default().get(handle.run_id))}


def scenario_secrets() -> dict[str, Any]:
    import os

    os.environ["API_TOKEN"] = "token-value-123"
    os.environ["DB_PASSWORD"] = "hunter2-value"
    CALLS.clear()
    handle = submit_pipeline(case("full_options").build(), "vm_azure", {}, {"artifact_root": "az://box/p"}, {})
    stored = RunStore.default().get(handle.run_id)
    with open(RunStore.default().path, "rb") as db:
        raw = db.read()
    return {"launched": list(CALLS), "stored": _stored(stored),
            "values_in_store": b"token-value-123" in raw or b"hunter2-value" in raw,
            "digests": {k: hashlib.sha256(v.encode()).hexdigest()[:12]
                        for k, v in (("API_TOKEN", "token-value-123"), ("DB_PASSWORD", "hunter2-value"))}}


def scenario_refusals() -> dict[str, Any]:
    messages = {}
    for label, target, name, config in (
        ("cluster_with_many_tasks", "vm_aws", "ml_training", {"mode": "cluster"}),
        ("unknown_config", "vm_aws", "quickstart", {"zone": "x"}),
        ("bad_idle", "vm_aws", "quickstart", {"idle_minutes": -1}),
    ):
        try:
            submit_pipeline(case(name).build(), target, {}, AWS, config)
            messages[label] = None
        except SubmitError as err:
            messages[label] = str(err)
    FAIL_LAUNCH.append(sky.exceptions.ResourcesUnavailableError("no T4 in us-east-1"))
    try:
        submit_pipeline(case("quickstart").build(), "vm_aws", {}, AWS, {"cluster": "mine", "down": False})
        messages["unavailable"] = None
    except SubmitError as err:
        messages["unavailable"] = str(err)
    failed = RunStore.default().list(limit=1)[0]
    return {"messages": messages, "last_run_status": failed["status"]}


def scenario_lost_answers() -> dict[str, Any]:
    """The launch request's stream breaks after the API server took it (requests' ConnectionError, as the
    SDK raises once its own retries are spent): the result is read with sky.get, now or at the next status."""
    import requests

    lost = requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")
    CALLS.clear()
    FAIL_STREAM.append(lost)
    ANSWERS["sky.launch"] = [(1, None)]
    read_again = submit_pipeline(case("quickstart").build(), "vm_aws", {}, AWS, {})
    read_again_calls = [c["call"] for c in CALLS]
    CALLS.clear()
    FAIL_STREAM.append(lost)
    ANSWERS["sky.launch"] = [lost, (3, None)]
    later = submit_pipeline(case("quickstart").build(), "vm_aws", {}, AWS, {})
    pending_record = _stored(RunStore.default().get(later.run_id))
    reconnected = track(later.run_id, {})
    ANSWERS["sky.job_status"] = [{3: sky.JobStatus.SUCCEEDED}]
    status = reconnected.status().value
    return {"read_again": {"engine_run_id": read_again.engine_run_id, "calls": read_again_calls,
                           "stored": _stored(RunStore.default().get(read_again.run_id))},
            "later": {"engine_run_id": later.engine_run_id, "stored": pending_record, "status": status,
                      "resolved": _stored(RunStore.default().get(later.run_id))}}


def scenario_url() -> dict[str, Any]:
    """The dashboard URL of a remote API server whose endpoint carries basic-auth credentials."""
    import os

    from pipecast.targets.skypilot.launch import dashboard_url

    os.environ["SKYPILOT_API_SERVER_ENDPOINT"] = "https://alice:s3cret@sky.example.test:8443/"
    sky.server.common.get_server_url.cache_clear()  # SkyPilot reads the endpoint once per process
    return {"jobs": dashboard_url("jobs/7"), "clusters": dashboard_url("clusters/c-1")}


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("target", "status", "engine_run_id", "url", "metadata", "parameters")}


def main() -> None:
    install_fakes()
    results = {
        "cluster": scenario_cluster(),
        "jobs": scenario_jobs(),
        "secrets": scenario_secrets(),
        "refusals": scenario_refusals(),
        "lost": scenario_lost_answers(),
        "url": scenario_url(),
    }
    with open(sys.argv[1], "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
