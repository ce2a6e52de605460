"""The 1 MiB object bound of the Kubernetes-based targets: each refusal says what limits that engine's objects."""

from __future__ import annotations

import pytest

from pipecast.targets.kube.limits import ETCD_OBJECT_LIMIT, object_size, size_problem


@pytest.mark.parametrize(("api_version", "kind", "said"), [
    ("argoproj.io/v1alpha1", "Workflow", "; Argo's workflow controller fails a Workflow over 1048576 bytes (1 MiB), "
                                         "its MAX_WORKFLOW_SIZE by default"),
    ("argoproj.io/v1alpha1", "WorkflowTemplate", "; each Workflow run from a WorkflowTemplate holds a copy of its "
                                                 "spec, and Argo's workflow controller fails a Workflow over"),
    ("argoproj.io/v1alpha1", "CronWorkflow", "; each Workflow run from a CronWorkflow holds a copy of its spec"),
    ("tekton.dev/v1", "Pipeline", "; pipecast keeps Tekton objects to 1048576 bytes (1 MiB): etcd refuses a request "
                                  "over 1.5 MiB by default (--max-request-bytes), and Tekton copies a Pipeline's"),
    ("triggers.tekton.dev/v1beta1", "TriggerTemplate", "; pipecast keeps Tekton objects to 1048576 bytes"),
    ("v1", "ConfigMap", "; pipecast keeps a ConfigMap to 1048576 bytes (1 MiB) in all: the Kubernetes API server "
                        "refuses one holding more data"),
    ("batch/v1", "Job", "; pipecast keeps Kubernetes objects to 1048576 bytes (1 MiB): etcd refuses a request over "
                        "1.5 MiB by default (--max-request-bytes), and a stored object gains its status"),
])
def test_an_object_over_1_mib_is_refused_with_its_engines_own_bound(api_version, kind, said):
    document = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "big"}, "data": {"x": ""}}
    fill = ETCD_OBJECT_LIMIT - object_size(document)
    assert size_problem({**document, "data": {"x": "y" * fill}}) is None  # exactly 1 MiB passes
    problem = size_problem({**document, "data": {"x": "y" * (fill + 1)}})
    assert problem is not None and problem.startswith(f"{kind} 'big' is {ETCD_OBJECT_LIMIT + 1} bytes")
    assert said in problem
