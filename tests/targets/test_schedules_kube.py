"""``pipecast schedules list|delete`` on the Kubernetes-based targets, with the real ``kubernetes`` client.

The fake API server (``tests/helpers/fake_kube.py``) stores CronJobs and CronWorkflows and answers lists with
label selectors as the API server does; the fake Argo Server answers ``CronWorkflowService`` as its OpenAPI
spec says. The schedule objects are the emitted files, applied as ``kubectl apply`` (or submit) would.
"""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.flow import submit_pipeline
from pipecast.schedules.asking import config_for
from pipecast.targets.kube.client import connect
from pipecast.targets.kube.objects import CustomKind, Kube, apply
from tests.helpers.cases import case, compile_case, golden_settings
from tests.targets.argo.fake_argo_server import FakeArgoServer

CRONJOBS = "/apis/batch/v1/namespaces/ml/cronjobs"
CRON_WORKFLOWS = "/apis/argoproj.io/v1alpha1/namespaces/ml/cronworkflows"
TOKEN = "v2:secret-token"


def cli(*args):
    return CliRunner().invoke(main, ["schedules", *args])


def apply_files(kube, target, *, settings=None):
    """Apply the schedule's objects of ``ml_training`` compiled for ``target``, as ``kubectl apply -f`` does."""
    compiled = compile_case(target, "ml_training", settings={**golden_settings(target), **(settings or {})})
    api = Kube(connect({"kubeconfig": kube.kubeconfig}), "ml",
               {"CronWorkflow": CustomKind("argoproj.io", "v1alpha1", "cronworkflows")})
    for path, text in compiled.bundle.files:
        if path.endswith(("-cron.yaml", "-cronworkflow.yaml")):
            for document in yaml.safe_load_all(text):
                document["metadata"]["namespace"] = "ml"
                apply(api, document)


def test_kubernetes_submit_upserts_its_cronjob_and_schedules_lists_and_deletes_it(kube):
    settings = {**golden_settings("kubernetes"), "namespace": "ml"}
    for _ in range(2):
        submit_pipeline(case("ml_training").build(), "kubernetes", {}, settings, {"kubeconfig": kube.kubeconfig})
    (cronjob,) = kube.items(CRONJOBS)  # one schedule, updated in place by the second submit
    assert [r["method"] for r in kube.requests if r["path"].startswith(CRONJOBS)] == ["POST", "POST", "GET", "PUT"]
    assert cronjob["spec"]["schedule"] == "0 4 * * 1"
    config = ["-c", f"kubeconfig={kube.kubeconfig}", "-c", "namespace=ml", "-c", "dashboard_url=https://k8s.example"]

    listed = cli("list", "--target", "kubernetes", *config)
    assert listed.exit_code == 0, listed.output
    head, row = listed.output.splitlines()
    assert head.split() == ["PIPELINE", "TARGET", "SCHEDULE", "STATE", "ID", "URL"]  # no NEXT RUN: none reported
    assert row.split() == ["ml-training", "kubernetes", "0", "4", "*", "*", "1", "active", "ml/ml-training",
                           "https://k8s.example/#/cronjob/ml/ml-training?namespace=ml"]
    as_json = json.loads(cli("list", "-t", "kubernetes", *config, "--json").output)
    assert as_json == [{"pipeline": "ml-training", "target": "kubernetes", "schedule": "0 4 * * 1",
                        "id": "ml/ml-training", "next_run": None, "state": "active",
                        "url": "https://k8s.example/#/cronjob/ml/ml-training?namespace=ml"}]
    # The tekton target's view of the same namespace leaves the kubernetes target's CronJob out.
    assert cli("list", "-t", "tekton", "-c", f"kubeconfig={kube.kubeconfig}").output == "no schedules\n"

    deleted = cli("delete", "ml_training", "--target", "kubernetes", *config)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.output == "deleted CronJob ml/ml-training (the runs it started are left alone)\n"
    (delete,) = kube.requests_to("DELETE", CRONJOBS)
    assert delete["query"]["propagationPolicy"] == "Orphan"  # its running driver Jobs go on
    assert kube.items(CRONJOBS) == []
    again = cli("delete", "ml_training", "--target", "kubernetes", *config)
    assert again.exit_code == 2
    assert again.output == ("error: target 'kubernetes' holds no schedule of pipeline 'ml_training'; nothing was "
                            "deleted (`pipecast schedules list --target kubernetes` shows the schedules it has)\n")


