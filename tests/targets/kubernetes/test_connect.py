"""One way to reach a cluster for every Kubernetes-based target (``pipecast.targets.kube.client.connect``).

The rule is kubectl's and client-go's: ``-c in_cluster=true`` uses the pod's service account, a ``kubeconfig``
or ``context`` the kubeconfig; with neither, the kubeconfig when one exists, else the pod's service account
when running in a pod. The "pod" here is real enough for the official client: the service host and port in
the environment, a token and a CA certificate in files, and an API server (the fake) that serves HTTPS under
a certificate that CA issued.
"""

from __future__ import annotations

import pytest
import trustme

from pipecast.errors import SubmitError
from pipecast.flow import submit_pipeline
from pipecast.targets.kube import client as kube_client
from tests.helpers.cases import case, golden_settings
from tests.helpers.fake_kube import FakeKube

TOKEN = "pod-service-account-token"


@pytest.fixture
def pod(tmp_path, monkeypatch):
    """This process as a pod in namespace ``team-a`` of a cluster whose API server is an HTTPS fake."""
    from kubernetes.config import incluster_config

    ca = trustme.CA()
    secrets = tmp_path / "serviceaccount"
    secrets.mkdir()
    (secrets / "token").write_text(TOKEN)
    ca.cert_pem.write_to_path(str(secrets / "ca.crt"))
    (secrets / "namespace").write_text("team-a")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(secrets / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(secrets / "ca.crt"))
    monkeypatch.setattr(kube_client, "SERVICE_ACCOUNT_NAMESPACE", str(secrets / "namespace"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with FakeKube(tls=ca) as fake:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(fake.server.server_address[1]))  # type: ignore[union-attr]
        yield fake


@pytest.mark.parametrize("target", ["argo", "tekton", "kubernetes"])
def test_in_a_pod_without_a_kubeconfig_submit_uses_the_pods_service_account(pod, target):
    handle = submit_pipeline(case("quickstart").build(), target, {}, golden_settings(target), {})
    assert handle.engine_run_id.startswith("team-a/") or handle.engine.metadata["namespace"] == "default"
    assert pod.requests_to("POST") and {a.lower() for a in pod.authorizations} == {f"bearer {TOKEN}"}
    cluster = kube_client.connect({})
    assert (cluster.source, cluster.host, cluster.namespace) == ("in-cluster service account", pod.url, "team-a")


def test_a_kubeconfig_wins_over_the_pods_credentials(pod, tmp_path, monkeypatch):
    """As client-go: the driver pod of the kubernetes target reads $KUBECONFIG when one is given."""
    with FakeKube() as other:
        kubeconfig = other.write_kubeconfig(tmp_path / "kubeconfig", namespace="from-kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        cluster = kube_client.connect({})
        assert (cluster.host, cluster.namespace) == (other.url, "from-kubeconfig")
        assert cluster.source == f"kubeconfig {str(kubeconfig)!r}, context 'fake'"
    assert kube_client.connect({"in_cluster": True}).host == pod.url


def test_asking_for_the_kubeconfig_in_a_pod_without_one_is_a_clean_error(pod):
    with pytest.raises(SubmitError, match=r"cannot load the Kubernetes configuration: .*--config in_cluster=true"):
        kube_client.connect({"in_cluster": False})
    with pytest.raises(SubmitError, match=r"--config in_cluster must be true or false, got 'maybe'"):
        kube_client.connect({"in_cluster": "maybe"})
    assert kube_client.connect({"in_cluster": "true"}).source == "in-cluster service account"


def test_outside_a_pod_without_a_kubeconfig_the_error_says_how_to_choose_a_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SubmitError, match=r"cannot load the Kubernetes configuration: .*set KUBECONFIG"):
        kube_client.connect({})


@pytest.mark.parametrize(("target", "known"), [("kubernetes", "dashboard_url"), ("argo", "argo_url"),
                                               ("tekton", "dashboard_url")])
def test_an_unknown_config_key_is_refused_before_any_request(kube, target, known):
    with pytest.raises(SubmitError, match=rf"unknown --config key\(s\) \['dashbord_url'\] for target {target!r}; "
                                          rf"known: \[.*'{known}'.*\]"):
        submit_pipeline(case("quickstart").build(), target, {}, golden_settings(target),
                        {"kubeconfig": kube.kubeconfig, "dashbord_url": "https://dash"})
    assert kube.requests == []
