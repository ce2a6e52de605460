"""Job logs of a GitHub Actions workflow run, through the REST API (``pipecast runs logs``).

The run's jobs are listed with ``GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=all`` (every
attempt's), in the order they started; a job's log comes from ``GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs``,
which GitHub answers with a redirect to a short-lived download URL (the shared HTTP client follows it without
the token). GitHub serves a job's log once the job has finished, so ``--follow`` waits for each job to finish,
then prints its log. A pipecast job is named after its step, so ``--step`` matches the job's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipecast.runs.logs import Deadline, StepLog, engine_logs, lines_of

if TYPE_CHECKING:
    from pipecast.targets.github.submit import GitHubRun

PER_PAGE = 100
MAX_PAGES = 10  # a run with more than 1000 jobs is not pipecast's


def job_logs(run: GitHubRun, step: str | None, follow: bool, timeout: float | None) -> Iterator[str]:
    """The run's job logs: ``step``'s job, else every job in the order they started, each after a header."""

    def listing() -> list[StepLog]:
        jobs = _jobs(run)
        jobs.sort(key=lambda j: (j.get("started_at") is None, j.get("started_at") or "", int(j["id"])))
        return [StepLog(key=str(job["id"]), step=str(job["name"]),
                        note=f"attempt {job['run_attempt']}" if int(job.get("run_attempt") or 1) > 1 else "",
                        read=_reader(run, job)) for job in jobs]

    return engine_logs(run.run_id, listing, lambda: run.fetch_status().finished, step, follow, timeout)


def _jobs(run: GitHubRun) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        answer = run.api.request("GET", f"/repos/{run.repo}/actions/runs/{run.engine_run_id}/jobs",
                                 query={"filter": "all", "per_page": PER_PAGE, "page": page}).body
        jobs += answer.get("jobs", [])
        if len(jobs) >= int(answer.get("total_count") or 0) or not answer.get("jobs"):
            break
    return jobs


def _reader(run: GitHubRun, job: dict[str, Any]) -> Any:
    return lambda deadline: read_job(run, job, deadline)


def read_job(run: GitHubRun, job: dict[str, Any], deadline: Deadline | None) -> Iterator[str]:
    """One job's log lines, once it has finished (with a deadline, wait for that)."""
    while job.get("status") != "completed":
        if deadline is None or deadline.expired():
            yield (f"pipecast: job {job['name']!r} is {job.get('status')}; GitHub serves a job's log once it has "
                   "finished (pass --follow to wait for it)")
            return
        deadline.sleep(run.poll_interval)
        job = run.api.request("GET", f"/repos/{run.repo}/actions/jobs/{job['id']}").body
    yield from lines_of(run.api.request("GET", f"/repos/{run.repo}/actions/jobs/{job['id']}/logs").raw)
