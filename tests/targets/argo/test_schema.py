"""Every Argo file of every golden case validates against Argo's JSON schema, made strict; RBAC files against
Kubernetes' own (kubernetes-validate, strict)."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from tests.helpers.cases import CASE_IDS, compile_case
from tests.targets.argo.support import K8S_VERSION, documents, of_kind, schema_errors

RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding"}
MODES = {"template": {}, "embedded": {"embed": True}}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case_name", CASE_IDS)
def test_argo_objects_are_schema_valid(case_name, mode):
    files = compile_case("argo", case_name, golden=True, settings=MODES[mode],
                         on_unsupported="warn").files  # the hostile case warns (Argo templates it)
    docs = documents(files)
    expected = {"Workflow"} if mode == "embedded" else {"Workflow", "WorkflowTemplate"}
    assert {d["kind"] for d in docs} - {"CronWorkflow"} == expected | RBAC_KINDS  # golden settings: an account
    for doc in docs:
        assert doc["apiVersion"] == ("argoproj.io/v1alpha1" if doc["kind"] not in RBAC_KINDS else
                                     "v1" if doc["kind"] == "ServiceAccount" else "rbac.authorization.k8s.io/v1")
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


def test_strict_kubernetes_validation_rejects_a_bad_rbac_file():
    """kubernetes-validate can fail on what the RBAC file holds: an unknown field, a subject without a kind."""
    docs = documents(compile_case("argo", "quickstart", golden=True).files)
    binding = copy.deepcopy(next(d for d in docs if d["kind"] == "RoleBinding"))
    binding["roleRef"]["namespace"] = "ml"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(binding, K8S_VERSION, strict=True)
    role = copy.deepcopy(next(d for d in docs if d["kind"] == "Role"))
    role["rules"][0]["verb"] = role["rules"][0].pop("verbs")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, K8S_VERSION, strict=True)
