"""Submitting a compiled workflow to GitHub Actions and tracking its run (the target's submit module).

Committing and pushing the workflow file is the user's job. ``submit`` checks the file on the ref is the
one just compiled, dispatches ``workflow_dispatch`` with the parameters and a correlation id (pipecast's
run id, shown by the workflow's ``run-name``), finds the run that dispatch created by that id, so
concurrent dispatches are never confused, and returns it with status, cancel and the URL.

Config (``-c KEY=VALUE``): ``repo`` (OWNER/NAME, required), ``ref`` (default: the default branch),
``api_url`` (GitHub Enterprise Server: ``https://HOST/api/v3``), ``token`` (default ``$GITHUB_TOKEN``,
``$GH_TOKEN``), ``verify_workflow``, ``return_run_details``, ``poll_interval``, ``find_timeout``,
``wait_interval``, ``backoff``, ``max_rate_limit_wait``; ``sleep`` (a callable, from Python only).
"""

from __future__ import annotations

import base64
import math
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import SubmitRequest
from pipecast.targets.github.api import (
    DEFAULT_API_URL,
    MAX_RATE_LIMIT_WAIT,
    GitHubApi,
    token_from,
    web_to_api,
    web_url,
)
from pipecast.targets.github.syntax import RUN_ID_INPUT, run_title

_PENDING = {"queued", "requested", "waiting", "pending", "action_required"}
_SUCCEEDED = {"success", "neutral"}
_CANCELLED = {"cancelled", "skipped"}
CREATED_SLACK = timedelta(minutes=2)  # a run's created_at may precede the dispatch answer's Date a little


