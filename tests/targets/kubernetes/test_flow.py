"""Control flow on the kubernetes target: the driver runs maps, conditions and exit handlers as one Job per item.

The manifests validate strictly (the item Jobs the driver creates too), and the example pipeline (a map over the
learning rates with a bound of 2, a condition with an else branch, an exit handler reading the group's status)
runs through the fake API server's Job controller with every instance's outputs equal to ``pipecast run``'s.
"""

from __future__ import annotations

import json
from dataclasses import replace

import kubernetes_validate
import pytest

from pipecast.compiler import ir
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.targets.kubernetes import contract
from pipecast.targets.kubernetes.flow_driver import FlowDriver, instance_job
from tests.helpers.cases import CONTROL_FLOW_CASES, compile_case, golden_settings
from tests.targets.kubernetes.test_emit import K8S_VERSION, parsed

FLOW_IDS = [c.name for c in CONTROL_FLOW_CASES]
PARAMETERS = {"rates": [0.01, 0.5, 2.0], "threshold": 0.8, "samples": 120, "epochs": 10}


def test_item_jobs_are_named_and_labelled_by_index():
    assert instance_job("run-1", "train-model", "train_model") == ("run-1-train-model", "")
    assert instance_job("run-1", "train-model", "train_model[2]") == ("run-1-train-model-2", "2")
    assert instance_job("run-1", "add", "add[1][0]") == ("run-1-add-1-0", "1-0")


@pytest.mark.parametrize("golden_case", CONTROL_FLOW_CASES, ids=FLOW_IDS)
def test_control_flow_manifests_and_item_jobs_validate_in_strict_mode(golden_case):
    from pipecast.runtime.command import invocation_for

    emitted = parsed(compile_case("kubernetes", golden_case, golden=True))
    for document in [*emitted["documents"], emitted["driver"]]:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    pipeline = golden_case.build()
    defaults = {p.name: p.default for p in pipeline.parameters}
    root = golden_settings("kubernetes")["artifact_root"]
    # The plan carries only what the driver reads (issue 19): the scheduler's view and every invocation are the
    # full IR's, and what it leaves out (inputs, descriptions, the steps' images and env) is not in it.
    driven = ir.Pipeline.from_json(json.dumps(emitted["plan"]["flow"]["ir"]))
    assert (driven.name, driven.groups, driven.parallelism) == (pipeline.name, pipeline.groups, pipeline.parallelism)
    for step, kept in zip(pipeline.steps, driven.steps, strict=True):
        assert (kept.name, kept.bindings, kept.upstream(), kept.group, kept.trigger, kept.retry) == \
            (step.name, step.bindings, step.upstream(), step.group, step.trigger, step.retry)
        assert invocation_for(driven, kept, "run-1", root, defaults) == \
            invocation_for(pipeline, step, "run-1", root, defaults)
    assert len(json.dumps(emitted["plan"]["flow"]["ir"])) < len(pipeline.to_json()) / 2
    assert not {"inputs", "description", "env", "resources"} & {k for s in emitted["plan"]["flow"]["ir"]["steps"]
                                                                 for k in s}
    driver = FlowDriver(emitted["plan"], defaults, "run-1", api=None)
    driver.owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "run-1", "uid": "u-1"}
    for step in driven.steps:
        invocation = invocation_for(driven, step, "run-1", root, defaults)
        name = f"{step.name}[1]"
        job_name, item = instance_job("run-1", driver.plan_jobs[step.name], name)
        run = replace(driver.steps[step.name], name=name, job=job_name)
        job = driver.instance_manifest(run, invocation, item)
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
        assert job["metadata"]["labels"][contract.LABEL_ITEM] == "1"
        assert job["metadata"]["annotations"][contract.ANNOTATION_STEP] == name


def _local(pipeline, root):
    run = run_pipeline(pipeline, PARAMETERS, artifact_root=f"file://{root}", cache=False)
    return run, {n: s.status for n, s in run.steps.items()}


