"""Control flow on Azure ML (issue 16): goldens per construct, azure-ai-ml's own loading and validation, the
refusals, the runtime that publishes control outputs, and a replay of the nodes as Azure ML runs them whose
results equal ``pipecast run``'s.

``pytest --update-goldens`` rewrites ``data/flow/<name>.yml`` (or ``.error.txt`` for a refused one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
import yaml

from pipecast.compiler import ir
from pipecast.errors import PipecastError, ValidationError
from pipecast.runtime.executor import StepInvocation, load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.runtime.publish_azureml import MAX_PROPERTY_CHARS, control_outputs, control_text, history_url
from pipecast.targets.azureml.emit import RUN_ID_INPUT, input_value
from tests.helpers.cases import ROOT, compile_case
from tests.targets.azureml import flow_pipelines
from tests.targets.azureml.fake_azureml import FakeAzureML, start
from tests.targets.azureml.flow_replay import run_flow_job
from tests.targets.azureml.support import reference_problems, with_components

GOLDENS = Path(__file__).parent / "data" / "flow"
PREVIEW = {"control_flow_preview": True}
# golden name -> (pipeline in flow_pipelines.py, settings)
VARIANTS = {"az_flow": ("az_flow", PREVIEW), "az_flow_no_preview": ("az_flow", {}),
            "az_refused": ("az_refused", PREVIEW), "az_exit": ("az_exit", PREVIEW), "az_multi": ("az_multi", PREVIEW),
            "az_item_conditions": ("az_item_conditions", PREVIEW), "az_item_refused": ("az_item_refused", PREVIEW),
            "az_outer_condition": ("az_outer_condition", PREVIEW), "az_item_compare": ("az_item_compare", PREVIEW),
            "az_nested_conditions": ("az_nested_conditions", PREVIEW),
            "az_map_in_branch": ("az_map_in_branch", PREVIEW), "az_nested_maps": ("az_nested_maps", PREVIEW),
            "az_nested_refused": ("az_nested_refused", PREVIEW), "az_inner_items": ("az_inner_items", PREVIEW),
            "az_inner_refused": ("az_inner_refused", PREVIEW), "az_row_maps": ("az_row_maps", PREVIEW),
            "az_inner_chain": ("az_inner_chain", PREVIEW), "az_inner_conditions": ("az_inner_conditions", PREVIEW),
            "az_map_in_branch_in_map": ("az_map_in_branch_in_map", PREVIEW),
            "az_inner_branch_refused": ("az_inner_branch_refused", PREVIEW),
            "az_inner_exit": ("az_inner_exit", PREVIEW)}
PREVIEW_ENV = "AZURE_ML_CLI_PRIVATE_FEATURES_ENABLED"


def _compiled(name: str) -> dict[str, str]:
    source, settings = VARIANTS[name]
    try:
        bundle = compile_case("azureml", getattr(flow_pipelines, source), golden=True, settings=settings).bundle
    except ValidationError as err:
        return {f"{name}.error.txt": str(err) + "\n"}
    # the job as <name>.yml; a map body's pipeline component keeps its name (the job refers to it by it)
    return {f"{name}.yml" if path == bundle.main_file else path: text for path, text in bundle.files}


def _golden_paths(name: str) -> list[Path]:
    return [*GOLDENS.glob(f"{name}.yml"), *GOLDENS.glob(f"{name}.*.component.yml"),
            *GOLDENS.glob(f"{name}.error.txt")]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_golden(name, request):
    files = _compiled(name)
    if request.config.getoption("--update-goldens"):
        for old in _golden_paths(name):
            old.unlink()
        GOLDENS.mkdir(exist_ok=True)
        for path, text in files.items():
            (GOLDENS / path).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8")
                for p in _golden_paths(name)}
    assert expected == files, f"{name} differs from its golden in {GOLDENS} (pytest --update-goldens)"


_LOAD = """
import json, sys
from azure.ai.ml import load_job
results = {}
for path in sys.argv[1:]:
    try:
        job = load_job(source=path)
        job._validate(raise_error=True)
        rest = job._to_rest_object().as_dict()["properties"]["jobs"]
        bodies = {k: {"jobs": list(n.component.jobs), "outputs": list(n.component.outputs)}
                  for k, n in job.jobs.items() if n.type == "pipeline"}
        loops = {k: {o: v.type for o, v in n.outputs.items()} for k, n in job.jobs.items() if n.type == "parallel_for"}
        results[path] = {"ok": True, "types": {k: v["type"] for k, v in rest.items()}, "jobs": rest,
                         "bodies": bodies, "loop_outputs": loops}
    except Exception as err:
        results[path] = {"ok": False, "error": str(err)[:2000]}
