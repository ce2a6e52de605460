"""The server's version, checked at submit: too old is one clear error before anything is created; a version
the server does not tell (or tells as a development build) is a warning, and the submit goes on.

Each engine answers as its documented version endpoint does: the fake Kubernetes API server's ``/version``
(apimachinery's ``version.Info``), Tekton's ``pipelines-info`` ConfigMap (tektoncd/pipeline
config/config-info.yaml), Argo Server's ``GET /api/v1/version``, KFP's ``GET /apis/v2beta1/healthz`` (the real
``kfp.Client`` asks it) and Airflow's ``GET /api/v{1,2}/version``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.errors import SubmitError
from pipecast.flow import submit_pipeline
from pipecast.targets import versions
from pipecast.targets.airflow.rest import AirflowApi
from pipecast.targets.versions import EngineVersionWarning, parse
from tests.helpers.cases import case, golden_settings
from tests.targets.argo.fake_argo_server import FakeArgoServer
from tests.targets.kfp.fake_servers import FakeKfp
from tests.targets.tekton.conftest import pipelines_info

TEKTON_INFO = "/api/v1/namespaces/tekton-pipelines/configmaps"


@pytest.mark.parametrize(("text", "expected"), [
    ("v1.30.5-gke.1014001", "1.30.5"), ("v1.29.8-eks-a737599", "1.29.8"), ("3.1.0+composer", "3.1.0"),
    ("2.10.5", "2.10.5"), ("v3.6.2", "3.6.2"), ("v0.68.0", "0.68.0"), ("2.4", "2.4"),
    ("devel", None), ("unknown", None), ("", None), (None, None), ("latest+abc1234", None),
])
def test_versions_are_read_from_what_engines_report(text, expected):
    assert parse(text) == (None if expected is None else versions.Version(expected))


def test_every_minimum_says_why_and_how_it_is_asked():
    for minimum in versions.MINIMUMS.values():
        assert parse(minimum.version) is not None and minimum.why and minimum.asked and minimum.targets


# -- Kubernetes and Tekton (the fake API server) ---------------------------------------------------------------


def _created(kube):
    return [r for r in kube.requests if r["method"] != "GET"]


def test_a_kubernetes_cluster_older_than_the_minimum_is_refused_before_anything_is_created(kube):
    kube.git_version = "v1.26.15"
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "kubernetes", {}, golden_settings("kubernetes"),
                        {"kubeconfig": kube.kubeconfig})
    text = str(err.value)
    assert text.startswith(f"Kubernetes at {kube.url} (kubeconfig ")
    assert "is version v1.26.15, older than 1.27.0" in text
    assert "podFailurePolicy" in text and "Nothing was submitted" in text
    assert [r["path"] for r in kube.requests] == ["/version/"] and kube.objects == {}


def test_a_vendor_build_of_a_recent_kubernetes_is_accepted(kube):
    kube.git_version = "v1.30.5-gke.1014001"
    handle = submit_pipeline(case("quickstart").build(), "kubernetes", {}, golden_settings("kubernetes"),
                             {"kubeconfig": kube.kubeconfig})
    assert handle.engine_run_id and _created(kube)


def test_a_forbidden_version_endpoint_warns_and_the_submit_goes_on(kube):
    kube.refuse("GET", r"/version/?", 403, "Forbidden")
    with pytest.warns(EngineVersionWarning, match=r"cannot tell which Kubernetes version .* runs \(.*403"):
        submit_pipeline(case("quickstart").build(), "kubernetes", {}, golden_settings("kubernetes"),
                        {"kubeconfig": kube.kubeconfig})
    assert _created(kube)


def test_tekton_older_than_the_minimum_is_refused_before_anything_is_created(kube):
    kube.install(TEKTON_INFO, pipelines_info("v0.59.2"))
    with pytest.raises(SubmitError, match=r"Tekton Pipelines at the cluster at http://127\.0\.0\.1:\d+ is version "
                                          r"v0\.59\.2, older than 0\.68\.0, the oldest pipecast supports: "):
        submit_pipeline(case("quickstart").build(), "tekton", {}, golden_settings("tekton"),
                        {"kubeconfig": kube.kubeconfig})
    assert _created(kube) == []
    assert [r["path"] for r in kube.requests] == ["/version/", f"{TEKTON_INFO}/pipelines-info"]


@pytest.mark.parametrize("installed", [None, "devel"])
def test_tekton_that_does_not_tell_its_version_warns_and_the_submit_goes_on(kube, installed):
    if installed:
        kube.install(TEKTON_INFO, pipelines_info(installed))
    said = "said 'devel'" if installed else "404 configmaps \"pipelines-info\" not found"
    with pytest.warns(EngineVersionWarning, match=rf"which Tekton Pipelines version the cluster at .* runs \(.*{said}"):
        submit_pipeline(case("quickstart").build(), "tekton", {}, golden_settings("tekton"),
                        {"kubeconfig": kube.kubeconfig})
    assert [r for r in _created(kube) if r["path"].endswith("/pipelineruns")]


def test_argo_through_the_kubernetes_api_asks_no_version(kube):
    submit_pipeline(case("quickstart").build(), "argo", {}, golden_settings("argo"), {"kubeconfig": kube.kubeconfig})
    assert not [r for r in kube.requests if r["path"].startswith("/version")]


# -- Argo Server ------------------------------------------------------------------------------------------------


@pytest.fixture
def argo_server(monkeypatch):
    server = FakeArgoServer("token")
    monkeypatch.setenv("ARGO_TOKEN", "Bearer token")
    yield server
    server.stop()


def test_an_old_argo_server_is_one_clear_error_exit_2_and_nothing_is_created(argo_server):
    argo_server.argo_version = "v3.5.10"
    result = CliRunner().invoke(main, ["submit", "examples/quickstart.py", "-t", "argo", "--set", "image=i",
                                       "--set", "artifact_root=s3://b", "-c", f"argo_server={argo_server.url}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Argo Workflows at '{argo_server.url}' is version v3.5.10, older than 3.6.0" in result.output
    assert "`schedules:`" in result.output
    assert [r["method"] for r in argo_server.requests] == ["GET"] and argo_server.objects == {}


def test_a_current_argo_server_is_asked_once_and_the_run_goes_on(argo_server):
    submit_pipeline(case("quickstart").build(), "argo", {}, golden_settings("argo"),
                    {"argo_server": argo_server.url, "namespace": "ml"})
    assert argo_server.requests[0]["path"] == "/api/v1/version" and len(argo_server.objects) == 2


# -- Kubeflow Pipelines (the real kfp.Client) ------------------------------------------------------------------


@pytest.fixture
def kfp_server(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # kfp.Client reads ~/.config/kfp/context.json
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeKfp().start()
    yield fake
    fake.stop()


KFP_SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts"}


def test_a_kfp_backend_older_than_2_4_is_refused_before_anything_is_created(kfp_server):
    kfp_server.tag_name = "2.3.0"
    with pytest.raises(SubmitError, match=r"Kubeflow Pipelines at '.*' is version 2\.3\.0, older than 2\.4\.0"):
        submit_pipeline(case("quickstart").build(), "kubeflow", {}, KFP_SETTINGS, {"host": kfp_server.url})
    assert [r.method for r in kfp_server.requests] == ["GET"] * len(kfp_server.requests)
    assert kfp_server.runs == {} and kfp_server.experiments == {}


def test_an_exit_handler_needs_kfp_2_14_and_is_refused_on_an_older_backend(kfp_server):
    from tests.targets.kfp.flow_cases import branches_exit

    kfp_server.tag_name = "2.5.0"  # runs conditions and OneOf, refuses a taskFinalStatus input
    with pytest.raises(SubmitError, match=r"is version 2\.5\.0, older than 2\.14\.0.*taskFinalStatus"):
        submit_pipeline(branches_exit.build(), "kubeflow", {}, KFP_SETTINGS, {"host": kfp_server.url})
    assert kfp_server.runs == {} and kfp_server.experiments == {}
    submit_pipeline(case("quickstart").build(), "kubeflow", {}, KFP_SETTINGS, {"host": kfp_server.url})
    kfp_server.tag_name = "2.14.0"
    submit_pipeline(branches_exit.build(), "kubeflow", {}, KFP_SETTINGS, {"host": kfp_server.url})
    assert len(kfp_server.runs) == 2


def test_a_kfp_backend_built_without_a_tag_warns_and_the_run_is_created(kfp_server):
    kfp_server.tag_name = "unknown"  # TAG_NAME unset: the API server says "unknown"
    with pytest.warns(EngineVersionWarning, match=r"which Kubeflow Pipelines version .* said 'unknown'"):
        submit_pipeline(case("quickstart").build(), "kubeflow", {}, KFP_SETTINGS, {"host": kfp_server.url})
    assert len(kfp_server.runs) == 1


# -- Airflow ----------------------------------------------------------------------------------------------------


@pytest.fixture
def airflow_version():
    """A server answering Airflow's ``GET /api/v{1,2}/version`` (``{"version", "git_version"}``), v1 only on 2.x."""
    state = {"version": "2.9.3"}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            major = state["version"].split(".")[0]
            wanted = "/api/v1/version" if major == "2" else "/api/v2/version"
            status, body = (200, {"version": state["version"], "git_version": None}) if self.path == wanted \
                else (404, {"detail": "Not Found"})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_airflow_2_before_2_10_is_refused_and_2_10_and_3_are_accepted(airflow_version):
    state, url = airflow_version
    with pytest.raises(SubmitError, match=r"Apache Airflow 2 at .* is version 2\.9\.3, older than 2\.10\.0"):
        versions.check_airflow(AirflowApi(base_url=url))
    for version in ("2.10.5", "3.0.0", "3.1.0+composer"):
        state["version"] = version
        versions.check_airflow(AirflowApi(base_url=url))  # no error, no warning (warnings are errors here)


@pytest.fixture(autouse=True)
def warnings_fail_unless_expected():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineVersionWarning)
        yield