def test_map_condition_and_exit_handler_run_as_jobs_with_local_results(cluster, tmp_path):
    from tests.helpers.cases import case

    pipeline = case("hyperparameter_search").build()
    handle = submit_pipeline(pipeline, "kubernetes", PARAMETERS, cluster.settings(max_parallel=8), cluster.config())
    handle.poll_interval = 0.2
    status = handle.wait(timeout=600)
    driver = next(p for p in cluster.controller.pods if contract.DRIVER_MODULE in p["argv"])
    assert status is RunStatus.SUCCEEDED, (handle.detail, driver["stdout"], driver["stderr"])

    # Every instance ran or was skipped as the local run's did, and those that ran stored the same outputs.
    local, local_status = _local(pipeline, tmp_path / "local")
    state = json.loads(cluster.fake.get(cluster.jobs, handle.engine_run_id)["metadata"]["annotations"][
        contract.ANNOTATION_STATE])
    ran = {"done": "succeeded", "cached": "succeeded"}
    assert {n: v["status"] for n, v in state["steps"].items()} == {n: ran.get(s, s) for n, s in local_status.items()}
    instances = [n for n, s in local_status.items() if s in ran and local.steps[n].items is None]
    for name in instances:
        assert load_outputs(f"file://{cluster.artifacts}", pipeline.name, handle.engine_run_id, name) == \
            load_outputs(local.artifact_root, pipeline.name, local.id, name), name
    skipped = [n for n, s in local_status.items() if s == "skipped"]
    assert len(skipped) == 1 and "branch" in state["steps"][skipped[0]]["detail"]
    assert state["steps"]["train_model"]["items"] == 3

    # One Job per item, named by index and selectable by step and item; each created only when its step ran.
    created = [r["body"] for r in cluster.fake.requests_to("POST", cluster.jobs)][1:]
    items = [j for j in created if j["metadata"]["labels"][contract.LABEL_STEP] == "train-model"]
    assert [j["metadata"]["labels"][contract.LABEL_ITEM] for j in sorted(items, key=lambda j: j["metadata"]["name"])] \
        == ["0", "1", "2"]
    assert sorted(j["metadata"]["annotations"][contract.ANNOTATION_STEP] for j in items) == \
        ["train_model[0]", "train_model[1]", "train_model[2]"]
    assert sorted(j["metadata"]["annotations"][contract.ANNOTATION_STEP] for j in created) == sorted(instances)

    # The map's bound (2) held: never three train_model pods at once (from the pods' recorded start and end).
    pods = [p for p in cluster.controller.pods if "--step" in p["argv"]
            and p["argv"][p["argv"].index("--step") + 1].startswith("train_model[")]
    assert len(pods) == 3
    for pod in pods:
        overlapping = [q for q in pods if q["started"] <= pod["started"] < (q["ended"] or float("inf"))]
        assert len(overlapping) <= 2
    # The exit handler got the group's final status.
    report = load_outputs(f"file://{cluster.artifacts}", pipeline.name, handle.engine_run_id, "report")
    assert report == {"output": "search succeeded"}


def test_a_failed_item_reaches_the_exit_handler_and_hook_and_a_replaced_driver_finishes_the_run(cluster, tmp_path):
    """One run proves two things. The API server refuses the driver's first state record (403): the driver exits 3
    and the next driver pod re-creates the same item Job names, adopting (409) those that exist. Item 1 fails:
    the step after the map and the branch are skipped, the exit handler and the on_failure hook run as Jobs with
    the final status, the run fails, and everything equals the local run's."""
    from tests.targets.kubernetes.pipelines import flow_failure_pipeline

    cluster.fake.refuse("PATCH", r"/jobs/[^/]+$", 403, "Forbidden")
    pipeline = flow_failure_pipeline.build()
    handle = submit_pipeline(pipeline, "kubernetes", {}, cluster.settings(max_parallel=8), cluster.config())
    handle.poll_interval = 0.2
    assert handle.wait(timeout=600) is RunStatus.FAILED
    drivers = [p for p in cluster.controller.pods if contract.DRIVER_MODULE in p["argv"]]
    assert [d["returncode"] for d in drivers] == [contract.EXIT_INFRASTRUCTURE, contract.EXIT_PIPELINE_FAILED]
    assert "403" in drivers[0]["stderr"] and "new driver pod" in drivers[0]["stderr"]

    local = run_pipeline(pipeline, {}, artifact_root=f"file://{tmp_path}/local", cache=False, raise_on_failure=False)
    state = json.loads(cluster.fake.get(cluster.jobs, handle.engine_run_id)["metadata"]["annotations"][
        contract.ANNOTATION_STATE])
    ran = {"done": "succeeded", "cached": "succeeded"}
    assert {n: v["status"] for n, v in state["steps"].items()} == {n: ran.get(s.status, s.status)
                                                                  for n, s in local.steps.items()}
    assert state["status"] == "failed" and "ten_over" in state["detail"]
    outputs = {n: load_outputs(f"file://{cluster.artifacts}", pipeline.name, handle.engine_run_id, n)
               for n in ("ten_over[0]", "summary", "alert")}
    assert outputs["ten_over[0]"] == local.step_outputs("ten_over[0]") == {"output": 10.0}
    assert outputs["alert"] == local.step_outputs("alert") == {"output": "alert: failed ['ten_over[1]']"}
    status = outputs["summary"]["output"]
    assert {k: status[k] for k in ("status", "failed_steps")} == {"status": "failed", "failed_steps": ["ten_over[1]"]}
    assert "BackoffLimitExceeded" in status["error"]  # the Job's Failed condition, as the driver saw it

    # Every Job ran one pod: the second driver adopted the Jobs the first created instead of running them again.
    step_pods = [p for p in cluster.controller.pods if "pipecast.runtime" in p["argv"]]
    jobs = [p["job"] for p in step_pods]
    assert sorted(jobs) == sorted(set(jobs))
    assert sorted(p["argv"][p["argv"].index("--step") + 1] for p in step_pods) == [
        "alert", "summary", "ten_over[0]", "ten_over[1]"]


