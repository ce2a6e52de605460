"""A local artifact root on Tekton: refused, unless an 'artifacts' workspace (a PVC) is mounted at it in every task.

Checked against the strict Tekton v1 CRD schemas (tests/schemas/tekton), and replayed: every task's command,
run here in order, reads and writes the root's path, which stands for the one volume every task pod mounts.
"""

from __future__ import annotations

import pytest

from pipecast import Retry, pipeline, step
from pipecast.errors import UnsupportedFeatureError
from tests.helpers.cases import case, compile_case
from tests.helpers.replay import assert_same_outputs, run_task
from tests.targets.tekton.support import documents, inlined, of_kind, schema_errors, task_invocations

BASE = {"gpu_node_label": "gke"}


@pytest.mark.parametrize("embed", [False, True], ids=["pipeline", "embedded"])
def test_an_existing_claim_is_mounted_at_the_artifact_root_in_every_task(embed):
    files = compile_case("tekton", "diamond_after", golden=True, settings={
        "artifact_root": "file:///mnt/artifacts", "artifact_pvc": "shared-artifacts", "embed": embed}).files
    (run,) = of_kind(files, "PipelineRun")
    spec = run["spec"]["pipelineSpec"] if embed else of_kind(files, "Pipeline")[0]["spec"]
    assert spec["workspaces"] == [{"name": "artifacts", "description": "the artifact root, mounted at /mnt/artifacts"}]
    assert all(task["workspaces"] == [{"name": "artifacts", "workspace": "artifacts"}] for task in spec["tasks"])
    for task in inlined(files).values():
        assert task["taskSpec"]["workspaces"] == [{"name": "artifacts", "mountPath": "/mnt/artifacts"}]
        args = task["taskSpec"]["steps"][0]["args"]
        assert args[args.index("--artifact-root") + 1] == "file:///mnt/artifacts"
    assert run["spec"]["workspaces"] == [{"name": "artifacts",
                                          "persistentVolumeClaim": {"claimName": "shared-artifacts"}}]
    for doc in documents(files):
        assert schema_errors(doc) == []


def test_a_claim_per_run_comes_from_a_volume_claim_template():
    files = compile_case("tekton", "quickstart", golden=True, settings={
        "artifact_root": "file:///artifacts", "artifact_volume_size": "20Gi",
        "artifact_storage_class": "fast-rwx", "artifact_access_mode": "ReadWriteMany"}).files
    (run,) = of_kind(files, "PipelineRun")
    assert run["spec"]["workspaces"] == [{"name": "artifacts", "volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "20Gi"}},
        "storageClassName": "fast-rwx"}}}]
    default = compile_case("tekton", "quickstart", golden=True, settings={
        "artifact_root": "file:///artifacts", "artifact_volume_size": "5Gi"}).files
    (run,) = of_kind(default, "PipelineRun")
    assert run["spec"]["workspaces"][0]["volumeClaimTemplate"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    for doc in [*of_kind(files, "PipelineRun"), *of_kind(files, "Pipeline"), run]:
        assert schema_errors(doc) == []


@pytest.mark.parametrize(("settings", "message"), [
    ({"artifact_root": "file:///data"}, "is a path on one machine"),
    ({"artifact_root": "/data", "artifact_pvc": "x"}, "is a path on one machine"),
    ({"artifact_root": "s3://bucket/p", "artifact_pvc": "x"}, "artifact_pvc is set, but the artifact root"),
    ({"artifact_root": "file:///data", "artifact_pvc": "x", "artifact_volume_size": "1Gi"}, "both set"),
    ({"artifact_root": "file:///tekton/results", "artifact_pvc": "x"}, "cannot be the workspace's mount path"),
    ({"artifact_root": "file:///data/../tekton/x", "artifact_pvc": "x"}, "cannot be the workspace's mount path"),
    ({"artifact_root": "file:///", "artifact_pvc": "x"}, "cannot be the workspace's mount path"),
    ({"artifact_root": "file:///data", "artifact_volume_size": "lots"}, "Kubernetes quantity"),
    ({"artifact_root": "file:///data", "artifact_pvc": "Not_A_Name"}, "artifact_pvc"),
])
def test_a_local_root_without_a_usable_workspace_is_one_clear_error(settings, message):
    with pytest.raises(UnsupportedFeatureError, match=message):
        compile_case("tekton", "quickstart", golden=True, settings=settings)


def test_replay_through_the_shared_mount_gives_pipecast_runs_outputs(tmp_path):
    root = tmp_path / "volume"
    files = compile_case("tekton", "quickstart", golden=True,
                         settings={"artifact_root": f"file://{root}", "artifact_pvc": "shared"}).files
    # The replay's own runner, without its object-store mapping: every task uses the mount path as written.
    for _, argv, env in task_invocations(files, "quickstart-ws", {"n": "12", "label": "x"}):
        assert f"file://{root}" in argv
        run_task(argv, env=env)
    assert_same_outputs(case("quickstart").build(), {"n": 12, "label": "x"}, root, "quickstart-ws", tmp_path)


@step(retry=Retry(attempts=3, delay="10s", backoff=2.0), timeout="5m")
def patient(x: int) -> int:
    return x


@pipeline(artifact_root="s3://bucket/runs", image="img:1")
def patient_pipeline(x: int = 1):
    patient(x)


def test_a_step_retried_by_the_runtime_keeps_a_tekton_timeout_covering_every_try():
    """The bug: with a retry delay the runtime retries, and the task's timeout was dropped altogether."""
    files = compile_case("tekton", patient_pipeline, settings=BASE).files
    (task,) = inlined(files).values()
    assert "retries" not in task  # Tekton retries at once: the runtime waits the delays
    args = task["taskSpec"]["steps"][0]["args"]
    assert args[args.index("--attempts") + 1] == "3"
    assert task["timeout"] == "15m30s"  # 3 tries of 5 min, and waits of 10 s and 20 s
