"""Control flow on SageMaker (issue 16): ConditionSteps on property files, goldens, AWS's schema, the refusals, the
runtime's property file, and a replay that follows SageMaker's rules with results equal to ``pipecast run``'s.

``pytest --update-goldens`` rewrites ``data/flow/<pipeline>.pipeline.json`` (or ``.error.txt`` for a refused one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipecast.errors import PipecastError, ValidationError
from pipecast.runtime.local_runner import run_pipeline
from pipecast.runtime.params import resolve_parameters
from pipecast.runtime.publish_sagemaker import property_file
from pipecast.targets.sagemaker.submit import execution_parameters
from tests.helpers.cases import compile_case
from tests.helpers.replay import replayed_outputs
from tests.targets.sagemaker import flow_pipelines, schema
from tests.targets.sagemaker.replay_flow import FlowReplay, flatten
from tests.targets.sagemaker.test_schema import _without_known_gaps

GOLDENS = Path(__file__).parent / "data" / "flow"
PIPELINES = ["sm_branches", "sm_hostile", "sm_one_of", "sm_text_order", "sm_training_decision", "sm_refused"]
EXECUTION_ID = "fl0wexec0001"


def _compiled(name: str) -> dict[str, str]:
    try:
        bundle = compile_case("sagemaker", getattr(flow_pipelines, name), golden=True).bundle
    except ValidationError as err:
        return {f"{name}.error.txt": str(err) + "\n"}
    return dict(bundle.files)


@pytest.mark.parametrize("name", PIPELINES)
def test_golden(name, request):
    files = _compiled(name)
    if request.config.getoption("--update-goldens"):
        for old in GOLDENS.glob(f"{name}.*"):
            old.unlink()
        GOLDENS.mkdir(exist_ok=True)
        for path, text in files.items():
            (GOLDENS / path).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in GOLDENS.glob(f"{name}.*")}
    assert expected == files, f"{name} differs from its golden in {GOLDENS} (pytest --update-goldens)"


def _definition(name: str) -> dict[str, Any]:
    return json.loads(_compiled(name)[f"{name}.pipeline.json"])


def test_definitions_validate_against_the_schema_with_the_condition_gaps_patched():
    document = _definition("sm_branches")
    assert schema.errors(document) == []
    assert schema.unresolved_references(document) == []
    assert schema.errors(document, patched=False) != []  # nested condition steps, Not, In, JsonGet, PropertyFiles
    # ... and the documented gaps (SOURCE.md 1 and 4-6) are the only reasons
    assert schema.errors(_without_condition_gaps(_without_known_gaps(document)), patched=False) == []


def _without_condition_gaps(document: dict[str, Any]) -> dict[str, Any]:
    """Each construct of gaps 4-6 replaced by one the raw schema has (nested condition steps moved to the top)."""
    def value(item: Any) -> Any:
        return {"Get": "Parameters.scale"} if isinstance(item, dict) and "Std:JsonGet" in item else item

    def condition(item: dict[str, Any]) -> dict[str, Any]:
        if item["Type"] == "Not":
            return condition(item["Condition"])
        if item["Type"] == "Or":
            return {**item, "Conditions": [condition(c) for c in item["Conditions"] if c["Type"] != "Or"]}
        if item["Type"] == "In":
            return {"Type": "In", "Value": "x", "In": ["x"]}  # the raw form (its oneOf takes no Get nor integer)
        return {**item, "LeftValue": value(item["LeftValue"]), "RightValue": value(item["RightValue"])}

    hoisted: list[dict[str, Any]] = []

    def step(item: dict[str, Any]) -> dict[str, Any]:
        item = {k: v for k, v in item.items() if k != "PropertyFiles"}
        if item["Type"] != "Condition":
            return item
        arguments = item["Arguments"]
        branches = {}
        for key in ("IfSteps", "ElseSteps"):
            branches[key] = [step(s) for s in arguments[key] if s["Type"] != "Condition"]
            hoisted.extend(step(s) for s in arguments[key] if s["Type"] == "Condition")
        return {**item, "Arguments": {"Conditions": [condition(c) for c in arguments["Conditions"]], **branches}}

    steps = [step(s) for s in document["Steps"]]
    return {**document, "Steps": steps + hoisted}


def test_branches_lower_to_nested_condition_steps_on_property_files():
    document = _definition("sm_branches")
    top = [s["Name"] for s in document["Steps"]]
    assert top == ["measure", "is_ready", "label", "count", "condition_1", "announce", "condition_5"]
    steps = {s["Name"]: (s, branch) for s, branch in flatten(document["Steps"])}
    assert steps["promote"][1] == ("condition_1", "IfSteps")
    assert steps["condition_2"][1] == ("condition_1", "ElseSteps")  # elif: inside the else of the if
    assert steps["stage"][1] == ("condition_2", "IfSteps") and steps["keep"][1] == ("condition_2", "ElseSteps")
    assert steps["condition_4"][1] == ("condition_2", "ElseSteps")  # an If inside the else branch
    assert steps["warn"][1] == ("condition_4", "IfSteps")
    assert steps["announce"][0]["DependsOn"] == ["promote"]  # never starts when promote did not run
    measure = steps["measure"][0]
    assert measure["PropertyFiles"] == [{"PropertyFileName": "decisions", "OutputName": "decisions",
                                         "FilePath": "decisions.json"}]
    words = measure["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert words[-4:] == ["--sagemaker-property-file", "/opt/ml/processing/pipecast-decisions/decisions.json",
                          "--sagemaker-publish", "output"]
    assert "PropertyFiles" not in steps["promote"][0]  # no condition reads it
    conditions = steps["condition_2"][0]["Arguments"]["Conditions"]  # `and` is the list itself
    assert [c["Type"] for c in conditions] == ["Equals", "In", "Not"]
    request = json.loads(_compiled("sm_branches")["sm_branches.create-pipeline.json"])
    assert request["ParallelismConfiguration"] == {"MaxParallelExecutionSteps": 3}


def test_and_inside_or_is_not_of_or_of_nots():
    from pipecast import If, pipeline

    @pipeline(name="sm_and_in_or")
    def sm_and_in_or(scale: float = 1.0, force: bool = False):
        score = flow_pipelines.measure(scale)
        with If(((score > 0.5) & (score < 2.0)) | (force == True)):  # noqa: E712
            flow_pipelines.promote(score)

    bundle = compile_case("sagemaker", sm_and_in_or, golden=True).bundle
    document = json.loads(bundle[bundle.main_file])
    (condition,) = document["Steps"][1]["Arguments"]["Conditions"]
    assert condition["Type"] == "Or"
    both = condition["Conditions"][0]
    assert both["Type"] == "Not" and both["Condition"]["Type"] == "Or"
    assert [c["Type"] for c in both["Condition"]["Conditions"]] == ["Not", "Not"]
    assert schema.errors(document) == []


def test_refusals_name_the_step_and_the_reason():
    errors = {name: _compiled(name)[f"{name}.error.txt"] for name in PIPELINES[2:]}
    assert "OneOf" in errors["sm_one_of"] and "sagemaker-python-sdk#3565" in errors["sm_one_of"]
    assert "only numbers are ordered" in errors["sm_text_order"] and "compares a float with text" in \
        errors["sm_text_order"]
    assert "training step" in errors["sm_training_decision"]
    refused = errors["sm_refused"]
    assert "map" in refused and "exit handler" in refused and "hook" in refused


def test_the_property_file_holds_scalars_only():
    assert json.loads(property_file({"b": True, "n": 3, "x": 0.25, "t": "é"})) == {"b": True, "n": 3, "x": 0.25,
                                                                                  "t": "é"}
    for bad in ([1], {"a": 1}, None, float("nan")):
        with pytest.raises(PipecastError, match="output 'v'"):
            property_file({"v": bad})


# Parameter sets that take every branch: (given values, the steps SageMaker runs besides the first four)
RUNS = [
    ({}, {"condition_1", "promote", "announce", "condition_5", "archive"}),
    ({"scale": 0.5}, {"condition_1", "condition_2", "stage", "condition_5"}),
    ({"scale": 0.1}, {"condition_1", "condition_2", "keep", "condition_4", "warn", "condition_5", "archive"}),
    ({"scale": 0.5, "env": "dev", "force": True}, {"condition_1", "promote", "announce", "condition_5"}),
]


@pytest.mark.parametrize(("given", "expected"), RUNS, ids=["if", "elif", "else-nested-if", "forced"])
def test_replay_follows_sagemaker_and_equals_pipecast_run(given, expected, tmp_path):
    pipeline = flow_pipelines.sm_branches.build()
    values = resolve_parameters(pipeline, given)
    root = tmp_path / "replay"
    bundle = compile_case("sagemaker", pipeline, golden=True, settings={"artifact_root": f"local://{root}"}).bundle
    replay = FlowReplay(bundle[bundle.main_file], execution_parameters(pipeline, values), EXECUTION_ID)
    ran = set(replay.run())
    assert ran == {"measure", "is_ready", "label", "count"} | expected
    local = run_pipeline(pipeline, values, artifact_root=f"file://{tmp_path / 'local'}", cache=False)
    done = {name for name, state in local.steps.items() if state.status == "done"}
    assert done == {name for name in ran if not name.startswith("condition_")}
    assert {name for name, state in local.steps.items() if state.status == "skipped"} == \
        {s.name for s in pipeline.steps} - done
    replayed = replayed_outputs(pipeline.__class__(**{**_fields(pipeline), "steps": tuple(
        s for s in pipeline.steps if s.name in done)}), root, EXECUTION_ID)
    assert replayed == {name: local.step_outputs(name) for name in done}


def _fields(pipeline: Any) -> dict[str, Any]:
    return {name: getattr(pipeline, name) for name in pipeline.__dataclass_fields__}


@pytest.mark.parametrize(("env", "branch"), [(flow_pipelines.HOSTILE, "promote"), ("@@", "keep")])
def test_hostile_text_in_a_condition_stays_one_value(env, branch, tmp_path):
    document = _definition("sm_hostile")
    (equals, member) = document["Steps"][1]["Arguments"]["Conditions"]
    assert equals["RightValue"] == flow_pipelines.HOSTILE and member["Values"] == [flow_pipelines.HOSTILE, "@@"]
    assert schema.errors(document) == [] and schema.unresolved_references(document) == []
    pipeline = flow_pipelines.sm_hostile.build()
    values = resolve_parameters(pipeline, {"env": env})
    root = tmp_path / "replay"
    bundle = compile_case("sagemaker", pipeline, golden=True, settings={"artifact_root": f"local://{root}"}).bundle
    ran = FlowReplay(bundle[bundle.main_file], execution_parameters(pipeline, values), EXECUTION_ID).run()
    assert ran == ["echo", "condition_1", branch]
    local = run_pipeline(pipeline, values, artifact_root=f"file://{tmp_path / 'local'}", cache=False)
    assert local.steps[branch].status == "done" and local.steps[{"promote": "keep", "keep": "promote"}[branch]] \
        .status == "skipped"


def _refusal(build: Any) -> str:
    with pytest.raises(ValidationError) as err:
        compile_case("sagemaker", build, golden=True)
    return str(err.value)


def test_each_condition_sagemaker_cannot_test_is_refused_with_its_reason():
    message = _refusal(flow_pipelines.sm_bad_values)
    assert "parameter 'options' is dict" in message
    assert "compares a float with an integer" in message
    assert "membership is lowered only in a constant list" in message
    assert "output 'output' of step 'config' is dict" in message
    assert message.count("cannot be tested by a SageMaker ConditionStep") == 4


def test_a_cached_step_still_publishes_its_property_file(tmp_path):
    """A second execution reuses the cached outputs; the conditions still read them from the property files."""
    pipeline = flow_pipelines.sm_branches.build()
    values = resolve_parameters(pipeline, {"scale": 0.1})
    root = tmp_path / "replay"
    bundle = compile_case("sagemaker", pipeline, golden=True, settings={"artifact_root": f"local://{root}"}).bundle
    first = FlowReplay(bundle[bundle.main_file], execution_parameters(pipeline, values), EXECUTION_ID)
    second = FlowReplay(bundle[bundle.main_file], execution_parameters(pipeline, values), "fl0wexec0002")
    assert first.run() == second.run()
    assert second.property_files == first.property_files
    assert second.property_files[("measure", "decisions")] == {"output": 0.09}
    meta = json.loads(next((root / "sm_branches" / "runs" / "fl0wexec0002").rglob("measure/meta.json"))
                      .read_text())
    assert meta["cached"] is True and meta["cached_from"]["run_id"] == EXECUTION_ID


def test_the_runtime_takes_the_publish_options():
    from pipecast.runtime.command import parse_command

    _, options = parse_command(["run", "--fn", "m:f", "--pipeline", "p", "--step", "s", "--run-id", "r",
                                "--artifact-root", "file:///tmp/x", "--sagemaker-property-file", "/out/d.json",
                                "--sagemaker-publish", "a", "--sagemaker-publish", "b"])
    assert options.sagemaker_property_file == "/out/d.json" and options.sagemaker_publish == ("a", "b")


def test_a_step_named_like_a_condition_step_is_refused():
    message = _refusal(flow_pipelines.sm_collide)
    assert "step 'condition_1'" in message and "the name of the ConditionStep of the if at" in message


def test_condition_steps_nested_too_deep_are_refused_not_a_traceback():
    from benchmarks.control_flow import branches

    deep = compile_case("sagemaker", branches(100), golden=True).bundle  # an if, 98 elifs and an else: 99 levels
    text = deep[deep.main_file]
    assert "\n" not in text.rstrip("\n")  # past 10 levels, written without indentation (its size stays linear)
    assert len(text) < 100_000 and len(json.loads(text)["Steps"]) == 1
    shallow = compile_case("sagemaker", branches(10), golden=True).bundle
    assert schema.errors(json.loads(shallow[shallow.main_file])) == []  # the validator recurses too: ten levels
    message = _refusal(branches(102))
    assert "is a condition step nested 101 deep" in message and "independent If blocks" in message


def test_submit_checks_the_limits_of_steps_inside_branches():
    from pipecast.errors import ParameterError
    from pipecast.targets.sagemaker.submit import check_arguments

    document = _definition("sm_hostile")
    echo, condition = document["Steps"]
    condition["Arguments"]["IfSteps"].append(echo)  # the step reading the parameter, now inside a branch
    document["Steps"] = [condition]
    with pytest.raises(ParameterError, match=r"step 'echo'.*SageMaker allows 256"):
        check_arguments(document, [{"Name": "env", "Value": "x" * 300}])
    check_arguments(document, [{"Name": "env", "Value": "x" * 10}])
