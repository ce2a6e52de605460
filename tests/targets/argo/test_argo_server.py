"""Submit and track through Argo Server's REST API (bearer token) against a local server answering as it does."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.compiler import naming
from pipecast.errors import SubmitError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from tests.helpers.cases import case, golden_settings
from tests.targets.argo.fake_argo_server import FakeArgoServer

TOKEN = "v2:secret-token"


@pytest.fixture
def argo_server(monkeypatch):
    server = FakeArgoServer(TOKEN)
    monkeypatch.setenv("ARGO_TOKEN", f"Bearer {TOKEN}")
    yield server
    server.stop()


def submit(server, **config):
    handle = submit_pipeline(case("quickstart").build(), "argo", {"n": 20}, golden_settings("argo"),
                             {"argo_server": server.url, "namespace": "ml", **config})
    handle.poll_interval = 0.02
    return handle


def test_submit_creates_template_and_workflow_through_argo_server(argo_server):
    handle = submit(argo_server)
    name = naming.rule_for("dns1123_label").apply(handle.run_id)
    assert (handle.engine_run_id, handle.url) == (f"ml/{name}", f"{argo_server.url}/workflows/ml/{name}")
    posts = [r for r in argo_server.requests if r["method"] == "POST"]
    assert [r["path"] for r in posts] == ["/api/v1/workflow-templates/ml", "/api/v1/workflows/ml"]
    assert posts[0]["body"]["namespace"] == "ml" and posts[0]["body"]["template"]["kind"] == "WorkflowTemplate"
    workflow = posts[1]["body"]["workflow"]
    assert workflow["metadata"]["name"] == name and workflow["metadata"]["labels"]["pipecast.dev/run"] == name
    assert {"name": "n", "value": "20"} in workflow["spec"]["arguments"]["parameters"]
    assert {r["authorization"] for r in argo_server.requests} == {f"Bearer {TOKEN}"}
    argo_server.set_status("ml", name, {"phase": "Succeeded"})
    assert handle.wait(timeout=60) is RunStatus.SUCCEEDED


def test_a_second_submit_updates_the_template_and_cancel_terminates(argo_server):
    submit(argo_server)
    handle = submit(argo_server)
    methods = [(r["method"], r["path"]) for r in argo_server.requests if "workflow-templates" in r["path"]]
    template = "/api/v1/workflow-templates/ml/quickstart"
    assert methods[1:] == [("POST", "/api/v1/workflow-templates/ml"), ("GET", template), ("PUT", template)]
    handle.cancel()
    assert handle.wait(timeout=60) is RunStatus.CANCELLED
    assert argo_server.requests[-2]["path"].endswith("/terminate")


def test_a_token_without_the_bearer_prefix_is_sent_as_one(argo_server, monkeypatch):
    monkeypatch.setenv("ARGO_TOKEN", TOKEN)
    submit(argo_server)
    assert {r["authorization"] for r in argo_server.requests} == {f"Bearer {TOKEN}"}


def test_a_bad_or_missing_token_is_one_clear_error(argo_server, monkeypatch):
    monkeypatch.setenv("ARGO_TOKEN", "Bearer wrong")
    with pytest.raises(SubmitError, match=r"cannot create WorkflowTemplate 'quickstart' in namespace 'ml': Argo "
                                          r"Server answered 401 token not valid.*\(check \$ARGO_TOKEN\)"):
        submit(argo_server)
    monkeypatch.delenv("ARGO_TOKEN")
    result = CliRunner().invoke(main, ["submit", "examples/quickstart.py", "-t", "argo",
                                       "--set", "image=i", "--set", "artifact_root=s3://b",
                                       "-c", f"argo_server={argo_server.url}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "-c argo_server is set but $ARGO_TOKEN is empty" in result.output
    assert [r for r in argo_server.requests if r["authorization"] != "Bearer wrong"] == []


def test_runs_wait_reconnects_through_argo_server(argo_server):
    handle = submit(argo_server)
    argo_server.set_status("ml", handle.engine_run_id.split("/")[1], {"phase": "Succeeded"})
    result = CliRunner().invoke(main, ["runs", "wait", handle.run_id, "-c", f"argo_server={argo_server.url}"])
    assert result.exit_code == 0, result.output
    assert argo_server.requests[-1]["path"] == f"/api/v1/workflows/{handle.engine_run_id}"
