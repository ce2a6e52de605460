"""Fixtures shared by the target tests."""

from __future__ import annotations

import pytest

from tests.helpers.fake_kube import FakeKube


@pytest.fixture
def kube(tmp_path):
    """A fake Kubernetes API server with a kubeconfig (namespace ``ml``) at ``kube.kubeconfig``."""
    with FakeKube() as fake:
        fake.kubeconfig = str(fake.write_kubeconfig(tmp_path / "kubeconfig", namespace="ml"))
        yield fake
