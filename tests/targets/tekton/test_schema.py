"""Every Tekton file of every golden case validates against the strict Tekton v1 CRD schemas.

Each shared ``Task`` against the Task CRD, each inline ``taskSpec`` (none left outside tests) against the
Task CRD's spec too (the Pipeline CRD leaves it open), and the schedule's objects against Kubernetes' own strict
schemas (``kubernetes-validate``).
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from tests.helpers.cases import CASE_IDS, compile_case
from tests.targets.tekton.support import documents, of_kind, schema_errors, validator

MODES = {"pipeline": {}, "embedded": {"embed": True}}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case_name", CASE_IDS)
def test_tekton_objects_are_schema_valid(case_name, mode):
    files = compile_case("tekton", case_name, golden=True, settings=MODES[mode]).files
    tekton = [d for d in documents(files) if d["apiVersion"] == "tekton.dev/v1"]
    kinds = {"Task", "PipelineRun"} if mode == "embedded" else {"Task", "Pipeline", "PipelineRun"}
    assert {d["kind"] for d in tekton} == kinds
    for doc in tekton:
        assert schema_errors(doc) == []


@pytest.mark.parametrize("case_name", ["ml_training", "full_options"])
def test_schedule_objects_are_valid_kubernetes(case_name):
    files = compile_case("tekton", case_name, golden=True).files
    cron = [d for d in documents(files) if d["apiVersion"] != "tekton.dev/v1"]
    assert [d["kind"] for d in cron] == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "CronJob"]
    for doc in cron:
        kubernetes_validate.validate(doc, "1.35", strict=True)
    (config_map,) = [d for d in cron if d["kind"] == "ConfigMap"]
    (stored_run,) = documents({"run": config_map["data"]["pipelinerun.yaml"]})
    assert stored_run == of_kind(files, "PipelineRun")[0]


def test_strict_schemas_reject_unknown_fields():
    """The validators can fail: an unknown field at pipeline, task, Task step, taskSpec and run level is caught."""
    files = compile_case("tekton", "quickstart", golden=True).files
    pipeline = of_kind(files, "Pipeline")[0]
    task = of_kind(files, "Task")[0]
    run = of_kind(files, "PipelineRun")[0]
    inline = copy.deepcopy(pipeline)
    inline["spec"]["tasks"][0] = {"name": "t", "taskSpec": copy.deepcopy(task["spec"])}
    assert schema_errors(inline) == []
    for document, mutate in (
        (pipeline, lambda p: p["spec"].update(bogus=1)),
        (pipeline, lambda p: p["spec"]["tasks"][0].update(retry=3)),
        (pipeline, lambda p: p["spec"]["tasks"][0]["taskRef"].update(nam="x")),
        (task, lambda t: t["spec"]["steps"][0].update(resources={})),
        (task, lambda t: t["spec"]["steps"][0].pop("name")),
        (task, lambda t: t["spec"]["params"][0].update(typ="string")),
        (task, lambda t: t["metadata"].update(bogus=1) or t.update(bogus=1)),
        (inline, lambda p: p["spec"]["tasks"][0]["taskSpec"]["steps"][0].update(resources={})),
        (inline, lambda p: p["spec"]["tasks"][0]["taskSpec"]["params"][0].update(typ="string")),
    ):
        broken = copy.deepcopy(document)
        mutate(broken)
        assert schema_errors(broken), f"not caught: {broken}"
    broken_run = copy.deepcopy(run)
    broken_run["spec"]["timeouts"]["total"] = "1h"
    assert list(validator("PipelineRun").iter_errors(broken_run))
