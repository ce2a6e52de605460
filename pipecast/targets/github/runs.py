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
from pipecast.targets.github.api import DEFAULT_API_URL, GitHubClient, server_date, token_from, web_to_api
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
    answer = client.request("POST", f"/repos/{repo}/actions/workflows/{workflow}/dispatches", body=body,
                            ok=(200, 204))
    poll = float(config.get("poll_interval", 2.0))
    if isinstance(answer.body, dict) and answer.body.get("workflow_run_id"):
        run = client.request("GET", f"/repos/{repo}/actions/runs/{answer.body['workflow_run_id']}").body
    else:
        since = datetime.fromtimestamp(server_date(answer, client.clock()), timezone.utc) - CREATED_SLACK
        run = _find_run(client, repo, workflow, run_title(pipeline.name, run_id), since, poll,
                        float(config.get("find_timeout", 120.0)))
    url = run.get("html_url") or _web_url(client.api_url, repo, run["id"])
    return GitHubRunHandle(run_id=run_id, client=client, repo=repo, engine_run_id=str(run["id"]), url=url,
                           poll_interval=float(config.get("wait_interval", 5.0)))


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


def _find_run(client: GitHubClient, repo: str, workflow: str, title: str, since: datetime, poll: float,
              timeout: float) -> dict[str, Any]:
    """The run whose title carries our run id; bounded polling (GitHub creates runs asynchronously)."""
    query = {"event": "workflow_dispatch", "per_page": 100,
             "created": ">=" + since.strftime("%Y-%m-%dT%H:%M:%SZ")}
    tries = max(1, math.ceil(timeout / poll) + 1) if poll > 0 else max(1, int(timeout))
    for attempt in range(tries):
        runs = client.request("GET", f"/repos/{repo}/actions/workflows/{workflow}/runs", query=query).body
        mine = [r for r in runs.get("workflow_runs", []) if r.get("display_title") == title]
        if mine:
            return min(mine, key=lambda r: int(r["id"]))  # a retried dispatch may start two: keep the first
        if attempt + 1 < tries:
            client.sleep(poll)
    raise SubmitError(f"dispatched {workflow!r} on {repo!r}, but no run titled {title!r} appeared within "
                      f"{timeout:g}s; look at https://github.com/{repo}/actions and raise -c find_timeout=…")


def _web_url(api_url: str, repo: str, run: Any) -> str:
    parsed = urllib.parse.urlsplit(api_url)
    host = "github.com" if parsed.netloc == "api.github.com" else parsed.netloc
    return f"{parsed.scheme}://{host}/{repo}/actions/runs/{run}"


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> GitHubRunHandle:
    """The handle of a recorded run, from its URL (or ``repo``/``api_url`` in ``config``)."""
    url = record.get("url") or ""
    engine_id = str(record.get("engine_run_id") or "")
    if url:
        api_url, repo, from_url = web_to_api(url)
        engine_id = engine_id or from_url
    else:
        api_url, repo = DEFAULT_API_URL, _repo(config)
    if "repo" in config:
        repo = _repo(config)
    if not engine_id:
        raise SubmitError(f"run {record.get('id')!r} has no GitHub run id recorded")
    client = client_for(config, api_url)
    return GitHubRunHandle(run_id=str(record["id"]), client=client, repo=repo, engine_run_id=engine_id, url=url,
                           poll_interval=float(config.get("wait_interval", 5.0)))
