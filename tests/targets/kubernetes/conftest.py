"""A fake Kubernetes API server whose Jobs really run here, and a kubeconfig pointing at it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.fake_kube import FakeKube
from tests.helpers.slow import slow_fixture
from tests.targets.kubernetes.job_controller import JobController, collect_garbage

NAMESPACE = "pipelines"


@dataclass
class Cluster:
    fake: FakeKube
    controller: JobController
    kubeconfig: Path
    namespace: str
    artifacts: Path

    @property
    def jobs(self) -> str:
        return f"/apis/batch/v1/namespaces/{self.namespace}/jobs"

    def settings(self, **extra: object) -> dict[str, object]:
        """Compile settings for a run on this cluster: a local artifact root on a (simulated) PVC, fast polls."""
        return {"image": "ghcr.io/acme/pipecast:test", "artifact_root": f"file://{self.artifacts}",
                "artifact_pvc": "shared-artifacts", "namespace": self.namespace, "poll_seconds": 0.1, **extra}

    def config(self, **extra: object) -> dict[str, object]:
        return {"kubeconfig": str(self.kubeconfig), **extra}


@pytest.fixture
@slow_fixture
def cluster(tmp_path):
    """A fake API server whose Jobs run whole pipelines here, as processes: slow, like a real cluster."""
    fake = FakeKube().start()
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", namespace=NAMESPACE)
    # The driver pod reaches the API server through the kubeconfig (in a cluster: its service account).
    controller = JobController(tmp_path / "pods", extra_env={"KUBECONFIG": str(kubeconfig)})
    fake.on_create("jobs", controller)
    stop = threading.Event()
    collector = threading.Thread(target=collect_garbage, args=(fake, NAMESPACE, stop), daemon=True)
    collector.start()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    try:
        yield Cluster(fake, controller, kubeconfig, NAMESPACE, artifacts)
    finally:
        # Delete every Job first so the controller threads stop their processes, then stop the server.
        with fake.lock:
            for key in [k for k in fake.objects if "/jobs/" in k]:
                fake.objects.pop(key)
        stop.set()
        collector.join(timeout=10)
        fake.stop()
