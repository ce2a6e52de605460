"""Every golden case's workflow run by a real GitHub Actions runner (act, jobs on this host): outputs equal
``pipecast run``'s, inputs and their defaults, ``needs:`` order, artifacts between jobs, the pinned pipecast
installed from the wheel shipped in the repository. What the stand-in actions do and do not prove is in
:mod:`tests.targets.github.act_runner`.

All act runs start at once (one act process per run, jobs on the host) and the tests read their results.
Expressions, quoting and input typing are act's here, not a model of ours: a parameter default holding
``${{ github.token }}`` arriving intact is what the base64 workflow env is for (act evaluates the
workflow's env twice, so a ``${{ '${{' }}`` escape there lost the text).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipecast.build.wheel import pipecast_wheel
from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names
from pipecast.runtime.params import resolve_parameters
from pipecast.targets.github.layout import wheel_path
from pipecast.targets.github.syntax import artifact_name
from tests.helpers.cases import CASES, ROOT, case, compile_case
from tests.helpers.replay import assert_same_outputs
from tests.helpers.slow import slow_fixture
from tests.targets.github.act_dispatch import required_act
from tests.targets.github.act_runner import (
    ACT_RUN_ID,
    ActRun,
    act_version,
    dependency_wheelhouse,
    installed_from,
    make_repository,
    pip_site,
    start_act,
    write_stand_ins,
)
from tests.targets.github.support import HERE, hostile_names_pipeline

GH_PIPELINES = HERE / "gh_pipelines.py"
EVIL = case("hostile").build().parameter("text").default  # tests/golden/cases/hostile.py's EVIL
HOSTILE_NAMES = "hostile_names"  # not a golden case: gh_pipelines.py's, renamed after building
HOSTILE_DATA = '{"q": "\'\\"", "s": "${{ secrets.X }}", "t": "$(id)"}'


@dataclass(frozen=True)
class Planned:
    """One act run: a golden case, its event, inputs and secrets.

    Images are removed from every case (Docker Hub and ghcr.io are not reachable here, and a job in a
    ``container:`` would need the stand-ins inside it): the jobs run on the host with setup-python and the
    install step, which is what a pipeline without images compiles to.
    """

    name: str
    case: str
    event: str = "workflow_dispatch"
    inputs: Mapping[str, str] = field(default_factory=dict)
    expected: Mapping[str, Any] = field(default_factory=dict)  # parameters the inputs must arrive as
    secrets: Mapping[str, str] = field(default_factory=dict)
    ship_wheel: bool = True
    shared_root: bool = False


PLANNED = [
    Planned("quickstart", "quickstart", inputs={"n": "20", "label": "odd & even"},
            expected={"n": 20, "label": "odd & even"}),
    # Its image is not reachable here: its jobs run without it (every step's image is removed, as for every case).
    Planned("ml_training", "ml_training", inputs={"samples": "80", "epochs": "5", "lr_large": "0.5"},
            expected={"samples": 80, "epochs": 5, "lr_large": 0.5}),
    Planned("diamond_after", "diamond_after"),
    # Literal lists and dicts of outputs and parameters given as one input (--gather), parameters from the inputs.
    Planned("gather", "gather", inputs={"n": "5", "lr": "0.25"}, expected={"n": 5, "lr": 0.25}),
    # No inputs: every default, the ones `${{` kept out of the inputs through the base64 workflow env.
    Planned("hostile_defaults", "hostile"),
    Planned("hostile_inputs", "hostile", inputs={"text": EVIL + " again", "data": HOSTILE_DATA},
            expected={"text": EVIL + " again", "data": json.loads(HOSTILE_DATA)}),
    # Its root is S3: its jobs share a local:// root on this host instead (no artifacts), run as the schedule
    # runs it (no inputs); its GPU job runs on the `self-hosted` runner act maps to this host.
    Planned("full_options", "full_options", event="schedule", shared_root=True,
            secrets={"API_TOKEN": "t0ken ${{ x }}", "DB_CREDENTIALS_PASSWORD": "pw"}),
    # Hostile step and output names (job names, PIPECAST_ARG_<n> variables), a hostile list default, a
    # secret; names that cannot be artifact folders, so a shared root (tests/targets/github/support.py).
    Planned("hostile_names", HOSTILE_NAMES, event="schedule", shared_root=True, secrets={"API_TOKEN": "s3cret"}),
    # No wheel shipped: the install falls back to `pipecast==<this version>` from the index (here none).
    Planned("no_wheel", "quickstart", ship_wheel=False),
]
EVERY_CASE = sorted({p.case for p in PLANNED} - {HOSTILE_NAMES})


@dataclass
class Started:
    planned: Planned
    pipeline: ir.Pipeline
    run: ActRun
    root: Path | None  # the shared artifact root, when the jobs use one
    code: int = -1


@pytest.fixture(scope="module")
@slow_fixture
def act_runs(tmp_path_factory) -> dict[str, Started]:
    """Every planned act run, started together and waited for."""
    act = required_act()
    base = tmp_path_factory.mktemp("act")
    stand_ins = write_stand_ins(base / "stand-ins")
    wheelhouse = dependency_wheelhouse()
    pip_path = pip_site(base / "pip")
    wheel = pipecast_wheel(base / "wheel")
    started: dict[str, Started] = {}
    began = time.monotonic()
    try:
        for planned in PLANNED:
            folder = base / planned.name
            folder.mkdir()
            pipeline, root, settings = _pipeline(planned, folder)
            compiled = compile_case("github", pipeline, golden=True, settings=settings)
            source = GH_PIPELINES if planned.case == HOSTILE_NAMES else case(planned.case).path
            repository = make_repository(folder, compiled.bundle, {source.relative_to(ROOT).as_posix(): source},
                                         wheel if planned.ship_wheel else None)
            run = start_act(act, folder, repository, stand_ins, event=planned.event, wheelhouse=wheelhouse,
                            pip_path=pip_path, inputs=planned.inputs, secrets=planned.secrets,
                            payload=_payload(planned, compiled.main))
            started[planned.name] = Started(planned, pipeline, run, root)
    finally:
        for item in started.values():
            item.code = item.run.wait()
    print(f"\n{len(started)} workflows ran under {act_version(act)} in {time.monotonic() - began:.0f} s")
    return started


def _pipeline(planned: Planned, folder: Path) -> tuple[ir.Pipeline, Path | None, dict[str, Any]]:
    pipeline = hostile_names_pipeline() if planned.case == HOSTILE_NAMES else case(planned.case).build()
    steps = tuple(dataclasses.replace(s, image=None) for s in pipeline.steps)
    pipeline = dataclasses.replace(pipeline, image=None, steps=steps)
    if not planned.shared_root:
        return pipeline, None, {}
    root = folder / "shared-root"
    return dataclasses.replace(pipeline, artifact_root=None), root, {"artifact_root": f"local://{root}"}


def _payload(planned: Planned, workflow: str) -> dict[str, Any] | None:
    """A scheduled run's ``github.event``: all GitHub gives it is the cron text that fired ("schedule", in
    docs.github.com/actions/reference/events-that-trigger-workflows#schedule: no webhook payload)."""
    if planned.event != "schedule":
        return None
    document = yaml.safe_load(workflow)
    (entry,) = document.get("on", document.get(True))["schedule"]  # PyYAML reads the key `on` as True
    return {"schedule": entry["cron"]}


