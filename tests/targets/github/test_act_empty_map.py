"""A map over an empty run-time list run by a real GitHub Actions runner (act, jobs on this host). GitHub fails a
job whose matrix has no values ("Matrix vector 'index' does not contain any values") where ``pipecast run`` runs
no items and gives the fan-in an empty list; so each mapped job's ``if:`` requires items, and the fan-in runs when
its map's list was empty. ``gh_map_branches`` maps over an empty parameter (its steps run through the per-item
emulation, the fan-ins too), ``gh_product`` over a product with an empty step output (a job counts it); the
fan-ins' outputs equal ``pipecast run``'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.slow import slow_fixture
from tests.targets.github.act_dispatch import dispatch
from tests.targets.github.act_runner import ACT_RUN_ID
from tests.targets.github.flow_pipelines import gh_map_branches, gh_product
from tests.targets.github.support import HERE


@pytest.fixture(scope="module")
@slow_fixture
def act_empty_parameter(tmp_path_factory):
    """gh_map_branches under act with ``xs = []``: (pipeline, root, exit code, log)."""
    return dispatch(gh_map_branches.build(), HERE / "flow_pipelines.py", tmp_path_factory.mktemp("act-empty"),
                    {"xs": "[]", "threshold": "4.0"})


@pytest.fixture(scope="module")
@slow_fixture
def act_empty_product(tmp_path_factory):
    """gh_product under act with ``n = 0`` (``sizes`` returns ``[]``): (pipeline, root, exit code, log)."""
    return dispatch(gh_product.build(), HERE / "flow_pipelines.py", tmp_path_factory.mktemp("act-empty-product"),
                    {"xs": "[0.5]", "n": "0"})


def _records(root: Path, pipeline_name: str) -> dict[str, str]:
    runs = root / pipeline_name / "runs" / ACT_RUN_ID
    return {p.parent.name: json.loads(p.read_text())["status"] for p in runs.glob("*/meta.json")}


def _fan_ins_equal_pipecast_run(run, parameters, fan_ins, tmp_path):
    pipeline, root, code, log = run
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    local = run_pipeline(pipeline, dict(parameters), artifact_root=f"file://{tmp_path}", cache=False)
    assert all(state.status == "done" for state in local.steps.values())
    mapped = {name for name, state in local.steps.items() if state.items == 0}
    assert mapped and not {name for name in _records(root, pipeline.name) if "[" in name}  # no item ran anywhere
    assert set(_records(root, pipeline.name).values()) == {"succeeded"}
    for name in fan_ins:
        assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, name) == \
            load_outputs(f"file://{tmp_path}", pipeline.name, local.id, name), name
    return root, pipeline


def test_an_empty_parameter_list_runs_no_item_and_the_fan_ins_get_an_empty_list(act_empty_parameter, tmp_path):
    root, pipeline = _fan_ins_equal_pipecast_run(act_empty_parameter, {"xs": [], "threshold": 4.0},
                                                 ["joined", "total"], tmp_path)
    assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "total")["output"] == 0


def test_an_empty_product_runs_no_item_and_the_fan_in_gets_an_empty_list(act_empty_product, tmp_path):
    root, pipeline = _fan_ins_equal_pipecast_run(act_empty_product, {"xs": [0.5], "n": 0}, ["sizes", "joined"],
                                                 tmp_path)
    assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "joined")["output"] == ""
