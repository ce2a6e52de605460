"""The ML example (examples/ml_pipeline.py) run by a real GitHub Actions runner (act, jobs on this host): its map
over the ``rates`` input (a matrix from ``fromJSON``) writing model directories and ``Metrics``, the if/else on
the published accuracy with ``OneOf``, and the exit handler reading ``needs.*.result`` store exactly what
``pipecast run`` stores: the same step instances, each output with the same sha256 (a directory by its
manifest), the promoted model the best item's directory, keep_current skipped. One act run (the default
threshold takes the ``if`` branch; the goldens and the replays in tests/targets/test_ml_example.py cover the rest).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import ROOT, case
from tests.helpers.slow import slow_fixture
from tests.targets.github.act_dispatch import dispatch
from tests.targets.github.act_runner import ACT_RUN_ID

INPUTS = {"rates": "[0.01, 0.1, 1.0]", "threshold": "0.8"}


def stored(root: Path, pipeline: str, run_id: str) -> dict[str, dict[str, str]]:
    """Every step instance that succeeded: each output's sha256 (content only, no URI)."""
    found = {}
    for meta_file in sorted((root / pipeline / "runs" / run_id).glob("*/meta.json")):
        meta = json.loads(meta_file.read_text())
        if meta["status"] == "succeeded":
            found[meta_file.parent.name] = {name: r["sha256"] for name, r in meta["outputs"].items()}
    return found


@pytest.fixture(scope="module")
@slow_fixture
def act_ml(tmp_path_factory):
    """The act run of the ML example with a shared local:// artifact root: (pipeline, root, exit code, log)."""
    return dispatch(case("ml_pipeline").build(), ROOT / "examples" / "ml_pipeline.py",
                    tmp_path_factory.mktemp("act-ml"), INPUTS)


def test_the_ml_example_under_act_stores_what_pipecast_run_stores(act_ml, tmp_path):
    pipeline, root, code, log = act_ml
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    local = run_pipeline(pipeline, {"rates": [0.01, 0.1, 1.0], "threshold": 0.8}, artifact_root=f"file://{tmp_path}",
                         cache=False)
    expected = stored(tmp_path, pipeline.name, local.id)
    assert {"train_model[2]", "evaluate[2]", "promote", "record_decision", "report"} <= set(expected)
    assert "keep_current" not in expected
    under_act = stored(root, pipeline.name, ACT_RUN_ID)
    assert under_act == expected
    assert under_act["promote"]["promoted"] == under_act["train_model[2]"]["model"]
