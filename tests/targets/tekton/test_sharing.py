"""Tasks of the same shape share one Tekton ``Task`` (tekton_share.py), referenced by ``taskRef``; each pipeline
task passes its own values as params, the run id comes from the pod's ``tekton.dev/pipelineRun`` label."""

from __future__ import annotations

import json

import pytest
import yaml

from benchmarks.generated import layered
from pipecast import Resources, pipeline, step
from pipecast.errors import PipecastError
from pipecast.targets.kube.limits import ETCD_OBJECT_LIMIT, object_size
from tests.helpers.cases import compile_case
from tests.targets.tekton.support import of_kind, schema_errors, task_invocations

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts"}


@step
def add(value: int, k: int) -> int:
    return value + k


@pipeline(name="shapes")
def shapes(step: int = 1):  # a pipeline parameter named like the per-task `step` param
    first = add(step, 1)  # reads a parameter: a shape of its own
    add(first, 2)
    add(first, 3)  # same shape as the one before (an upstream and a constant): shares its Task
    add.with_options(resources=Resources(cpu="2"))(first, 4)  # another shape of the same function


def test_one_task_per_shape_and_each_pipeline_task_runs_its_own_values():
    files = compile_case("tekton", shapes.build(), settings=SETTINGS).files
    assert list(files) == ["shapes-pipeline.yaml", "shapes-pipelinerun.yaml"]
    tasks = of_kind(files, "Task")
    assert [t["metadata"]["name"] for t in tasks] == ["shapes-add", "shapes-add-2", "shapes-add-3"]
    for doc in [*tasks, *of_kind(files, "Pipeline")]:
        assert schema_errors(doc) == []
    assert [p["name"] for p in tasks[0]["spec"]["params"]] == ["step", "step-2", "k"]  # no clash with `step`
    assert tasks[2]["spec"]["steps"][0]["computeResources"]["requests"]["cpu"] == "2"
    (pipeline_doc,) = of_kind(files, "Pipeline")
    refs = {t["name"]: t["taskRef"]["name"] for t in pipeline_doc["spec"]["tasks"]}
    assert refs == {"add": "shapes-add", "add-2": "shapes-add-2", "add-3": "shapes-add-2", "add-4": "shapes-add-3"}
    ran = {name: (argv, env) for name, argv, env in task_invocations(files, "shapes-x1", {"step": "5"})}
    for name, own in (("add-2", ("add_2", "k=2")), ("add-3", ("add_3", "k=3")), ("add-4", ("add_4", "k=4"))):
        argv, env = ran[name]
        assert argv[argv.index("--step") + 1] == own[0]
        assert argv[argv.index("--const") + 1] == own[1]
        assert argv[argv.index("--upstream") + 1] == "value=add/output"
        assert argv[argv.index("--run-id") + 1] == "shapes-x1" == env["PIPECAST_TEKTON_RUN"]  # the pod's label
    argv, _ = ran["add"]
    assert argv[argv.index("--step") + 1] == "add" and "value=int:5" in argv  # the pipeline parameter, substituted


def test_a_task_the_bundle_does_not_hold_fails_the_replay():
    """The replay resolves taskRef as Tekton does: a missing Task is CouldntGetTask, not a silent inline run."""
    files = compile_case("tekton", shapes.build(), settings=SETTINGS).files
    broken = dict(files, **{"shapes-pipeline.yaml": files["shapes-pipeline.yaml"].replace(
        "    taskRef:\n      name: shapes-add-3\n", "    taskRef:\n      name: shapes-add-9\n")})
    with pytest.raises(AssertionError, match="CouldntGetTask 'shapes-add-9'"):
        task_invocations(broken, "shapes-x1")


@step(env={"PIPECAST_TEKTON_RUN": "mine"})
def stamped() -> int:
    return 1


@pipeline(name="stamped", **SETTINGS)
def stamped_pipeline():
    stamped()


def test_a_step_env_named_like_the_run_id_variable_is_refused():
    with pytest.raises(PipecastError, match="sets env PIPECAST_TEKTON_RUN, which pipecast sets to the run's name"):
        compile_case("tekton", stamped_pipeline.build())


@pytest.mark.parametrize("embed", [False, True], ids=["pipeline", "embedded"])
def test_a_5000_step_pipeline_of_one_function_fits_one_kubernetes_object(embed):
    # Was 3,323,592 bytes (3.17 MiB, ~665 a task) with an inline taskSpec per task; a pipeline task is now its
    # name, runAfter, its params and a taskRef: ~200 bytes, 5,000 steps ~0.95 MiB.
    files = compile_case("tekton", layered(5_000).build(), settings={**SETTINGS, "embed": embed}).files
    # libyaml's loader: the pure-Python one takes a minute on a busy machine for these 1 MB
    docs = [doc for text in files.values() for doc in yaml.load_all(text, Loader=yaml.CSafeLoader)]
    tasks = [doc for doc in docs if doc["kind"] == "Task"]
    assert [t["metadata"]["name"] for t in tasks] == ["layered-5000-source", "layered-5000-work"]
    (stored,) = [doc for doc in docs if doc["kind"] == ("PipelineRun" if embed else "Pipeline")]
    spec = stored["spec"]["pipelineSpec"] if embed else stored["spec"]
    assert len(spec["tasks"]) == 5_000
    assert all("taskRef" in t and "taskSpec" not in t for t in spec["tasks"])
    assert all(p["name"] != "run-id" for t in spec["tasks"] for p in t.get("params", []))  # from the pod's label
    size = object_size(stored)
    assert size < ETCD_OBJECT_LIMIT, f"{size} bytes"
    assert len(json.dumps(tasks[1])) < 2_000  # the one shared Task stays small
