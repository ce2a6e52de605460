"""``pipecast schedules list|delete`` on Kubeflow Pipelines and Vertex AI, with the real ``kfp.Client`` and
``aiplatform`` SDK against the local servers that answer as their REST APIs do (``fake_servers.py``)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.flow import submit_pipeline
from tests.helpers.cases import case
from tests.targets.kfp import test_kubeflow_submit as kfp_tests
from tests.targets.kfp import test_vertex_submit as vertex_tests
from tests.targets.kfp.fake_servers import FakeKfp, FakeVertex

API = "/apis/v2beta1"
PARENT = vertex_tests.PARENT

isolated_kfp = kfp_tests.isolated_kfp
short_pauses = kfp_tests.short_pauses
bucket_checks = vertex_tests.bucket_checks


def cli(*args):
    return CliRunner().invoke(main, ["schedules", *args])


@pytest.fixture
def kfp(isolated_kfp):
    fake = FakeKfp().start()
    yield fake
    fake.stop()


@pytest.fixture
def vertex(bucket_checks):
    fake = FakeVertex().start()
    yield fake
    fake.stop()


def test_kubeflow_lists_one_recurring_run_per_pipeline_and_deletes_it(kfp):
    for name in ("full_options", "ml_training", "full_options"):  # the second submit replaces the first's
        submit_pipeline(case(name).build(), "kubeflow", {}, kfp_tests.SETTINGS, {"host": kfp.url})
    listed = cli("list", "-t", "kubeflow", "-c", f"host={kfp.url}", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["pipeline"], r["schedule"], r["state"], r["next_run"]) for r in rows] == [
        ("full_options", "0 0 3 * * *", "enabled", None), ("ml_training", "0 0 4 * * 1", "enabled", None)]
    ids = {r["recurring_run_id"] for r in kfp.recurring_runs.values()}
    assert {r["id"] for r in rows} == ids
    assert rows[1]["url"] == f"{kfp.url}/#/recurringrun/details/{rows[1]['id']}"

    deleted = cli("delete", "ml_training", "-t", "kubeflow", "-c", f"host={kfp.url}")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.output.startswith(f"deleted recurring run {rows[1]['id']} ('ml_training (pipecast schedule)'")
    assert [r["display_name"] for r in kfp.recurring_runs.values()] == ["full_options (pipecast schedule)"]
    assert len(kfp.runs) == 3  # the runs are left alone
    assert cli("delete", "ml_training", "-t", "kubeflow", "-c", f"host={kfp.url}").exit_code == 2


@pytest.fixture
def multi_user_kfp(isolated_kfp):
    fake = FakeKfp(multi_user=True).start()
    yield fake
    fake.stop()


def test_kubeflow_multi_user_links_go_through_the_central_dashboard(multi_user_kfp):
    kfp = multi_user_kfp
    config = {"host": f"{kfp.url}/pipeline", "namespace": "team-a"}
    submit_pipeline(case("ml_training").build(), "kubeflow", {}, kfp_tests.SETTINGS, config)
    listed = cli("list", "-t", "kubeflow", "-c", f"host={kfp.url}/pipeline", "-c", "namespace=team-a", "--json")
    (row,) = json.loads(listed.output)
    assert row["url"] == f"{kfp.url}/_/pipeline/?ns=team-a#/recurringrun/details/{row['id']}"
    (listing,) = [r for r in kfp.find("GET", f"/pipeline{API}/recurringruns") if "experiment_id" not in r.query]
    assert listing.query["namespace"] == "team-a"


def test_kubeflow_without_an_endpoint_is_one_clear_error():
    result = cli("list", "-t", "kubeflow")
    assert result.exit_code == 2
    assert result.output == ("error: no Kubeflow Pipelines endpoint: pass --config host=https://HOST/pipeline or "
                             "set $KF_PIPELINES_ENDPOINT\n")


def test_vertex_lists_the_schedule_with_its_next_run_and_deletes_it(vertex):
    config = vertex_tests.config(vertex)
    for _ in range(2):  # the second submit updates the schedule in place
        submit_pipeline(case("ml_training").build(), "vertex", {}, vertex_tests.SETTINGS, config)
    (name,) = vertex.schedules
    vertex.schedules[name]["nextRunTime"] = "2026-01-05T04:00:00Z"  # what Vertex's scheduler reports
    flags = [arg for key, value in config.items() for arg in ("-c", f"{key}={value}")]
    listed = cli("list", "-t", "vertex", *flags, "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == [{
        "pipeline": "ml_training", "target": "vertex", "schedule": "0 4 * * 1", "id": name,
        "next_run": "2026-01-05T04:00:00Z", "state": "active",
        "url": "https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/schedules/1234567890"
               "?project=acme-ml"}]
    table = cli("list", "-t", "vertex", *flags).output.splitlines()
    assert table[0].split()[:6] == ["PIPELINE", "TARGET", "SCHEDULE", "NEXT", "RUN", "STATE"]
    deleted = cli("delete", "ml_training", "-t", "vertex", *flags)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.output == (f"deleted Vertex schedule {name}; the pipeline jobs it created are left alone\n")
    assert vertex.find("DELETE", f"{PARENT}/schedules/1234567890") and vertex.schedules == {}
    assert len(vertex.jobs) == 2
