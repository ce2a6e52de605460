"""GitHub Actions schedules: the ``on: schedule`` of the workflow file pipecast compiled, through the REST API.

The schedule lives in the workflow file, committed under a fixed path (``.github/workflows/<pipeline>.yml``), so
pushing a recompiled file updates the one schedule in place. ``list`` asks for the repository's workflows
(``GET /repos/{repo}/actions/workflows``), reads each file on the ref (the contents API) and keeps the ones
pipecast compiled (their first line says so) that have a schedule; GitHub reports no next run, and its cron is
UTC. ``delete`` disables the workflow (``PUT …/workflows/{id}/disable``): GitHub then starts no run of it, on the
schedule or otherwise, until it is enabled again; the file stays, and removing its ``schedule`` (or the file) is
the lasting change.
"""

from __future__ import annotations

import ast
import base64
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from pipecast.errors import SubmitError
from pipecast.schedules import Schedule
from pipecast.targets.base import Target

KEYS = ("repo", "ref", "api_url", "token")
HEADER = re.compile(r"^# Pipeline (?P<name>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"), compiled by pipecast for GitHub")
PAGE = 100


def _connect(config: Mapping[str, Any]) -> tuple[Any, str, str]:
    from pipecast.targets.github.api import DEFAULT_API_URL
    from pipecast.targets.github.submit import _repo, api_for

    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise SubmitError(f"unknown --config key(s) {unknown!r} for the schedules of target 'github'; known: "
                          f"{list(KEYS)!r}")
    repo = _repo(config)
    api = api_for(config, DEFAULT_API_URL)
    ref = str(config.get("ref") or api.request("GET", f"/repos/{repo}").body.get("default_branch"))
    return api, repo, ref


def _workflows(api: Any, repo: str) -> Iterator[dict[str, Any]]:
    page = 1
    while True:
        body = api.request("GET", f"/repos/{repo}/actions/workflows", query={"per_page": PAGE, "page": page}).body
        found = list(body.get("workflows") or [])
        yield from found
        if len(found) < PAGE:
            return
        page += 1


def _text(api: Any, repo: str, path: str, ref: str) -> str | None:
    answer = api.request("GET", f"/repos/{repo}/contents/{urllib.parse.quote(path)}", query={"ref": ref},
                         ok=(200, 404))
    body = answer.body if isinstance(answer.body, dict) else {}
    if answer.status == 404 or body.get("encoding") != "base64":
        return None  # not on this ref, or over 1 MB (a pipecast workflow is far smaller)
    return base64.b64decode(body.get("content", "")).decode("utf-8", "replace")


def _ours(api: Any, repo: str, ref: str) -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    """(pipeline, crons, workflow) of each scheduled workflow pipecast compiled."""
    for workflow in _workflows(api, repo):
        text = _text(api, repo, str(workflow.get("path") or ""), ref)
        match = HEADER.match(text or "")
        if not match:
            continue
        try:
            document = yaml.safe_load(text or "") or {}
        except yaml.YAMLError:
            continue
        triggers = document.get("on", document.get(True)) or {}  # YAML 1.1 reads a bare `on` as true
        crons = [str(item.get("cron")) for item in (triggers.get("schedule") or []) if isinstance(item, dict)] \
            if isinstance(triggers, dict) else []
        if crons:
            yield ast.literal_eval(match["name"]), crons, workflow


def _page(api_url: str, repo: str, path: str) -> str:
    parsed = urllib.parse.urlsplit(api_url)
    host = "github.com" if parsed.netloc == "api.github.com" else parsed.netloc
    return f"{parsed.scheme}://{host}/{repo}/actions/workflows/{path.rsplit('/', 1)[-1]}"


def list_schedules(target: Target, config: Mapping[str, Any]) -> list[Schedule]:
    """The repository's scheduled workflows that pipecast compiled."""
    api, repo, ref = _connect(config)
    return [Schedule(pipeline=pipeline, target=target.name, schedule="; ".join(crons) + " (UTC)",
                     id=str(workflow["id"]), state=str(workflow.get("state") or "") or None,
                     url=_page(api.api_url, repo, str(workflow["path"])))
            for pipeline, crons, workflow in _ours(api, repo, ref)]


def delete_schedule(target: Target, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Disable the pipeline's scheduled workflow and say what that means."""
    api, repo, ref = _connect(config)
    done = []
    for name, _, workflow in _ours(api, repo, ref):
        if name != pipeline:
            continue
        api.request("PUT", f"/repos/{repo}/actions/workflows/{workflow['id']}/disable", ok=(204,), repeatable=True)
        done.append(f"disabled workflow {workflow['path']} of {repo}: GitHub keeps the schedule in the file, so "
                    "pipecast disables the workflow (no run starts, scheduled or dispatched, until it is enabled "
                    "again); to delete the schedule for good, remove it from the pipeline, recompile and push")
    return done
