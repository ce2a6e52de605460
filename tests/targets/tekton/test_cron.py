"""``pipecast.context().logical_time`` on Tekton: the schedule's creator pod reads its own Job's tick.

The fake API server has no CronJob controller, so the test plays it as the kubernetes target's test does
(:func:`tests.targets.kubernetes.test_logical_time.job_from_cronjob`, after ``getJobFromTemplate2``), runs the
creator entry against the fake API, then replays the PipelineRun it created (Tekton's substitutions, as the other
replay tests): every step reads the tick. A run made without the creator keeps the param's default ``""``: None.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import yaml

from pipecast import pipeline
from pipecast.errors import UnsupportedFeatureError
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.executor import load_outputs
from pipecast.targets import tekton_cron
from pipecast.targets.kubernetes import contract
from tests.helpers.cases import compile_case
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.kubernetes import pipelines
from tests.targets.kubernetes.test_logical_time import TICK, job_from_cronjob
from tests.targets.tekton.support import of_kind, replay, task_invocations

NAMESPACE = "ml"
JOBS = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
RUNS = f"/apis/tekton.dev/v1/namespaces/{NAMESPACE}/pipelineruns"
STEPS = ("seen_time", "seen_time_2")


def _compiled(timezone: str | None) -> tuple[dict[str, str], dict[str, Any], str]:
    """The files, the CronJob (as the API server stores it) and the PipelineRun YAML its ConfigMap holds."""
    settings = {"artifact_root": REPLAY_STORE, **({"timezone": timezone} if timezone else {})}
    files = compile_case("tekton", pipelines.scheduled_time_pipeline, golden=True, settings=settings).files
    (cronjob,) = of_kind(files, "CronJob")
    cronjob["metadata"].update(namespace=NAMESPACE, uid="u-cron")
    (config_map,) = of_kind(files, "ConfigMap")
    return files, cronjob, config_map["data"]["pipelinerun.yaml"]


def _create(kube, tmp_path, monkeypatch, job: dict[str, Any], run_yaml: str, capsys) -> tuple[int, str]:
    """Store the Job as the CronJob controller would, then run the creator entry as its pod does."""
    code, answer = kube.handle("POST", JOBS, job, "application/json")
    assert code == 201, answer
    path = tmp_path / "pipelinerun.yaml"
    path.write_text(run_yaml)
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig)
    monkeypatch.setenv(tekton_cron.JOB_NAME_ENV, job["metadata"]["name"])  # the downward API's label
    status = tekton_cron.main(["--run", str(path), "--namespace", NAMESPACE])
    return status, capsys.readouterr().err


def _seen(root, run: str) -> list[str | None]:
    return [load_outputs(f"file://{root}", "scheduled-time", run, step)["output"]["logical_time"] for step in STEPS]


def test_the_creator_gives_the_pipelinerun_the_tick_and_every_step_reads_it(kube, tmp_path, monkeypatch, capsys):
    files, cronjob, run_yaml = _compiled("Europe/Paris")
    job = job_from_cronjob(cronjob, TICK)
    name = job["metadata"]["name"]
    status, err = _create(kube, tmp_path, monkeypatch, job, run_yaml, capsys)
    assert status == 0, err
    created = kube.get(RUNS, name)
    assert created is not None and created["metadata"]["labels"] == yaml.safe_load(run_yaml)["metadata"]["labels"]
    assert {"name": tekton_cron.LOGICAL_TIME_PARAM, "value": "2025-01-06T05:00:00+01:00"} in created["spec"]["params"]
    assert [r["path"] for r in kube.requests_to("GET")] == [f"{JOBS}/{name}"]  # the Role's get on its own Job

    # A retried pod of the same Job finds its run made (409) and makes no second one.
    status, err = _create_again(kube, tmp_path, monkeypatch, name, capsys)
    assert status == 0, err
    assert len(kube.items(RUNS)) == 1

    root = tmp_path / "artifacts"
    replay({**files, "scheduled-time-pipelinerun.yaml": yaml.safe_dump(created)}, name, store=root)
    seen = [datetime.fromisoformat(text or "") for text in _seen(root, name)]
    assert seen == [TICK, TICK] and all(s.utcoffset() == timedelta(hours=1) for s in seen)

    # `pipecast submit` or kubectl creates the emitted PipelineRun: the param keeps the Pipeline's default "".
    replay(files, "scheduled-time-submitted", store=root)
    assert _seen(root, "scheduled-time-submitted") == [None, None]


def _create_again(kube, tmp_path, monkeypatch, name: str, capsys) -> tuple[int, str]:
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig)
    monkeypatch.setenv(tekton_cron.JOB_NAME_ENV, name)
    status = tekton_cron.main(["--run", str(tmp_path / "pipelinerun.yaml"), "--namespace", NAMESPACE])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("text", ["Mon Jan  6 05:00:00 CET 2025", "2025-01-06T04:00:00", "{{ scheduledTime }}"])
def test_a_malformed_annotation_fails_with_exit_2_and_creates_no_run(kube, tmp_path, monkeypatch, capsys, text):
    _, cronjob, run_yaml = _compiled(None)
    job = job_from_cronjob(cronjob, TICK)
    job["metadata"]["annotations"][contract.SCHEDULED_ANNOTATION] = text
    status, err = _create(kube, tmp_path, monkeypatch, job, run_yaml, capsys)
    assert status == contract.EXIT_BAD_INPUT
    assert err.startswith("pipecast tekton cron: ") and "is not an RFC 3339 time" in err and repr(text) in err
    assert "Traceback" not in err and "no PipelineRun was created" in err and job["metadata"]["name"] in err
    assert kube.items(RUNS) == [] and kube.requests_to("POST", "pipelineruns") == []


def test_a_job_made_by_hand_creates_a_run_with_no_time(kube, tmp_path, monkeypatch, capsys):
    """`kubectl create job --from=cronjob/NAME` copies the template without the annotation."""
    _, cronjob, run_yaml = _compiled(None)
    job = job_from_cronjob(cronjob, TICK)
    del job["metadata"]["annotations"][contract.SCHEDULED_ANNOTATION]
    job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] = "manual"
    status, err = _create(kube, tmp_path, monkeypatch, job, run_yaml, capsys)
    assert status == 0, err
    (created,) = kube.items(RUNS)
    assert {"name": tekton_cron.LOGICAL_TIME_PARAM, "value": ""} in created["spec"]["params"]


def test_without_its_job_name_the_creator_refuses(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(tekton_cron.JOB_NAME_ENV, raising=False)
    assert tekton_cron.main(["--run", str(tmp_path / "none.yaml"), "--namespace", NAMESPACE]) == 2
    assert "this pod's Job is unknown" in capsys.readouterr().err


def test_only_a_scheduled_pipeline_gets_the_param():
    files = compile_case("tekton", "diamond_after", golden=True).files
    assert tekton_cron.LOGICAL_TIME_PARAM not in "".join(files.values())


def test_every_item_of_a_map_reads_the_tick_and_a_steps_own_value_is_kept(tmp_path):
    """The map's matrix task passes the param on to each item; the creator's run, replayed as Tekton schedules it."""
    from tests.targets.tekton.flow_replay import replay_flow

    files = compile_case("tekton", pipelines.scheduled_map_pipeline, golden=True,
                         settings={"artifact_root": REPLAY_STORE}).files
    (stored,) = of_kind(files, "PipelineRun")
    (cronjob,) = of_kind(files, "CronJob")
    cronjob["metadata"].update(namespace=NAMESPACE, uid="u-cron")
    job = job_from_cronjob(cronjob, TICK)
    run = tekton_cron.scheduled_run(stored, job)
    name = run["metadata"]["name"]
    root = tmp_path / "artifacts"
    replay_flow({**files, "scheduled-map-pipelinerun.yaml": yaml.safe_dump(run)}, name, store=root,
                work=tmp_path / "work")
    for index, tag in enumerate(("a", "b")):
        seen = load_outputs(f"file://{root}", "scheduled-map", name, f"seen_time[{index}]")["output"]
        assert seen["tag"] == tag and seen["logical_time"] == "2025-01-06T04:00:00+00:00"

    fixed = compile_case("tekton", pipelines.fixed_time_pipeline, golden=True).files
    (task,) = of_kind(fixed, "Pipeline")[0]["spec"]["tasks"]
    assert tekton_cron.LOGICAL_TIME_PARAM not in [p["name"] for p in task["params"]]  # the step keeps its own
    ((_, _, env),) = task_invocations(fixed, "fixed-time-run", {tekton_cron.LOGICAL_TIME_PARAM: "2025-01-06T04:00:00Z"})
    assert env[LOGICAL_TIME_VAR] == "2020-01-01T00:00:00Z"


@pipeline(name="own-param", schedule="@daily")
def _own_param(pipecast_logical_time: str = "x"):
    pipelines.seen_time(pipecast_logical_time)


def test_a_parameter_of_the_reserved_name_is_refused():
    with pytest.raises(UnsupportedFeatureError, match="'pipecast_logical_time' is the name pipecast gives"):
        compile_case("tekton", _own_param, golden=True)


def test_an_api_server_that_never_answers_exits_3_so_kubernetes_tries_a_new_pod(tmp_path, monkeypatch, capsys):
    # Exit 2 would fail the Job at once (its podFailurePolicy): an outage must not cost the tick.
    from pipecast.targets.kube import client
    from tests.helpers.docker_engine import free_port

    port = free_port()  # nothing listens there: every try is refused
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    (tmp_path / "pipelinerun.yaml").write_text(_compiled(None)[2])
    monkeypatch.setattr(client, "RETRY_DELAY", 0.0)
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setenv(tekton_cron.JOB_NAME_ENV, "scheduled-time-28935600")
    assert tekton_cron.main(["--run", str(tmp_path / "pipelinerun.yaml"), "--namespace", NAMESPACE]) == 3
    error = capsys.readouterr().err
    assert "cannot read Job 'scheduled-time-28935600'" in error and "no answer from the Kubernetes API server" in error
