"""Submit, status, cancel and reconnect against SkyPilot's client API with its client functions replaced.

No SkyPilot API server or cloud account is reachable here. ``in_sky_submit.py`` runs in SkyPilot's own
interpreter, replaces only the functions that would talk to the API server (``sky.launch``,
``sky.jobs.launch``, ``sky.stream_and_get``, ``sky.get``, ``sky.job_status``, ``sky.cancel``,
``sky.jobs.queue_v2``, ``sky.jobs.cancel``) and lets everything else run for real: SkyPilot's YAML
loader, ``sky.Task``/``sky.Dag``, pipecast's ``submit_pipeline``, run store and handles. These tests check
the calls made and how the answers are read; they cannot show that a real API server accepts them.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from pipecast.build.images import cached_pipecast_wheel
from pipecast.targets.skypilot.code import remote_wheel
from tests.targets.skypilot.sky_venv import run_sky

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def observed(sky_interpreter, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sky-submit")
    run_sky(sky_interpreter, HERE / "in_sky_submit.py", str(folder / "out.json"), home=folder,
            env={"PIPECAST_HOME": str(folder / "pipecast-home"), "PIPECAST_TEST_WHEEL": str(cached_pipecast_wheel())})
    return json.loads((folder / "out.json").read_text(encoding="utf-8"))


def test_one_task_is_launched_on_a_cluster_with_the_run_parameters(observed):
    launch, stream = observed["cluster"]["launched"]
    assert launch["call"] == "sky.launch" and stream == {"call": "sky.stream_and_get",
                                                         "request_id": "request-1-sky.launch"}
    cluster = launch["cluster_name"]
    assert cluster.startswith("pipecast-quickstart-") and len(cluster) <= 35
    assert launch["kwargs"] == {"down": True, "idle_minutes_to_autostop": 10, "retry_until_up": False}
    task = launch["task"]
    assert task["name"] == "quickstart" and task["resources"] == "AWS()"
    assert task["envs"] == {"n": "20", "seed": "7", "label": "twenty",
                            "PIPECAST_ARTIFACT_ROOT": "s3://bucket/pipecast"}
    # The wheel of this pipecast rides along as a SkyPilot file mount where setup looks for it.
    assert task["file_mounts"] == {remote_wheel(): str(cached_pipecast_wheel())}
    assert observed["cluster"]["engine_run_id"] == f"cluster/{cluster}/1"
    assert observed["cluster"]["url"] == f"http://127.0.0.1:46580/dashboard/clusters/{cluster}"
    assert observed["cluster"]["stored"]["metadata"] == {
        "skypilot_cluster": cluster, "skypilot_job_id": 1, "skypilot_mode": "cluster",
        "skypilot_tasks": ["quickstart"]}


def test_cluster_job_status_cancel_and_teardown(observed):
    cluster = observed["cluster"]
    assert cluster["statuses"] == ["running", "succeeded", "failed"]
    assert "no longer exists" in cluster["gone"] and "mode=jobs" in cluster["gone"]
    call, get = cluster["cancel"]
    assert call["call"] == "sky.cancel" and call["job_ids"] == [1] and get["call"] == "sky.get"


def test_several_tasks_are_one_managed_job_chain(observed):
    launch = observed["jobs"]["launched"][0]
    assert launch["call"] == "sky.jobs.launch" and launch["name"] == "ml_training" and launch["is_chain"]
    names = ["make_dataset", "split_data", "train_model", "evaluate"]
    assert [t["name"] for t in launch["tasks"]] == names
    assert launch["edges"] == [list(pair) for pair in itertools.pairwise(names)]
    assert all(t["envs"]["epochs"] == "5" and t["envs"]["samples"] == "200" for t in launch["tasks"])
    assert all(t["file_mounts"] == {remote_wheel(): str(cached_pipecast_wheel())} for t in launch["tasks"])
    assert launch["tasks"][2]["resources"] == "GCP(cpus=2+, mem=1+, image_id=docker:ghcr.io/acme/pipecast-ml:1.0)"
    assert observed["jobs"]["engine_run_id"] == "jobs/7"
    assert observed["jobs"]["url"] == "http://127.0.0.1:46580/dashboard/jobs/7"


def test_managed_job_status_follows_the_tasks(observed):
    assert observed["jobs"]["observed"] == [
        ["pending", "task 'make_dataset': PENDING"],
        ["running", "task 'split_data': RUNNING"],
        ["running", "task 'train_model': PENDING"],  # between two tasks: the pipeline is still running
        ["failed", "task 'train_model': FAILED (exit code 1)"],
        ["succeeded", ""],
        ["unknown", "managed job 7 is not in SkyPilot's jobs queue"],
    ]
    assert observed["jobs"]["queue_call"]["kwargs"]["job_ids"] == [7]


def test_cancel_after_reconnecting_from_the_run_store(observed):
    call, get = observed["jobs"]["cancel"]
    assert call == {"call": "sky.jobs.cancel", "kwargs": {"job_ids": [7]}} and get["call"] == "sky.get"


def test_each_task_gets_only_its_own_secrets_and_no_value_is_stored(observed):
    secrets = observed["secrets"]
    tasks = {t["name"]: t for t in secrets["launched"][0]["tasks"]}
    digests = secrets["digests"]
    assert tasks["load"]["secrets"] == {"API_TOKEN": digests["API_TOKEN"], "DB_PASSWORD": digests["DB_PASSWORD"]}
    assert tasks["train"]["secrets"] == {"API_TOKEN": digests["API_TOKEN"]}
    assert not secrets["values_in_store"]


def test_refusals_are_submit_errors_with_a_fix(observed):
    messages = observed["refusals"]["messages"]
    assert "mode=jobs" in messages["cluster_with_many_tasks"] and "4 tasks" in messages["cluster_with_many_tasks"]
    assert "'zone'" in messages["unknown_config"]
    assert "idle_minutes=-1" in messages["bad_idle"]
    assert "ResourcesUnavailableError: no T4 in us-east-1" in messages["unavailable"]
    assert observed["refusals"]["last_run_status"] == "failed"


def test_a_broken_launch_stream_is_resolved_by_asking_the_api_server(observed):
    """The run is never recorded as failed while SkyPilot runs it: its result is read with sky.get."""
    again = observed["lost"]["read_again"]
    assert again["calls"] == ["sky.launch", "sky.stream_and_get", "sky.get"]
    assert again["engine_run_id"].endswith("/1") and again["stored"]["status"] == "pending"
    later = observed["lost"]["later"]
    cluster = later["engine_run_id"].split("/")[1]
    assert later["engine_run_id"] == f"cluster/{cluster}/request/request-1-sky.launch"
    assert later["stored"]["status"] == "pending" and later["stored"]["engine_run_id"] == later["engine_run_id"]
    assert later["status"] == "succeeded"  # reconnected from the run store: the request's result, then the job
    assert later["resolved"]["engine_run_id"] == f"cluster/{cluster}/3"
    assert later["resolved"]["metadata"]["skypilot_job_id"] == 3


def test_dashboard_url_never_carries_credentials(observed):
    assert observed["url"] == {"jobs": "https://sky.example.test:8443/dashboard/jobs/7",
                               "clusters": "https://sky.example.test:8443/dashboard/clusters/c-1"}
