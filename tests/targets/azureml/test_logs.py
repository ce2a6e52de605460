"""``pipecast runs logs`` on Azure ML: the pipeline job's stream (``MLClient.jobs.stream``) as lines, followed
until the job ends, against the local server that answers as the Azure ML REST API (``fake_azureml``)."""

from __future__ import annotations

import sys

import pytest

from pipecast.errors import SubmitError
from pipecast.runs.logs import run_logs
from tests.targets.azureml.fake_azureml import STUDIO
from tests.targets.azureml.test_submit import WORKSPACE, azureml, submit

__all__ = ["azureml"]


def test_the_job_stream_is_followed_to_the_end_and_a_step_is_refused_with_why(azureml, monkeypatch, capsys):
    from azure.ai.ml.operations._run_history_constants import RunHistoryConstants

    monkeypatch.setattr(RunHistoryConstants, "_WAIT_COMPLETION_POLLING_INTERVAL_MIN", 0)  # poll at once
    monkeypatch.setattr(RunHistoryConstants, "_WAIT_COMPLETION_POLLING_INTERVAL_MAX", 0)
    service, config = azureml
    service.status_script = ["Running", "Running", "Running", "Completed"]
    service.log_lines = ["[2025-01-01 00:00:01Z] Submitting 5 runs", "[2025-01-01 00:00:09Z] Completing processing"]
    handle = submit("quickstart", {}, config)
    with pytest.raises(SubmitError, match="is running: its stream runs until the job ends; pass --follow"):
        list(run_logs(handle.run_id, config))
    capsys.readouterr()
    stdout = sys.stdout
    lines = []
    for line in run_logs(handle.run_id, config, follow=True, timeout=120):
        print(f"echoed {line}")  # what the CLI does meanwhile reaches the real stdout, not the stream
        lines.append(line)
    assert sys.stdout is stdout
    assert lines[:2] == [f"RunId: {handle.engine_run_id}", f"Web View: {STUDIO}/runs/{handle.engine_run_id}?wsid="
                                                            f"{WORKSPACE}"]
    assert "[2025-01-01 00:00:01Z] Submitting 5 runs" in lines and "Execution Summary" in lines
    assert capsys.readouterr().out == "".join(f"echoed {line}\n" for line in lines)
    assert list(run_logs(handle.run_id, config))[:1] == [f"RunId: {handle.engine_run_id}"]  # ended: read at once
    with pytest.raises(SubmitError, match=r"not one step.s: a step.s own log .* is in the studio"):
        list(run_logs(handle.run_id, config, step="train"))