def _succeeded(started: Started) -> None:
    assert started.code == 0, f"act failed ({started.code}):\n{started.run.output()[-8000:]}"


def _collected_root(started: Started, tmp_path: Path) -> Path:
    """The run's outputs as an artifact root: the shared root, or each job's uploaded artifact."""
    if started.root is not None:
        return started.root
    pipeline = started.pipeline
    jobs = engine_names("github", [s.name for s in pipeline.steps])
    root = tmp_path / "collected"
    for step, job in jobs.items():
        shutil.copytree(started.run.artifacts / artifact_name(job), root / pipeline.name / "runs" / ACT_RUN_ID / step)
    return root


@pytest.mark.parametrize("name", [p.name for p in PLANNED if p.ship_wheel])
def test_outputs_equal_pipecast_run(act_runs, name, tmp_path):
    started = act_runs[name]
    _succeeded(started)
    parameters = {p.name: p.default for p in started.pipeline.parameters if not p.required}
    parameters.update(started.planned.expected)
    assert_same_outputs(started.pipeline, parameters, _collected_root(started, tmp_path), ACT_RUN_ID, tmp_path)


def test_every_golden_case_is_run():
    assert sorted(c.name for c in CASES) == EVERY_CASE


def test_the_hostile_default_arrives_byte_for_byte(act_runs, tmp_path):
    """`${{ github.token }}` and the rest of EVIL, a default the input could not carry, reach the step intact."""
    from pipecast.runtime.executor import load_outputs

    started = act_runs["hostile_defaults"]
    _succeeded(started)
    root = _collected_root(started, tmp_path)
    outputs = load_outputs(f"file://{root}", "hostile", ACT_RUN_ID, "echo_text")
    assert outputs["output"] == EVIL + "|" + EVIL
    data = load_outputs(f"file://{root}", "hostile", ACT_RUN_ID, "echo_data_2")["output"]
    assert data["data"] == resolve_parameters(started.pipeline, {})["data"]


