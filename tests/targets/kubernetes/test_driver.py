"""The whole pipeline really runs through the driver: submit → driver Job → step Jobs → outputs.

The fake API server's Job controller runs each created Job's container (the driver's, then each step's)
as a local process with the env Kubernetes would give it, and reports through the Job's status; the
outputs must equal ``pipecast run``'s.
"""

from __future__ import annotations

import json
import time

import pytest

from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.targets.kubernetes import contract
from tests.helpers.cases import case
from tests.helpers.replay import assert_same_outputs
from tests.targets.kubernetes import pipelines
from tests.targets.kubernetes.job_controller import secret

RUNS = [("quickstart", {"n": 20, "label": "$(PIPECAST_RUN_ID) $$ {{ x }}"}), ("ml_training", {"samples": 60}),
        ("diamond_after", {}), ("hostile", {}), ("gather", {"n": 5, "lr": 0.25})]


def _submit(cluster, pipeline, parameters, **settings):
    handle = submit_pipeline(pipeline, "kubernetes", parameters, cluster.settings(**settings), cluster.config())
    handle.poll_interval = 0.2
    return handle


def _driver_state(cluster, name):
    job = cluster.fake.get(cluster.jobs, name)
    return json.loads(job["metadata"]["annotations"][contract.ANNOTATION_STATE])


def _step_pods(cluster):
    return [p for p in cluster.controller.pods if "pipecast.runtime" in p["argv"]]


@pytest.mark.parametrize(("name", "parameters"), RUNS, ids=[r[0] for r in RUNS])
def test_pipeline_runs_through_the_driver_and_gives_pipecast_runs_outputs(cluster, tmp_path, name, parameters):
    pipeline = case(name).build()
    handle = _submit(cluster, pipeline, parameters)
    status = handle.wait(timeout=240)
    driver = next(p for p in cluster.controller.pods if contract.DRIVER_MODULE in p["argv"])
    assert status is RunStatus.SUCCEEDED, (handle.detail, driver["stdout"], driver["stderr"])
    assert_same_outputs(pipeline, parameters, cluster.artifacts, handle.engine_run_id, tmp_path)

    # One Job per step, each started only after every upstream step's pod finished.
    pods = {p["env"][contract.RUN_ID_ENV] + "/" + p["argv"][p["argv"].index("--step") + 1]: p
            for p in _step_pods(cluster)}
    assert len(pods) == len(pipeline.steps)
    for step in pipeline.steps:
        mine = pods[f"{handle.engine_run_id}/{step.name}"]
        for upstream in step.upstream():
            assert pods[f"{handle.engine_run_id}/{upstream}"]["ended"] <= mine["started"]
    state = _driver_state(cluster, handle.engine_run_id)
    assert state["status"] == "succeeded"
    assert {s: v["status"] for s, v in state["steps"].items()} == {s.name: "succeeded" for s in pipeline.steps}

    # Step Jobs are labelled with the run and owned by the driver Job (so deleting it deletes them).
    driver_uid = cluster.fake.get(cluster.jobs, handle.engine_run_id)["metadata"]["uid"]
    created = [r["body"] for r in cluster.fake.requests_to("POST", cluster.jobs)][1:]
    assert len(created) == len(pipeline.steps)
    for job in created:
        assert job["metadata"]["labels"][contract.LABEL_RUN] == handle.engine_run_id
        assert job["metadata"]["ownerReferences"] == [
            {"apiVersion": "batch/v1", "kind": "Job", "name": handle.engine_run_id, "uid": driver_uid}]


def test_submit_records_namespace_job_and_dashboard_link(cluster):
    pipeline = case("diamond_after").build()
    handle = submit_pipeline(pipeline, "kubernetes", {}, cluster.settings(),
                             cluster.config(dashboard_url="https://dash.example/"))
    handle.poll_interval = 0.2
    from pipecast.runs.tracking import track

    reconnected = track(handle.run_id, cluster.config())  # what `pipecast runs wait` does
    reconnected.poll_interval = 0.2
    assert reconnected.wait(timeout=120) is RunStatus.SUCCEEDED
    name = handle.engine_run_id
    assert handle.url == f"https://dash.example/#/job/{cluster.namespace}/{name}?namespace={cluster.namespace}"
    from pipecast.runs.store import RunStore

    record = RunStore.default().get(handle.run_id)
    assert record["engine_run_id"] == name and record["url"] == handle.url and record["status"] == "succeeded"
    assert record["metadata"]["namespace"] == cluster.namespace and record["metadata"]["job"] == name
    # Applied once: RBAC and the plan; a second submit of the same pipeline updates them and adds a run.
    kinds = [r["path"].rsplit("/", 1)[-1] for r in cluster.fake.requests_to("POST")]
    assert kinds[:5] == ["serviceaccounts", "roles", "rolebindings", "configmaps", "jobs"]
    second = submit_pipeline(pipeline, "kubernetes", {}, cluster.settings(), cluster.config())
    assert second.engine_run_id != name
    assert len(cluster.fake.requests_to("PUT", "/serviceaccounts/")) == 1