class GitHubRun(EngineRun):
    """A workflow run: ``fetch_status`` maps GitHub's status/conclusion, ``detail`` names the failed jobs."""

    def __init__(self, *, run_id: str, api: GitHubApi, repo: str, engine_run_id: str, url: str | None,
                 poll_interval: float = 5.0) -> None:
        super().__init__(run_id=run_id, target="github", engine_run_id=engine_run_id, url=url,
                         metadata={"repo": repo, "api_url": api.api_url})
        self.api = api
        self.repo = repo
        self.poll_interval = poll_interval

    def fetch_status(self) -> RunStatus:
        """The workflow run's status; when it failed, the detail names the failed jobs."""
        run = self.api.request("GET", f"/repos/{self.repo}/actions/runs/{self.engine_run_id}").body
        status = map_status(run.get("status"), run.get("conclusion"))
        self.detail = ""
        if status is RunStatus.FAILED:
            self.detail = self._failed_jobs() or f"run concluded {run.get('conclusion')!r}"
        return status

    def _failed_jobs(self) -> str:
        answer = self.api.request("GET", f"/repos/{self.repo}/actions/runs/{self.engine_run_id}/jobs",
                                  query={"filter": "latest", "per_page": 100}).body
        failed = [f"job {job.get('name')!r} {job.get('conclusion')}" for job in answer.get("jobs", [])
                  if job.get("conclusion") not in (None, "success", "skipped", "neutral")]
        return "; ".join(failed)

    def cancel(self) -> None:
        """Ask GitHub to cancel the run (a run that already finished is left as it is: GitHub answers 409)."""
        _cancel(self.api, self.repo, self.engine_run_id)

    def logs(self, step: str | None = None, follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """The run's job logs (:mod:`pipecast.targets.github.logs`)."""
        from pipecast.targets.github.logs import job_logs

        return job_logs(self, step, follow, timeout)


def _cancel(api: GitHubApi, repo: str, run: Any) -> None:
    # Cancelling twice does no harm, so a lost answer is sent again.
    api.request("POST", f"/repos/{repo}/actions/runs/{run}/cancel", ok=(202, 409), repeatable=True)


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


def api_for(config: Mapping[str, Any], api_url: str) -> GitHubApi:
    """A client with the token and the retry knobs of ``config``."""
    sleep = config.get("sleep")
    if sleep is not None and not callable(sleep):
        raise SubmitError("config 'sleep' must be a callable taking seconds (for embedding and tests)")
    options: dict[str, Any] = {"backoff": float(config.get("backoff", 1.0)),
                               "max_wait": float(config.get("max_rate_limit_wait", MAX_RATE_LIMIT_WAIT))}
    if sleep is not None:
        options["sleep"] = sleep
    return GitHubApi.connect(str(config.get("api_url") or api_url), token_from(config), **options)


def _repo(config: Mapping[str, Any]) -> str:
    repo = config.get("repo")
    if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
        raise SubmitError(f"config 'repo' must be OWNER/NAME, got {repo!r}; pass -c repo=acme/ml")
    return repo


def submit(request: SubmitRequest) -> GitHubRun:
    """Dispatch the (already pushed) workflow on GitHub and return the run it started."""
    config, pipeline, bundle = request.config, request.pipeline, request.bundle
    repo = _repo(config)
    api = api_for(config, DEFAULT_API_URL)
    path = bundle.main_file
    workflow = path.rsplit("/", 1)[-1]
    ref = str(config.get("ref") or api.request("GET", f"/repos/{repo}").body.get("default_branch"))
    if config.get("verify_workflow", True):
        _verify_workflow(api, repo, path, ref, bundle[path])
    inputs = {p.name: render_parameter(p.type, request.parameters[p.name]) for p in pipeline.parameters}
    inputs[RUN_ID_INPUT] = request.run_id
    body: dict[str, Any] = {"ref": ref, "inputs": inputs}
    if config.get("return_run_details", api.api_url == DEFAULT_API_URL):
        body["return_run_details"] = True
    # Where to look for the run should the dispatch's answer be lost: `pipecast runs wait` finds it by its title.
    request.note(repo=repo, api_url=api.api_url)
    finder = _Finder(api, repo, workflow, run_title(pipeline, request.run_id), float(config.get("poll_interval", 2.0)),
                     float(config.get("find_timeout", 120.0)))
    run = _dispatch(finder, body)
    url = run.get("html_url") or web_url(api.api_url, repo, run["id"])
    return GitHubRun(run_id=request.run_id, api=api, repo=repo, engine_run_id=str(run["id"]), url=url,
                     poll_interval=float(config.get("wait_interval", 5.0)))


class RunNotFoundError(SubmitError):
    """No run with the title of this submit appeared in time."""


class _Finder:
    """Finds the runs of one dispatch by their title (which holds pipecast's run id)."""

    def __init__(self, api: GitHubApi, repo: str, workflow: str, title: str, poll: float, timeout: float) -> None:
        self.api, self.repo, self.workflow, self.title = api, repo, workflow, title
        self.poll, self.timeout = poll, timeout

    def since(self, clock: float | None = None) -> datetime:
        """A lower bound of ``created_at`` for runs dispatched from now (or from the server time ``clock``)."""
        return datetime.fromtimestamp(self.api.http.clock() if clock is None else clock, timezone.utc) - CREATED_SLACK

    def titled(self, since: datetime) -> list[dict[str, Any]]:
        query = {"event": "workflow_dispatch", "per_page": 100,
                 "created": ">=" + since.strftime("%Y-%m-%dT%H:%M:%SZ")}
        runs = self.api.request("GET", f"/repos/{self.repo}/actions/workflows/{self.workflow}/runs", query=query).body
        return [r for r in runs.get("workflow_runs", []) if r.get("display_title") == self.title]

    def find(self, since: datetime) -> dict[str, Any]:
        """The run with our title; bounded polling (GitHub creates runs asynchronously)."""
        tries = max(1, math.ceil(self.timeout / self.poll) + 1) if self.poll > 0 else max(1, int(self.timeout))
        for attempt in range(tries):
            mine = self.titled(since)
            if mine:
                return min(mine, key=lambda r: int(r["id"]))  # the first, should a late duplicate exist
            if attempt + 1 < tries:
                self.api.http.sleep(self.poll)
        raise RunNotFoundError(f"dispatched {self.workflow!r} on {self.repo!r}, but no run titled {self.title!r} "
                               f"appeared within {self.timeout:g}s; look at https://github.com/{self.repo}/actions "
                               "and raise -c find_timeout=…")


def _dispatch(finder: _Finder, body: Mapping[str, Any]) -> dict[str, Any]:
    """Dispatch once, and find the run it started by its title (which holds the run id).

    GitHub's dispatch has no idempotency key, so it is never resent blindly: when its answer is lost
    (a dropped connection, a timeout, a 5xx), the run is looked for by its title first, and the dispatch is
    sent again only if no such run appeared within ``find_timeout``. Runs that a late first dispatch still
    starts beside the resent one are cancelled: one pipecast run is one GitHub run.
    """
    api = finder.api
    path = f"/repos/{finder.repo}/actions/workflows/{finder.workflow}/dispatches"
    first = finder.since()
    sent = 0
    while True:
        sent += 1
        since = finder.since()
        try:
            answer = api.request("POST", path, body=body, ok=(200, 204), repeatable=False)
            break
        except SubmitOutcomeUnknownError as lost:
            try:
                return finder.find(since)
            except RunNotFoundError:
                if sent == api.tries:
                    raise SubmitOutcomeUnknownError(
                        f"GitHub did not answer the dispatch of {finder.workflow!r} on {finder.repo!r} ({lost}) and "
                        f"no run titled {finder.title!r} appeared after {sent} dispatches; GitHub may still start "
                        "one: `pipecast runs wait` looks for it by its title") from None
    if isinstance(answer.body, dict) and answer.body.get("workflow_run_id"):
        run = api.request("GET", f"/repos/{finder.repo}/actions/runs/{answer.body['workflow_run_id']}").body
    else:
        run = finder.find(finder.since(answer.server_time))
    if sent > 1:
        for other in finder.titled(first):  # a lost dispatch that GitHub did start late, beside the resent one
            if int(other["id"]) != int(run["id"]):
                _cancel(api, finder.repo, other["id"])
    return dict(run)


def _verify_workflow(api: GitHubApi, repo: str, path: str, ref: str, expected: str) -> None:
    quoted = urllib.parse.quote(path)
    answer = api.request("GET", f"/repos/{repo}/contents/{quoted}", query={"ref": ref}, ok=(200, 404))
    fix = f"commit {path!r} as compiled and push it to {ref!r} (or pass -c verify_workflow=false)"
    if answer.status == 404:
        raise SubmitError(f"{path!r} is not on {ref!r} of {repo!r}: GitHub runs workflows from the repository; {fix}")
    body = answer.body if isinstance(answer.body, dict) else {}
    if body.get("encoding") == "base64":
        text = base64.b64decode(body.get("content", "")).decode("utf-8", "replace")
    else:  # files over 1 MB come without content: ask for the raw file
        raw = api.request("GET", f"/repos/{repo}/contents/{quoted}", query={"ref": ref},
                          accept="application/vnd.github.raw+json").body
        text = raw if isinstance(raw, str) else ""
    if text != expected:
        raise SubmitError(f"{path!r} on {ref!r} of {repo!r} differs from the workflow just compiled; {fix}")


def _find_by_correlation(api: GitHubApi, repo: str, record: Mapping[str, Any]) -> tuple[str, str]:
    """The id and page of the run whose title ends with ``(<run id>)``, dispatched since the run was recorded."""
    run_id, workflow = str(record["id"]), f"{record.get('pipeline')}.yml"
    query: dict[str, Any] = {"event": "workflow_dispatch", "per_page": 100}
    if record.get("created_at"):
        created = datetime.fromisoformat(str(record["created_at"]).replace("Z", "+00:00")) - CREATED_SLACK
        query["created"] = ">=" + created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    runs = api.request("GET", f"/repos/{repo}/actions/workflows/{workflow}/runs", query=query).body
    mine = [r for r in runs.get("workflow_runs", []) if str(r.get("display_title", "")).endswith(f" ({run_id})")]
    if not mine:
        raise SubmitError(f"run {run_id!r} has no GitHub run recorded, and {repo!r} has no run of {workflow!r} "
                          f"titled with it: the dispatch never started one")
    run = min(mine, key=lambda r: int(r["id"]))
    return str(run["id"]), str(run.get("html_url") or web_url(api.api_url, repo, run["id"]))


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> GitHubRun:
    """The run of a record, from its URL (else the repository and API noted at submit, or ``config``'s).

    A run whose submit recorded no GitHub run (the dispatch's outcome was unknown) is looked for by the
    correlation id in its title, among the pipeline workflow's dispatched runs.
    """
    metadata = record.get("metadata") or {}
    url = record.get("url") or ""
    engine_id = str(record.get("engine_run_id") or "")
    if url:
        api_url, repo, from_url = web_to_api(url)
        engine_id = engine_id or from_url
    else:
        api_url = str(metadata.get("api_url") or DEFAULT_API_URL)
        repo = _repo({"repo": config.get("repo") or metadata.get("repo")})
    if "repo" in config:
        repo = _repo(config)
    api = api_for(config, api_url)
    if not engine_id:
        engine_id, url = _find_by_correlation(api, repo, record)
    return GitHubRun(run_id=str(record["id"]), api=api, repo=repo, engine_run_id=engine_id, url=url or None,
                     poll_interval=float(config.get("wait_interval", 5.0)))