@pytest.mark.parametrize("name", ["quickstart", "ml_training", "diamond_after", "hostile_defaults"])
def test_jobs_start_only_after_their_needs_ended(act_runs, name):
    started = act_runs[name]
    _succeeded(started)
    journal = started.run.journal()
    jobs = engine_names("github", [s.name for s in started.pipeline.steps])
    for step in started.pipeline.steps:
        assert f"end {jobs[step.name]}" in journal, journal
        for upstream in step.upstream():
            assert journal.index(f"end {jobs[upstream]}") < journal.index(f"start {jobs[step.name]}"), journal


@pytest.mark.parametrize("name", [p.name for p in PLANNED if p.ship_wheel])
def test_every_job_installed_the_shipped_wheel(act_runs, name):
    started = act_runs[name]
    _succeeded(started)
    pythons = sorted(started.run.pythons.iterdir())
    assert len(pythons) == len(started.pipeline.steps)
    for python in pythons:  # the checkout in the job's workspace, under the runner's HOME
        source = installed_from(python)
        assert source.startswith(str(started.run.folder / "home")) and source.endswith("/" + wheel_path()), source


def test_without_the_shipped_wheel_only_the_pinned_version_is_looked_for(act_runs):
    import pipecast

    started = act_runs["no_wheel"]
    assert started.code != 0
    assert f"No matching distribution found for pipecast=={pipecast.__version__}" in started.run.output()
    assert not list(started.run.artifacts.iterdir()), "no step may run without its pipecast"
    assert wheel_path().startswith(".github/pipecast/")


@pytest.mark.parametrize("name", ["ml_training", "hostile_defaults", "hostile_names"])
def test_each_step_job_summary_lists_its_outputs(act_runs, name, tmp_path):
    """act gives each step a ``$GITHUB_STEP_SUMMARY`` file and logs what the step wrote to it ("Summary - ").

    Rendered by GitHub's cmark-gfm, each job's summary is one table of the step's outputs, as its ``meta.json``
    records them, hostile step names included.
    """
    from pipecast.runtime.artifacts import ArtifactStore
    from pipecast.runtime.job_summary import cell
    from tests.unit.test_job_summary import _render

    started = act_runs[name]
    _succeeded(started)
    output = started.run.output()
    store = ArtifactStore(f"file://{_collected_root(started, tmp_path)}")
    for step in started.pipeline.steps:
        meta = store.read_json(f"{store.step_dir(started.pipeline.name, ACT_RUN_ID, step.name)}/meta.json")
        marker = f"Summary - ### pipecast step {cell(step.name)}: succeeded\n"
        assert output.count(marker) == 1, f"no job summary for step {step.name!r} in act's log"
        start = output.index(marker) + len("Summary - ")
        block = output[start:output.find("\n[", start)]
        parsed = _render(block)
        assert parsed.tags <= {"h3", "p", "table", "thead", "tbody", "tr", "th", "td"}, block
        rows = parsed.tables[0][1:]
        assert [(r[0], r[1], r[2], r[4], r[5]) for r in rows] == [
            (out, rec["type"], rec["materializer"], str(rec["size"]), rec["sha256"])
            for out, rec in sorted(meta["outputs"].items())]
        assert all(r[3].endswith("/" + meta["outputs"][r[0]]["file"]) for r in rows)


@pytest.mark.parametrize("name", [p.name for p in PLANNED if p.event == "schedule"])
def test_a_scheduled_run_has_no_logical_time(act_runs, name):
    """GitHub gives a scheduled run no time, only the cron text (``github.event.schedule``): no step records a
    logical time (the runtime writes ``logical_time`` to meta.json whenever it has one)."""
    started = act_runs[name]
    _succeeded(started)
    assert started.root is not None  # the schedule runs share a root on this host (Planned)
    metas = [json.loads(p.read_text()) for p in started.root.glob(f"*/runs/{ACT_RUN_ID}/*/meta.json")]
    assert len(metas) == len(started.pipeline.steps)
    assert [m.get("logical_time") for m in metas] == [None] * len(metas)