print(json.dumps(results, default=str))
"""


def _load_with_azure_ai_ml(paths: list[Path], preview: bool) -> dict[str, dict]:
    """azure-ai-ml's load_job + validation in a fresh interpreter: its switch is read when its schemas import."""
    import os

    env = {k: v for k, v in os.environ.items() if k != PREVIEW_ENV} | ({PREVIEW_ENV: "true"} if preview else {})
    done = subprocess.run([sys.executable, "-c", _LOAD, *map(str, paths)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_goldens_load_and_validate_with_azure_ai_ml_only_with_its_preview_switch():
    paths = sorted(p for p in GOLDENS.glob("*.yml") if not p.name.endswith(".component.yml"))
    assert [p.name for p in paths] == [
        "az_flow.yml", "az_inner_chain.yml", "az_inner_conditions.yml", "az_inner_items.yml", "az_inner_refused.yml",
        "az_item_compare.yml", "az_item_conditions.yml", "az_map_in_branch.yml", "az_map_in_branch_in_map.yml",
        "az_multi.yml", "az_nested_conditions.yml", "az_nested_maps.yml", "az_nested_refused.yml",
        "az_outer_condition.yml", "az_row_maps.yml"]
    results = _load_with_azure_ai_ml(paths, preview=True)
    by_name = {p.name.removesuffix(".yml"): results[str(p)] for p in paths}
    loaded = by_name["az_flow"]
    assert loaded["ok"], loaded
    types = loaded["types"]
    assert types["pipecast_map_1"] == types["pipecast_map_2"] == types["pipecast_map_3"] == "parallel_for"
    assert {types[f"pipecast_condition_{i}"] for i in (1, 2, 3)} == {"if_else"}
    jobs = loaded["jobs"]  # what the SDK sends to Azure ML
    assert jobs["pipecast_map_1"]["items"] == "${{parent.jobs.rates.outputs.pipecast_items_output}}"
    assert jobs["pipecast_map_1"]["max_concurrency"] == 2
    assert jobs["pipecast_map_2"]["items"] == "${{parent.jobs.pipecast_map_2_items.outputs.pipecast_items}}"
    assert json.loads(jobs["pipecast_map_3"]["items"]) == [{"pipecast_item": 0}, {"pipecast_item": 1}]
    assert jobs["pipecast_condition_1"]["true_block"] == ["${{parent.jobs.promote}}", "${{parent.jobs.shout}}"]
    # maps of several steps: the body is a pipeline node whose component azure-ai-ml reads from its file
    # a condition inside a map: if_else nodes of the body's pipeline component (PipelineJobsField takes them)
    item_conditions = by_name["az_item_conditions"]
    assert item_conditions["ok"], item_conditions
    assert item_conditions["bodies"]["pipecast_map_1_body"] == {
        "jobs": ["train", "promote", "shout", "keep", "pipecast_condition_1", "pipecast_condition_2"],
        "outputs": ["pipecast_done_train"]}  # the branches' steps may be skipped: the item ends with train
    assert "pipecast_condition_1" not in item_conditions["types"]
    # a condition inside a map on a step outside it: a boolean input of the body, bound to that step's output
    outer = by_name["az_outer_condition"]
    assert outer["ok"], outer
    assert outer["bodies"]["pipecast_map_2_body"] == {"jobs": ["square", "pipecast_condition_2"], "outputs": []}
    assert outer["jobs"]["pipecast_map_2_body"]["inputs"]["pipecast_if_condition_2"] == {
        "job_input_type": "literal", "value": "${{parent.jobs.best.outputs.pipecast_if_condition_2}}"}
    multi = by_name["az_multi"]
    assert multi["ok"], multi
    assert multi["types"]["pipecast_map_1_body"] == multi["types"]["pipecast_map_2_body"] == "pipeline"
    assert multi["jobs"]["pipecast_map_1"]["body"] == "${{parent.jobs.pipecast_map_1_body}}"
    assert multi["bodies"]["pipecast_map_1_body"] == {"jobs": ["train", "train_2", "pair"],
                                                      "outputs": ["pipecast_done_train_2", "pipecast_done_pair"]}
    assert multi["loop_outputs"]["pipecast_map_1"] == {"pipecast_done_train_2": "mltable",
                                                       "pipecast_done_pair": "mltable"}  # aggregated
    # a condition inside a condition: the inner chain's if_else nodes are in the outer one's block
    nested = by_name["az_nested_conditions"]
    assert nested["ok"], nested
    assert nested["jobs"]["pipecast_condition_1"]["true_block"] == [
        "${{parent.jobs.train}}", "${{parent.jobs.pipecast_condition_2}}", "${{parent.jobs.pipecast_condition_3}}",
        "${{parent.jobs.pipecast_condition_4}}"]
    assert nested["jobs"]["pipecast_condition_5"]["true_block"] == "${{parent.jobs.pipecast_condition_6}}"
    assert nested["jobs"]["pipecast_condition_2"]["condition"] == \
        "${{parent.jobs.train.outputs.pipecast_if_condition_2}}"
    # a map inside a branch: the parallel_for nodes (and the items node) are in the block, their bodies are not
    in_branch = by_name["az_map_in_branch"]
    assert in_branch["ok"], in_branch
    assert in_branch["jobs"]["pipecast_condition_1"]["true_block"] == [
        "${{parent.jobs.rates}}", "${{parent.jobs.pipecast_map_1}}", "${{parent.jobs.best_2}}",
        "${{parent.jobs.pipecast_map_2_items}}", "${{parent.jobs.pipecast_map_2}}"]
    assert in_branch["types"]["pipecast_map_1"] == in_branch["types"]["pipecast_map_2"] == "parallel_for"
    assert in_branch["bodies"]["pipecast_map_2_body"] == {"jobs": ["pair", "shout"], "outputs": []}
    # a map inside a map: the inner parallel_for is a node of the outer body's component, its body a command node
    nested_maps = by_name["az_nested_maps"]
    assert nested_maps["ok"], nested_maps
    assert nested_maps["bodies"]["pipecast_map_1_body"] == {
        "jobs": ["grid", "train", "best", "square", "pipecast_map_2", "pipecast_map_3"],
        "outputs": ["pipecast_done_best", "pipecast_done_pipecast_map_3"]}
    assert nested_maps["loop_outputs"]["pipecast_map_1"] == {"pipecast_done_best": "mltable",
                                                             "pipecast_done_pipecast_map_3": "mltable"}
    # inner maps counted per outer item: an items node of the outer body's component, each loop reading its output
    inner = by_name["az_inner_items"]
    assert inner["ok"], inner
    assert inner["bodies"]["pipecast_map_1_body"] == {
        "jobs": ["square", "best", "pick", "train", "pipecast_map_2_items", "pipecast_map_3_items",
                 "pipecast_map_4_items", "pipecast_map_2", "pipecast_map_3", "pipecast_map_4"],
        "outputs": ["pipecast_done_best", "pipecast_done_pipecast_map_3", "pipecast_done_pipecast_map_4"]}
    assert inner["jobs"]["pipecast_map_1_body"]["inputs"]["pipecast_after_rates"]["value"] == \
        "${{parent.jobs.rates.outputs.pipecast_done}}"  # map_4's items node reads rates' output: it waits on it
    rows = by_name["az_row_maps"]  # the outer body is only the inner map: its items node and its loop
    assert rows["ok"], rows
    assert rows["bodies"]["pipecast_map_1_body"] == {"jobs": ["square", "pipecast_map_2_items", "pipecast_map_2"],
                                                     "outputs": ["pipecast_done_pipecast_map_2"]}
    # an inner map of several steps: its loop's body is a pipeline node of the outer body's component, whose own
    # component azure-ai-ml reads from its file too; the outer body gives each inner sink's aggregated done
    chain = by_name["az_inner_chain"]
    assert chain["ok"], chain
    assert chain["bodies"]["pipecast_map_1_body"] == {
        "jobs": ["grid", "best", "pipecast_map_2_body", "pipecast_map_2"],
        "outputs": ["pipecast_done_pipecast_map_2_shout", "pipecast_done_best"]}
    assert chain["bodies"]["pipecast_map_3_body"] == {
        "jobs": ["pipecast_map_4_items", "pipecast_map_4_body", "pipecast_map_4"],
        "outputs": ["pipecast_done_pipecast_map_4_shout_2"]}
    assert chain["loop_outputs"]["pipecast_map_1"] == {"pipecast_done_pipecast_map_2_shout": "mltable",
                                                       "pipecast_done_best": "mltable"}
    assert chain["jobs"]["joined_scores"]["inputs"]["pipecast_after_pipecast_map_1_pipecast_map_2_shout"]["value"] \
        == "${{parent.jobs.pipecast_map_1.outputs.pipecast_done_pipecast_map_2_shout}}"
    assert by_name["az_nested_refused"]["ok"], by_name["az_nested_refused"]
    # conditions inside an inner map: if_else nodes of the inner body's component, one decided per inner item, the
    # others on booleans bound from the outer body's step and (through the outer body) from a step outside both
    cond = by_name["az_inner_conditions"]
    assert cond["ok"], cond
    assert cond["bodies"]["pipecast_map_1_body"] == {
        "jobs": ["grid", "best_2", "pipecast_map_2_body", "pipecast_map_2"],
        "outputs": ["pipecast_done_best_2", "pipecast_done_pipecast_map_2_train"]}
    assert cond["jobs"]["pipecast_map_1_body"]["inputs"]["pipecast_if_condition_4"]["value"] == \
        "${{parent.jobs.best.outputs.pipecast_if_condition_4}}"
    # maps inside a branch inside a map: the loops (and an items node) in the outer body's if_else blocks
    branch_map = by_name["az_map_in_branch_in_map"]
    assert branch_map["ok"], branch_map
    outer_body = branch_map["bodies"]["pipecast_map_1_body"]["jobs"]
    assert {"pipecast_map_2", "pipecast_map_3", "pipecast_map_3_items", "pipecast_map_4", "pipecast_map_4_body",
            "pipecast_condition_1", "pipecast_condition_2"} <= set(outer_body)
    # an inner map zipping the outer item with a list of the outer body: its items node waits on that step's node
    zipped = by_name["az_inner_refused"]
    assert zipped["ok"], zipped
    assert zipped["bodies"]["pipecast_map_1_body"] == {"jobs": ["grid", "pick", "pipecast_map_2_items",
                                                                "pipecast_map_2"],
                                                       "outputs": ["pipecast_done_pipecast_map_2"]}
    for path, refused in _load_with_azure_ai_ml(paths, preview=False).items():
        assert not refused["ok"] and ("Value 'parallel_for' passed is not in set" in refused["error"]
                                      or "Value 'if_else' passed is not in set" in refused["error"]), path


_LOAD_COMPONENT = """
import json, sys
from azure.ai.ml import load_component
results = {}
for path in sys.argv[1:]:
    try:
        # the name a standalone component needs: a job's body is anonymous (azure-ai-ml names it azureml_anonymous)
        component = load_component(source=path, params_override=[{"name": "pipecast_body"}])
        component._validate(raise_error=True)
        results[path] = {"ok": True, "jobs": {k: n.type for k, n in component.jobs.items()}}
    except Exception as err:
        results[path] = {"ok": False, "error": str(err)[:2000]}
print(json.dumps(results))
"""


def test_body_components_load_and_validate_with_azure_ai_ml():
    """Each map body's pipeline component file, as azure-ai-ml's ``load_component`` reads and validates it alone."""
    import os

    paths = sorted(GOLDENS.glob("*.component.yml"))
    env = os.environ | {PREVIEW_ENV: "true"}
    done = subprocess.run([sys.executable, "-c", _LOAD_COMPONENT, *map(str, paths)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    assert len(results) == len(paths) >= 7 and all(r["ok"] for r in results.values()), results
    assert results[str(GOLDENS / "az_map_in_branch.map_2.component.yml")]["jobs"] == {"pair": "command",
                                                                                       "shout": "command"}


def test_goldens_have_whole_references():
    job = yaml.safe_load(_compiled("az_flow")["az_flow.yml"])
    assert reference_problems(job) == []
    broken = json.loads(json.dumps(job))
    broken["jobs"]["pipecast_condition_1"]["condition"] = "${{parent.jobs.best.outputs.nope}}"
    broken["jobs"]["pipecast_map_1"]["body"] = "${{parent.jobs.gone}}"
    problems = reference_problems(broken)
    assert "pipecast_map_1: ${{parent.jobs.gone}} names no node" in problems
    assert "pipecast_condition_1: ${{parent.jobs.best.outputs.nope}} names no output of 'best'" in problems


def test_a_multi_step_body_has_whole_references():
    files = _compiled("az_multi")
    job = with_components(yaml.safe_load(files["az_multi.yml"]), files)
    assert reference_problems(job) == []
    broken = json.loads(json.dumps(job))
    inner = broken["jobs"]["pipecast_map_1_body"]["component"]["jobs"]
    inner["pair"]["outputs"]["pipecast_done"] = "${{parent.outputs.pipecast_done_train_2}}"
    del inner["train"]["inputs"]["pipecast_item"]
    problems = reference_problems(broken)
    assert "pipecast_map_1_body/component output 'pipecast_done_train_2' is bound by 2 nodes, not one" in problems
    assert "pipecast_map_1_body/component output 'pipecast_done_pair' is bound by 0 nodes, not one" in problems
    assert "pipecast_map_1_body/train: component input 'pipecast_item' is never bound" in problems


def test_the_refusals_name_the_construct_and_the_alternative():
    refused = _compiled("az_refused")["az_refused.error.txt"]
    assert "bounds its running steps to 3" in refused and "holds 2 steps" not in refused  # a body of two: lowered
    assert "step 'promote'" in refused and "step 'stage'" in refused  # each error names the group's first step
    assert "is read by step 'shout' outside it" in refused
    assert "reads step 'keep', which is inside branch 'condition_2'" in refused
    exit_ = _compiled("az_exit")["az_exit.error.txt"]
    assert "cannot run an exit handler" in exit_ and "on_finalize" in exit_ and "cannot run an on_failure" in exit_
    inside = _compiled("az_item_refused")["az_item_refused.error.txt"]
    assert inside.count("error: ") == 2, inside  # its condition on `best`, outside the map, is lowered
    assert "compares the item of map 'map_1', which step 'best'" in inside
    assert "is read by step 'shout' outside it (from 'stage')" in inside
    # once refused, now lowered: an inner map of two steps is a pipeline component of the outer body's
    assert "az_nested_refused.yml" in _compiled("az_nested_refused")
    # once refused, now lowered: an inner map zipping an outer-body step's list after the outer item is counted
    # by its items node, which waits on that step's node in the same component
    assert "az_inner_refused.yml" in _compiled("az_inner_refused")
    branched = _compiled("az_inner_branch_refused")["az_inner_branch_refused.error.txt"]
    assert branched.count("error: ") == 1, branched  # at the inner map; the outer one is not lowered either
    assert "iterates output 'output' of step 'grid_2', which is inside branch 'condition_1' and the inner map is " \
           "not" in branched and "(Azure ML's limit" in branched and "fix: put the inner map inside that branch" \
           in branched
    handler = _compiled("az_inner_exit")["az_inner_exit.error.txt"]
    assert "cannot run an exit handler" in handler and "must have no data connection to any other node" in handler
    gated = _compiled("az_flow_no_preview")["az_flow_no_preview.error.txt"]
    assert f"{PREVIEW_ENV}=true" in gated and "--set control_flow_preview=true" in gated


def test_the_items_node_publishes_a_parameters_items_or_fails_saying_why(monkeypatch, capsys):
    from pipecast.runtime import publish_azureml

    sent = []
    monkeypatch.setattr(publish_azureml, "write_properties", lambda props, env: sent.append(dict(props)))
    assert publish_azureml.main(["items", "list", '["x", "y"]']) == 0
    assert json.loads(json.loads(sent[0]["azureml.pipeline.control"])["pipecast_items"]) == [
        {"pipecast_item": 0}, {"pipecast_item": 1}]
    assert publish_azureml.main(["items", "list", "[]"]) == 1 and "empty list" in capsys.readouterr().err
    assert publish_azureml.main(["items", "list", "{}"]) == 1
    assert publish_azureml.main(["items"]) == 2


def test_the_inner_items_node_counts_its_outer_item_or_fails_saying_why(monkeypatch, capsys):
    """``items-at``: the inner map's items at one outer item, resolved from the plan as ``pipecast run`` does."""
    import urllib.parse

    from pipecast.runtime import publish_azureml
    from pipecast.targets.inline_flow import mini_plan, plan_json

    pipeline = compile_case("azureml", flow_pipelines.az_row_maps, golden=True, settings=PREVIEW).pipeline
    plan = urllib.parse.quote(plan_json(mini_plan(pipeline, pipeline.step("square"))), safe="")
    sent = []
    monkeypatch.setattr(publish_azureml, "write_properties", lambda props, env: sent.append(dict(props)))
    base = ["items-at", "--group", "map_2", "--step", "square", "--pipeline", "az_row_maps", "--run-id", "r1",
            "--artifact-root", "file:///nowhere", "--azureml-flow", plan, "--azureml-flow-param"]
    assert publish_azureml.main([*base, "rows=list:[[1, 2], [3, 4, 5]]", "--at", "1"]) == 0
    assert json.loads(json.loads(sent[0]["azureml.pipeline.control"])["pipecast_items"]) == [
        {"pipecast_item": j} for j in range(3)]
    assert publish_azureml.main([*base, "rows=list:[7, [1]]", "--at", "0"]) == 1
    assert "iterates the item of map 'map_1', which is int 7 at run time, not a list" in capsys.readouterr().err
    assert publish_azureml.main([*base, "rows=list:[[], [1]]", "--at", "0"]) == 1
    assert "map 'map_2' at outer item 0 is an empty list" in capsys.readouterr().err
    assert publish_azureml.main([*base, "rows=list:[[1]]", "--at", "${{inputs.pipecast_outer_item}}"]) == 1
    assert "still holds the engine placeholder" in capsys.readouterr().err
    assert len(sent) == 1


# -- the runtime's half ----------------------------------------------------------------------------------

def _store(tmp_path: Path, step: str, value: object) -> StepInvocation:
    from pipecast.runtime.executor import execute_step

    module = tmp_path / "az_values.py"
    module.write_text("def give(value):\n    return value\n")
    sys.path.insert(0, str(tmp_path))
    try:
        invocation = StepInvocation(function="az_values:give", pipeline="p", step=step, run_id="r1",
                                    artifact_root=f"file://{tmp_path}/store", values={"value": value},
                                    outputs=("output",), cache=False)
        execute_step(invocation)
    finally:
        sys.path.remove(str(tmp_path))
    return invocation


def test_branch_decisions_follow_if_elif_else_order(tmp_path):
    invocation = _store(tmp_path, "best", 3.5)
    above = {"op": ">", "operands": [{"kind": "output", "step": "best", "output": "output"},
                                     {"kind": "parameter", "parameter": "threshold"}]}
    positive = {"op": ">", "operands": [{"kind": "output", "step": "best", "output": "output"},
                                        {"kind": "constant", "value_json": "1.0"}]}
    branches = [f"a={json.dumps({'earlier': [], 'own': above})}",
                f"b={json.dumps({'earlier': [above], 'own': positive})}",
                f"c={json.dumps({'earlier': [above, positive], 'own': None})}"]
    assert control_outputs(invocation, branches, {"threshold": 2.5}, []) == {"a": True, "b": False, "c": False}
    assert control_outputs(invocation, branches, {"threshold": 5.0}, []) == {"a": False, "b": True, "c": False}
    assert ir.Comparison.GT.value == ">"


def test_map_items_are_published_as_parallel_for_items_within_the_property_limit(tmp_path):
    invocation = _store(tmp_path, "rates", [0.1, 0.2, 0.3])
    outputs = control_outputs(invocation, [], {}, ["output"])
    assert json.loads(outputs["pipecast_items_output"]) == [{"pipecast_item": i} for i in range(3)]
    assert len(control_text(outputs)) <= MAX_PROPERTY_CHARS
    # the documented bound: 42 items of an output named `output` fit in one run property, 43 do not
    assert len(control_text(control_outputs(_store(tmp_path, "fits", list(range(42))), [], {}, ["output"])))
    many = control_outputs(_store(tmp_path, "many", list(range(43))), [], {}, ["output"])
    with pytest.raises(PipecastError, match=f"Azure ML keeps at most {MAX_PROPERTY_CHARS} per run property"):
        control_text(many)
    with pytest.raises(PipecastError, match="empty list"):
        control_outputs(_store(tmp_path, "none", []), [], {}, ["output"])


def test_the_run_history_url_is_mldesigners():
    env = {"MLFLOW_TRACKING_URI": "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/"
                                  "g/providers/Microsoft.MachineLearningServices/workspaces/w",
           "MLFLOW_EXPERIMENT_ID": "e1", "MLFLOW_RUN_ID": "r1", "AZUREML_RUN_TOKEN": "t"}
    assert history_url(env) == ("https://westeurope.api.azureml.ms/history/v1.0/subscriptions/s/resourceGroups/g/"
                                "providers/Microsoft.MachineLearningServices/workspaces/w/experimentids/e1/runs/r1")
    with pytest.raises(PipecastError, match="AZUREML_RUN_TOKEN not set"):
        history_url({k: v for k, v in env.items() if k != "AZUREML_RUN_TOKEN"})


# -- the replay ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_history(tmp_path_factory):
    """The fake Azure ML service (HTTPS on 127.0.0.1), where the nodes PATCH their control outputs."""
    ca = trustme.CA()
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    service = FakeAzureML()
    server, url = start(service, ca)
    yield service, url, bundle
    server.shutdown()


@dataclass
class Replayed:
    """A pipeline job replayed as Azure ML runs it, checked equal to ``pipecast run``'s run of the same pipeline."""

    status: dict[str, str]  # node -> Completed or Skipped
    ran: set[str]  # the steps and items pipecast run ran (each has the same record and outputs in the replay)
    root: Path  # the replay's artifact store
    pipeline: str
    run_id: str

    def output(self, instance: str) -> object:
        return load_outputs(f"file://{self.root}", self.pipeline, self.run_id, instance)["output"]


def _replay(fake_history, tmp_path: Path, source, parameters: dict, run_id: str) -> Replayed:
    """Compile ``source``, replay its job (bodies read from their files), run it with ``pipecast run``, compare."""
    service, url, bundle = fake_history
    service.run_properties.clear()
    root = tmp_path / "replay-store"
    settings = {**PREVIEW, "artifact_root": f"local://{root}", "image": "ghcr.io/acme/pipecast:1.0"}
    compiled = compile_case("azureml", source, settings=settings)
    pipeline = compiled.pipeline
    job = with_components(yaml.safe_load(compiled.main), compiled.files)
    assert reference_problems(job) == []
    inputs = dict(job["inputs"]) | {k: input_value(pipeline.parameter(k), v) for k, v in parameters.items()}
    inputs[RUN_ID_INPUT] = run_id
    status = run_flow_job(job, inputs, service, url, bundle)
    local = run_pipeline(pipeline, parameters, artifact_root=f"file://{tmp_path}/local", cache=False)
    ran = {name for name, state in local.steps.items() if state.status == "done" and not state.items}
    stored = {p.parent.name for p in (root / pipeline.name / "runs" / run_id).glob("*/meta.json")}
    assert stored == ran
    for name in sorted(ran):
        assert load_outputs(f"file://{root}", pipeline.name, run_id, name) == \
            load_outputs(f"file://{tmp_path}/local", pipeline.name, local.id, name), name
    return Replayed(status, ran, root, pipeline.name, run_id)


SKIPPED = {"promote": {"stage", "keep"}, "stage": {"promote", "shout", "keep"}, "keep": {"promote", "shout", "stage"}}


@pytest.mark.parametrize("threshold, label, branch", [(2.5, "it's", "promote"), (5.0, "$(id) '", "stage"),
                                                      (5.0, "it's ${{ skip }}", "keep")])
def test_the_replay_equals_pipecast_run(threshold, label, branch, fake_history, tmp_path):
    parameters = {"count": 3, "threshold": threshold, "names": ["p", "q's $x"], "label": label}
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_flow, parameters, "azureml-flow-1")
    skipped = SKIPPED[branch]
    assert {n for n, s in replayed.status.items() if s == "Skipped"} == skipped
    # the decisions and the items, as Azure ML read them from the run history
    assert json.loads(fake_history[0].run_properties["rates"]["azureml.pipeline.control"]) == {
        "pipecast_items_output": json.dumps([{"pipecast_item": i} for i in range(3)], separators=(",", ":"))}
    assert {"train[2]", "pair[1]", "square[1]", "joined", branch} <= replayed.ran and not replayed.ran & skipped


def test_the_replay_of_multi_step_bodies_equals_pipecast_run(fake_history, tmp_path):
    """Each item runs the body's pipeline component: a chain item by item, a second sink, then the fan-ins."""
    parameters = {"count": 3, "bias": 0.25, "xs": [1.5, "it's $(id)"]}
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_multi, parameters, "azureml-multi-1")
    assert set(replayed.status.values()) == {"Completed"}
    # the items, as the two loops read them from the run history (a step's list output, a parameter)
    assert sorted(fake_history[0].run_properties) == ["pipecast_map_2_items", "rates"]
    assert {"train[2]", "train_2[2]", "pair[2]", "pair_2[1]", "shout[1]", "best", "joined", "joined_2"} <= replayed.ran
    assert replayed.output("joined_2") == "X'S $(ID)=1.5,X'S $(ID)=IT'S $(ID)"


def test_the_replay_of_conditions_inside_a_map_equals_pipecast_run(fake_history, tmp_path):
    """Each item's run of the body decides for itself: its if_else reads that item's control output."""
    parameters = {"xs": [0.05, 0.3, 0.1], "threshold": 2.0}  # scores 1.0, 3.5, 1.5: only item 1 is promoted
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_item_conditions, parameters, "azureml-items-1")
    assert set(replayed.status.values()) == {"Completed"}
    decided = {run: json.loads(props["azureml.pipeline.control"])
               for run, props in fake_history[0].run_properties.items()
               if run.endswith("-train")}  # each item's run of train published its own decision
    assert decided == {f"pipecast_map_1-{i}-train": {"pipecast_if_condition_1": i == 1,
                                                     "pipecast_if_condition_2": i != 1} for i in range(3)}
    assert replayed.ran == {"train[0]", "train[1]", "train[2]", "promote[1]", "shout[1]", "keep[0]", "keep[2]",
                            "best"}
    assert replayed.output("shout[1]") == "PROMOTED AT 3.5"


@pytest.mark.parametrize("threshold, runs", [(0.15, True), (1.0, False)])
def test_the_replay_of_conditions_on_a_step_outside_the_map_equals_pipecast_run(threshold, runs, fake_history,
                                                                                 tmp_path):
    """``best`` decides once; each item's if_else reads the decision through its body's boolean input."""
    parameters = {"xs": [0.1, 0.2], "threshold": threshold}
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_outer_condition, parameters, "azureml-outer-1")
    branch = {"promote[0]", "promote[1]", "square[0]", "square[1]"}
    assert replayed.ran == {"best", "train[0]", "train[1]", "best_2"} | (branch if runs else set())


