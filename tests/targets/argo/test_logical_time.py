"""Logical time on Argo (issue 17): a scheduled pipeline's steps get ``{{workflow.scheduledTime}}``, which Argo
sets only in a Workflow its cron controller made; ``pipecast.context().logical_time`` is that time there and None
in the one-off Workflow, as ``pipecast run`` gives it with and without ``$PIPECAST_LOGICAL_TIME``."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

import pipecast
from pipecast import pipeline, step
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.runtime.publish_argo import SCHEDULED_TIME
from tests.helpers.cases import compile_case
from tests.helpers.replay.store import REPLAY_STORE
from tests.targets.argo.support import of_kind, replay, schema_errors, validate

SCHEDULED = "2026-12-07T04:00:00Z"  # as convert.go writes it: time.RFC3339


@step
def stamp() -> str:
    return str(pipecast.context().logical_time)


@step
def echo(text: str) -> str:
    return text


@pipeline(name="argo_stamped", schedule="0 4 * * 1")
def stamped():
    return echo(stamp())


def _files(embed: bool) -> dict[str, str]:
    return compile_case("argo", stamped.build(), golden=True,
                        settings={"artifact_root": REPLAY_STORE, "embed": embed}).files


@pytest.mark.parametrize("embed", [False, True], ids=["template", "embedded"])
def test_every_step_reads_the_scheduled_time_and_the_files_are_valid(embed):
    files = _files(embed)
    (template,) = of_kind(files, "WorkflowTemplate") if not embed else of_kind(files, "Workflow")
    for container in [t["container"] for t in template["spec"]["templates"] if "container" in t]:
        assert {"name": LOGICAL_TIME_VAR, "value": SCHEDULED_TIME} in container["env"]
    for kind in ("Workflow", "CronWorkflow", *([] if embed else ["WorkflowTemplate"])):
        for doc in of_kind(files, kind):
            assert schema_errors(doc) == []
    plain = compile_case("argo", echo_only.build(), golden=True, settings={"artifact_root": REPLAY_STORE}).files
    assert SCHEDULED_TIME not in "".join(plain.values())  # only a scheduled pipeline carries it


@pipeline(name="argo_unscheduled")
def echo_only():
    return echo("x")


def test_argo_validation_lets_the_tag_through_but_not_other_unknown_globals():
    validate('{"v": "{{workflow.scheduledTime}}"}', {})
    with pytest.raises(AssertionError, match="failed to resolve"):
        validate('{"v": "{{workflow.scheduledTimes}}x{{workflow.other}}"}', {})


@pytest.mark.parametrize(("scheduled", "expected"), [(SCHEDULED, "2026-12-07 04:00:00+00:00"), (None, "None")],
                         ids=["cron-made", "one-off"])
def test_context_logical_time_equals_pipecast_runs(scheduled, expected, tmp_path):
    pipeline_ir = stamped.build()
    run_name = "stamped-x1"
    replay(_files(False), run_name, store=tmp_path / "store", scheduled_time=scheduled)
    store = f"file://{tmp_path}/store"
    assert load_outputs(store, pipeline_ir.name, run_name, "echo") == {"output": expected}
    env = {k: v for k, v in os.environ.items() if k != LOGICAL_TIME_VAR}
    if scheduled:
        env[LOGICAL_TIME_VAR] = scheduled
    with mock.patch.dict(os.environ, env, clear=True):
        local = run_pipeline(pipeline_ir, {}, artifact_root=f"file://{tmp_path / 'local'}", cache=False)
    assert load_outputs(local.artifact_root, pipeline_ir.name, local.id, "echo") == {"output": expected}
    meta = (Path(tmp_path) / "store" / pipeline_ir.name / "runs" / run_name / "stamp" / "meta.json").read_text()
    assert ('"logical_time": "2026-12-07T04:00:00+00:00"' in meta) is (scheduled is not None)
