"""The driver Job in production: an API server that goes away, a missing client, deletes of other Jobs.

Against the fake API server (tests/helpers/fake_kube.py), which drops connections as a restarting API server
or a proxy does; the driver runs in this process, so its exit status and messages are read directly.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

import pytest

from pipecast.errors import SubmitError
from pipecast.targets.base import EmitContext
from pipecast.targets.checks import parse_settings
from pipecast.targets.kube import client as kube_client
from pipecast.targets.kube.client import KubeError, connect
from pipecast.targets.kube.objects import Kube
from pipecast.targets.kubernetes import contract, patience
from pipecast.targets.kubernetes.driver import Driver, main
from pipecast.targets.kubernetes.manifests import Lowering
from pipecast.targets.registry import get_target
from tests.helpers.cases import case
from tests.helpers.fake_kube import FakeKube

NAMESPACE = "pipelines"
JOBS = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
SETTINGS = {"image": "ghcr.io/acme/pipecast:test", "artifact_root": "s3://bucket/runs", "namespace": NAMESPACE,
            "poll_seconds": 0.05}
DROPS = 40


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """Waits of milliseconds instead of seconds; the number of tries is the real one."""
    monkeypatch.setattr(kube_client, "RETRY_DELAY", 0.01)
    monkeypatch.setattr(patience, "FIRST_WAIT", 0.01)


def _plan(name: str = "diamond_after") -> dict[str, Any]:
    pipeline = case(name).build()
    context = EmitContext(target="kubernetes")
    parse_settings(pipeline, get_target("kubernetes"), SETTINGS, context)
    return Lowering(pipeline, context).plan()


def _complete_steps(fake: FakeKube, job: dict[str, Any]) -> None:
    """The Job controller, reduced to what the driver reads: each step Job completes at once."""
    if (job["metadata"].get("labels") or {}).get(contract.LABEL_ROLE) == "step":
        fake.set_status(JOBS, job["metadata"]["name"], {
            "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})


def _driver_job(api: Kube, run: str) -> None:
    api.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": run, "namespace": NAMESPACE},
                "spec": {"suspend": True, "template": {"spec": {"containers": []}}}})  # a stand-in driver Job


def test_dropped_connections_during_a_run_are_ridden_out_and_the_run_finishes(tmp_path):
    with FakeKube() as fake:
        fake.on_create("jobs", _complete_steps)
        api = Kube(connect({"kubeconfig": str(fake.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE))}),
                   NAMESPACE)
        _driver_job(api, "diamond-flaky")
        # More lost answers in a row than one API call's own tries (kube.client.ATTEMPTS, each with urllib3's
        # own retries of a dropped read): only the driver's patience carries the run through; before it, this
        # was exit 3 with the step Jobs left unwatched.
        fake.lose_answers("GET", r"/jobs\?labelSelector=", times=DROPS)
        lines: list[str] = []
        driver = Driver(_plan(), {}, "diamond-flaky", api, log=lines.append)
        assert driver.run() == 0, lines
        assert len(fake.lost) == DROPS
        assert any("trying again" in line for line in lines)
        created = [r["body"]["metadata"]["name"] for r in fake.requests_to("POST", JOBS)[1:]]
        assert len(created) == len(set(created)) == len(case("diamond_after").build().steps)
        labels = fake.get(JOBS, "diamond-flaky")["metadata"]["labels"]
        assert labels[contract.LABEL_RUN] == "diamond-flaky"  # the driver labels its own Job with the run id


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_api_server_is_an_infrastructure_exit_the_job_retries(tmp_path, monkeypatch, capsys):
    """Reproduces the issue: an unreachable kubeconfig must not end in exit 1 ("pipeline failed" for good)."""
    kubeconfig = tmp_path / "kubeconfig"
    with FakeKube() as fake:
        fake.write_kubeconfig(kubeconfig, NAMESPACE)
    text = kubeconfig.read_text()
    kubeconfig.write_text(text.replace(text.split("127.0.0.1:")[1].split('"')[0], str(_closed_port())))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(patience, "API_PATIENCE", 0.3)
    plan = tmp_path / "plan.yaml"
    plan.write_text(contract.dump_plan(_plan()))
    code = main(["--plan", str(plan), "--namespace", NAMESPACE, "--run-id", "r-1"])
    out = capsys.readouterr()
    assert code == contract.EXIT_INFRASTRUCTURE, out
    assert "no answer from the Kubernetes API server" in out.err and "new driver pod" in out.err
    assert "trying again" in out.out  # it waited before giving up
    # The driver Job fails at once only on the pipeline's verdict and bad input; exit 3 is retried.
    rules = Lowering(case("quickstart").build(), _context()).driver_job_spec("plan")["podFailurePolicy"]["rules"]
    fail_codes = [r["onExitCodes"]["values"] for r in rules if r["action"] == "FailJob"]
    assert fail_codes == [[contract.EXIT_PIPELINE_FAILED, contract.EXIT_BAD_INPUT]]


def _context() -> EmitContext:
    context = EmitContext(target="kubernetes")
    parse_settings(case("quickstart").build(), get_target("kubernetes"), SETTINGS, context)
    return context


def test_an_unexpected_error_is_an_infrastructure_exit_not_a_pipeline_failure(tmp_path, monkeypatch, capsys):
    with FakeKube() as fake:
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE)))
        monkeypatch.setattr(Driver, "run", lambda self: {}["boom"])
        plan = tmp_path / "plan.yaml"
        plan.write_text(contract.dump_plan(_plan()))
        assert main(["--plan", str(plan), "--namespace", NAMESPACE, "--run-id", "r-1"]) == 3
    err = capsys.readouterr().err
    assert "KeyError: 'boom'" in err and "unexpected error" in err


def test_a_driver_image_without_the_kubernetes_package_says_how_to_fix_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # what `import kubernetes` meets in such an image
    plan = tmp_path / "plan.yaml"
    plan.write_text(contract.dump_plan(_plan()))
    assert main(["--plan", str(plan), "--namespace", NAMESPACE, "--run-id", "r-1"]) == contract.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no Kubernetes client" in err and "pipecast[kubernetes]" in err and "driver_image" in err
    assert "Traceback" not in err


class _Flaky:
    """An API whose reads fail with ``errors`` first."""

    namespace = NAMESPACE

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0

    def get(self, kind: str, name: str) -> dict[str, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"kind": kind}


@pytest.mark.parametrize("error", [KubeError(503, "unavailable"), KubeError(429, "slow down"),
                                   KubeError(500, "etcd timeout"), SubmitError("no answer")])
def test_errors_that_say_later_are_retried(error):
    api = _Flaky([error, error])
    assert patience.PatientApi(api, threading.Event(), lambda line: None).get("Job", "x") == {"kind": "Job"}
    assert api.calls == 3


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_errors_waiting_cannot_mend_are_raised_at_once(status):
    api = _Flaky([KubeError(status, "no")])
    with pytest.raises(KubeError):
        patience.PatientApi(api, threading.Event(), lambda line: None).get("Job", "x")
    assert api.calls == 1


def test_patience_is_bounded_and_a_stop_ends_the_wait():
    api = _Flaky([SubmitError("no answer")] * 1000)
    with pytest.raises(SubmitError):
        patience.PatientApi(api, threading.Event(), lambda line: None, patience=0.2).get("Job", "x")
    stop = threading.Event()
    stop.set()
    api = _Flaky([SubmitError("no answer")] * 1000)
    with pytest.raises(SubmitError):
        patience.PatientApi(api, stop, lambda line: None).get("Job", "x")
    assert api.calls == 1


def test_the_driver_deletes_only_jobs_labelled_as_its_runs(tmp_path):
    """The Role may delete any Job in the namespace (RBAC cannot scope by label): the driver checks first."""
    with FakeKube() as fake:
        api = Kube(connect({"kubeconfig": str(fake.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE))}),
                   NAMESPACE)
        driver = Driver(_plan(), {}, "run-a", api, log=lambda line: None)
        step = driver.steps["start"]
        stranger = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
            "name": step.job, "namespace": NAMESPACE, "labels": {contract.LABEL_RUN: "someone-else"}}}
        api.create(stranger)
        driver._delete(step)
        assert fake.get(JOBS, step.job) is not None and not fake.requests_to("DELETE")
        fake.handle("DELETE", f"{JOBS}/{step.job}", None, "")
        driver.owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "run-a", "uid": "u"}
        api.create(driver.job_manifest(step))
        driver._delete(step)
        assert fake.get(JOBS, step.job) is None