def test_the_replay_of_a_condition_on_the_item_itself_equals_pipecast_run(fake_history, tmp_path):
    """``x < 0.06`` compares the item: ``train``'s runtime takes it from its own input ``lr``."""
    parameters = {"xs": [0.05, 0.3, 0.1], "threshold": 2.0}  # scores 1.0, 3.5, 1.5: item 0 by its x, 1 by its score
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_item_compare, parameters, "azureml-compare-1")
    assert replayed.ran == {"train[0]", "train[1]", "train[2]", "promote[0]", "promote[1]"}


NESTED = [  # (xs, threshold), the steps that run, the nodes Azure ML skips
    ([0.1, 0.3], 0.2, {"best", "train", "stage", "keep"}, {"promote", "shout", "pipecast_condition_6"}),
    ([0.1, 0.4], 0.2, {"best", "train", "promote", "shout", "keep"}, {"stage", "pipecast_condition_6"}),
    ([0.1, 0.2], 0.5, {"best", "keep_2"}, {"train", "pipecast_condition_2", "pipecast_condition_4", "keep"}),
    ([0.01, 0.02], 0.5, {"best"}, {"train", "keep_2"}),
]


@pytest.mark.parametrize("xs, threshold, ran, skipped", NESTED)
def test_the_replay_of_conditions_inside_conditions_equals_pipecast_run(xs, threshold, ran, skipped, fake_history,
                                                                          tmp_path):
    """An inner chain's if_else runs only when the outer one chose the block holding it; skipped, it runs none."""
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_nested_conditions, {"xs": xs, "threshold": threshold},
                       "azureml-nested-1")
    assert replayed.ran == ran
    assert skipped <= {n for n, s in replayed.status.items() if s == "Skipped"}