def test_cancel_deletes_the_item_jobs_with_the_driver(cluster):
    """``pipecast runs cancel`` deletes the driver Job and the run's step Jobs by label: item Jobs carry it too."""
    import time

    from click.testing import CliRunner

    from pipecast.cli import main as cli
    from pipecast.runs.tracking import track
    from tests.targets.kubernetes.pipelines import sleepy_map_pipeline

    handle = submit_pipeline(sleepy_map_pipeline.build(), "kubernetes", {}, cluster.settings(), cluster.config())
    deadline = time.monotonic() + 120
    while len([p for p in cluster.controller.pods if "pipecast.runtime" in p["argv"]]) < 2:
        assert time.monotonic() < deadline, "the items never started"
        time.sleep(0.05)
    items = [j for j in cluster.fake.items(cluster.jobs) if contract.LABEL_ITEM in j["metadata"]["labels"]]
    assert sorted(j["metadata"]["labels"][contract.LABEL_ITEM] for j in items) == ["0", "1"]
    result = CliRunner().invoke(cli, ["runs", "cancel", handle.run_id, "-c", f"kubeconfig={cluster.kubeconfig}"])
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 60
    while any(p["returncode"] is None for p in cluster.controller.pods):
        assert time.monotonic() < deadline, "a pod kept running after cancel"
        time.sleep(0.05)
    assert {p["returncode"] for p in cluster.controller.pods} == {"deleted"}
    assert cluster.fake.items(cluster.jobs) == []
    assert track(handle.run_id, cluster.config()).status() is RunStatus.CANCELLED


def test_an_unexpected_error_in_an_item_thread_ends_the_driver_not_the_step():
    """Whatever breaks while the driver follows an instance is the driver's failure (exit 3 in ``main``, so a new
    driver pod carries on), never the step's verdict (exit 1)."""
    from pipecast.errors import PipecastError
    from tests.helpers.cases import case

    golden = case("hyperparameter_search")
    plan = parsed(compile_case("kubernetes", golden, golden=True))["plan"]
    patches = []

    class Api:  # answers the driver's own calls; creating a Job breaks with an error no API call raises
        namespace = "pipelines"

        def get(self, kind, name):
            return {"metadata": {"uid": "u-1", "labels": {contract.LABEL_RUN: "run-1"}}}

        def patch(self, kind, name, body):
            patches.append(body)
            return {}

        def create(self, body):
            raise KeyError("boom")

    pipeline = golden.build()
    driver = FlowDriver(plan, {p.name: p.default for p in pipeline.parameters}, "run-1", Api(), log=lambda _: None)
    with pytest.raises(PipecastError, match="the driver broke: KeyError"):
        driver.run()
    assert driver.run_.steps["make_dataset"].status == "cancelled"
    assert all(json.loads(p["metadata"]["annotations"][contract.ANNOTATION_STATE])["status"] == "running"
               for p in patches)


def test_a_one_of_and_an_exit_handler_inside_a_map_are_decided_per_item_as_pipecast_run_does(cluster, tmp_path):
    from tests.targets.kubernetes.pipelines import item_one_of_pipeline

    pipeline = item_one_of_pipeline.build()
    handle = submit_pipeline(pipeline, "kubernetes", {}, cluster.settings(max_parallel=8), cluster.config())
    handle.poll_interval = 0.2
    assert handle.wait(timeout=600) is RunStatus.SUCCEEDED, handle.detail
    local = run_pipeline(pipeline, {}, artifact_root=f"file://{tmp_path}/local", cache=False)
    state = json.loads(cluster.fake.get(cluster.jobs, handle.engine_run_id)["metadata"]["annotations"][
        contract.ANNOTATION_STATE])
    ran = {"done": "succeeded", "cached": "succeeded"}
    assert {n: v["status"] for n, v in state["steps"].items()} == {n: ran.get(s.status, s.status)
                                                                  for n, s in local.steps.items()}
    for name in [n for n, s in local.steps.items() if s.status in ran and s.items is None]:
        assert load_outputs(f"file://{cluster.artifacts}", pipeline.name, handle.engine_run_id, name) == \
            local.step_outputs(name), name
    assert [local.step_outputs(f"same_2[{i}]") for i in range(4)] == [{"output": v} for v in (1, 105, 2, 107)]
    assert local.step_outputs("total") == {"output": 215}
    assert local.step_outputs("summary[1]")["output"]["status"] == "succeeded"
