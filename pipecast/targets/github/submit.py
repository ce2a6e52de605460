"""Submitting a compiled workflow to GitHub Actions and tracking its run.

Committing and pushing the workflow file is the user's job. ``submit`` checks the file on the ref is the
one just compiled, dispatches ``workflow_dispatch`` with the parameters and a correlation id (pipecast's
run id, shown by the workflow's ``run-name``), finds the run that dispatch created by that id, so
concurrent dispatches are never confused, and returns a handle with status, wait, cancel and the URL.
"""

from __future__ import annotations

import base64
import math
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import SubmitError
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import Bundle, RunHandle, RunStatus
from pipecast.targets.github.api import (
    DEFAULT_API_URL,
    GitHubClient,
    OutcomeUnknownError,
    server_date,
    token_from,
    web_to_api,
)
from pipecast.targets.github.syntax import RUN_ID_INPUT, run_title

_PENDING = {"queued", "requested", "waiting", "pending", "action_required"}
_SUCCEEDED = {"success", "neutral"}
_CANCELLED = {"cancelled", "skipped"}
CREATED_SLACK = timedelta(minutes=2)  # a run's created_at may precede the dispatch answer's Date a little


class GitHubRunHandle(RunHandle):
    """A workflow run: ``status()`` maps GitHub's status/conclusion, ``detail`` names the failed jobs."""

    def __init__(self, *, run_id: str, client: GitHubClient, repo: str, engine_run_id: str, url: str | None,
                 poll_interval: float = 5.0) -> None:
        super().__init__(run_id=run_id, target="github", engine_run_id=engine_run_id, url=url)
        self.client = client
        self.repo = repo
        self.poll_interval = poll_interval

    def fetch_status(self) -> RunStatus:
        run = self.client.request("GET", f"/repos/{self.repo}/actions/runs/{self.engine_run_id}").body
        status = map_status(run.get("status"), run.get("conclusion"))
        self.detail = ""
        if status is RunStatus.FAILED:
            self.detail = self._failed_jobs() or f"run concluded {run.get('conclusion')!r}"
        return status

    def _failed_jobs(self) -> str:
        answer = self.client.request("GET", f"/repos/{self.repo}/actions/runs/{self.engine_run_id}/jobs",
                                     query={"filter": "latest", "per_page": 100}).body
        failed = [f"job {job.get('name')!r} {job.get('conclusion')}" for job in answer.get("jobs", [])
                  if job.get("conclusion") not in (None, "success", "skipped", "neutral")]
        return "; ".join(failed)

    def cancel(self) -> None:
        """Ask GitHub to cancel the run (a run that already finished is left as it is)."""
        self.client.request("POST", f"/repos/{self.repo}/actions/runs/{self.engine_run_id}/cancel", ok=(202, 409))


def map_status(status: str | None, conclusion: str | None) -> RunStatus:
    """GitHub's run ``status`` and ``conclusion`` as a :class:`RunStatus`."""
    if status == "completed":
        if conclusion in _SUCCEEDED:
            return RunStatus.SUCCEEDED
        if conclusion in _CANCELLED:
            return RunStatus.CANCELLED
        return RunStatus.FAILED  # failure, timed_out, startup_failure, stale, action_required
    if status == "in_progress":
        return RunStatus.RUNNING
    if status in _PENDING:
        return RunStatus.PENDING
    return RunStatus.UNKNOWN


def client_for(config: Mapping[str, Any], api_url: str) -> GitHubClient:
    """A client with the token and the retry knobs of ``config``."""
    client = GitHubClient(api_url=str(config.get("api_url") or api_url), token=token_from(config))
    if "backoff" in config:
        client.backoff = float(config["backoff"])
    if "max_rate_limit_wait" in config:
        client.max_wait = float(config["max_rate_limit_wait"])
    sleep = config.get("sleep")
    if sleep is not None:
        if not callable(sleep):
            raise SubmitError("config 'sleep' must be a callable taking seconds (for embedding and tests)")
        client.sleep = sleep
    return client


def _repo(config: Mapping[str, Any]) -> str:
    repo = config.get("repo")
    if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
        raise SubmitError(f"config 'repo' must be OWNER/NAME, got {repo!r}; pass -c repo=acme/ml")
    return repo