@pytest.mark.parametrize("threshold, runs", [(1.0, True), (5.0, False)])
def test_the_replay_of_maps_inside_a_branch_equals_pipecast_run(threshold, runs, fake_history, tmp_path):
    """The parallel_for nodes run (each item its body) only when their branch's if_else chose its block."""
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_map_in_branch,
                       {"count": 2, "xs": [1.5, 2.5], "threshold": threshold}, "azureml-branch-map-1")
    inside = {"rates", "train[0]", "train[1]", "best_2", "pair[0]", "pair[1]", "shout[0]", "shout[1]"}
    assert replayed.ran == {"best"} | (inside if runs else set())
    loops = {replayed.status[n] for n in ("pipecast_map_1", "pipecast_map_2", "pipecast_map_2_items")}
    assert loops == {"Completed" if runs else "Skipped"}
    if runs:
        assert replayed.output("shout[1]") == "X=2.5"


def test_the_replay_of_a_map_inside_a_map_equals_pipecast_run(fake_history, tmp_path):
    """Each outer item's run of the body runs its inner parallel_for: instances train[i][j], fan-ins per item."""
    parameters = {"xs": [0.1, 0.2], "count": 3}
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_nested_maps, parameters, "azureml-nested-maps-1")
    assert set(replayed.status.values()) == {"Completed"}
    trains = {f"train[{i}][{j}]" for i in range(2) for j in range(3)}
    squares = {f"square[{i}][{j}]" for i in range(2) for j in range(2)}
    assert replayed.ran == trains | squares | {"grid[0]", "grid[1]", "best[0]", "best[1]", "joined_scores"}
    # each outer item's run of grid published its own inner items
    published = {run: json.loads(props["azureml.pipeline.control"])
                 for run, props in fake_history[0].run_properties.items()}
    assert set(published) == {"pipecast_map_1_items", "pipecast_map_1-0-grid", "pipecast_map_1-1-grid"}
    assert json.loads(published["pipecast_map_1-1-grid"]["pipecast_items_output"]) == [
        {"pipecast_item": j} for j in range(3)]
    assert replayed.output("joined_scores") == "1.1,2.1,3.1;2.2,4.2,6.2"


