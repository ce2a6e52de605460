"""Pipeline hooks on kubeflow and vertex (issue 16): an exit handler around the pipeline, as kfp users write it.

The body is ``exit-handler-1`` and the hook its exit task (``ALL_UPSTREAM_TASKS_COMPLETED``, reading
``taskFinalStatus``), exactly what kfp 2.17 compiles for ``with dsl.ExitHandler(hook): ...``. The engine runs the
exit task whatever happened (the replay runs it as the KFP backend's exit lifecycle hook, :mod:`.support`), so the
runtime decides: a hook whose event did not happen records itself skipped, writes placeholder output parameters
(the launcher fails a task whose declared outputs are missing) and exits 0. The replay's results equal
``pipecast run``'s for a succeeding and a failing run; the goldens are in :mod:`.test_control_flow`. Both hooks
share one exit task (KFP keeps one per group): its command holds both hooks' arguments and the runtime runs
exactly the one whose event happened, recording the other skipped.
"""

from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl

from pipecast import ExitHandler, pipeline
from pipecast.errors import ValidationError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case, golden_settings
from tests.targets.kfp.engine_model import KFP_2_17, VERTEX
from tests.targets.kfp.flow_cases import alert, cheer, explode, hook_on_failure, hook_on_success, hooks_both, pick
from tests.targets.kfp.support import replay_tasks

RUN_ID = "5b0d6f7e-2c1a-4c52-9a51-0f3f2f9a7c11"
ENGINES = [pytest.param(KFP_2_17, id="kfp-2.17"), pytest.param(VERTEX, id="vertex")]


