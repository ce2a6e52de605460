"""Submit and track through GitHub's REST API, against a local server that answers as the API documents."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from pipecast.targets.github.submit import map_status
from tests.helpers.cases import case, compile_case, golden_settings
from tests.helpers.runs import forget_engine_identity
from tests.targets.github.fake_github import DROP, FakeGitHub, Fault
from tests.targets.github.support import workflow_file

TOKEN = "t0ken-never-stored"


@pytest.fixture
def github(monkeypatch):
    server = FakeGitHub(token=TOKEN).start()
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    yield server
    server.stop()


@pytest.fixture
def quickstart(github):
    pipeline = case("quickstart").build()
    github.push(".github/workflows/quickstart.yml", workflow_file(compile_case("github", pipeline, golden=True)))
    return pipeline


def _config(github, sleeps=None, **extra):
    """Enterprise-style config (api_url under /api/v3); sleeps are recorded instead of slept."""
    recorded = sleeps if sleeps is not None else []
    return {"repo": "acme/ml", "api_url": f"{github.base}/api/v3", "poll_interval": 0.5, "wait_interval": 0,
            "sleep": recorded.append, **extra}


def _submit(pipeline, github, parameters=None, **config):
    return submit_pipeline(pipeline, "github", parameters or {}, golden_settings("github"), _config(github, **config))


def test_submit_dispatches_finds_the_run_and_tracks_it(github, quickstart):
    handle = _submit(quickstart, github, {"n": 20})
    (dispatch,) = github.calls("POST", "/actions/workflows/quickstart.yml/dispatches")
    assert dispatch.body == {"ref": "main", "inputs": {"n": "20", "seed": "7", "label": "numbers",
                                                       "pipecast_run_id": handle.run_id}}
    lists = github.calls("GET", "/actions/workflows/quickstart.yml/runs")
    assert len(lists) == 2  # the run appears one poll after the dispatch
    assert lists[0].query["event"] == "workflow_dispatch" and lists[0].query["created"].startswith(">=20")
    run = github.runs[int(handle.engine_run_id)]
    assert run.title == f"quickstart [example] ({handle.run_id})" and run.inputs["n"] == 20.0  # tags in the title
    assert handle.url == f"{github.base}/acme/ml/actions/runs/{run.id}"
    record = RunStore.default().get(handle.run_id)
    assert record["engine_run_id"] == str(run.id) and record["url"] == handle.url and record["target"] == "github"
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED
    assert RunStore.default().get(handle.run_id)["status"] == "succeeded"
    first = github.requests[0].headers
    assert first["authorization"] == f"Bearer {TOKEN}" and first["x-github-api-version"] == "2022-11-28"
    assert all(TOKEN not in r.path + str(r.query) + str(r.body) for r in github.requests)
    assert TOKEN not in str(RunStore.default().get(handle.run_id))


def test_return_run_details_needs_no_polling(github, quickstart):
    github.run_details = True
    handle = _submit(quickstart, github, return_run_details=True)
    assert github.calls("POST", "/dispatches")[0].body["return_run_details"] is True
    assert not github.calls("GET", "/actions/workflows/quickstart.yml/runs")
    assert github.runs[int(handle.engine_run_id)].inputs["pipecast_run_id"] == handle.run_id


def test_concurrent_dispatches_are_not_confused(github, quickstart):
    github.appear_after = 2
    handles: dict[int, object] = {}

    def submit(n: int) -> None:
        handles[n] = _submit(quickstart, github, {"n": n})

    threads = [threading.Thread(target=submit, args=(n,)) for n in (11, 12, 13)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(handles) == [11, 12, 13]
    assert len({h.engine_run_id for h in handles.values()}) == 3
    for n, handle in handles.items():
        run = github.runs[int(handle.engine_run_id)]
        assert run.inputs["pipecast_run_id"] == handle.run_id and run.inputs["n"] == float(n)


def test_rate_limits_and_server_errors_are_retried_with_backoff(github, quickstart):
    github.faults += [
        Fault("GET", "/repos/acme/ml", 403, {"x-ratelimit-remaining": "0",
                                             "x-ratelimit-reset": str(int(time.time()) + 30)},
              {"message": "API rate limit exceeded"}),
        Fault("POST", "/dispatches", 429, {"retry-after": "7"}, {"message": "secondary rate limit"}),
        Fault("GET", "/quickstart.yml/runs", 502, {}, {"message": "Server Error"}),
        Fault("GET", "/quickstart.yml/runs", 503, {}, None),
    ]
    sleeps: list[float] = []
    handle = _submit(quickstart, github, sleeps=sleeps, backoff=1.5)
    assert not github.faults
    assert 29 <= sleeps[0] <= 32  # until x-ratelimit-reset
    assert sleeps[1] == 7  # retry-after
    assert sleeps[2:4] == [1.5, 3.0]  # exponential backoff on 5xx
    assert len(github.calls("POST", "/dispatches")) == 2
    assert handle.engine_run_id in {str(i) for i in github.runs}


@pytest.mark.parametrize("status", [DROP, 502])
def test_a_lost_dispatch_answer_is_resolved_by_the_correlation_id_without_a_second_dispatch(github, quickstart,
                                                                                              status):
    """GitHub started the run but its answer was lost (connection dropped, or a 502 from a proxy): submit finds
    the run by the run id in its title; it never dispatches again, so the pipeline runs once."""
    github.faults.append(Fault("POST", "/dispatches", status, after_work=True))
    handle = _submit(quickstart, github, {"n": 4})
    assert len(github.calls("POST", "/dispatches")) == 1 and len(github.runs) == 1
    (run,) = github.runs.values()
    assert handle.engine_run_id == str(run.id) and run.inputs["pipecast_run_id"] == handle.run_id
    assert RunStore.default().get(handle.run_id)["engine_run_id"] == str(run.id)
    assert handle.wait(timeout=30) is RunStatus.SUCCEEDED


def test_a_dispatch_github_never_acted_on_is_sent_again_once_no_run_appeared(github, quickstart):
    github.faults.append(Fault("POST", "/dispatches", 503))  # refused before any work: no run
    handle = _submit(quickstart, github, find_timeout=1, poll_interval=0.5)
    assert len(github.calls("POST", "/dispatches")) == 2 and len(github.runs) == 1
    assert handle.engine_run_id == str(next(iter(github.runs)))


def test_a_late_run_of_a_lost_dispatch_beside_the_resent_one_is_cancelled(github, quickstart):
    """The first dispatch's run shows up only after submit gave up looking and dispatched again: one is kept."""
    github.appear_after_each = [4, 0]  # the lost dispatch's run stays invisible through the bounded search
    github.faults.append(Fault("POST", "/dispatches", DROP, after_work=True))
    handle = _submit(quickstart, github, find_timeout=1, poll_interval=0.5)
    assert len(github.calls("POST", "/dispatches")) == 2 and len(github.runs) == 2
    late, resent = sorted(github.runs)
    assert handle.engine_run_id == str(resent)
    assert github.calls("POST", f"/runs/{late}/cancel") and github.runs[late].conclusion == "cancelled"
    assert not github.calls("POST", f"/runs/{resent}/cancel")