@pytest.mark.parametrize("count, xs", [(2, [0.5, 1.5]), (3, [2.0])])
def test_the_replay_of_inner_maps_counted_per_outer_item_equals_pipecast_run(count, xs, fake_history, tmp_path):
    """Each outer item's run of the body counts its inner items (items-at): over the item, a product, a step."""
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_inner_items, {"count": count, "xs": xs},
                       f"azureml-inner-items-{count}")
    assert set(replayed.status.values()) == {"Completed"}
    rows = [[k + j for j in range(k + 1)] for k in range(count)]
    squares = {f"square[{i}][{j}]" for i, row in enumerate(rows) for j in range(len(row))}
    picks = {f"pick[{i}][{j}]" for i, row in enumerate(rows) for j in range(len(row) * len(xs))}
    trains = {f"train[{i}][{j}]" for i in range(count) for j in range(count)}
    pairs = {f"pair[{i}][{j}]" for i in range(len(xs)) for j in range(len(xs))}
    assert replayed.ran == squares | picks | trains | pairs | {"table", "rates", "joined_scores"} | {
        f"best[{i}]" for i in range(count)} | {f"square_2[{i}]" for i in range(len(xs))}
    published = {run: json.loads(props["azureml.pipeline.control"])
                 for run, props in fake_history[0].run_properties.items()}
    last = f"pipecast_map_1-{count - 1}-pipecast_map_3_items"  # the product of the last row and xs
    assert json.loads(published[last]["pipecast_items"]) == [{"pipecast_item": j} for j in range(count * len(xs))]
    assert replayed.output("joined_scores") == ";".join(",".join(str(n * n) for n in row) for row in rows)