def test_tekton_schedule_is_listed_and_deleted_with_the_objects_only_it_uses(kube):
    apply_files(kube, "tekton")
    apply_files(kube, "tekton")  # applied again: still one CronJob
    (cronjob,) = kube.items(CRONJOBS)
    listed = json.loads(cli("list", "-t", "tekton", "-c", f"kubeconfig={kube.kubeconfig}", "--json").output)
    assert [(s["pipeline"], s["schedule"], s["id"], s["url"]) for s in listed] == [
        ("ml-training", "0 4 * * 1", f"ml/{cronjob['metadata']['name']}", None)]
    deleted = cli("delete", "ml_training", "-t", "tekton", "-c", f"kubeconfig={kube.kubeconfig}")
    assert deleted.exit_code == 0, deleted.output
    assert [line.split()[1] for line in deleted.output.splitlines()] == [
        "CronJob", "RoleBinding", "Role", "ServiceAccount", "ConfigMap"]
    for plural in ("cronjobs", "configmaps", "serviceaccounts"):
        assert kube.items(f"/api/v1/namespaces/ml/{plural}") == []
    assert kube.items(CRONJOBS) == []


def test_a_cronjob_of_that_name_that_pipecast_did_not_make_is_not_deleted(kube):
    api = Kube(connect({"kubeconfig": kube.kubeconfig}), "ml")
    api.create({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "ml-training"},
                "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}}})
    result = cli("delete", "ml_training", "-t", "kubernetes", "-c", f"kubeconfig={kube.kubeconfig}")
    assert result.exit_code == 2
    assert "was not made by the kubernetes target of pipecast; nothing was deleted" in result.output
    assert len(kube.items(CRONJOBS)) == 1


def test_argo_cronworkflow_through_the_kubernetes_api(kube):
    apply_files(kube, "argo", settings={"timezone": "Europe/Paris"})
    apply_files(kube, "argo", settings={"timezone": "Europe/Paris"})
    (cron,) = kube.items(CRON_WORKFLOWS)
    config = ["-c", f"kubeconfig={kube.kubeconfig}", "-c", "argo_url=https://argo.example"]
    listed = json.loads(cli("list", "-t", "argo", *config, "--json").output)
    assert listed == [{"pipeline": "ml-training", "target": "argo", "schedule": "0 4 * * 1 (Europe/Paris)",
                       "id": "ml/ml-training", "next_run": None, "state": "active",
                       "url": "https://argo.example/cron-workflows/ml/ml-training"}]
    deleted = cli("delete", "ml_training", "-t", "argo", *config)
    assert deleted.output == "deleted CronWorkflow ml/ml-training (the Workflows it started are left alone)\n"
    (delete,) = kube.requests_to("DELETE", CRON_WORKFLOWS)
    assert delete["query"]["propagationPolicy"] == "Orphan"
    assert kube.items(CRON_WORKFLOWS) == [] and cron["metadata"]["name"] == "ml-training"


@pytest.fixture
def argo_server(monkeypatch):
    server = FakeArgoServer(TOKEN)
    monkeypatch.setenv("ARGO_TOKEN", TOKEN)
    yield server
    server.stop()


def test_argo_cronworkflow_through_argo_server(argo_server):
    compiled = compile_case("argo", "ml_training", golden=True)
    (cron,) = [d for path, text in compiled.bundle.files if path.endswith("-cronworkflow.yaml")
               for d in yaml.safe_load_all(text)]
    cron["metadata"]["namespace"] = "ml"
    foreign = {"metadata": {"name": "nightly", "namespace": "ml", "labels": {"team": "x"}},
               "spec": {"schedules": ["0 1 * * *"]}}
    for body in (cron, foreign):  # as `argo cron create` does
        argo_server.handle("POST", "/api/v1/cron-workflows/ml", {"namespace": "ml", "cronWorkflow": body},
                           f"Bearer {TOKEN}")
    config = ["-c", f"argo_server={argo_server.url}", "-c", "namespace=ml"]
    listed = cli("list", "-t", "argo", *config)
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[1].split() == [
        "ml-training", "argo", "0", "4", "*", "*", "1", "active", "ml/ml-training",
        f"{argo_server.url}/cron-workflows/ml/ml-training"]
    assert len(listed.output.splitlines()) == 2  # the CronWorkflow pipecast did not make is not shown
    (get,) = [r for r in argo_server.requests if r["method"] == "GET"]
    assert get["path"] == ("/api/v1/cron-workflows/ml?listOptions.labelSelector="
                           "app.kubernetes.io%2Fmanaged-by%3Dpipecast")
    assert cli("delete", "ml_training", "-t", "argo", *config).exit_code == 0
    deletes = [r["path"] for r in argo_server.requests if r["method"] == "DELETE"]
    assert deletes == ["/api/v1/cron-workflows/ml/ml-training"]
    assert set(argo_server.objects) == {"cron-workflows/ml/nightly"}
    refused = cli("delete", "nightly", "-t", "argo", *config)
    assert refused.exit_code == 2 and "was not made by pipecast" in refused.output


@pytest.mark.parametrize(("target", "says"), [
    ("local", "target 'local' keeps no schedule on an engine for pipecast to list or delete (ignored: run it from "
              "cron with `pipecast run`); manage it where you installed it"),
    ("vm_aws", "target 'vm_aws' keeps no schedule on an engine for pipecast to list or delete (SkyPilot has no"),
])
def test_a_target_without_reachable_schedules_says_why(target, says):
    result = cli("list", "--target", target)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {says}") and "Traceback" not in result.output
    assert cli("delete", "p", "--target", target).exit_code == 2


def test_without_a_target_the_run_stores_targets_are_asked_each_with_its_keys(kube):
    submit_pipeline(case("ml_training").build(), "kubernetes", {}, {**golden_settings("kubernetes"), "namespace": "ml"},
                    {"kubeconfig": kube.kubeconfig})
    listed = cli("list", "-c", f"kubeconfig={kube.kubeconfig}", "-c", "namespace=ml", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(s["target"], s["id"]) for s in json.loads(listed.output)] == [("kubernetes", "ml/ml-training")]
    # Two targets: each gets the keys it takes (argo_url is argo's only); a key neither takes is refused.
    both = cli("list", "-t", "kubernetes", "-t", "argo", "-c", f"kubeconfig={kube.kubeconfig}", "-c", "namespace=ml",
               "-c", "argo_url=https://argo.example", "--json")
    assert both.exit_code == 0, both.output
    assert [s["target"] for s in json.loads(both.output)] == ["kubernetes"]
    refused = cli("list", "-t", "kubernetes", "-t", "argo", "-c", "hots=x")
    assert refused.exit_code == 2
    assert refused.output == ("error: unknown --config key(s) ['hots']: none of the targets ['kubernetes', 'argo'] "
                              "takes them\n")
    # One target of several that cannot be asked: the others' rows, then its error, exit 2.
    partial = cli("list", "-t", "kubernetes", "-t", "local", "-c", f"kubeconfig={kube.kubeconfig}",
                  "-c", "namespace=ml")
    assert partial.exit_code == 2
    assert "ml/ml-training" in partial.stdout
    assert partial.stderr.startswith("error: target 'local': target 'local' keeps no schedule")


def test_each_of_several_targets_gets_the_keys_its_schedules_take():
    config = {"region": "eu-west-1", "kubeconfig": "k", "repo": "acme/ml", "base_url": "http://airflow"}
    assert config_for("sagemaker", config, True) == {"region": "eu-west-1"}  # its module's KEYS
    assert config_for("kubernetes", config, True) == {"kubeconfig": "k"}  # its connection class
    assert config_for("github", config, True) == {"repo": "acme/ml"}
    # airflow declares region too (MWAA's, with -c auth=mwaa)
    assert config_for("airflow", config, True) == {"base_url": "http://airflow", "region": "eu-west-1"}
    assert config_for("sagemaker", config, False) == config  # one target: all, and its module refuses the rest
