"""Tasks of the same shape share one component and executor (kfpspec/sharing.py), named as kfp names them."""

from __future__ import annotations

import json

import pytest

from benchmarks.generated import layered
from pipecast import Resources, pipeline, step
from pipecast.errors import PipecastError, UnsupportedFeatureError
from pipecast.runtime.command import parse_command
from pipecast.runtime.publish_kfp import expand_task
from tests.helpers.cases import compile_case
from tests.targets.kfp.support import documents, parse_strictly

SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "gs://acme/artifacts"}


@step
def add(value: int, k: int) -> int:
    return value + k


@pipeline(name="shapes")
def shapes(seed: int = 1):
    first = add(seed, 1)  # reads a parameter: a shape of its own
    add(first, 2)
    add(first, 3)  # same shape as the one before (an upstream and a constant): shares its component
    add.with_options(resources=Resources(cpu="2"))(first, 4)  # another shape of the same function


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_one_component_per_shape_named_like_kfp(target):
    text = compile_case(target, shapes.build(), settings=SETTINGS).main
    parse_strictly(text)
    spec, _ = documents(text)
    assert sorted(spec["components"]) == ["comp-add", "comp-add-2", "comp-add-3"]
    assert sorted(spec["deploymentSpec"]["executors"]) == ["exec-add", "exec-add-2", "exec-add-3"]
    refs = {name: task["componentRef"]["name"] for name, task in spec["root"]["dag"]["tasks"].items()}
    assert refs == {"add": "comp-add", "add-2": "comp-add-2", "add-3": "comp-add-2", "add-4": "comp-add-3"}
    own = {name: json.loads(task["inputs"]["parameters"]["pipecast_task"]["runtimeValue"]["constant"])
           for name, task in spec["root"]["dag"]["tasks"].items()}
    assert own["add"] == ["--step", "add", "--const", "k=1"]
    assert own["add-3"] == ["--step", "add_3", "--upstream", "value=add/output", "--const", "k=3"]
    # One input carries them (besides the run id, which only the driver can give: builder.RUN_ID_INPUT).
    assert {n for t in spec["root"]["dag"]["tasks"].values() for n in t["inputs"]["parameters"]} == {
        "pipecast_task", "pipecast_run_id", "value"}  # value: the parameter seed, read by the function argument


def test_the_runtime_puts_the_task_options_back_in_place():
    argv = ["run", "--fn", "m:f", "--kfp-task", '["--step","add_3","--const","k=3"]', "--run-id", "r"]
    assert expand_task(argv) == ["run", "--fn", "m:f", "--step", "add_3", "--const", "k=3", "--run-id", "r"]
    invocation, _ = parse_command([*argv, "--pipeline", "p", "--artifact-root", "file:///tmp/x"])
    assert invocation.step == "add_3" and invocation.run_id == "r"


@pytest.mark.parametrize("text", ['["--fn","evil:f"]', '["--step"]', '{"--step":"x"}', "[1,2]", "not json", ""])
def test_a_task_list_with_anything_but_its_own_options_is_refused(text):
    with pytest.raises(PipecastError, match="--kfp-task"):
        expand_task(["run", "--kfp-task", text])


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_a_thousand_tasks_of_one_function_share_two_components(target):
    # warn: on Kubeflow the backend's Argo Workflow of 1,000 tasks cannot fit (test_workflow_size.py)
    spec, _ = documents(compile_case(target, layered(1_000).build(), settings=SETTINGS, on_unsupported="warn").main)
    assert len(spec["root"]["dag"]["tasks"]) == 1_000
    assert sorted(spec["components"]) == ["comp-source", "comp-work"]


def test_a_task_of_a_shared_component_costs_under_490_ir_bytes_and_5000_are_refused():
    """Each task of a shared component costs under 490 bytes of IR (run id, its own options in one input, its
    upstream, caching, its name). The backend's Argo Workflow of 5,000 of them cannot fit: refused, not written."""
    sizes = {}
    for steps in (1_000, 2_000):
        sizes[steps] = len(compile_case("kubeflow", layered(steps).build(), settings=SETTINGS,
                                        on_unsupported="warn").main.encode())
    assert (sizes[2_000] - sizes[1_000]) / 1_000 < 490
    with pytest.raises(UnsupportedFeatureError, match=r"the Argo Workflow the Kubeflow Pipelines backend makes of "
                                                      r"pipeline 'layered_5000' is at least 8,\d{3},\d{3} bytes"):
        compile_case("kubeflow", layered(5_000).build(), settings=SETTINGS)