def submit_workflow(pipeline: ir.Pipeline, bundle: Bundle, parameters: Mapping[str, Any],
                    config: Mapping[str, Any], run_id: str) -> GitHubRunHandle:
    """Dispatch the workflow on GitHub and return the handle of the run it started."""
    repo = _repo(config)
    client = client_for(config, DEFAULT_API_URL)
    path = bundle.main_file
    workflow = path.rsplit("/", 1)[-1]
    ref = str(config.get("ref") or client.request("GET", f"/repos/{repo}").body.get("default_branch"))
    if config.get("verify_workflow", True):
        _verify_workflow(client, repo, path, ref, bundle[path])
    inputs = {p.name: render_parameter(p.type, parameters[p.name]) for p in pipeline.parameters}
    inputs[RUN_ID_INPUT] = run_id
    body: dict[str, Any] = {"ref": ref, "inputs": inputs}
    details = config.get("return_run_details", client.api_url.rstrip("/") == DEFAULT_API_URL)
    if details:
        body["return_run_details"] = True
    poll = float(config.get("poll_interval", 2.0))
    find_timeout = float(config.get("find_timeout", 120.0))
    title = run_title(pipeline, run_id)
    run = _dispatch(client, repo, workflow, body, title, poll, find_timeout)
    url = run.get("html_url") or _web_url(client.api_url, repo, run["id"])
    return GitHubRunHandle(run_id=run_id, client=client, repo=repo, engine_run_id=str(run["id"]), url=url,
                           poll_interval=float(config.get("wait_interval", 5.0)))


def _dispatch(client: GitHubClient, repo: str, workflow: str, body: Mapping[str, Any], title: str, poll: float,
              find_timeout: float) -> dict[str, Any]:
    """Dispatch once, and find the run it started by its title (which holds the run id).

    GitHub's dispatch has no idempotency key, so it is never resent blindly: when its answer is lost
    (a dropped connection, a timeout, a 5xx), the run is looked for by its title first, and the dispatch is
    sent again only if no such run appeared within ``find_timeout``. Runs that a late first dispatch still
    starts beside the resent one are cancelled: one pipecast run is one GitHub run.
    """
    path = f"/repos/{repo}/actions/workflows/{workflow}/dispatches"
    first = datetime.fromtimestamp(client.clock(), timezone.utc) - CREATED_SLACK
    sent = 0
    while True:
        sent += 1
        since = datetime.fromtimestamp(client.clock(), timezone.utc) - CREATED_SLACK
        try:
            answer = client.request("POST", path, body=body, ok=(200, 204), repeatable=False)
            break
        except OutcomeUnknownError as lost:
            try:
                return _find_run(client, repo, workflow, title, since, poll, find_timeout)
            except RunNotFoundError:
                if sent == client.attempts:
                    raise SubmitError(f"GitHub did not answer the dispatch of {workflow!r} on {repo!r} ({lost}) and "
                                      f"no run titled {title!r} appeared after {sent} dispatches") from None
    if isinstance(answer.body, dict) and answer.body.get("workflow_run_id"):
        run = client.request("GET", f"/repos/{repo}/actions/runs/{answer.body['workflow_run_id']}").body
    else:
        since = datetime.fromtimestamp(server_date(answer, client.clock()), timezone.utc) - CREATED_SLACK
        run = _find_run(client, repo, workflow, title, since, poll, find_timeout)
    if sent > 1:
        _cancel_duplicates(client, repo, workflow, title, first, int(run["id"]))
    return dict(run)


def _cancel_duplicates(client: GitHubClient, repo: str, workflow: str, title: str, since: datetime,
                       kept: int) -> None:
    """Cancel the other runs with our title: a lost dispatch that GitHub did start late, beside the resent one."""
    for run in _runs_titled(client, repo, workflow, title, since):
        if int(run["id"]) != kept:
            client.request("POST", f"/repos/{repo}/actions/runs/{run['id']}/cancel", ok=(202, 409))


def _verify_workflow(client: GitHubClient, repo: str, path: str, ref: str, expected: str) -> None:
    quoted = urllib.parse.quote(path)
    answer = client.request("GET", f"/repos/{repo}/contents/{quoted}", query={"ref": ref}, ok=(200, 404))
    fix = f"commit {path!r} as compiled and push it to {ref!r} (or pass -c verify_workflow=false)"
    if answer.status == 404:
        raise SubmitError(f"{path!r} is not on {ref!r} of {repo!r}: GitHub runs workflows from the repository; {fix}")
    body = answer.body if isinstance(answer.body, dict) else {}
    if body.get("encoding") == "base64":
        text = base64.b64decode(body.get("content", "")).decode("utf-8", "replace")
    else:  # files over 1 MB come without content: ask for the raw file
        raw = client.request("GET", f"/repos/{repo}/contents/{quoted}", query={"ref": ref},
                             accept="application/vnd.github.raw+json").body
        text = raw if isinstance(raw, str) else ""
    if text != expected:
        raise SubmitError(f"{path!r} on {ref!r} of {repo!r} differs from the workflow just compiled; {fix}")


