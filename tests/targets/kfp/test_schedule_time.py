"""A scheduled run's time on kubeflow and vertex (issue 17): ``pipecast.context().logical_time``.

The task reads ``{{$.pipeline_job_schedule_time_utc}}`` as a runtime constant, the way kfp 2.17 compiles
``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER`` as a task argument. The replay substitutes what each backend
does (``Engine.schedule_rule``, kubeflow/pipelines ``backend/src/v2/cmd/driver/main.go`` and
``driver/resolve.go``, see ``pipecast/targets/kfpspec/schedule_time.py``): on KFP 2.17 a scheduled run's tick, and
for a run no schedule started its create time; on KFP 2.4 the placeholder itself; on Vertex AI the schedule time
(for a run no schedule started Vertex documents nothing: the replay gives ``""``, and the create time is tried).
"""

from pathlib import Path

import pytest
from kfp import compiler, dsl

from pipecast.errors import ContextError, PipecastError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.context import LOGICAL_TIME_VAR, logical_time_from_env, set_engine_logical_time
from pipecast.runtime.executor import load_outputs
from pipecast.targets.kfpspec import schedule_time
from tests.helpers.cases import compile_case
from tests.targets.kfp.engine_model import KFP_2_4, KFP_2_17, VERTEX, Job
from tests.targets.kfp.schedule_cases import clashing, scheduled, unscheduled
from tests.targets.kfp.support import documents, replay_tasks

RUN_ID = "0c1e4a1b-8d2f-4f55-9e0a-3b7c2d9e6f10"
TICK = "2026-03-02T04:00:00Z"  # what the driver formats the workflowEpoch label as (time.RFC3339, UTC)


def _replay(target: str, engine, tmp_path: Path, schedule: str | None, fn=scheduled) -> dict[str, object]:
    root = f"file://{tmp_path}/store"
    text = compile_case(target, fn, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"}).main
    replay_tasks(text, {}, RUN_ID, engine=engine, schedule_time=schedule)
    store, name = ArtifactStore(root), fn.__name__
    found = {}
    for step in ("stamp", "supervised") if fn is scheduled else ("stamp",):
        meta = store.read_json(f"{store.step_dir(name, RUN_ID, step)}/meta.json")
        found[step] = (meta.get("logical_time"), load_outputs(root, name, RUN_ID, step)["output"])
    return found


@pytest.mark.parametrize(("target", "engine", "schedule", "expected"), [
    pytest.param("kubeflow", KFP_2_17, TICK, "2026-03-02T04:00:00+00:00", id="kfp-2.17-scheduled"),
    # KFP 2.17 gives a run no schedule started its create time (resolvePipelineJobScheduleTimeUTCFromWorkflow)
    pytest.param("kubeflow", KFP_2_17, None, "2026-01-02T03:04:05+00:00", id="kfp-2.17-one-off"),
    pytest.param("kubeflow", KFP_2_4, TICK, None, id="kfp-2.4-leaves-the-placeholder"),
    pytest.param("vertex", VERTEX, TICK, "2026-03-02T04:00:00+00:00", id="vertex-scheduled"),
    pytest.param("vertex", VERTEX, None, None, id="vertex-one-off"),  # the replay's "" (as KFP 2.16 gives it)
    pytest.param("vertex", VERTEX, "2026-01-02T03:04:05Z", "2026-01-02T03:04:05+00:00", id="vertex-create-time"),
])
def test_each_step_gets_the_time_the_engine_substitutes(target, engine, schedule, expected, tmp_path):
    found = _replay(target, engine, tmp_path, schedule)
    shown = "none" if expected is None else expected
    assert found["stamp"] == (expected, shown)  # kept in meta.json, and what the step saw
    assert found["supervised"] == (expected, f"{shown}|{shown}")  # also in a supervised child process


def test_the_replay_substitutes_what_each_backend_does():
    job = Job(uuid=RUN_ID, display_name="r")
    for rule, schedule, value in [("kfp-2.17", TICK, TICK), ("kfp-2.17", None, job.create_time),
                                  ("literal", TICK, schedule_time.PLACEHOLDER),
                                  ("literal", None, schedule_time.PLACEHOLDER),
                                  ("vertex", TICK, TICK), ("vertex", None, "")]:
        resolved = Job(uuid=RUN_ID, display_name="r", schedule_time=schedule, schedule_rule=rule)
        assert resolved.value(schedule_time.PLACEHOLDER, "t", 1) == value, (rule, schedule)


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_only_a_scheduled_pipeline_reads_the_time(target, tmp_path):
    settings = {"image": "ghcr.io/acme/p:1", "artifact_root": "s3://bucket/root"}
    spec, _ = documents(compile_case(target, unscheduled, settings=settings).main)
    assert schedule_time.INPUT not in str(spec) and "--kfp-logical-time" not in str(spec)
    spec, _ = documents(compile_case(target, scheduled, settings=settings).main)
    for task in spec["root"]["dag"]["tasks"].values():
        assert task["inputs"]["parameters"][schedule_time.INPUT] == {"runtimeValue": {
            "constant": "{{$.pipeline_job_schedule_time_utc}}"}}


def test_the_task_argument_is_what_kfp_compiles_for_the_placeholder(tmp_path):
    @dsl.component(base_image="python:3.11")
    def show(when: str):
        print(when)

    @dsl.pipeline(name="scheduled")
    def theirs():
        show(when=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER)

    compiler.Compiler().compile(theirs, str(tmp_path / "theirs.yaml"))
    spec, _ = documents((tmp_path / "theirs.yaml").read_text())
    assert spec["root"]["dag"]["tasks"]["show"]["inputs"]["parameters"]["when"] == {"runtimeValue": {
        "constant": schedule_time.PLACEHOLDER}}
    assert spec["components"]["comp-show"]["inputDefinitions"]["parameters"]["when"] == {"parameterType": "STRING"}


@pytest.mark.parametrize(("text", "expected"), [
    (TICK, "2026-03-02T04:00:00+00:00"), ("", None), (" ", None), (schedule_time.PLACEHOLDER, None)])
def test_the_runtime_reads_no_time_as_none(text, expected, monkeypatch):
    monkeypatch.setenv(LOGICAL_TIME_VAR, "2020-01-01T00:00:00Z")  # a stale value never survives
    set_engine_logical_time(text)
    found = logical_time_from_env()
    assert (found and found.isoformat()) == expected


def test_a_time_that_is_not_one_fails_the_step(monkeypatch):
    monkeypatch.setenv(LOGICAL_TIME_VAR, "")  # monkeypatch puts back whatever the runtime's call leaves
    set_engine_logical_time("next monday")
    with pytest.raises(ContextError, match="not an ISO 8601 time"):
        logical_time_from_env()


def test_a_step_argument_named_like_the_input_is_refused():
    with pytest.raises(PipecastError, match="step 'clash' has an argument named 'pipecast_logical_time'"):
        compile_case("kubeflow", clashing, settings={"image": "ghcr.io/acme/p:1", "artifact_root": "s3://b/r"})