def _run_both(fn: Any, parameters: dict[str, Any], engine: Any, tmp_path: Path) -> tuple[Any, dict, Any, dict]:
    """The replay (results, states) and the local run of the same pipeline; every step's record compared."""
    target = "vertex" if engine is VERTEX else "kubeflow"
    root = f"file://{tmp_path}/replay"
    compiled = compile_case(target, fn, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    results, states, _ = replay_tasks(compiled.main, parameters, RUN_ID, engine=engine, allow_failures=True,
                                      with_states=True)
    local = run_pipeline(compiled.pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False,
                         raise_on_failure=False, fail_fast=False)
    replay_store, name = ArtifactStore(root), compiled.pipeline.name
    for step, state in local.steps.items():
        meta = f"{replay_store.step_dir(name, RUN_ID, step)}/meta.json"
        recorded = replay_store.read_json(meta).get("status") if replay_store.exists(meta) else None
        expected = {"done": "succeeded", "failed": "failed", "skipped": "skipped"}.get(state.status, state.status)
        if state.items is None and not (state.status == "skipped" and recorded is None):  # KFP omits, records nothing
            assert recorded == expected, (step, recorded, state.status)
        if state.status == "done" and state.items is None:
            assert load_outputs(root, name, RUN_ID, step) == load_outputs(
                f"file://{tmp_path}/local", name, local.id, step), step
    return results, states, local, {s: st.status for s, st in local.steps.items()}


@pytest.mark.parametrize("engine", ENGINES)
def test_on_failure_runs_after_a_failure_and_skips_itself_after_a_success(engine, tmp_path):
    results, states, local, status = _run_both(hook_on_failure, {"n": 2}, engine, tmp_path / "fails")
    assert status["alert"] == "done" and local.status == "failed"
    assert states["exit-handler-1"] == "FAILED" and states["alert"] == "COMPLETE"
    out = load_outputs(f"file://{tmp_path}/fails/replay", "hook_on_failure", RUN_ID, "alert")
    assert out == {"output": "failed: explode_2"}  # the failed step inside the If, from the runtime's records

    results, states, local, status = _run_both(hook_on_failure, {"n": 1}, engine, tmp_path / "succeeds")
    assert status["alert"] == "skipped" and local.status == "succeeded"
    assert states["exit-handler-1"] == "COMPLETE" and states["alert"] == "COMPLETE"  # ran, decided, exited 0
    assert "on_failure hook: no step failed" in results["alert"][0].stderr


@pytest.mark.parametrize("engine", ENGINES)
def test_on_success_skips_itself_after_a_failure_with_placeholder_outputs(engine, tmp_path):
    results, states, _, status = _run_both(hook_on_success, {"n": 9}, engine, tmp_path / "fails")
    assert status["cheer"] == "skipped" and states["cheer"] == "COMPLETE"
    assert results["cheer"][1].parameters == {"output": 0}  # the launcher parsed the placeholder as an int
    results, states, _, status = _run_both(hook_on_success, {"n": 2}, engine, tmp_path / "succeeds")
    assert status["cheer"] == "done" and results["cheer"][1].parameters == {"output": 1}


def test_the_shape_is_what_kfp_compiles_for_an_exit_handler_around_the_pipeline(tmp_path):
    @dsl.component(base_image="python:3.12")
    def pick(n: int) -> int:
        return n

    @dsl.component(base_image="python:3.12")
    def explode(n: int) -> int:
        return n

    @dsl.component(base_image="python:3.12")
    def alert(status: dsl.PipelineTaskFinalStatus) -> str:
        return status.state

    @dsl.pipeline(name="hook-on-success")
    def theirs_fn(n: int = 2):
        hook = alert()
        with dsl.ExitHandler(hook):
            explode(n=pick(n=n).output)

    compiler.Compiler().compile(theirs_fn, str(tmp_path / "theirs.yaml"))
    import yaml

    theirs = yaml.safe_load((tmp_path / "theirs.yaml").read_text())
    ours = yaml.safe_load(compile_case("kubeflow", hook_on_success, settings=golden_settings("kubeflow")).main)
    mine_root, their_root = ours["root"]["dag"]["tasks"], theirs["root"]["dag"]["tasks"]
    assert set(mine_root) == {"exit-handler-1", "cheer"} and set(their_root) == {"exit-handler-1", "alert"}
    for key in ("dependentTasks", "triggerPolicy", "taskInfo"):
        if key != "taskInfo":
            assert mine_root["cheer"][key] == their_root["alert"][key], key
    assert mine_root["cheer"]["inputs"]["parameters"]["pipecast_final_status"] == their_root["alert"]["inputs"][
        "parameters"]["status"]
    assert ours["components"]["comp-cheer"]["inputDefinitions"]["parameters"]["pipecast_final_status"] == theirs[
        "components"]["comp-alert"]["inputDefinitions"]["parameters"]["status"]
    assert mine_root["exit-handler-1"] == their_root["exit-handler-1"]
    assert set(ours["components"]["comp-exit-handler-1"]["dag"]["tasks"]) == set(
        theirs["components"]["comp-exit-handler-1"]["dag"]["tasks"])

    with pytest.raises(ValueError, match="Using an ExitHandler within ExitHandler exit-handler-1 is not allowed"):
        @dsl.pipeline(name="nested")
        def nested(n: int = 2):
            with dsl.ExitHandler(alert()):
                with dsl.ExitHandler(alert()):
                    pick(n=n)


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_what_kfp_cannot_express_is_refused_clearly(target):
    def refusal(fn: Any) -> str:
        with pytest.raises(ValidationError) as caught:
            compile_case(target, fn, settings=golden_settings(target))
        assert len(caught.value.problems) == 1, caught.value.problems
        return str(caught.value)

    @pipeline(name="both", on_failure=alert, on_success=cheer.with_options(image="ghcr.io/acme/other:2", retry=2))
    def both(n: int = 1):
        pick(n)

    message = refusal(both)
    assert ("the on_failure hook 'alert' and the on_success hook 'cheer' differ in image, retries; KFP runs one "
            "exit task per ExitHandler") in message and "give both hooks the same image" in message

    @pipeline(name="both_and_a_namesake", on_failure=alert, on_success=cheer)
    def both_and_a_namesake(n: int = 1):
        explode.with_options(name="pipecast_hooks")(n)

    with pytest.raises(ValidationError, match="step 'pipecast_hooks' has the task name 'pipecast-hooks', the exit "
                       "task of the pipeline's hooks"):
        compile_case(target, both_and_a_namesake, settings=golden_settings(target))

    @pipeline(name="hook_and_exit", on_success=cheer)
    def hook_and_exit(n: int = 1):
        with ExitHandler() as guarded:
            explode(n)
        alert(guarded.status)

    assert "kfp 2.17 refuses an ExitHandler within another" in refusal(hook_and_exit)


@pytest.mark.parametrize("engine", ENGINES)
def test_both_hooks_share_one_exit_task_that_runs_the_right_one(engine, tmp_path):
    results, states, local, status = _run_both(hooks_both, {"n": 9}, engine, tmp_path / "fails")
    assert local.status == "failed" and status["alert"] == "done" and status["cheer"] == "skipped"
    assert states["exit-handler-1"] == "FAILED" and states["pipecast-hooks"] == "COMPLETE"
    assert [name for name in results if "alert" in name or "cheer" in name] == []  # one task ran the hook
    out = load_outputs(f"file://{tmp_path}/fails/replay", "hooks_both", RUN_ID, "alert")
    assert out == {"output": "failed: explode_2"}
    assert "step 'cheer' skipped: on_success hook: the run failed" in results["pipecast-hooks"][0].stderr
    assert results["pipecast-hooks"][1].parameters == {}  # the shared task declares no output parameter

    results, states, local, status = _run_both(hooks_both, {"n": 2}, engine, tmp_path / "succeeds")
    assert local.status == "succeeded" and status["alert"] == "skipped" and status["cheer"] == "done"
    assert states["exit-handler-1"] == "COMPLETE" and states["pipecast-hooks"] == "COMPLETE"
    assert load_outputs(f"file://{tmp_path}/succeeds/replay", "hooks_both", RUN_ID, "cheer") == {"output": 1}
    assert "step 'alert' skipped: on_failure hook: no step failed" in results["pipecast-hooks"][0].stderr


def test_both_hooks_are_one_exit_task_as_kfp_compiles_one_reading_two_final_statuses(tmp_path):
    """kfp 2.17 compiles an exit component with two PipelineTaskFinalStatus inputs to the task ours is."""

    @dsl.container_component
    def hooks(status: dsl.PipelineTaskFinalStatus, pipecast_final_status: dsl.PipelineTaskFinalStatus):
        return dsl.ContainerSpec(image="x", command=["run"], args=[status, pipecast_final_status])

    @dsl.container_component
    def pick(n: int):
        return dsl.ContainerSpec(image="x", command=["run"], args=[n])

    @dsl.pipeline(name="hooks-both")
    def theirs_fn(n: int = 2):
        with dsl.ExitHandler(hooks()):
            pick(n=n)

    compiler.Compiler().compile(theirs_fn, str(tmp_path / "theirs.yaml"))
    import yaml

    theirs = yaml.safe_load((tmp_path / "theirs.yaml").read_text())
    ours = yaml.safe_load(compile_case("kubeflow", hooks_both, settings=golden_settings("kubeflow")).main)
    mine, their = ours["root"]["dag"]["tasks"]["pipecast-hooks"], theirs["root"]["dag"]["tasks"]["hooks"]
    assert set(ours["root"]["dag"]["tasks"]) == {"exit-handler-1", "pipecast-hooks"}
    assert mine["dependentTasks"] == their["dependentTasks"] and mine["triggerPolicy"] == their["triggerPolicy"]
    finals = {k: v for k, v in mine["inputs"]["parameters"].items() if "taskFinalStatus" in v}
    assert finals == their["inputs"]["parameters"]
    declared = ours["components"]["comp-pipecast-hooks"]["inputDefinitions"]["parameters"]
    assert {k: declared[k] for k in finals} == theirs["components"]["comp-hooks"]["inputDefinitions"]["parameters"]


def test_choose_hook_runs_exactly_one_alternative():
    from pipecast.errors import PipecastError
    from pipecast.runtime.publish_kfp import HOOK_OR, HookSkipped, choose_hook

    def parse(argv: list[str], alone: bool) -> list[str]:
        assert not alone
        if "skip" in argv:
            raise HookSkipped("skipped")
        return argv

    assert choose_hook(["run", "a", HOOK_OR, "run", "skip"], parse) == ["run", "a"]
    assert choose_hook(["run", "skip", HOOK_OR, "run", "b"], parse) == ["run", "b"]
    with pytest.raises(PipecastError, match="2 of the 2 hooks in this exit task would run"):
        choose_hook(["run", "a", HOOK_OR, "run", "b"], parse)
    assert choose_hook(["run", "a"], lambda argv, alone: (argv, alone)) == (["run", "a"], True)


def test_vertex_pipeline_job_loads_the_both_hooks_golden(monkeypatch):
    """aiplatform's own loader builds a PipelineJob from the golden (no request is made, no bucket is created)."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import gcs_utils

    monkeypatch.setattr(gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist", lambda **_: None)
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))
    path = Path(__file__).parent / "goldens" / "hooks_both" / "vertex" / "hooks-both.yaml"
    try:
        job = aiplatform.PipelineJob(display_name="hooks-both", template_path=str(path), job_id="hooks-both-1",
                                     pipeline_root="gs://acme/root", project="acme-ml", location="europe-west4")
    finally:
        initializer.global_config.__init__()  # the SDK keeps endpoint and credentials process-wide
    tasks = job.pipeline_spec["root"]["dag"]["tasks"]
    assert tasks["pipecast-hooks"]["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}


def test_the_replay_runs_one_exit_task_per_group_as_the_backend_keeps_one(tmp_path):
    """Why both hooks are one task: a second exit task of exit-handler-1 replaces the first (argocompiler's
    ``taskToExitTemplate``), so the replay, like the backend, runs only the last in name order."""
    import yaml

    root = f"file://{tmp_path}/replay"
    compiled = compile_case("kubeflow", hooks_both, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    spec = yaml.safe_load(compiled.main)
    tasks = spec["root"]["dag"]["tasks"]
    tasks["zz-second"] = dict(tasks["pipecast-hooks"], taskInfo={"name": "zz-second"})
    results, states, _ = replay_tasks(yaml.safe_dump(spec), {"n": 2}, RUN_ID, engine=KFP_2_17, allow_failures=True,
                                      with_states=True)
    assert states["zz-second"] == "COMPLETE" and "pipecast-hooks" not in states and "pipecast-hooks" not in results
