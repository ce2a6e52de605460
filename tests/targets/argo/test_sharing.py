"""Tasks of the same shape share one container template (argo_share.py); each passes its own values as inputs."""

from __future__ import annotations

import json

from benchmarks.generated import layered
from pipecast import Resources, pipeline, step
from pipecast.targets.kube.limits import ETCD_OBJECT_LIMIT, object_size
from tests.helpers.cases import compile_case
from tests.targets.argo.support import of_kind, schema_errors, task_invocations

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts"}


@step
def add(value: int, k: int) -> int:
    return value + k


@pipeline(name="shapes")
def shapes(seed: int = 1):
    first = add(seed, 1)  # reads a parameter: a shape of its own
    add(first, 2)
    add(first, 3)  # same shape as the one before (an upstream and a constant): shares its template
    add.with_options(resources=Resources(cpu="2"))(first, 4)  # another shape of the same function


def test_one_template_per_shape_and_each_task_runs_its_own_values():
    files = compile_case("argo", shapes.build(), settings=SETTINGS).files
    (template,) = of_kind(files, "WorkflowTemplate")
    assert schema_errors(template) == []
    spec = template["spec"]
    assert [t["name"] for t in spec["templates"]] == ["main", "add", "add-2", "add-3"]
    tasks = {t["name"]: t["template"] for t in spec["templates"][0]["dag"]["tasks"]}
    assert tasks == {"add": "add", "add-2": "add-2", "add-3": "add-2", "add-4": "add-3"}
    assert spec["templates"][3]["container"]["resources"]["requests"]["cpu"] == "2"
    ran = {name: argv for name, argv, _ in task_invocations(files, "wf-1", {"seed": "5"})}
    for name, own in (("add-2", ("add_2", "k=2")), ("add-3", ("add_3", "k=3")), ("add-4", ("add_4", "k=4"))):
        argv = ran[name]
        assert argv[argv.index("--step") + 1] == own[0]
        assert argv[argv.index("--const") + 1] == own[1]
        assert argv[argv.index("--upstream") + 1] == "value=add/output"
    assert "--upstream" not in ran["add"] and "value=int:5" in ran["add"]  # the workflow parameter, substituted


def test_a_5000_step_pipeline_of_one_function_fits_one_kubernetes_object():
    # Was 2.63 MiB with a template per task, then 1.13 MiB shared (~235 bytes a task, with a per-task label input);
    # the label now reads the --step input, so a task carries ~200 bytes: 5,000 steps ~0.96 MiB.
    files = compile_case("argo", layered(5_000).build(), settings=SETTINGS).files
    (template,) = of_kind(files, "WorkflowTemplate")
    assert [t["name"] for t in template["spec"]["templates"]] == ["main", "source", "work"]
    tasks = template["spec"]["templates"][0]["dag"]["tasks"]
    assert len(tasks) == 5_000
    assert all(p["name"] != "task" for t in tasks for p in t["arguments"]["parameters"])  # no per-task label input
    size = object_size(template)
    assert size < ETCD_OBJECT_LIMIT, f"{size} bytes"
    assert len(json.dumps(template["spec"]["templates"][2])) < 2_000  # the one shared template stays small
