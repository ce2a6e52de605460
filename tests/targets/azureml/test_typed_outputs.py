"""Typed artifacts as Azure ML outputs (issue 17): a golden, azure-ai-ml's loader, and the nodes' commands run with
the output paths Azure ML gives them, whose contents equal what ``pipecast run`` stored.

Azure ML gives a command node each declared output's path as ``${{outputs.NAME}}`` (mounted read-write by default)
and uploads what the node wrote there when it ends ("Access data in a job", learn.microsoft.com/azure/
machine-learning/how-to-read-write-data-v2): a ``uri_folder``/``custom_model`` output is a folder, a ``uri_file`` a
file path. The replay gives each a fresh path of that kind and reads back what the runtime wrote.

``pytest --update-goldens`` rewrites ``data/typed/az_typed.yml``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from pipecast.errors import ValidationError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.targets.azureml.emit import RUN_ID_INPUT
from tests.helpers.cases import compile_case
from tests.helpers.replay import run_task
from tests.targets.azureml import typed_pipelines
from tests.targets.azureml.support import order, reference_problems, resolve_command

GOLDEN = Path(__file__).parent / "data" / "typed" / "az_typed.yml"


def test_golden(request):
    text = compile_case("azureml", typed_pipelines.az_typed, golden=True).main
    if request.config.getoption("--update-goldens"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.read_text(encoding="utf-8") == text, f"{GOLDEN} differs (pytest --update-goldens)"


def test_typed_outputs_are_azure_ml_outputs_of_their_type():
    from azure.ai.ml import load_job

    job = load_job(source=str(GOLDEN))
    job._validate(raise_error=True)
    types = {node: {name: out.type for name, out in job.jobs[node].component.outputs.items()} for node in job.jobs}
    assert types == {"prepare": {"pipecast_done": "uri_folder", "table": "uri_folder"},
                     "train": {"pipecast_done": "uri_folder", "output": "uri_file", "model": "custom_model",
                               "scores": "uri_file"},
                     "report": {"output": "uri_folder"}}  # the plain `count` stays pipecast's only
    assert reference_problems(yaml.safe_load(GOLDEN.read_text(encoding="utf-8"))) == []


def test_an_output_name_azure_ml_cannot_take_is_an_error():
    import dataclasses

    built = typed_pipelines.az_typed.build()
    first = built.steps[0]
    renamed = dataclasses.replace(first.outputs[0], name="pipecast_table")
    pipeline = dataclasses.replace(built, steps=(dataclasses.replace(first, outputs=(renamed, first.outputs[1])),
                                                 *built.steps[1:]))
    with pytest.raises(ValidationError, match="output 'pipecast_table' \\(Dataset\\) uses the prefix 'pipecast_'"):
        compile_case("azureml", pipeline, golden=True)


def _replay(job: dict, inputs: dict, outputs_root: Path) -> dict[str, dict[str, Path]]:
    """Run every node's command in order with Azure ML's substitution; return each node's output paths."""
    given: dict[str, dict[str, Path]] = {}
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    for name in order(job):
        declared = job["jobs"][name]["component"].get("outputs") or {}
        paths = {}
        for output, spec in declared.items():
            folder = outputs_root / name / output
            folder.mkdir(parents=True)  # a folder output is mounted; a file output's folder exists
            paths[output] = folder / output if spec["type"] == "uri_file" else folder
        given[name] = paths
        work = outputs_root / name / "pipecast_working_dir"
        work.mkdir()
        run_task(["bash", "-c", resolve_command(job, name, inputs, outputs={k: str(v) for k, v in paths.items()})],
                 env=env, cwd=work)
    return given


def _plain(values: dict) -> dict:
    """Outputs without where they are stored: a typed artifact by its type, content hash and metadata."""
    return {name: (type(v).__name__, v.sha256, v.metadata) if hasattr(v, "sha256") else v
            for name, v in values.items()}


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_runtime_writes_each_typed_output_where_azure_ml_uploads_it_also_from_the_cache(tmp_path):
    root = tmp_path / "store"
    settings = {"artifact_root": f"local://{root}", "image": "ghcr.io/acme/pipecast:1.0"}
    compiled = compile_case("azureml", typed_pipelines.az_typed, settings=settings)
    job, pipeline = yaml.safe_load(compiled.main), compiled.pipeline
    local = run_pipeline(pipeline, {"rows": 4}, artifact_root=f"file://{tmp_path}/local", cache=False)
    for run_id in ("azureml-typed-1", "azureml-typed-2"):  # the second run's steps all come from the cache
        inputs = dict(job["inputs"]) | {"rows": 4, RUN_ID_INPUT: run_id}
        given = _replay(job, inputs, tmp_path / run_id)
        store = ArtifactStore(f"file://{root}")
        for step in ("prepare", "train", "report"):
            assert _plain(load_outputs(f"file://{root}", pipeline.name, run_id, step)) == \
                _plain(load_outputs(f"file://{tmp_path}/local", pipeline.name, local.id, step)), step
        meta = {s: store.read_json(f"{store.step_dir(pipeline.name, run_id, s)}/meta.json")
                for s in ("prepare", "train", "report")}
        if run_id.endswith("2"):
            assert all(m["cached"] for m in meta.values()), meta
        # the model folder as the step wrote it; metrics as one JSON object each
        assert _tree(given["train"]["model"]) == {"config.json": b'{"rows": 4}', "weights/w.txt": b"0.5 1.5"}
        assert json.loads(given["train"]["scores"].read_text()) == {"loss": 0.25}
        assert json.loads(given["train"]["output"].read_text()) == {"accuracy": 0.75}
        # a stored value: its file, byte for byte; a file the step wrote: that file
        table = meta["prepare"]["outputs"]["table"]
        stored = root / pipeline.name / "runs" / run_id / "prepare" / table["file"]
        assert _tree(given["prepare"]["table"]) == {stored.name: stored.read_bytes()}
        assert _tree(given["report"]["output"]) == {"summary.csv": b"files,count\n3,4\n"}
        assert list(given["prepare"]) == ["pipecast_done", "table"]  # `count` is no Azure ML output
