"""Conditions, OneOf and exit handlers on kubeflow and vertex (issue 16): the replay equals ``pipecast run``.

The replay (:mod:`.support`) follows only what the engine does: a condition DAG runs when its CEL trigger policy
holds (evaluated with cel-python on the task's resolved inputs, as the KFP driver evaluates it with cel-go), a
task after a failed or skipped task is omitted (the Argo ``depends: X.Succeeded`` KFP compiles), a OneOf reads
the first branch that completed, and the exit task runs as its group's exit hook with the group's final status.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from pipecast import step
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import compile_case
from tests.targets.kfp.engine_model import KFP_2_4, KFP_2_17, VERTEX
from tests.targets.kfp.flow_cases import branches_exit, branches_only, hyperparameter_search_kfp, item_one_of
from tests.targets.kfp.support import replay_tasks


@step
def as_dict(n: int) -> dict:
    return {"n": n}


@step
def alert(status: dict) -> str:
    return str(status)


RUN_ID = "5b0d6f7e-2c1a-4c52-9a51-0f3f2f9a7c11"
ENGINES = [pytest.param(KFP_2_17, id="kfp-2.17"), pytest.param(VERTEX, id="vertex")]


def _compare(pipeline: Any, parameters: dict[str, Any], engine: Any, tmp_path: Path) -> tuple[Any, dict, str]:
    """Replay and run locally; assert every step instance that ran has the same outputs, and the same ones ran."""
    target = "vertex" if engine is VERTEX else "kubeflow"  # KFP_2_4 too: the same file, an older backend
    root = f"file://{tmp_path}/replay"
    compiled = compile_case(target, pipeline, settings={"artifact_root": root, "image": "ghcr.io/acme/p:1"})
    _, states, state = replay_tasks(compiled.main, parameters, RUN_ID, engine=engine, allow_failures=True,
                                    with_states=True)
    # Not fail-fast: the replay starts every task whose dependencies succeeded, failure or not, so a step beside a
    # failing one (label_4 beside explode) must run locally too, whichever of the two a busy machine starts first.
    local = run_pipeline(compiled.pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False,
                         raise_on_failure=False, fail_fast=False)
    done = sorted(name for name, s in local.steps.items() if s.status == "done" and s.items is None)
    expected = {name: load_outputs(f"file://{tmp_path}/local", compiled.pipeline.name, local.id, name)
                for name in done}
    replayed = {}
    for name in done:
        replayed[name] = load_outputs(root, compiled.pipeline.name, RUN_ID, name)
    assert replayed == expected
    ran = {path.rpartition("/")[2] for path, s in states.items() if s == "COMPLETE"}
    tasks = {name.replace("_", "-").partition("[")[0] for name in done}
    assert {t for t in ran if not t.startswith(("condition", "exit-handler", "for-loop"))} == tasks
    return local, states, state


@pytest.mark.parametrize("engine", ENGINES)
def test_the_example_runs_as_pipecast_run_does(engine, tmp_path):
    local, states, state = _compare(hyperparameter_search_kfp, {"threshold": 0.8}, engine, tmp_path)
    assert state == "COMPLETE" and local.status == "succeeded"
    assert states["exit-handler-1/condition-branches-3/condition-5"] == "CANCELED"  # Else not triggered
    report = load_outputs(f"file://{tmp_path}/replay", "hyperparameter_search_kfp", RUN_ID, "report")
    assert report == {"output": "search succeeded"}


def test_kfp_2_4_refuses_a_final_status_the_way_its_backend_does(tmp_path):
    compiled = compile_case("kubeflow", hyperparameter_search_kfp,
                            settings={"artifact_root": f"file://{tmp_path}", "image": "x:1"})
    with pytest.raises(AssertionError, match="task final status not supported yet"):
        replay_tasks(compiled.main, {}, RUN_ID, engine=KFP_2_4)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("n", "mode", "branch"), [(2, None, "first"), (4, "z", "second"), (2, "z", "third"),
                                                    (9, "z", "second")])
def test_branches_oneof_and_the_handler_equal_pipecast_run(engine, n, mode, branch, tmp_path):
    parameters = {"n": n, **({"mode": mode} if mode is not None else {})}
    local, _, state = _compare(branches_exit, parameters, engine, tmp_path)
    chosen = load_outputs(f"file://{tmp_path}/replay", "branches_exit", RUN_ID, "label_4")
    assert chosen == {"output": branch}
    status = json.loads(load_outputs(f"file://{tmp_path}/replay", "branches_exit", RUN_ID, "summary")["output"])
    if n > 5:  # the group failed: the run fails, the handler still ran and names the step
        assert state == "FAILED" and local.status == "failed"
        assert status["status"] == "failed" and status["failed_steps"] == ["explode"]
        assert "9 is too big" in status["error"]
    else:
        assert state == "COMPLETE" and status == {"error": None, "failed_steps": [], "status": "succeeded"}


@pytest.mark.parametrize(("n", "mode", "branch"), [(2, None, "first"), (4, "z", "second"), (2, "z", "third")])
def test_kfp_2_4_runs_conditions_and_oneof(n, mode, branch, tmp_path):
    """KFP 2.4's driver evaluates trigger policies and resolves OneOf as 2.17's does; only the final status is newer."""
    parameters = {"n": n, **({"mode": mode} if mode is not None else {})}
    local, _, state = _compare(branches_only, parameters, KFP_2_4, tmp_path)
    assert state == "COMPLETE" and local.status == "succeeded"
    assert load_outputs(f"file://{tmp_path}/replay", "branches_only", RUN_ID, "label_4") == {"output": branch}


def test_conditions_oneof_and_exit_handler_are_what_kfps_compiler_writes():
    """The example's groups as kfp 2.17 compiles the same dsl.ExitHandler, ParallelFor, If/Else and OneOf: names,
    trigger policies, channels, the OneOf outputs and the exit task are equal."""
    import tempfile

    from kfp import compiler, dsl

    from tests.targets.kfp.support import documents

    def component(name: str, inputs: str, outputs: str) -> Any:
        namespace: dict[str, Any] = {"dsl": dsl}
        exec(f"def {name}({inputs}{', ' if inputs and outputs else ''}{outputs}):\n"
             f"    return dsl.ContainerSpec(image='x', command=['run'])", namespace)
        return dsl.container_component(namespace[name])

    train_model = component("train_model", "pipecast_item: str, pipecast_items: list", "")
    accuracy_of = component("accuracy_of", "", "output: dsl.OutputPath(float)")
    promote = component("promote", "", "pipecast_ran: dsl.OutputPath(str)")
    keep_current = component("keep_current", "", "pipecast_ran: dsl.OutputPath(str)")
    record_decision = component("record_decision", "pipecast_one_of_decision: str", "")
    report = component("report", "status: dsl.PipelineTaskFinalStatus", "")

    @dsl.pipeline(name="hyperparameter-search-kfp")
    def reference(rates: list = [0.1], threshold: float = 0.8):  # noqa: B006
        handler = report()
        with dsl.ExitHandler(handler):
            with dsl.ParallelFor(rates, parallelism=2) as lr:
                train_model(pipecast_item=lr, pipecast_items=rates)
            accuracy = accuracy_of()
            with dsl.If(accuracy.outputs["output"] > threshold):
                promoted = promote()
            with dsl.Else():
                kept = keep_current()
            record_decision(pipecast_one_of_decision=dsl.OneOf(promoted.outputs["pipecast_ran"],
                                                               kept.outputs["pipecast_ran"]))

    with tempfile.TemporaryDirectory() as folder:
        compiler.Compiler().compile(reference, f"{folder}/ref.yaml")
        theirs, _ = documents(Path(f"{folder}/ref.yaml").read_text())
    ours, _ = documents(compile_case("kubeflow", hyperparameter_search_kfp, golden=True).main)
    mine_root, their_root = ours["root"]["dag"]["tasks"], theirs["root"]["dag"]["tasks"]
    for key in ("dependentTasks", "triggerPolicy", "taskInfo"):
        assert mine_root["report"][key] == their_root["report"][key], key
    assert mine_root["report"]["inputs"]["parameters"]["status"] == their_root["report"]["inputs"]["parameters"][
        "status"]
    assert ours["components"]["comp-report"]["inputDefinitions"]["parameters"]["status"] == theirs["components"][
        "comp-report"]["inputDefinitions"]["parameters"]["status"]
    assert mine_root["exit-handler-1"]["taskInfo"] == their_root["exit-handler-1"]["taskInfo"]
    mine_exit = ours["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    their_exit = theirs["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    mine, their = dict(mine_exit["condition-branches-3"]), dict(their_exit["condition-branches-3"])
    assert set(their.pop("dependentTasks")) <= set(mine.pop("dependentTasks"))  # ours also waits for pick-best's data
    assert mine == their
    assert mine_exit["record-decision"]["inputs"]["parameters"]["pipecast_one_of_decision"] == their_exit[
        "record-decision"]["inputs"]["parameters"]["pipecast_one_of_decision"]
    for name in ("comp-condition-branches-3", "comp-condition-4", "comp-condition-5"):
        for key in ("inputDefinitions", "outputDefinitions"):
            assert ours["components"][name][key] == theirs["components"][name][key], (name, key)
        assert ours["components"][name]["dag"].get("outputs") == theirs["components"][name]["dag"].get("outputs")
    mine_branches = ours["components"]["comp-condition-branches-3"]["dag"]["tasks"]
    their_branches = theirs["components"]["comp-condition-branches-3"]["dag"]["tasks"]
    for name in ("condition-4", "condition-5"):
        assert mine_branches[name] == their_branches[name]


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_what_kfp_cannot_express_is_refused_clearly(target):
    from pipecast import Elif, ExitHandler, If, OneOf, ParallelFor, pipeline
    from pipecast.errors import ValidationError
    from tests.helpers.cases import golden_settings
    from tests.targets.kfp.flow_cases import label, pick, summary

    def refusal(fn: Any) -> str:
        with pytest.raises(ValidationError) as caught:
            compile_case(target, fn, settings=golden_settings(target))
        return str(caught.value)

    @pipeline(name="nested_exit")
    def nested_exit(xs: list = [1]):  # noqa: B006
        with ParallelFor(xs) as x, ExitHandler() as inner:
            pick(x)
        summary(inner.status)

    assert "KFP runs an ExitHandler only at the pipeline's top level" in refusal(nested_exit)

    @pipeline(name="no_else")
    def no_else(n: int = 1):
        v = pick(n)
        with If(v == 1):
            a = label("a")
        with Elif(v == 2):
            b = label("b")
        label(OneOf(a, b))

    assert "is a OneOf that KFP cannot express" in refusal(no_else)

    @pipeline(name="across")
    def across(n: int = 1):
        with If(pick(n) == 1):
            a = label("a")
        label(a)

    assert "KFP's compiler refuses a task depending on a task inside a dsl.If" in refusal(across)

    @pipeline(name="on_dict")
    def on_dict(n: int = 1):
        with If(as_dict(n) == {"n": 1}):
            label("a")

    assert "cannot be a KFP trigger policy" in refusal(on_dict)



@pytest.mark.parametrize("engine", ENGINES)
def test_a_one_of_inside_a_map_reads_each_items_branch_as_pipecast_run_does(engine, tmp_path):
    local, _, state = _compare(item_one_of, {}, engine, tmp_path)
    assert state == "COMPLETE" and local.status == "succeeded"
    shown = [load_outputs(f"file://{tmp_path}/replay", "item_one_of", RUN_ID, f"show_item[{i}]") for i in range(4)]
    assert shown == [{"output": v} for v in (1, 105, 2, 107)]
    assert load_outputs(f"file://{tmp_path}/replay", "item_one_of", RUN_ID, "total_items") == {"output": 215}
