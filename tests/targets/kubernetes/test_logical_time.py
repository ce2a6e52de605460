"""``pipecast.context().logical_time`` on the kubernetes target: the CronJob's tick, read by the driver.

The fake API server has no CronJob controller, so :func:`job_from_cronjob` plays the one Kubernetes runs, as
``pkg/controller/cronjob/utils.go getJobFromTemplate2`` (kubernetes 1.28 to 1.35) makes a Job from the stored
CronJob: name ``<cronjob>-<scheduledTime.Unix()/60>`` (``getTimeHashInMinutes``), the jobTemplate's labels and
annotations plus ``batch.kubernetes.io/cronjob-scheduled-timestamp`` =
``scheduledTime.In(time.LoadLocation(spec.timeZone)).Format(time.RFC3339)`` (Go's ``Z07:00``: ``Z`` for a zero
offset, else ``+01:00``; whole seconds), a controller owner reference to the CronJob, and the jobTemplate's spec.
Nothing else: the controller adds no env, and the annotation is on the Job only (the Job controller builds pods
from ``spec.template``), so the driver must read its own Job to see it.
"""

from __future__ import annotations

import copy
import json
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipecast.errors import ContextError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.executor import load_outputs
from pipecast.targets.kubernetes import contract
from pipecast.targets.kubernetes.driver import Driver, scheduled_time
from pipecast.targets.versions import EngineVersionWarning
from tests.helpers.cases import case, compile_case, golden_settings
from tests.targets.kubernetes import pipelines
from tests.targets.kubernetes.test_emit import container, env_of, parsed, step_template

TICK = datetime(2025, 1, 6, 4, 0, tzinfo=timezone.utc)  # a Monday: 05:00 in Paris (CET, +01:00)
WAIT = 240.0  # seconds a whole run may take on a busy machine


def go_rfc3339(moment: datetime) -> str:
    """Go's ``time.Format(time.RFC3339)``: whole seconds, ``Z`` for a zero offset."""
    text = moment.isoformat(timespec="seconds")
    return text[:-6] + "Z" if moment.utcoffset() == timedelta(0) else text


def job_from_cronjob(cronjob: dict[str, Any], scheduled: datetime) -> dict[str, Any]:
    """The driver Job the CronJob controller creates for the tick ``scheduled`` (see the module docstring)."""
    template = cronjob["spec"]["jobTemplate"]
    zone = cronjob["spec"].get("timeZone") or "UTC"
    annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    annotations[contract.SCHEDULED_ANNOTATION] = go_rfc3339(scheduled.astimezone(ZoneInfo(zone)))
    meta = cronjob["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{meta['name']}-{int(scheduled.timestamp()) // 60}",
                         "namespace": meta["namespace"],
                         "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                         "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": copy.deepcopy(template["spec"])}


def _apply(cluster, pipeline, **settings: Any) -> dict[str, Any]:
    """Apply the pipeline's ``pipeline.yaml`` as submit does (without starting a run); return its CronJob."""
    from pipecast.targets.kube.client import connect
    from pipecast.targets.kube.objects import Kube, apply_all

    documents = parsed(compile_case("kubernetes", pipeline, settings=cluster.settings(**settings)))["documents"]
    apply_all(Kube(connect(cluster.config()), cluster.namespace), documents)
    return _cronjob(cluster, pipeline)


def _cronjob(cluster, pipeline) -> dict[str, Any]:
    found = cluster.fake.get(f"/apis/batch/v1/namespaces/{cluster.namespace}/cronjobs",
                             contract.cronjob_name(pipeline.name))
    assert found is not None, "the CronJob was not applied"
    return found


def _fire(cluster, job: dict[str, Any]) -> dict[str, Any]:
    """Create the driver Job as the CronJob controller does, and wait until it ended; return it."""
    code, answer = cluster.fake.handle("POST", cluster.jobs, job, "application/json")
    assert code == 201, answer
    name = job["metadata"]["name"]

    def ended() -> bool:
        current = cluster.fake.get(cluster.jobs, name) or {}
        return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                   for c in (current.get("status") or {}).get("conditions") or [])

    with cluster.fake.changed:
        assert cluster.fake.changed.wait_for(ended, timeout=WAIT), f"driver Job {name!r} did not end"
    return cluster.fake.get(cluster.jobs, name)


def _seen(cluster, pipeline_name: str, run: str, step: str) -> dict[str, Any]:
    return load_outputs(f"file://{cluster.artifacts}", pipeline_name, run, step)["output"]


def _meta(cluster, pipeline_name: str, run: str) -> dict[str, dict[str, Any]]:
    """Every step's ``meta.json`` of the run, by step folder."""
    return {path.parent.name: json.loads(path.read_text())
            for path in (cluster.artifacts / pipeline_name / "runs" / run).glob("*/meta.json")}


