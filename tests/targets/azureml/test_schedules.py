"""The pipeline's Azure ML ``JobSchedule`` listed and deleted with ``azure-ai-ml`` against the local server that
answers as the Azure ML REST API does (``fake_azureml.py``). The credential object reaches the client only from
Python, so these call :mod:`pipecast.schedules` as the CLI does."""

from __future__ import annotations

import pytest

from pipecast.errors import SubmitError
from pipecast.schedules import delete_schedule, list_schedules
from tests.targets.azureml import test_submit as submit_tests

azureml = submit_tests.azureml


def test_the_schedule_is_upserted_listed_and_deleted(azureml):
    service, config = azureml
    for epochs in (3, 4):  # submitted twice: one schedule, updated in place
        submit_tests.submit("ml_training", {"epochs": epochs}, {**config, "schedule": "true"})
    assert len(service.calls("PUT", "/schedules/ml_training_schedule")) == 2
    (row,) = list_schedules("azureml", config)
    assert (row.pipeline, row.schedule, row.id, row.state) == ("ml_training", "0 4 * * 1 (UTC)",
                                                               "ml_training_schedule", "enabled")
    listing = [r for r in service.calls("GET") if r.path.endswith("/schedules")]
    assert listing and "listViewType=All" in listing[0].query  # disabled schedules are listed too
    assert delete_schedule("azureml", "ml_training", config) == [
        "deleted Azure ML schedule ml_training_schedule; the jobs it created are left alone"]
    assert service.calls("DELETE", "/schedules/ml_training_schedule")
    assert list_schedules("azureml", config) == []
    with pytest.raises(SubmitError, match="holds no schedule of pipeline 'ml_training'"):
        delete_schedule("azureml", "ml_training", config)