def test_the_replay_of_a_map_over_each_row_equals_pipecast_run(fake_history, tmp_path):
    """``ParallelFor(rows) as row: ParallelFor(row)``: the most common nested shape, instances square[i][j]."""
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_row_maps, {"rows": [[1, 2], [3], [4, 5, 6]]},
                       "azureml-rows-1")
    assert set(replayed.status.values()) == {"Completed"}
    assert replayed.ran == {f"square[{i}][{j}]" for i, n in enumerate([2, 1, 3]) for j in range(n)} | {
        "joined_scores"}
    assert replayed.output("joined_scores") == "1,4;9;16,25,36"



@pytest.mark.parametrize("xs, rows", [([0.1, 0.2], [[1, 2], [3]]), ([0.3], [[4], [5, 6, 7], [8]])])
def test_the_replay_of_inner_maps_of_several_steps_equals_pipecast_run(xs, rows, fake_history, tmp_path):
    """Each outer item runs the inner loop, whose body is its own pipeline component: a chain item by item."""
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_inner_chain, {"xs": xs, "count": 2, "rows": rows},
                       "azureml-inner-chain-1")
    assert set(replayed.status.values()) == {"Completed"}
    chained = {f"{name}[{i}][{j}]" for name in ("train", "pair", "shout") for i in range(len(xs)) for j in range(2)}
    per_row = {f"{name}[{i}][{j}]" for name in ("square", "pick", "shout_2") for i, row in enumerate(rows)
               for j in range(len(row))}
    assert replayed.ran == chained | per_row | {f"grid[{i}]" for i in range(len(xs))} | {
        f"best[{i}]" for i in range(len(xs))} | {"joined_scores"}
    last = len(xs) - 1
    assert replayed.output(f"shout[{last}][1]") == f"S={round(xs[-1] * 2 * 10 + xs[-1], 6)}"
    assert replayed.output(f"shout_2[{len(rows) - 1}][0]") == f"{rows[-1][0] ** 2}@0.5"
    # each item of an inner body ran in its own run of the component: the decisions' runs are named after both
    published = {run for run, props in fake_history[0].run_properties.items()}
    assert {"pipecast_map_1-0-grid", f"pipecast_map_3-{len(rows) - 1}-pipecast_map_4_items"} <= published