class RunNotFoundError(SubmitError):
    """No run with the title of this submit appeared in time."""


def _runs_titled(client: GitHubClient, repo: str, workflow: str, title: str,
                 since: datetime) -> list[dict[str, Any]]:
    query = {"event": "workflow_dispatch", "per_page": 100,
             "created": ">=" + since.strftime("%Y-%m-%dT%H:%M:%SZ")}
    runs = client.request("GET", f"/repos/{repo}/actions/workflows/{workflow}/runs", query=query).body
    return [r for r in runs.get("workflow_runs", []) if r.get("display_title") == title]


def _find_run(client: GitHubClient, repo: str, workflow: str, title: str, since: datetime, poll: float,
              timeout: float) -> dict[str, Any]:
    """The run whose title carries our run id; bounded polling (GitHub creates runs asynchronously)."""
    tries = max(1, math.ceil(timeout / poll) + 1) if poll > 0 else max(1, int(timeout))
    for attempt in range(tries):
        mine = _runs_titled(client, repo, workflow, title, since)
        if mine:
            return min(mine, key=lambda r: int(r["id"]))  # the first, should a late duplicate exist
        if attempt + 1 < tries:
            client.sleep(poll)
    raise RunNotFoundError(f"dispatched {workflow!r} on {repo!r}, but no run titled {title!r} appeared within "
                           f"{timeout:g}s; look at https://github.com/{repo}/actions and raise -c find_timeout=…")


def _find_by_correlation(client: GitHubClient, repo: str, record: Mapping[str, Any]) -> tuple[str, str]:
    """The id and page of the run whose title ends with ``(<run id>)``, dispatched since the run was recorded."""
    run_id, workflow = str(record["id"]), f"{record.get('pipeline')}.yml"
    query: dict[str, Any] = {"event": "workflow_dispatch", "per_page": 100}
    if record.get("created_at"):
        created = datetime.fromisoformat(str(record["created_at"]).replace("Z", "+00:00")) - CREATED_SLACK
        query["created"] = ">=" + created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    runs = client.request("GET", f"/repos/{repo}/actions/workflows/{workflow}/runs", query=query).body
    mine = [r for r in runs.get("workflow_runs", []) if str(r.get("display_title", "")).endswith(f" ({run_id})")]
    if not mine:
        raise SubmitError(f"run {run_id!r} has no GitHub run recorded, and {repo!r} has no run of {workflow!r} "
                          f"titled with it: the dispatch never started one")
    run = min(mine, key=lambda r: int(r["id"]))
    return str(run["id"]), str(run.get("html_url") or _web_url(client.api_url, repo, run["id"]))


def _web_url(api_url: str, repo: str, run: Any) -> str:
    parsed = urllib.parse.urlsplit(api_url)
    host = "github.com" if parsed.netloc == "api.github.com" else parsed.netloc
    return f"{parsed.scheme}://{host}/{repo}/actions/runs/{run}"


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> GitHubRunHandle:
    """The handle of a recorded run, from its URL (or ``repo``/``api_url`` in ``config``).

    A run whose submit recorded no GitHub run (the dispatch's outcome was unknown) is looked for by the
    correlation id in its title, among the pipeline workflow's dispatched runs.
    """
    url = record.get("url") or ""
    engine_id = str(record.get("engine_run_id") or "")
    if url:
        api_url, repo, from_url = web_to_api(url)
        engine_id = engine_id or from_url
    else:
        api_url, repo = DEFAULT_API_URL, _repo(config)
    if "repo" in config:
        repo = _repo(config)
    client = client_for(config, api_url)
    if not engine_id:
        engine_id, url = _find_by_correlation(client, repo, record)
    return GitHubRunHandle(run_id=str(record["id"]), client=client, repo=repo, engine_run_id=engine_id, url=url,
                           poll_interval=float(config.get("wait_interval", 5.0)))