def _step_pods(cluster, run: str) -> list[dict[str, Any]]:
    return [p for p in cluster.controller.pods if "pipecast.runtime" in p["argv"]
            and p["env"].get(contract.RUN_ID_ENV) == run]


def _state(job: dict[str, Any]) -> dict[str, Any]:
    return json.loads(job["metadata"]["annotations"][contract.ANNOTATION_STATE])


def test_a_cronjob_run_gives_every_step_the_scheduled_time_and_a_submitted_run_none(cluster):
    """One pipeline, two runs: `pipecast submit` (no annotation: None), then the CronJob's tick in Paris time."""
    pipeline = pipelines.scheduled_time_pipeline.build()
    handle = submit_pipeline(pipeline, "kubernetes", {}, cluster.settings(timezone="Europe/Paris"),
                             cluster.config())
    handle.poll_interval = 0.2
    assert handle.wait(timeout=WAIT) is RunStatus.SUCCEEDED, handle.detail
    submitted = handle.engine_run_id
    assert contract.SCHEDULED_ANNOTATION not in cluster.fake.get(cluster.jobs, submitted)["metadata"]["annotations"]
    for step in ("seen_time", "seen_time_2"):
        assert _seen(cluster, "scheduled-time", submitted, step)["logical_time"] is None
    assert [m.get("logical_time") for m in _meta(cluster, "scheduled-time", submitted).values()] == [None, None]
    assert [p["env"][LOGICAL_TIME_VAR] for p in _step_pods(cluster, submitted)] == ["", ""]
    assert "logical_time" not in _state(cluster.fake.get(cluster.jobs, submitted))

    cronjob = _cronjob(cluster, pipeline)  # submit applied it
    assert cronjob["spec"]["timeZone"] == "Europe/Paris"
    job = job_from_cronjob(cronjob, TICK)
    run = job["metadata"]["name"]
    assert run == "scheduled-time-28935600"
    assert job["metadata"]["annotations"][contract.SCHEDULED_ANNOTATION] == "2025-01-06T05:00:00+01:00"
    driver = _fire(cluster, job)
    assert driver["status"]["succeeded"] == 1, [p["stderr"] for p in cluster.controller.pods]
    for step in ("seen_time", "seen_time_2"):
        seen = datetime.fromisoformat(_seen(cluster, "scheduled-time", run, step)["logical_time"])
        assert seen == TICK and seen.utcoffset() == timedelta(hours=1)  # the same instant, the CronJob's zone
    assert [m["logical_time"] for m in _meta(cluster, "scheduled-time", run).values()] == \
        ["2025-01-06T05:00:00+01:00"] * 2
    assert [p["env"][LOGICAL_TIME_VAR] for p in _step_pods(cluster, run)] == ["2025-01-06T05:00:00+01:00"] * 2
    state = _state(driver)
    assert state["status"] == "succeeded" and state["logical_time"] == "2025-01-06T05:00:00+01:00"
    assert driver["metadata"]["labels"][contract.LABEL_RUN] == run  # the driver labelled its CronJob-named Job


def test_a_cronjob_run_of_a_flow_pipeline_and_a_malformed_annotation(cluster):
    """The flow driver hands the tick (UTC: Go writes "Z") to every item's Job; a malformed annotation fails the
    driver Job at once (exit 2, its FailJob rule) with the reason recorded, before any step Job exists."""
    pipeline = pipelines.scheduled_map_pipeline.build()
    cronjob = _apply(cluster, pipeline)
    assert "timeZone" not in cronjob["spec"]
    job = job_from_cronjob(cronjob, TICK)
    run = job["metadata"]["name"]
    assert job["metadata"]["annotations"][contract.SCHEDULED_ANNOTATION] == "2025-01-06T04:00:00Z"
    driver = _fire(cluster, job)
    assert driver["status"]["succeeded"] == 1, [p["stderr"] for p in cluster.controller.pods]
    for index, tag in enumerate(("a", "b")):
        seen = load_outputs(f"file://{cluster.artifacts}", "scheduled-map", run, f"seen_time[{index}]")["output"]
        assert seen["tag"] == tag and datetime.fromisoformat(seen["logical_time"]) == TICK
    assert [p["env"][LOGICAL_TIME_VAR] for p in _step_pods(cluster, run)] == ["2025-01-06T04:00:00Z"] * 2
    assert _state(driver)["logical_time"] == "2025-01-06T04:00:00Z"

    broken = job_from_cronjob(cronjob, TICK + timedelta(hours=1))
    broken["metadata"]["annotations"][contract.SCHEDULED_ANNOTATION] = "Mon Jan  6 05:00:00 CET 2025"
    failed = _fire(cluster, broken)
    assert [c["reason"] for c in failed["status"]["conditions"]] == ["PodFailurePolicy"]
    (pod,) = [p for p in cluster.controller.pods if p["job"] == broken["metadata"]["name"]]
    assert pod["returncode"] == contract.EXIT_BAD_INPUT
    assert "is not an RFC 3339 time" in pod["stderr"] and "Traceback" not in pod["stderr"]
    state = _state(failed)
    assert state["status"] == "failed" and "'Mon Jan  6 05:00:00 CET 2025'" in state["detail"]
    assert not _step_pods(cluster, broken["metadata"]["name"])


