"""Every Argo file of every golden case validates against Argo's JSON schema, made strict."""

from __future__ import annotations

import copy

import pytest

from tests.helpers.cases import CASE_IDS, compile_case
from tests.targets.argo.support import documents, of_kind, schema_errors

MODES = {"template": {}, "embedded": {"embed": True}}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case_name", CASE_IDS)
def test_argo_objects_are_schema_valid(case_name, mode):
    files = compile_case("argo", case_name, golden=True, settings=MODES[mode],
                         on_unsupported="warn").files  # the hostile case warns (Argo templates it)
    docs = documents(files)
    expected = {"Workflow"} if mode == "embedded" else {"Workflow", "WorkflowTemplate"}
    assert {d["kind"] for d in docs} - {"CronWorkflow"} == expected
    for doc in docs:
        assert doc["apiVersion"] == "argoproj.io/v1alpha1"
        assert schema_errors(doc) == []


def test_strict_schema_rejects_unknown_fields():
    """The validator can fail: unknown keys at spec, template, container, DAG task and retry level."""
    template = of_kind(compile_case("argo", "full_options", golden=True).files, "WorkflowTemplate")[0]
    for mutate in (
        lambda t: t["spec"].update(entryPoint="main"),
        lambda t: t["spec"]["templates"][1].update(retries=3),
        lambda t: t["spec"]["templates"][1]["container"].update(computeResources={}),
        lambda t: t["spec"]["templates"][0]["dag"]["tasks"][0].update(runAfter=[]),
        lambda t: t["spec"]["templates"][1]["retryStrategy"]["backoff"].update(maxDelay="1m"),
        lambda t: t["metadata"].update(label={}),
    ):
        broken = copy.deepcopy(template)
        mutate(broken)
        assert schema_errors(broken), f"not caught: {broken}"