@pytest.mark.parametrize("xs, threshold", [([0.1, 0.3], 2.5), ([0.05, 0.15], 6.0), ([0.35], 0.5)])
def test_the_replay_of_conditions_inside_an_inner_map_equals_pipecast_run(xs, threshold, fake_history, tmp_path):
    """Each inner item's run of its body decides (train[i][j]); the outer item's step (best_2[i]) and a step
    outside both maps (best) decide once, their outputs bound into the inner body's component as booleans."""
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_inner_conditions,
                       {"xs": xs, "count": 2, "threshold": threshold}, "azureml-inner-cond-1")
    scores = {(i, j): round(x * (j + 1) * 10 + x, 6) for i, x in enumerate(xs) for j in range(2)}
    top = {i: max(round(x * (j + 1), 4) for j in range(2)) for i, x in enumerate(xs)}
    expected = {"best"} | {f"{n}[{i}]" for n in ("grid", "best_2") for i in range(len(xs))}
    for (i, j), score in scores.items():
        expected |= {f"train[{i}][{j}]"}
        expected |= {f"promote[{i}][{j}]", f"shout[{i}][{j}]"} if score > threshold else {f"keep[{i}][{j}]"}
        expected |= {f"stage[{i}][{j}]"} if top[i] > 0.5 else set()
        expected |= {f"square[{i}][{j}]"} if max(xs) > 0.2 else set()
    assert replayed.ran == expected
    decided = {run: json.loads(props["azureml.pipeline.control"])
               for run, props in fake_history[0].run_properties.items() if run.endswith("-train")}
    assert decided["pipecast_map_1-0-pipecast_map_2-1-train"]["pipecast_if_condition_1"] == (scores[0, 1] > threshold)



@pytest.mark.parametrize("xs, threshold", [([0.1, 0.3], 0.2), ([0.3], 0.1), ([0.05], 0.2)])
def test_the_replay_of_maps_inside_a_branch_inside_a_map_equals_pipecast_run(xs, threshold, fake_history, tmp_path):
    """Each outer item's if_else (in the outer body's component) runs the inner loops of the block it chose."""
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_map_in_branch_in_map,
                       {"xs": xs, "count": 2, "threshold": threshold}, "azureml-map-branch-map-1")
    expected = {f"{n}[{i}]" for n in ("grid", "best", "grid_2") for i in range(len(xs))}
    for i, x in enumerate(xs):
        if max(round(x * (k + 1), 4) for k in range(2)) > threshold:
            expected |= {f"best_2[{i}]"} | {f"train[{i}][{j}]" for j in range(3)} | {
                f"pick[{i}][{j}]" for j in range(len(xs))}
        else:
            expected |= {f"{n}[{i}][{j}]" for n in ("pair", "shout") for j in range(2)}
    assert replayed.ran == expected
    if "best_2[0]" in expected:
        assert replayed.output("best_2[0]") == round(xs[0] * 3 * 10 + xs[0], 6)


@pytest.mark.parametrize("rows", [[[1, 2], [3, 4]], [[5, 6]]])  # zip: each row as long as grid's list
def test_the_replay_of_an_inner_map_zipping_an_outer_body_step_after_the_item_equals_pipecast_run(rows, fake_history,
                                                                                                   tmp_path):
    """The items node of the outer body waits on that item's run of `grid` and counts the zip as pipecast run."""
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_inner_refused, {"rows": rows},
                       "azureml-inner-zip-1")
    sizes = [1.0, 2.0]  # grid(1.0, 2)
    expected = {f"grid[{i}]" for i in range(len(rows))} | {
        f"pick[{i}][{j}]" for i in range(len(rows)) for j in range(len(sizes))}
    assert replayed.ran == expected
    assert replayed.output("pick[0][1]") == f"{rows[0][1]}@{sizes[1]}"


def test_an_exit_handler_inside_an_inner_map_is_refused_as_azure_mls_limit():
    """Behind the capability table's refusal: a map's body is a pipeline component, which has no on_finalize."""
    from pipecast.runtime.flow_plan import FlowPlan
    from pipecast.targets.azureml.nesting import nested_problems

    plan = FlowPlan(flow_pipelines.az_inner_exit.build())
    inner = plan.groups["map_2"]
    (problem,) = nested_problems(plan, inner, plan.groups["map_1"], sorted(plan.members["map_2"]))
    assert "On_init/on_finalize is not supported for pipeline component" in problem[0]
    assert "(Azure ML's limit)" in problem[0]


@pytest.mark.parametrize("xs, threshold", [([0.1, 0.3], 0.2), ([0.3], 0.1), ([0.05], 0.2)])
def test_the_replay_of_a_map_over_a_list_its_branch_makes_inside_a_map_equals_pipecast_run(xs, threshold,
                                                                                            fake_history, tmp_path):
    """For an outer item whose if_else skips the branch, Azure ML runs neither the list's step nor the loop."""
    replayed = _replay(fake_history, tmp_path, flow_pipelines.az_branch_list_map,
                       {"xs": xs, "count": 2, "threshold": threshold}, "azureml-branch-list-1")
    expected = {f"{n}[{i}]" for n in ("grid", "best") for i in range(len(xs))}
    for i, x in enumerate(xs):
        if max(round(x * (k + 1), 4) for k in range(2)) > threshold:
            expected |= {f"grid_2[{i}]", f"best_2[{i}]"} | {f"train[{i}][{j}]" for j in range(3)}
        else:
            expected.add(f"keep[{i}]")
    assert replayed.ran == expected
    if "best_2[0]" in expected:
        assert replayed.output("best_2[0]") == round(xs[0] * 3 * 10 + xs[0], 6)


# -- submit ----------------------------------------------------------------------------------------------

_SUBMIT = """
import json, os, sys
import trustme
from tests.targets.azureml.fake_azureml import FakeAzureML, start
from tests.targets.azureml.test_submit import FakeCredential
from tests.targets.azureml import flow_pipelines
from pipecast.flow import submit_pipeline

ca = trustme.CA()
ca.cert_pem.write_to_path(sys.argv[1])
os.environ.update(REQUESTS_CA_BUNDLE=sys.argv[1], SSL_CERT_FILE=sys.argv[1], NO_PROXY="127.0.0.1,localhost")
service = FakeAzureML()
server, url = start(service, ca)
config = {"subscription_id": "sub-1", "resource_group": "rg-1", "workspace": "ws-1",
          "credential": FakeCredential(), "resource_manager_url": url}
settings = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "az://pipecast/artifacts",
            "control_flow_preview": True}
built = getattr(flow_pipelines, sys.argv[2]).build()
handle = submit_pipeline(built, "azureml", json.loads(sys.argv[3]), settings, config)
(put,) = service.calls("PUT", f"/jobs/{handle.engine_run_id}")
components = [r.body for r in service.calls("PUT", "/components/")]
server.shutdown()
print(json.dumps({"switch": os.environ.get("AZURE_ML_CLI_PRIVATE_FEATURES_ENABLED"), "body": put.body,
                  "components": components}))
"""


