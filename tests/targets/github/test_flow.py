"""Control flow on GitHub Actions (issue 16): goldens per construct, GitHub's linters, the refusals, and the
runtime side that publishes decision values to ``$GITHUB_OUTPUT`` and builds a handler's status from ``needs``.

``pytest --update-goldens`` rewrites ``data/flow/<pipeline>.yml`` (or ``.error.txt`` for a refused one).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecast.errors import PipecastError, ValidationError
from pipecast.runtime.publish_github import MAX_OUTPUT_BYTES, output_lines, status_from_needs
from tests.helpers.cases import compile_case
from tests.targets.github import flow_pipelines
from tests.targets.github.replay import load_workflow
from tests.targets.github.support import HERE, lint

GOLDENS = HERE / "data" / "flow"
REMOTE = {"artifact_root": "s3://bucket/pipecast"}
# golden name -> (pipeline in flow_pipelines.py, settings)
VARIANTS = {"gh_branches": ("gh_branches", {}), "gh_exit": ("gh_exit", {}), "gh_map": ("gh_map", REMOTE),
            "gh_map_artifacts": ("gh_map", {}), "gh_flow": ("gh_flow", REMOTE), "gh_text": ("gh_text", {}),
            "gh_product": ("gh_product", REMOTE), "gh_chain": ("gh_chain", {}),
            "gh_map_branches": ("gh_map_branches", REMOTE), "gh_item_condition": ("gh_item_condition", REMOTE)}
PIPELINES = list(VARIANTS)


def _compiled(name: str) -> dict[str, str]:
    source, settings = VARIANTS[name]
    try:
        return {f"{name}.yml": compile_case("github", getattr(flow_pipelines, source), golden=True,
                                            settings=settings).main}
    except ValidationError as err:
        return {f"{name}.error.txt": str(err) + "\n"}


@pytest.mark.parametrize("name", PIPELINES)
def test_golden(name, request):
    files = _compiled(name)
    if request.config.getoption("--update-goldens"):
        for old in [*GOLDENS.glob(f"{name}.yml"), *GOLDENS.glob(f"{name}.error.txt")]:
            old.unlink()
        GOLDENS.mkdir(exist_ok=True)
        for path, text in files.items():
            (GOLDENS / path).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8")
                for p in [*GOLDENS.glob(f"{name}.yml"), *GOLDENS.glob(f"{name}.error.txt")]}
    assert expected == files, f"{name} differs from its golden in {GOLDENS} (pytest --update-goldens)"


def test_workflows_pass_actionlint_and_the_workflow_schema(tmp_path):
    workflows = {name: text for name in PIPELINES for path, text in _compiled(name).items() if path.endswith(".yml")}
    assert {"gh_branches", "gh_exit"} <= set(workflows)
    lint(workflows, tmp_path)


def test_branches_lower_to_job_conditions():
    jobs = load_workflow(_compiled("gh_branches")["gh_branches.yml"])["jobs"]
    assert jobs["measure"]["outputs"] == {"output": "${{ steps.run.outputs.output }}"}
    assert "if" not in jobs["measure"] and "is_ready" in jobs["stage"]["needs"]
    # an elif: the chain job decides; each branch tests its place (linear), a bare success() keeps GitHub's
    # skip propagation (a skipped chain job skips every branch)
    chain = jobs["condition_1_branch"]
    assert chain["needs"] == ["measure", "is_ready"] and chain["outputs"] == {
        "branch": "${{ steps.decide.outputs.branch }}"}
    assert "python -m pipecast.runtime.publish_github" in chain["steps"][-1]["run"]
    for place, name in enumerate(("promote", "stage", "keep")):
        assert jobs[name]["if"] == f"${{{{ success() && (needs.condition_1_branch.outputs.branch == '{place}') }}}}"
        assert "condition_1_branch" in jobs[name]["needs"]
    # OneOf: not skipped by its skipped branches, but by a failed one; downloads only the branch that ran
    announce = jobs["announce"]
    assert announce["if"].startswith("${{ !cancelled() && !failure() && (needs.promote.result == 'success' ||")
    run = next(s for s in announce["steps"] if s.get("name", "").startswith("Run step"))
    assert "--upstream \"decision=${PIPECAST_ONE_OF_1}\"" in run["run"]
    assert run["env"]["PIPECAST_ONE_OF_1"].startswith("${{ needs.promote.result == 'success' && 'promote/output' ||")
    downloads = [s for s in announce["steps"] if s.get("name", "").startswith("Download")]
    assert [d["if"] for d in downloads] == [f"${{{{ needs.{j}.result == 'success' }}}}"
                                           for j in ("promote", "stage", "keep")]


def test_exit_handler_and_hooks():
    jobs = load_workflow(_compiled("gh_exit")["gh_exit.yml"])["jobs"]
    assert jobs["report"]["if"] == "${{ always() }}" and jobs["report"]["needs"] == ["measure", "fail_on"]
    assert jobs["alert"]["if"] == "${{ failure() }}" and jobs["alert"]["needs"] == ["measure", "fail_on", "report"]
    assert jobs["celebrate"]["if"] == "${{ !failure() && !cancelled() }}"
    run = next(s for s in jobs["report"]["steps"] if s.get("name", "").startswith("Run step"))
    assert run["env"]["PIPECAST_GITHUB_NEEDS"] == "${{ toJSON(needs) }}" and "--github-status status" in run["run"]


def test_text_conditions_are_decided_by_a_chain_job_not_by_githubs_case_blind_equality():
    jobs = load_workflow(_compiled("gh_text")["gh_text.yml"])["jobs"]
    assert jobs["announce"]["if"] == "${{ success() && (needs.condition_1_branch.outputs.branch == '0') }}"
    decide = jobs["condition_1_branch"]["steps"][-1]
    assert decide["env"] == {"PIPECAST_VALUE_1": "${{ needs.word.outputs.output }}"}


def test_a_lone_if_on_numbers_stays_native():
    jobs = load_workflow(_compiled("gh_flow")["gh_flow.yml"])["jobs"]
    assert not [name for name in jobs if name.endswith("_branch")]
    assert jobs["promote"]["if"] == "${{ success() && ((fromJSON(needs.total.outputs.output) > inputs.threshold)) }}"


def test_the_chain_job_decides_with_pythons_meaning(tmp_path, monkeypatch):
    from pipecast.runtime.publish_github import main
    from pipecast.runtime.publish_tekton import condition_arg

    chain = next(g for g in flow_pipelines.gh_chain.build().groups if g.chain and g.branch == 0)
    out = tmp_path / "out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    args = ["--branch", f"0={condition_arg(chain.condition)}", "--branch", "1=-"]
    assert main([*args, "--value", 'word/output="Prod"']) == 0
    assert main([*args, "--value", 'word/output="prod"']) == 0
    assert out.read_text() == "branch=1\nbranch=0\n"
    assert main([*args]) == 2  # the value it tests was not given: one clear line, no traceback


def test_output_lines_use_a_delimiter_the_value_cannot_hold():
    hostile = "x\nEOF\nother<<EOF\n${{ github.token }}"
    text = output_lines("score", hostile)
    name, _, rest = text.partition("<<")
    delimiter, _, body = rest.partition("\n")
    assert name == "score" and delimiter.startswith("pipecast_") and delimiter not in json.dumps(hostile)
    assert body == json.dumps(hostile, ensure_ascii=False, separators=(",", ":")) + f"\n{delimiter}\n"


def test_an_output_over_githubs_limit_fails_before_github_cuts_it():
    with pytest.raises(PipecastError, match=f"at most {MAX_OUTPUT_BYTES} bytes per job output"):
        output_lines("big", "x" * MAX_OUTPUT_BYTES)


def test_status_from_needs_maps_githubs_results():
    needs = json.dumps({"a": {"result": "success"}, "b": {"result": "failure"}, "c": {"result": "skipped"}})
    status = status_from_needs(needs, json.dumps({"a": "a", "b": "step b", "c": "c"}))
    assert status == {"status": "failed", "failed_steps": ["step b"], "error": "job 'b' ended with result 'failure'"}
    assert status_from_needs(json.dumps({"a": {"result": "success"}}), '{"a": "a"}')["status"] == "succeeded"


def test_a_handler_counts_a_failed_item_count_as_its_steps_failure():
    jobs = load_workflow(_compiled("gh_flow")["gh_flow.yml"])["jobs"]
    report = jobs["report"]
    assert report["needs"][0] == "map_1_items"
    run = next(s for s in report["steps"] if s.get("name", "").startswith("Run step"))
    steps = json.loads(run["env"]["PIPECAST_GITHUB_STEPS"])
    assert steps["map_1_items"] == "square"
    needs = {job: {"result": "skipped"} for job in steps} | {"map_1_items": {"result": "failure"}}
    assert status_from_needs(json.dumps(needs), json.dumps(steps))["failed_steps"] == ["square"]


def test_goldens_folder_holds_only_known_pipelines():
    assert {Path(p).name.split(".")[0] for p in GOLDENS.iterdir()} == set(PIPELINES)


def _invocation(values, upstream=None):
    from pipecast.runtime.executor import StepInvocation

    return StepInvocation(function="m:f", pipeline="p", step="s[1]", run_id="r", artifact_root="file:///nowhere",
                          values=values, upstream=upstream or {}, outputs=())


def test_a_matrix_job_takes_its_item_from_the_list_itself(monkeypatch):
    from pipecast.runtime.publish_github import with_map_values

    monkeypatch.setenv("PIPECAST_GITHUB_INDEX", "3")
    lists = {"a#0": [1.0, 2.0], "a#1": ["x", "y", "z"], "b#0": [1.0, 2.0], "b#1": ["x", "y", "z"]}
    bound = with_map_values(_invocation(lists), ["a=product:-", "b=product:1"], [])
    assert bound.values == {"a": [2.0, "x"], "b": "x"}  # product order: the first list varies slowest
    assert isinstance(bound.values["a"][0], float)
    with pytest.raises(PipecastError, match=r"zip pairs item i of each list, but the lists have lengths \[2, 3\]"):
        with_map_values(_invocation({"a#0": [1, 2], "a#1": [1, 2, 3]}), ["a=zip:0"], [])
    monkeypatch.setenv("PIPECAST_GITHUB_INDEX", "2")
    with pytest.raises(PipecastError, match="matrix job 2 has no item"):
        with_map_values(_invocation({"a#0": [1, 2]}), ["a=zip:-"], [])


def test_a_fan_in_reads_every_item_in_order():
    from pipecast.runtime.executor import Upstream
    from pipecast.runtime.publish_github import with_map_values

    bound = with_map_values(_invocation({"v#0": [5, 6, 7]}), [], ["v=zip:measure/output"])
    assert bound.values == {} and bound.upstream == {
        "v": tuple(Upstream(f"measure[{i}]", "output") for i in range(3))}


def test_a_hostile_output_name_never_reaches_a_matrix_expression():
    import dataclasses

    from tests.helpers.renamed_ir import renamed
    from tests.targets.github.gh_pipelines import EVIL_OUTPUT

    built = renamed(flow_pipelines.gh_map.build(), {}, {("sizes", "output"): EVIL_OUTPUT})
    groups = tuple(dataclasses.replace(g, items=tuple(
        dataclasses.replace(o, output=EVIL_OUTPUT) if o.step == "sizes" else o for o in g.items))
        for g in built.groups)  # renamed() leaves groups alone
    built = dataclasses.replace(built, groups=groups)
    with pytest.raises(ValidationError, match="which cannot name a GitHub job output"):
        compile_case("github", built, settings=REMOTE)


def test_a_condition_inside_a_map_is_decided_by_each_items_runtime():
    jobs = load_workflow(_compiled("gh_map_branches")["gh_map_branches.yml"])["jobs"]
    assert not any(name.endswith("_branch") for name in jobs)  # no chain job: no job can test one item
    for name in ("promote", "stage", "keep", "announce", "square", "measure"):  # the branches, and after them
        # only that the matrix has items (GitHub fails an empty one); announce: OneOf's rule (one branch job ran)
        assert jobs[name]["if"].endswith("needs.map_1_items.outputs.index != '[]' }}"), name
        assert "_branch" not in jobs[name]["if"], name
        assert jobs[name]["strategy"]["matrix"]["index"] == "${{ fromJSON(needs.map_1_items.outputs.index) }}"
        run = jobs[name]["steps"][-1]
        assert run["run"].startswith("python -m pipecast.runtime.publish_github_flow \\\n  --flow")
        assert run["env"]["PIPECAST_GITHUB_INDEX"] == "${{ matrix.index }}"
        assert "outputs" not in jobs["grade"]  # conditions inside a map read the artifact store, not job outputs
    for fan_in in ("joined", "total"):  # they keep the items that ran, as pipecast run does
        assert "publish_github_flow" in jobs[fan_in]["steps"][-1]["run"] and "strategy" not in jobs[fan_in]
    assert "publish_github_flow" not in jobs["grade"]["steps"][-1]["run"]  # before every branch: as ever
    assert {"grade", "map_1_items"} <= set(jobs["promote"]["needs"])


def test_a_product_of_run_time_lists_is_a_matrix_of_the_flat_indices_a_job_counts():
    jobs = load_workflow(_compiled("gh_product")["gh_product.yml"])["jobs"]
    count = jobs["map_1_items"]
    assert count["needs"] == ["sizes"]
    env = count["steps"][0]["env"]
    assert env == {"PIPECAST_LISTS": "3", "PIPECAST_LIST_0": "${{ needs.sizes.outputs.items_output }}",
                   "PIPECAST_LIST_1": "${{ inputs.xs }}", "PIPECAST_LIST_2": "[0, 1]"}
    assert jobs["sizes"]["outputs"] == {"items_output": "${{ steps.run.outputs.items_output }}"}
    assert jobs["label"]["strategy"]["matrix"] == {"index": "${{ fromJSON(needs.map_1_items.outputs.index) }}"}
    assert jobs["label"]["needs"] == ["sizes", "map_1_items"]


def test_a_scheduled_run_decides_on_the_parameters_defaults(tmp_path):
    import dataclasses

    built = dataclasses.replace(flow_pipelines.gh_chain.build(), schedule="0 4 * * 1")
    text = compile_case("github", built).main
    lint({"gh_chain_scheduled": text}, tmp_path)
    jobs = load_workflow(text)["jobs"]
    script = jobs["condition_4_branch"]["steps"][-1]["run"]
    assert script.startswith('if [ "${GITHUB_EVENT_NAME}" != workflow_dispatch ]; then')
    assert '--param "env=str:${PIPECAST_PARAM_ENV}"' in script


def test_a_matrix_over_a_step_a_condition_inside_a_map_may_skip_is_refused():
    with pytest.raises(ValidationError) as err:
        compile_case("github", flow_pipelines.gh_map_branch_refused, settings=REMOTE)
    (problem,) = err.value.problems
    assert "a condition or map after step 'first_sizes' reads its output 'output'" in problem.message
    assert "the job still succeeds without outputs" in problem.message


def test_an_exit_handler_after_a_step_a_condition_inside_a_map_may_skip_is_refused():
    with pytest.raises(ValidationError) as err:
        compile_case("github", flow_pipelines.gh_map_branch_handler, settings=REMOTE)
    (problem,) = err.value.problems
    assert problem.message.startswith("step 'summary' is an exit handler or hook that reads a step a condition")
    assert "local target" in (problem.fix or "")
