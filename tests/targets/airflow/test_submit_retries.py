"""A trigger whose answer is lost is not a lost run (issue 11): submit records the DAG and run ids before the
trigger, tries again on a dropped connection, a timeout, 429 (after its Retry-After) and 5xx, and finds the run
its first try created (409); when no answer ever comes, ``pipecast runs wait`` reconnects and asks Airflow.

Against ``fake_airflow.py``, a local server answering as Airflow's REST API v2 documents it; ``test_submit.py`` does
the same against the real Airflow 3 api-server behind a proxy that drops the first trigger's answer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.http import Response
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from pipecast.targets.airflow import rest
from pipecast.targets.airflow.rest import AirflowApi
from tests.helpers.cases import case
from tests.targets.airflow.fake_airflow import fake_airflow

SETTINGS = {"artifact_root": "s3://bucket/artifacts"}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(rest, "RETRY_DELAYS", (0.01, 0.01, 0.01, 0.01))


@pytest.fixture
def dags(tmp_path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    return folder


def _submit(url: str, dags: Path):
    config = {"dags_folder": str(dags), "base_url": url, "request_timeout": 5, "parse_timeout": 60}
    return submit_pipeline(case("quickstart").build(), "airflow", {"n": 4}, SETTINGS, config)


@pytest.mark.parametrize("fault", ["drop", "hang"])
def test_a_trigger_whose_answer_is_lost_is_tried_again_and_finds_the_run_it_created(fault, dags):
    with fake_airflow(dags, [fault]) as fake:
        handle = _submit(fake.url, dags)
        assert fake.triggers == [fault, "409"]  # the second try met the run the first one created
        assert list(fake.runs) == [("quickstart", handle.run_id)] and handle.engine_run_id == handle.run_id
        record = RunStore.default().get(handle.run_id)
        assert record["status"] == "pending" and record["engine_run_id"] == handle.run_id
        assert record["metadata"]["dag_id"] == "quickstart"
        assert handle.status() is RunStatus.PENDING


def test_when_no_try_gets_an_answer_the_error_says_so_and_runs_wait_reconnects(dags):
    with fake_airflow(dags, ["drop"] * 5) as fake:
        with pytest.raises(SubmitOutcomeUnknownError) as err:
            _submit(fake.url, dags)
        assert fake.triggers == ["drop"] * 5 and len(fake.runs) == 1  # five tries, one run: Airflow runs it
        (run_id,) = [key[1] for key in fake.runs]
        assert f"Airflow did not answer POST /api/v2/dags/quickstart/dagRuns at {fake.url} (" in str(err.value)
        assert "5 tries): it may or may not have taken effect" in str(err.value)
        assert f"The run may have been created all the same: `pipecast runs wait {run_id}`" in str(err.value)
        record = RunStore.default().get(run_id)
        assert record["engine_run_id"] == run_id and record["metadata"]["dag_id"] == "quickstart"
        assert record["status"] == "unknown"  # not failed: only Airflow knows
        handle = track(run_id, {})  # what `pipecast runs wait` and `runs cancel` do
        assert handle.status() is RunStatus.PENDING
        assert RunStore.default().get(run_id)["status"] == "pending"  # Airflow's answer replaces the guess


def _api(url: str, waits: list[float]) -> AirflowApi:
    return AirflowApi(base_url=url, api_version=2, timeout=5, retry_delays=(0.5, 0.5), sleep=waits.append)


def test_429_waits_its_retry_after_and_5xx_backs_off(dags):
    (dags / "d.py").write_text("")
    with fake_airflow(dags, ["429", "503"]) as fake:
        waits: list[float] = []
        answer = _api(fake.url, waits).request("POST", "/dags/d/dagRuns", {"dag_run_id": "r", "conf": {}})
        assert answer.status == 200 and fake.triggers == ["429", "503", "answer"]
        assert waits == [1.0, 0.5]  # Retry-After: 1, then the backoff


def test_tries_are_bounded_and_the_last_answer_is_reported(dags):
    with fake_airflow(dags, ["429"] * 3) as fake:
        waits: list[float] = []
        with pytest.raises(SubmitError, match=r"kept answering HTTP 429 Too Many Requests .* after 3 tries"):
            _api(fake.url, waits).request("POST", "/dags/d/dagRuns", {"dag_run_id": "r", "conf": {}})
        assert fake.triggers == ["429"] * 3 and waits == [1.0, 1.0] and fake.runs == {}


def test_a_long_retry_after_is_reported_instead_of_waited_for(dags):
    with fake_airflow(dags, ["429-long"]) as fake:
        waits: list[float] = []
        with pytest.raises(SubmitError, match=r"or asked to wait longer than 300s"):
            _api(fake.url, waits).request("POST", "/dags/d/dagRuns", {"dag_run_id": "r", "conf": {}})
        assert fake.triggers == ["429-long"] and waits == []


def test_retry_after_is_seconds_or_an_http_date():
    now = 1_000_770.0  # 1970-01-12 13:59:30 UTC
    assert Response(429, {"retry-after": "Mon, 12 Jan 1970 14:00:00 GMT"}, None).retry_after(now) == 30.0
    assert Response(429, {"retry-after": "7"}, None).retry_after(now) == 7.0
    assert Response(429, {"retry-after": "soon"}, None).retry_after(now) is None
    assert Response(429, {}, None).retry_after(now) is None


def test_submitting_needs_no_airflow_installed(dags, monkeypatch):
    """Submit speaks the REST API with the standard library: a laptop without Airflow submits to a deployment."""
    monkeypatch.setitem(sys.modules, "airflow", None)  # `import airflow` fails, find_spec finds nothing
    with fake_airflow(dags) as fake:
        handle = _submit(fake.url, dags)
        assert fake.triggers == ["answer"] and handle.status() is RunStatus.PENDING


def test_connection_values_are_typed_and_a_bad_one_is_a_clear_error(dags):
    api = AirflowApi.from_config({"base_url": "http://x", "request_timeout": "1m", "verify": "false",
                                  "api_version": "1"})
    assert (api.timeout, api.verify, api.api_version) == (60.0, False, 1)
    assert AirflowApi.from_config({"base_url": "http://x", "verify": "/etc/ca.pem"}).verify == "/etc/ca.pem"
    with pytest.raises(SubmitError, match="config 'request_timeout' must be a duration"):
        AirflowApi.from_config({"base_url": "http://x", "request_timeout": "soon"})
    with fake_airflow(dags) as fake:
        with pytest.raises(SubmitError, match="config 'unpause' must be true or false, got 'maybe'"):
            submit_pipeline(case("quickstart").build(), "airflow", {}, SETTINGS,
                            {"dags_folder": str(dags), "base_url": fake.url, "unpause": "maybe"})
        assert list(dags.iterdir()) == []  # refused before anything is written


def test_a_cancel_is_recorded_by_the_framework_from_the_runs_detail(dags):
    """The target never writes the run store: the cancel's note reaches the record through the handle."""
    with fake_airflow(dags) as fake:
        handle = _submit(fake.url, dags)
        handle.cancel()
        assert fake.runs[("quickstart", handle.run_id)]["state"] == "failed"
        record = RunStore.default().get(handle.run_id)
        assert (record["status"], record["detail"]) == ("cancelled", "cancelled by pipecast")
        again = track(handle.run_id, {})  # another process reads Airflow's note
        assert again.status() is RunStatus.CANCELLED and again.detail == "cancelled by pipecast"
