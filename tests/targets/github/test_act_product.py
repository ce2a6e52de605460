"""A map over a product of run-time lists run by a real GitHub Actions runner (act, jobs on this host):
``gh_product`` maps over ``Product(sizes(n), xs, [1.0, 10.0])`` — a step's output, a parameter and a constant —
and gives the same instances ``label[k]`` (k the flat index, the first list varying slowest) with the same
outputs, and the same fan-in, as ``pipecast run``.

act evaluates ``fromJSON`` on the counting job's output and expands the matrix; the stand-in actions are
:mod:`tests.targets.github.act_runner`'s.
"""

from __future__ import annotations

import pytest

from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.slow import slow_fixture
from tests.targets.github.act_dispatch import dispatch
from tests.targets.github.act_runner import ACT_RUN_ID
from tests.targets.github.flow_pipelines import gh_product
from tests.targets.github.support import HERE

INPUTS = {"xs": "[0.5, 2.0]", "n": "2"}
PARAMETERS = {"xs": [0.5, 2.0], "n": 2}


@pytest.fixture(scope="module")
@slow_fixture
def act_product(tmp_path_factory):
    """The act run of gh_product with a shared local:// artifact root: (pipeline, root, exit code, log)."""
    return dispatch(gh_product.build(), HERE / "flow_pipelines.py", tmp_path_factory.mktemp("act-product"), INPUTS)


def test_product_items_and_fan_in_equal_pipecast_run(act_product, tmp_path):
    pipeline, root, code, log = act_product
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    local = run_pipeline(pipeline, dict(PARAMETERS), artifact_root=f"file://{tmp_path}", cache=False)
    ran = {name for name, state in local.steps.items() if state.status == "done" and not state.items}
    assert {f"label[{k}]" for k in range(8)} | {"sizes", "joined"} == ran
    runs = root / pipeline.name / "runs" / ACT_RUN_ID
    assert {p.parent.name for p in runs.glob("*/meta.json")} == ran
    for name in sorted(ran):
        assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, name) == \
            load_outputs(f"file://{tmp_path}", pipeline.name, local.id, name), name
    # item k = i*4 + j*2 + l of sizes [1.0, 2.0] × xs × [1.0, 10.0]
    assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "label[5]")["output"] == "2.0/0.5/10.0"