def test_dispatches_that_all_go_unanswered_leave_the_run_unknown_and_findable(github, quickstart):
    """No answer to any dispatch and no run seen: GitHub may still start one, so the run is `unknown` (not
    failed), and `pipecast runs wait` looks for it in the repository and API noted before the first dispatch."""
    github.faults += [Fault("POST", "/dispatches", 503) for _ in range(5)]
    with pytest.raises(SubmitOutcomeUnknownError, match="after 5 dispatches"):
        _submit(quickstart, github, find_timeout=1, poll_interval=0.5)
    (record,) = RunStore.default().list()
    assert record["status"] == "unknown" and not record["engine_run_id"]
    assert record["metadata"]["repo"] == "acme/ml" and record["metadata"]["api_url"] == f"{github.base}/api/v3"
    with pytest.raises(SubmitError, match=r"'acme/ml' has no run of 'quickstart\.yml' titled with it"):
        track(record["id"], {"wait_interval": 0})  # no -c repo/api_url: the noted ones are used


def test_a_run_recorded_without_its_github_run_is_found_by_its_correlation_id(github, quickstart):
    handle = _submit(quickstart, github)
    forget_engine_identity(handle.run_id)
    again = track(handle.run_id, _config(github))
    assert again.engine_run_id == handle.engine_run_id and again.url == handle.url
    found = RunStore.default().get(handle.run_id)  # what reconnecting found is recorded
    assert found["engine_run_id"] == handle.engine_run_id and found["url"] == handle.url
    assert again.wait(timeout=30) is RunStatus.SUCCEEDED


def test_errors_are_bounded_and_explained(github, quickstart):
    github.faults += [Fault("GET", "/repos/acme/ml", 502, {}, None) for _ in range(5)]
    with pytest.raises(SubmitError, match="502"):
        _submit(quickstart, github, backoff=0)
    assert len(github.calls("GET", "/repos/acme/ml")) == 5
    github.faults += [Fault("GET", "/repos/acme/ml", 403, {}, {"message": "Resource not accessible by integration"})]
    with pytest.raises(SubmitError, match="actions: write"):  # a 403 that is no rate limit is not retried
        _submit(quickstart, github)
    github.faults += [Fault("GET", "/repos/acme/ml", 403, {"x-ratelimit-remaining": "0",
                                                           "x-ratelimit-reset": str(int(time.time()) + 7200)})]
    with pytest.raises(SubmitError, match="rate limit"):
        _submit(quickstart, github)


