"""The fake Kubernetes API answers the real ``kubernetes`` client as the API server does."""

from __future__ import annotations

import time

import pytest

from tests.helpers.fake_kube import FakeKube


@pytest.fixture
def kube(tmp_path):
    from kubernetes import client, config

    with FakeKube() as fake:
        api_client = config.new_client_from_config(config_file=str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        yield fake, client, api_client


def test_custom_objects_create_get_patch_delete(kube):
    fake, client, api_client = kube
    api = client.CustomObjectsApi(api_client)
    body = {"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "run-1"}, "spec": {}}
    created = api.create_namespaced_custom_object("tekton.dev", "v1", "ml", "pipelineruns", body)
    assert created["metadata"]["namespace"] == "ml" and created["metadata"]["uid"]
    with pytest.raises(client.ApiException) as err:
        api.create_namespaced_custom_object("tekton.dev", "v1", "ml", "pipelineruns", body)
    assert err.value.status == 409
    api.patch_namespaced_custom_object("tekton.dev", "v1", "ml", "pipelineruns", "run-1",
                                       {"spec": {"status": "Cancelled"}})
    got = api.get_namespaced_custom_object("tekton.dev", "v1", "ml", "pipelineruns", "run-1")
    assert got["spec"] == {"status": "Cancelled"}
    api.delete_namespaced_custom_object("tekton.dev", "v1", "ml", "pipelineruns", "run-1")
    with pytest.raises(client.ApiException) as missing:
        api.get_namespaced_custom_object("tekton.dev", "v1", "ml", "pipelineruns", "run-1")
    assert missing.value.status == 404
    assert [r["method"] for r in fake.requests] == ["POST", "POST", "PATCH", "GET", "DELETE", "GET"]


def test_create_hook_moves_a_job_status(kube):
    fake, client, api_client = kube

    def controller(server, job):
        server.set_status("/apis/batch/v1/namespaces/default/jobs", job["metadata"]["name"],
                          {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})

    fake.on_create("jobs", controller)
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job("default", {"apiVersion": "batch/v1", "kind": "Job",
                                            "metadata": {"name": "j", "labels": {"app": "x"}},
                                            "spec": {"template": {"spec": {"containers": [],
                                                                           "restartPolicy": "Never"}}}})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = batch.read_namespaced_job("j", "default")
        if job.status and job.status.succeeded:
            break
        time.sleep(0.05)
    assert job.status.conditions[0].type == "Complete"
    assert [j.metadata.name for j in batch.list_namespaced_job("default", label_selector="app=x").items] == ["j"]
    assert batch.list_namespaced_job("default", label_selector="app=y").items == []
