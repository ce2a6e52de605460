"""Submitting to batchd and tracking a run: imported by pipecast only when a run is submitted or tracked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipecast.errors import SubmitError
from pipecast.http import HttpClient
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.targets.base import SubmitRequest

STATES = {"queued": RunStatus.PENDING, "running": RunStatus.RUNNING, "done": RunStatus.SUCCEEDED,
          "failed": RunStatus.FAILED, "cancelled": RunStatus.CANCELLED}


class BatchdRun(EngineRun):
    """A run on batchd."""

    def __init__(self, api: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api

    def fetch_status(self) -> RunStatus:
        answer = HttpClient("batchd").send("GET", f"{self.api}/jobs/{self.engine_run_id}")
        if answer.status != 200:
            raise SubmitError(f"batchd answered HTTP {answer.status} for run {self.engine_run_id!r}")
        self.detail = answer.body.get("message", "")
        return STATES.get(answer.body["state"], RunStatus.UNKNOWN)

    def cancel(self) -> None:
        HttpClient("batchd").send("POST", f"{self.api}/jobs/{self.engine_run_id}/cancel", repeatable=True)


def submit(request: SubmitRequest) -> EngineRun:
    """Send the jobs with the run's values; the run's id is pipecast's, so a retried POST is harmless."""
    url = _url(request.config)
    job = json.loads(request.bundle[request.bundle.main_file])
    job.update(run_id=request.run_id, parameters=dict(request.parameters))
    request.note(engine_run_id=request.run_id, url=f"{url}/jobs/{request.run_id}")
    answer = HttpClient("batchd").send("POST", f"{url}/jobs", body=job, repeatable=True)
    if answer.status not in (200, 201, 409):
        raise SubmitError(f"batchd refused the run: HTTP {answer.status} {answer.body}")
    return BatchdRun(url, run_id=request.run_id, target="batchd", engine_run_id=request.run_id,
                     url=f"{url}/jobs/{request.run_id}", metadata={"queue_url": url})


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> EngineRun:
    """The run recorded as ``record``."""
    url = str(config.get("url") or record["metadata"]["queue_url"])
    return BatchdRun(url, run_id=record["id"], target="batchd", engine_run_id=record["engine_run_id"],
                     url=record["url"])


def _url(config: Mapping[str, Any]) -> str:
    if not config.get("url"):
        raise SubmitError("batchd needs its URL: -c url=http://batchd.example.com")
    return str(config["url"]).rstrip("/")