def _submitted(tmp_path: Path, pipeline: str, parameters: dict) -> dict:
    """``pipecast submit`` in a fresh interpreter (the switch is read when azure-ai-ml's schemas import)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != PREVIEW_ENV}
    done = subprocess.run([sys.executable, "-c", _SUBMIT, str(tmp_path / "ca.pem"), pipeline, json.dumps(parameters)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_submit_turns_on_the_preview_switch_and_sends_the_control_nodes(tmp_path):
    sent = _submitted(tmp_path, "az_flow", {"names": ["a", "b", "c"]})
    assert sent["switch"] == "true"
    body = sent["body"]["properties"]
    jobs = body["jobs"]
    assert jobs["pipecast_map_2"]["type"] == "parallel_for" and jobs["pipecast_condition_2"]["type"] == "if_else"
    assert jobs["pipecast_condition_2"]["true_block"] == "${{parent.jobs.stage}}"  # the SDK sends one node bare
    assert json.loads(body["inputs"]["names"]["value"]) == ["a", "b", "c"]


def test_submit_registers_a_multi_step_body_as_a_pipeline_component(tmp_path):
    """The SDK reads the body's component file beside the job file and registers it before the job."""
    sent = _submitted(tmp_path, "az_multi", {"xs": [1, 2]})
    jobs = sent["body"]["properties"]["jobs"]
    assert jobs["pipecast_map_1"]["body"] == "${{parent.jobs.pipecast_map_1_body}}"
    body = jobs["pipecast_map_1_body"]
    assert body["type"] == "pipeline"
    assert body["componentId"].endswith("/components/azureml_anonymous/versions/" + body["componentId"][-36:])
    assert "pipecast_item" not in body["inputs"]  # each item binds it
    specs = [c["properties"]["componentSpec"] for c in sent["components"]]
    pipelines = [spec for spec in specs if spec["type"] == "pipeline"]
    assert sorted(sorted(spec["jobs"]) for spec in pipelines) == [["pair", "train", "train_2"], ["pair_2", "shout"]]
    first = next(spec for spec in pipelines if "train" in spec["jobs"])
    assert sorted(first["outputs"]) == ["pipecast_done_pair", "pipecast_done_train_2"]
    assert "pipecast_item" in first["inputs"]


def test_submit_sends_a_conditions_if_else_inside_the_registered_body(tmp_path):
    """The SDK registers the body's component with its if_else nodes: Azure ML runs them per item."""
    sent = _submitted(tmp_path, "az_item_conditions", {"xs": [0.1, 0.3]})
    assert sent["switch"] == "true"
    jobs = sent["body"]["properties"]["jobs"]
    assert sorted(jobs) == ["best", "pipecast_map_1", "pipecast_map_1_body", "pipecast_map_1_items"]
    (spec,) = [c["properties"]["componentSpec"] for c in sent["components"]
               if c["properties"]["componentSpec"]["type"] == "pipeline"]
    inner = spec["jobs"]
    assert inner["pipecast_condition_1"]["type"] == inner["pipecast_condition_2"]["type"] == "if_else"
    assert inner["pipecast_condition_1"]["condition"] == "${{parent.jobs.train.outputs.pipecast_if_condition_1}}"
    assert inner["pipecast_condition_1"]["true_block"] == ["${{parent.jobs.promote}}", "${{parent.jobs.shout}}"]


def test_submit_registers_an_outer_body_holding_the_inner_parallel_for(tmp_path):
    """The SDK registers the outer body's component with the inner loop and its command body inside."""
    sent = _submitted(tmp_path, "az_nested_maps", {"xs": [0.1, 0.2]})
    jobs = sent["body"]["properties"]["jobs"]
    assert sorted(jobs) == ["joined_scores", "pipecast_map_1", "pipecast_map_1_body", "pipecast_map_1_items"]
    (spec,) = [c["properties"]["componentSpec"] for c in sent["components"]
               if c["properties"]["componentSpec"]["type"] == "pipeline"]
    inner = spec["jobs"]
    assert inner["pipecast_map_2"]["type"] == "parallel_for"
    assert inner["pipecast_map_2"]["body"] == "${{parent.jobs.train}}"
    assert inner["pipecast_map_2"]["items"] == "${{parent.jobs.grid.outputs.pipecast_items_output}}"
    assert inner["train"]["inputs"]["pipecast_outer_item"]["value"] == "${{parent.inputs.pipecast_item}}"


def test_submit_registers_an_outer_body_holding_the_inner_items_node(tmp_path):
    """``ParallelFor(rows) as row: ParallelFor(row)``: the body's component holds the items node and the loop."""
    sent = _submitted(tmp_path, "az_row_maps", {"rows": [[1, 2], [3]]})
    jobs = sent["body"]["properties"]["jobs"]
    assert sorted(jobs) == ["joined_scores", "pipecast_map_1", "pipecast_map_1_body", "pipecast_map_1_items"]
    (spec,) = [c["properties"]["componentSpec"] for c in sent["components"]
               if c["properties"]["componentSpec"]["type"] == "pipeline"]
    inner = spec["jobs"]
    assert inner["pipecast_map_2"]["items"] == "${{parent.jobs.pipecast_map_2_items.outputs.pipecast_items}}"
    assert inner["pipecast_map_2_items"]["inputs"]["pipecast_outer_item"]["value"] == "${{parent.inputs.pipecast_item}}"


def test_submit_registers_an_inner_body_of_several_steps_inside_the_outer_body(tmp_path):
    """The SDK reads the inner body's component file named in the outer one's and registers both."""
    sent = _submitted(tmp_path, "az_inner_chain", {"xs": [0.1, 0.2]})
    jobs = sent["body"]["properties"]["jobs"]
    assert sorted(jobs) == ["joined_scores", "pipecast_map_1", "pipecast_map_1_body", "pipecast_map_1_items",
                            "pipecast_map_3", "pipecast_map_3_body", "pipecast_map_3_items"]
    specs = {tuple(sorted(c["properties"]["componentSpec"]["jobs"])): c["properties"]["componentSpec"]
             for c in sent["components"] if c["properties"]["componentSpec"]["type"] == "pipeline"}
    assert sorted(specs) == [("best", "grid", "pipecast_map_2", "pipecast_map_2_body"),
                             ("pair", "shout", "train"), ("pick", "shout_2", "square"),
                             ("pipecast_map_4", "pipecast_map_4_body", "pipecast_map_4_items")]
    outer = specs[("best", "grid", "pipecast_map_2", "pipecast_map_2_body")]["jobs"]
    assert outer["pipecast_map_2_body"]["type"] == "pipeline" and "componentId" in outer["pipecast_map_2_body"]
    assert outer["pipecast_map_2_body"]["inputs"]["pipecast_outer_item"]["value"] == "${{parent.inputs.pipecast_item}}"
    inner = specs[("pair", "shout", "train")]
    assert sorted(inner["inputs"]) == ["pipecast_after_grid", "pipecast_item", "pipecast_outer_item",
                                       "pipecast_run_id", "xs"]