def test_a_failed_step_stops_the_run_and_names_the_step(cluster):
    pipeline = pipelines.failing_pipeline.build()
    handle = _submit(cluster, pipeline, {"seconds": 60.0})
    assert handle.wait(timeout=120) is RunStatus.FAILED
    assert "broken" in handle.detail and "BackoffLimitExceeded" in handle.detail
    state = _driver_state(cluster, handle.engine_run_id)
    assert state["steps"]["broken"]["status"] == "failed"
    assert state["steps"]["slow"]["status"] == "cancelled"  # deleted while it ran
    assert state["steps"]["plus_one"]["status"] == "skipped"  # never created
    steps_created = {r["body"]["metadata"]["annotations"][contract.ANNOTATION_STEP]
                     for r in cluster.fake.requests_to("POST", cluster.jobs)[1:]}
    assert steps_created == {"slow", "broken"}
    slow_job = contract.step_job_name(handle.engine_run_id, "slow")
    assert cluster.fake.requests_to("DELETE", f"{cluster.jobs}/{slow_job}")
    # The driver exits 1, which its pod failure policy turns into a failed driver Job at once.
    driver = cluster.fake.get(cluster.jobs, handle.engine_run_id)
    assert [c["reason"] for c in driver["status"]["conditions"]] == ["PodFailurePolicy"]


def test_retry_waits_the_step_delay_by_suspending_the_job(cluster, tmp_path):
    pipeline = pipelines.flaky_pipeline.build()
    marker = tmp_path / "flaky-marker"
    cluster.controller.backoff = 1.5  # the pod backoff: shorter than the step's 3 s delay, longer than a poll
    handle = _submit(cluster, pipeline, {"marker": str(marker)})
    assert handle.wait(timeout=120) is RunStatus.SUCCEEDED, handle.detail
    job = contract.step_job_name(handle.engine_run_id, "flaky")
    patches = [r["body"] for r in cluster.fake.requests_to("PATCH", f"{cluster.jobs}/{job}")]
    assert patches == [{"spec": {"suspend": True}}, {"spec": {"suspend": False}}]
    tries = [p for p in _step_pods(cluster) if p["job"] == job]
    assert [t["returncode"] for t in tries] == [1, 0]
    assert tries[1]["started"] - tries[0]["ended"] >= 3.0  # Retry(delay="3s"), not the 1.5 s pod backoff
    state = _driver_state(cluster, handle.engine_run_id)
    assert state["steps"]["flaky"] == {**state["steps"]["flaky"], "status": "succeeded", "attempts": 2}
    assert_same_outputs(pipeline, {"marker": str(marker)}, cluster.artifacts, handle.engine_run_id, tmp_path)


def test_cancel_deletes_the_driver_in_the_foreground_and_the_step_jobs(cluster):
    pipeline = pipelines.sleepy_pipeline.build()
    handle = _submit(cluster, pipeline, {"seconds": 120.0})
    deadline = time.monotonic() + 60
    while not _step_pods(cluster):
        assert time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.05)
    assert handle.status() is RunStatus.RUNNING
    from click.testing import CliRunner

    from pipecast.cli import main as cli

    result = CliRunner().invoke(cli, ["runs", "cancel", handle.run_id, "-c", f"kubeconfig={cluster.kubeconfig}"])
    assert result.exit_code == 0, result.output
    (delete,) = [r for r in cluster.fake.requests_to("DELETE", cluster.jobs)
                 if r["path"] == f"{cluster.jobs}/{handle.engine_run_id}"]
    assert delete["query"].get("propagationPolicy") == "Foreground" or \
        (delete["body"] or {}).get("propagationPolicy") == "Foreground"
    (collection,) = [r for r in cluster.fake.requests_to("DELETE", cluster.jobs) if r["path"] == cluster.jobs]
    selector = f"{contract.LABEL_RUN}={handle.engine_run_id},{contract.LABEL_ROLE}=step"
    assert collection["query"]["labelSelector"] == selector
    deadline = time.monotonic() + 30
    while any(p["returncode"] is None for p in cluster.controller.pods):
        assert time.monotonic() < deadline, "a pod kept running after cancel"
        time.sleep(0.05)
    assert {p["returncode"] for p in cluster.controller.pods} == {"deleted"}
    assert cluster.fake.items(cluster.jobs) == []
    from pipecast.runs.store import RunStore
    from pipecast.runs.tracking import track

    assert track(handle.run_id, cluster.config()).status() is RunStatus.CANCELLED

    assert RunStore.default().get(handle.run_id)["status"] == "cancelled"


