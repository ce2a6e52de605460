"""Control flow on the vm_* targets (issue 16): maps and conditions run by each step's runtime
(``pipecast.runtime.inline_flow``), as on Compose. SkyPilot runs one step at a time, so a pipeline's bound is kept
by bounding a mapped step's items; exit handlers and hooks run in the run script (see test_exit_flow.py).

``pytest --update-goldens`` rewrites ``data/flow/<pipeline>.<target>.*``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecast.errors import ValidationError
from pipecast.runtime.params import render_parameter
from tests.helpers.cases import compile_case
from tests.helpers.replay import run_task
from tests.targets.local_docker import flow_pipelines
from tests.targets.local_docker.test_flow import _local_results, _results
from tests.targets.skypilot.sky_venv import run_sky
from tests.targets.skypilot.support import SETTINGS, task_documents
from tests.targets.skypilot.test_replay import task_env, task_ids

HERE = Path(__file__).parent
GOLDENS = HERE / "data" / "flow"
VARIANTS = [("compose_flow", "vm_aws"), ("compose_bound", "vm_gcp"), ("compose_exit", "vm_azure"),
            ("sky_exit", "vm_aws"), ("sky_exit_map", "vm_gcp"), ("sky_exit_split", "vm_azure")]


def compiled(name: str, target: str) -> dict[str, str]:
    try:
        files = compile_case(target, getattr(flow_pipelines, name), golden=True, settings=SETTINGS[target]).files
    except ValidationError as err:
        return {f"{name}.{target}.error.txt": str(err) + "\n"}
    return {f"{name}.{target}.{path}": text for path, text in files.items()}


@pytest.mark.parametrize(("name", "target"), VARIANTS)
def test_golden(name, target, request):
    files = compiled(name, target)
    if request.config.getoption("--update-goldens"):
        for old in GOLDENS.glob(f"{name}.{target}.*"):
            old.unlink()
        GOLDENS.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            (GOLDENS / path).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in GOLDENS.glob(f"{name}.{target}.*")}
    assert expected == files, f"{name} × {target} differs from its golden in {GOLDENS} (pytest --update-goldens)"


def _replay(name: str, parameters: dict, tmp_path: Path) -> tuple[str, Path]:
    pipeline = getattr(flow_pipelines, name).build()
    text = next(t for p, t in compiled(name, "vm_aws").items() if p.endswith(".sky.yaml"))
    header, documents = task_documents(text)
    root = tmp_path / "replay"
    overrides = {p.name: render_parameter(p.type, parameters[p.name]) for p in pipeline.parameters
                 if p.name in parameters}
    overrides["PIPECAST_ARTIFACT_ROOT"] = f"file://{root}"
    ids = task_ids(header, documents)
    for index, document in enumerate(documents):  # one after the other, as SkyPilot runs a chain
        run_task(["bash", "-c", document["run"]], env=task_env(document, ids, index, overrides), timeout=300)
    return ids[0], root


def test_the_run_scripts_replayed_give_every_instance_pipecast_runs_result(tmp_path):
    pipeline = flow_pipelines.compose_flow.build()
    parameters = {"xs": [2, 5], "limit": 3.0, "n": 1}
    expected, names = _local_results(pipeline, parameters, tmp_path / "local")
    run_id, root = _replay("compose_flow", parameters, tmp_path)
    assert _results(pipeline, root, run_id, names) == expected
    assert expected["announce"][1] == {"output": "PROMOTED 14.5"} and expected["describe[0]"][0] == "skipped"


def test_skypilot_loads_the_flow_tasks(sky_interpreter, tmp_path):
    texts = {name: compiled(name, target)[f"{name}.{target}.{name}.sky.yaml"]
             for name, target in (("compose_flow", "vm_aws"), ("sky_exit", "vm_aws"), ("sky_exit_map", "vm_gcp"))}
    cases = {}
    for name, text in texts.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
        cases[name] = {"path": str(tmp_path / f"{name}.yaml")}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    run_sky(sky_interpreter, HERE / "in_sky_validate.py", str(tmp_path / "cases.json"), str(tmp_path / "out.json"),
            home=tmp_path)
    results = json.loads((tmp_path / "out.json").read_text())
    for name, text in texts.items():
        assert "error" not in results[name], results[name]
        _, documents = task_documents(text)
        assert [t["run"] for t in results[name]["tasks"]] == [d["run"] for d in documents]


def test_a_one_of_inside_a_map_replayed_reads_each_items_branch_as_pipecast_run_does(tmp_path):
    pipeline = flow_pipelines.compose_one_of.build()
    expected, names = _local_results(pipeline, {}, tmp_path / "local")
    run_id, root = _replay("compose_one_of", {}, tmp_path)
    assert _results(pipeline, root, run_id, names) == expected
    assert [expected[f"shown[{i}]"][1] for i in range(4)] == [{"output": v} for v in (1, 105, 2, 107)]
