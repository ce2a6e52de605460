"""If/elif/else chains decided by a chain job, run by a real GitHub Actions runner (act, jobs on this host):
``gh_chain``'s chain job decides with Python's meaning — ``word() == "prod"`` is false for ``"Prod"``, which
GitHub's case-blind ``==`` would call true — so the elif's branch runs, the others are skipped, ``OneOf`` reads
it, and a lone ``If`` on a text parameter runs its branch: the same steps and outputs as ``pipecast run``.
"""

from __future__ import annotations

import pytest

from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.slow import slow_fixture
from tests.targets.github.act_dispatch import dispatch
from tests.targets.github.act_runner import ACT_RUN_ID
from tests.targets.github.flow_pipelines import gh_chain
from tests.targets.github.support import HERE

INPUTS = {"scale": "1.0", "env": "Prod"}
PARAMETERS = {"scale": 1.0, "env": "Prod"}


@pytest.fixture(scope="module")
@slow_fixture
def act_chain(tmp_path_factory):
    """The act run of gh_chain with a shared local:// artifact root: (pipeline, root, exit code, log)."""
    return dispatch(gh_chain.build(), HERE / "flow_pipelines.py", tmp_path_factory.mktemp("act-chain"), INPUTS)


def test_chains_decided_with_pythons_meaning_equal_pipecast_run(act_chain, tmp_path):
    pipeline, root, code, log = act_chain
    assert code == 0, f"act failed ({code}):\n{log[-8000:]}"
    local = run_pipeline(pipeline, dict(PARAMETERS), artifact_root=f"file://{tmp_path}", cache=False)
    ran = {name for name, state in local.steps.items() if state.status == "done"}
    assert ran == {"word", "measure", "stage", "announce", "celebrate"}
    runs = root / pipeline.name / "runs" / ACT_RUN_ID
    assert {p.parent.name for p in runs.glob("*/meta.json")} == ran
    for name in sorted(ran):
        assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, name) == \
            load_outputs(f"file://{tmp_path}", pipeline.name, local.id, name), name
    assert load_outputs(f"file://{root}", pipeline.name, ACT_RUN_ID, "announce")["output"] == "STAGED AT 0.9"