@pytest.mark.parametrize("text", ["2025-01-06T05:00:00+01:00", "2025-01-06T04:00:00Z", "2025-01-06T04:00:00.5Z"])
def test_the_driver_reads_an_rfc3339_annotation_verbatim(text):
    assert scheduled_time({"metadata": {"annotations": {contract.SCHEDULED_ANNOTATION: text}}}) == text
    assert scheduled_time({"metadata": {"annotations": {"other": "x"}}}) == ""
    assert scheduled_time({"metadata": {}}) == ""


@pytest.mark.parametrize("text", ["", "2025-01-06T04:00:00", "2025-01-06 04:00:00Z", "2025-13-06T04:00:00Z",
                                  "{{ scheduledTime }}", "1736136000"])
def test_a_malformed_annotation_is_refused_not_read_as_no_time(text):
    job = {"metadata": {"name": "nightly-28935600", "annotations": {contract.SCHEDULED_ANNOTATION: text}}}
    with pytest.raises(ContextError, match="is not an RFC 3339 time") as err:
        scheduled_time(job)
    assert "nightly-28935600" in str(err.value) and contract.SCHEDULED_ANNOTATION in str(err.value)


def test_only_a_scheduled_pipeline_gets_the_variable_and_a_steps_own_value_is_kept():
    scheduled = parsed(compile_case("kubernetes", pipelines.scheduled_time_pipeline, golden=True))
    assert env_of(step_template(scheduled, "seen_time"))[LOGICAL_TIME_VAR] == {"name": LOGICAL_TIME_VAR,
                                                                                "value": ""}
    plain = parsed(compile_case("kubernetes", "diamond_after", golden=True))
    assert all(LOGICAL_TIME_VAR not in env_of(s["template"]) for s in plain["plan"]["steps"])
    driver = Driver(scheduled["plan"], {}, "scheduled-time-28935600", api=None)
    driver.owner = {"apiVersion": "batch/v1", "kind": "Job", "name": driver.run_id, "uid": "u-1"}
    driver.logical_time = "2025-01-06T05:00:00+01:00"
    assert env_of(driver.job_manifest(driver.steps["seen_time"]))[LOGICAL_TIME_VAR]["value"] == driver.logical_time

    fixed = parsed(compile_case("kubernetes", pipelines.fixed_time_pipeline, golden=True))
    names = [e["name"] for e in container(step_template(fixed, "fixed_time"))["env"]]
    assert names.count(LOGICAL_TIME_VAR) == 1
    driver = Driver(fixed["plan"], {}, "fixed-time-28935600", api=None)
    driver.owner = {"apiVersion": "batch/v1", "kind": "Job", "name": driver.run_id, "uid": "u-1"}
    driver.logical_time = "2025-01-06T04:00:00Z"
    assert env_of(driver.job_manifest(driver.steps["fixed_time"]))[LOGICAL_TIME_VAR]["value"] == \
        "2020-01-01T00:00:00Z"


def test_a_scheduled_pipeline_submitted_to_a_cluster_older_than_1_28_warns_that_its_runs_have_no_time(kube):
    """The CronJob controller writes the annotation from 1.28 on (feature gate CronJobsScheduledAnnotation)."""
    config = {"kubeconfig": kube.kubeconfig}
    kube.git_version = "v1.27.16"
    with pytest.warns(EngineVersionWarning, match=r"is version v1\.27\.16: before 1\.28 .*logical_time as None"):
        submit_pipeline(pipelines.scheduled_time_pipeline.build(), "kubernetes", {}, golden_settings("kubernetes"),
                        config)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineVersionWarning)
        submit_pipeline(case("diamond_after").build(), "kubernetes", {}, golden_settings("kubernetes"), config)
        kube.git_version = "v1.28.0"
        submit_pipeline(pipelines.scheduled_time_pipeline.build(), "kubernetes", {}, golden_settings("kubernetes"),
                        config)
