"""``pipecast runs logs`` on GitHub Actions: the run's jobs, each job's log downloaded through the redirect
GitHub answers with (the token never sent to the download URL), against the local server of ``fake_github``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.flow import submit_pipeline
from pipecast.runs.logs import run_logs
from tests.helpers.cases import case, compile_case, golden_settings
from tests.targets.github.fake_github import FakeGitHub
from tests.targets.github.support import workflow_file

TOKEN = "t0ken-for-logs"


@pytest.fixture
def github(monkeypatch):
    server = FakeGitHub(token=TOKEN).start()
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    yield server
    server.stop()


def job(job_id, name, started, status="completed", conclusion="success", attempt=1):
    return {"id": job_id, "name": name, "status": status, "conclusion": conclusion, "run_attempt": attempt,
            "started_at": started}


def test_every_job_log_in_start_order_then_one_step_and_a_job_still_running(github):
    pipeline = case("quickstart").build()
    github.push(".github/workflows/quickstart.yml", workflow_file(compile_case("github", pipeline, golden=True)))
    github.failed_jobs = [job(31, "split", "2030-01-01T00:01:00Z"), job(30, "make_numbers", "2030-01-01T00:00:00Z"),
                          job(32, "total", "2030-01-01T00:02:00Z", status="in_progress", conclusion=None)]
    github.job_logs = {30: "2030-01-01T00:00:01.0Z made 10 numbers\n", 31: "2030-01-01T00:01:01.0Z split {}\n"}
    config = {"repo": "acme/ml", "api_url": f"{github.base}/api/v3", "poll_interval": 0.1, "wait_interval": 0}
    handle = submit_pipeline(pipeline, "github", {}, golden_settings("github"), config)
    assert list(run_logs(handle.run_id, config)) == [
        "==> make_numbers <==", "2030-01-01T00:00:01.0Z made 10 numbers",
        "==> split <==", "2030-01-01T00:01:01.0Z split {}",  # a log that is also JSON comes out as written
        "==> total <==", "pipecast: job 'total' is in_progress; GitHub serves a job's log once it has finished "
                         "(pass --follow to wait for it)"]
    downloads = [r for r in github.requests if r.path.startswith("/_storage/")]
    assert len(downloads) == 2 and all("authorization" not in r.headers for r in downloads)

    github.failed_jobs[2].update(status="completed", conclusion="failure")
    github.job_logs[32] = "2030-01-01T00:02:01.0Z Traceback ...\nValueError: no total\n"
    result = CliRunner().invoke(main, ["runs", "logs", handle.run_id, "--step", "total",
                                       "-c", "repo=acme/ml", "-c", f"api_url={github.base}/api/v3"])
    assert (result.exit_code, result.output) == (0, "2030-01-01T00:02:01.0Z Traceback ...\nValueError: no total\n")


def test_follow_waits_for_a_running_job_to_finish_then_prints_its_log(github):
    import threading

    from tests.helpers.processes import wait_until

    pipeline = case("quickstart").build()
    github.push(".github/workflows/quickstart.yml", workflow_file(compile_case("github", pipeline, golden=True)))
    github.states = [("queued", None), ("in_progress", None), ("in_progress", None), ("in_progress", None),
                     ("completed", "success")]
    github.failed_jobs = [job(40, "make_numbers", "2030-01-01T00:00:00Z", status="in_progress", conclusion=None)]
    config = {"repo": "acme/ml", "api_url": github.base, "poll_interval": 0.05, "wait_interval": 0}
    handle = submit_pipeline(pipeline, "github", {}, golden_settings("github"), config)
    lines: list[str] = []
    follower = threading.Thread(target=lambda: lines.extend(run_logs(handle.run_id, config, follow=True,
                                                                     timeout=120)))
    follower.start()
    wait_until(lambda: github.calls("GET", "/actions/jobs/40"), "the follower to ask for the running job")
    assert not github.calls("GET", "/actions/jobs/40/logs")  # no log asked for while the job runs
    github.job_logs[40] = "made 10 numbers\n"
    github.runs[int(handle.engine_run_id)].jobs[0].update(status="completed", conclusion="success")
    follower.join(timeout=120)
    assert not follower.is_alive() and lines == ["==> make_numbers <==", "made 10 numbers"]