def test_the_workflow_must_be_pushed_as_compiled(github):
    pipeline = case("quickstart").build()
    with pytest.raises(SubmitError, match="is not on 'main'"):
        _submit(pipeline, github)
    text = workflow_file(compile_case("github", pipeline, golden=True))
    github.push(".github/workflows/quickstart.yml", text.replace("numbers", "digits"))
    with pytest.raises(SubmitError, match="differs from the workflow just compiled"):
        _submit(pipeline, github)
    assert not github.calls("POST", "/dispatches")
    github.push(".github/workflows/quickstart.yml", workflow_file(compile_case("github", pipeline, golden=True)),
                ref="release")
    handle = _submit(pipeline, github, ref="release")
    assert github.runs[int(handle.engine_run_id)].ref == "release"
    github.content_limit = 100  # a large workflow: its content is read raw
    _submit(pipeline, github, ref="release")
    (raw,) = [r for r in github.calls("GET", "/contents/.github/workflows/quickstart.yml")
              if r.headers["accept"] == "application/vnd.github.raw+json"]
    assert raw.query == {"ref": "release"}


def test_a_run_that_never_appears_is_an_error(github, quickstart):
    github.appear_after = 1000
    with pytest.raises(SubmitError, match="no run titled"):
        _submit(quickstart, github, find_timeout=2, poll_interval=0.5)
    assert len(github.calls("GET", "/quickstart.yml/runs")) == 5  # bounded polling


def test_failed_run_names_the_failing_job(github, quickstart):
    github.states = [("queued", None), ("completed", "failure")]
    github.failed_jobs = [{"name": "make_numbers", "conclusion": "success"}, {"name": "split", "conclusion": "failure"},
                          {"name": "report", "conclusion": "skipped"}]
    handle = _submit(quickstart, github)
    assert handle.wait(timeout=30) is RunStatus.FAILED
    assert handle.detail == "job 'split' failure"
    record = RunStore.default().get(handle.run_id)
    assert record["status"] == "failed" and record["detail"] == "job 'split' failure"


def test_cancel_and_reconnect_from_the_run_store(github, quickstart):
    github.states = [("queued", None), ("in_progress", None)]
    handle = _submit(quickstart, github)
    assert handle.status() is RunStatus.RUNNING
    again = track(handle.run_id, {"wait_interval": 0})  # repo and API from the recorded URL
    assert again.engine_run_id == handle.engine_run_id and again.repo == "acme/ml"
    again.cancel()
    assert github.calls("POST", f"/runs/{handle.engine_run_id}/cancel")
    assert again.wait(timeout=30) is RunStatus.CANCELLED
    again.cancel()  # cancelling a finished run is not an error (GitHub answers 409)


def test_missing_token_and_bad_repo_are_clear(github, quickstart, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    with pytest.raises(SubmitError, match="GITHUB_TOKEN"):
        _submit(quickstart, github)
    monkeypatch.setenv("GH_TOKEN", TOKEN)
    with pytest.raises(SubmitError, match="OWNER/NAME"):
        submit_pipeline(quickstart, "github", {}, {}, {**_config(github), "repo": "no-slash"})


def test_cli_submit_and_wait(github, quickstart):
    from pipecast.cli import main

    args = ["submit", "examples/quickstart.py", "-t", "github", "-p", "n=12", "-c", "repo=acme/ml",
            "-c", f"api_url={github.base}/api/v3", "-c", "poll_interval=0.1", "-c", "wait_interval=0", "--wait"]
    result = CliRunner().invoke(main, args, env={"GITHUB_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert f"{github.base}/acme/ml/actions/runs/" in result.output and "succeeded" in result.output


@pytest.mark.parametrize(("status", "conclusion", "expected"), [
    ("queued", None, RunStatus.PENDING), ("waiting", None, RunStatus.PENDING), ("in_progress", None, RunStatus.RUNNING),
    ("completed", "success", RunStatus.SUCCEEDED), ("completed", "failure", RunStatus.FAILED),
    ("completed", "timed_out", RunStatus.FAILED), ("completed", "startup_failure", RunStatus.FAILED),
    ("completed", "cancelled", RunStatus.CANCELLED), ("mystery", None, RunStatus.UNKNOWN),
])
def test_status_mapping(status, conclusion, expected):
    assert map_status(status, conclusion) is expected
