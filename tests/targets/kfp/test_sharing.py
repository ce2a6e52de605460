"""Tasks of the same shape share one component and executor (kfpspec/sharing.py), named as kfp names them."""

from __future__ import annotations

import pytest

from benchmarks.generated import layered
from pipecast import Resources, pipeline, step
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
    constants = {name: {k: v["runtimeValue"]["constant"] for k, v in task["inputs"]["parameters"].items()
                        if "runtimeValue" in v} for name, task in spec["root"]["dag"]["tasks"].items()}
    steps = sorted(c["pipecast_step"] for c in constants.values())
    assert steps == ["add", "add_2", "add_3", "add_4"]
    assert sorted(c["pipecast_const_k"] for c in constants.values()) == ["1", "2", "3", "4"]


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_a_thousand_tasks_of_one_function_share_two_components(target):
    spec, _ = documents(compile_case(target, layered(1_000).build(), settings=SETTINGS).main)
    assert len(spec["root"]["dag"]["tasks"]) == 1_000
    assert sorted(spec["components"]) == ["comp-source", "comp-work"]