def test_secrets_come_from_the_secret_and_env_values_are_not_expanded(cluster):
    cluster.fake.handle("POST", f"/api/v1/namespaces/{cluster.namespace}/secrets",
                        secret("db-credentials", {"password": "s3cr$t"}), "application/json")
    pipeline = pipelines.secret_pipeline.build()
    handle = _submit(cluster, pipeline, {})
    assert handle.wait(timeout=120) is RunStatus.SUCCEEDED, handle.detail
    from pipecast.runtime.executor import load_outputs

    outputs = load_outputs(f"file://{cluster.artifacts}", "secretive", handle.engine_run_id, "read_secret")
    assert outputs == {"output": {"password": "s3cr$t", "mode": "$(PIPECAST_RUN_ID) $$ $(DB_PASSWORD)"}}
    sent = json.dumps([r["body"] for r in cluster.fake.requests])
    assert "s3cr$t" not in sent.replace(json.dumps(secret("db-credentials", {"password": "s3cr$t"})), "")


def test_a_replaced_driver_adopts_the_jobs_its_predecessor_created(cluster):
    """Run the driver twice for one run: the second creates nothing that exists and still finishes."""
    from pipecast.targets.base import EmitContext
    from pipecast.targets.checks import parse_settings
    from pipecast.targets.kube.client import connect
    from pipecast.targets.kube.objects import Kube
    from pipecast.targets.kubernetes.driver import Driver
    from pipecast.targets.kubernetes.manifests import Lowering
    from pipecast.targets.registry import get_target

    pipeline = case("diamond_after").build()
    context = EmitContext(target="kubernetes")
    parse_settings(pipeline, get_target("kubernetes"), cluster.settings(), context)
    plan = Lowering(pipeline, context).plan()
    api = Kube(connect(cluster.config()), cluster.namespace)
    run = "diamond-adopt"
    api.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": run, "namespace": cluster.namespace},
                "spec": {"suspend": True, "template": {"spec": {"containers": []}}}})  # a stand-in driver Job
    first = Driver(plan, {}, run, api, log=lambda line: None)
    first.poll = 0.05
    first.max_parallel = 1
    first.owner = {"apiVersion": "batch/v1", "kind": "Job", "name": run, "uid": "x"}
    first._create(first.steps["start"])  # the first driver created one Job, then its pod was lost
    second = Driver(plan, {}, run, api, log=lambda line: None)
    second.poll = 0.05
    assert second.run() == 0
    names = [r["body"]["metadata"]["name"] for r in cluster.fake.requests_to("POST", cluster.jobs)[1:]]
    assert len(names) == len(set(names)) == len(pipeline.steps)
    assert json.loads(cluster.fake.get(cluster.jobs, run)["metadata"]["annotations"][contract.ANNOTATION_STATE])[
        "status"] == "succeeded"


def test_a_compressed_plan_runs_the_same(cluster, tmp_path, monkeypatch):
    """Plans over the text limit travel gzipped in binaryData; the driver reads them from the mount."""
    monkeypatch.setattr(contract, "PLAN_TEXT_LIMIT", 100)
    pipeline = case("diamond_after").build()
    handle = _submit(cluster, pipeline, {})
    assert handle.wait(timeout=120) is RunStatus.SUCCEEDED, handle.detail
    (configmap,) = cluster.fake.items(f"/api/v1/namespaces/{cluster.namespace}/configmaps")
    assert list(configmap["binaryData"]) == [contract.PLAN_FILE_GZ]
    assert_same_outputs(pipeline, {}, cluster.artifacts, handle.engine_run_id, tmp_path)


def test_a_driver_the_api_server_fails_exits_3_and_a_new_driver_pod_finishes_the_run(cluster, tmp_path):
    """An API error waiting cannot mend (403 here) ends the driver pod with exit 3, not 1: the driver Job's pod
    failure policy counts it against backoffLimit, the Job controller starts another driver pod, and that one
    adopts the step Jobs already created and finishes the run."""
    cluster.fake.refuse("PATCH", r"/jobs/[^/]+$", 403, "Forbidden")  # the first state record of the run
    pipeline = case("diamond_after").build()
    handle = _submit(cluster, pipeline, {})
    assert handle.wait(timeout=240) is RunStatus.SUCCEEDED, handle.detail
    drivers = [p for p in cluster.controller.pods if contract.DRIVER_MODULE in p["argv"]]
    assert [d["returncode"] for d in drivers] == [contract.EXIT_INFRASTRUCTURE, 0]
    assert "403" in drivers[0]["stderr"] and "new driver pod" in drivers[0]["stderr"]
    created = [r["body"]["metadata"]["name"] for r in cluster.fake.requests_to("POST", cluster.jobs)[1:]]
    assert sorted(set(created)) == sorted(created) and len(created) == len(pipeline.steps)  # none twice
    assert_same_outputs(pipeline, {}, cluster.artifacts, handle.engine_run_id, tmp_path)
