"""The fake cluster of the Tekton tests has Tekton installed: its ``pipelines-info`` ConfigMap says which version."""

from __future__ import annotations

import pytest

TEKTON_VERSION = "v1.15.0"


def pipelines_info(version: str) -> dict:
    """The ConfigMap Tekton's release installs (tektoncd/pipeline config/config-info.yaml), its version filled in."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "pipelines-info", "namespace": "tekton-pipelines",
                         "labels": {"app.kubernetes.io/part-of": "tekton-pipelines"}},
            "data": {"version": version}}


@pytest.fixture
def kube(kube):
    kube.install("/api/v1/namespaces/tekton-pipelines/configmaps", pipelines_info(TEKTON_VERSION))
    return kube
