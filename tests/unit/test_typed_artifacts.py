"""Typed artifacts (Dataset, Model, Metrics), output parameters and fetch-on-miss: units, then real runs."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import numpy as np
import pytest

from pipecast import Artifact, Dataset, Input, Metrics, Model, Output, OutputPath
from pipecast.compiler.loader import load_pipeline
from pipecast.errors import ArtifactError, ParameterError, PipecastError
from pipecast.runs.store import RunStore
from pipecast.runtime import include, paths, typed_io
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from pipecast.typed_artifacts import artifact_class, output_argument
from tests.helpers.cases import ROOT
from tests.unit.test_cli import echo_target  # noqa: F401  (a fixture: a test target that submits nothing)
from tests.unit.test_paths import pipecast_cli


def test_metrics_hold_finite_numbers_only():
    metrics = Metrics({"accuracy": 0.9}, loss=1)
    metrics.log_metric("accuracy", 0.95)
    assert metrics.metrics == {"accuracy": 0.95, "loss": 1} and metrics["loss"] == 1
    for bad in (True, "0.9", math.nan, math.inf, None):
        with pytest.raises(ArtifactError, match="metrics are finite numbers"):
            metrics.log_metric("x", bad)  # type: ignore[arg-type]
    with pytest.raises(ArtifactError, match="non-empty text"):
        Metrics({"": 1.0})


def test_an_artifact_says_what_it_holds():
    with pytest.raises(ArtifactError, match=r"holds no value yet"):
        Model().value  # noqa: B018
    with pytest.raises(ArtifactError, match=r"holds a int value, not a file or directory"):
        Dataset(3).path  # noqa: B018
    assert Model(Path("/m")).path == Path("/m") and Dataset(3).value == 3


@pytest.mark.parametrize(("annotation", "expected"), [
    (Dataset, Dataset), (Input[Model], Model), (Annotated[Metrics, "scores"], Metrics), (Artifact, Artifact),
    (int, None), (Path, None), (OutputPath, None),
])
def test_artifact_class_reads_every_spelling(annotation, expected):
    assert artifact_class(annotation) is expected


def test_output_parameters_are_recognised():
    assert output_argument(OutputPath) is True and output_argument(Output[Model]) is Model
    assert output_argument(Model) is False and output_argument(Path) is False


def test_returned_values_are_wrapped_by_the_annotation_and_mismatches_are_clear():
    wrapped = typed_io.wrap_output("s", "out", np.zeros(2), Dataset)
    assert isinstance(wrapped, Dataset) and wrapped.value.shape == (2,)
    assert typed_io.wrap_output("s", "out", {"a": 1.0}, Metrics).metrics == {"a": 1.0}
    assert typed_io.wrap_output("s", "out", 3, int) == 3
    with pytest.raises(PipecastError, match="annotated Metrics but the step returned list"):
        typed_io.wrap_output("s", "out", [1.0], Metrics)
    with pytest.raises(PipecastError, match="metric 'a' is 'x'"):
        typed_io.wrap_output("s", "out", {"a": "x"}, Metrics)
    with pytest.raises(PipecastError, match="annotated Model but the step returned a Dataset"):
        typed_io.wrap_output("s", "out", Dataset(1), Model)


def test_the_ir_records_artifact_types_only_for_typed_outputs():
    typed = load_pipeline(str(ROOT / "tests/unit/typed_steps.py")).build()
    outputs = {s.name: {o.name: o.artifact for o in s.outputs} for s in typed.steps}
    assert outputs == {"prepare": {"output": "Dataset"},
                       "train": {"output": "Metrics", "model": "Model", "weights": "Artifact"},
                       "evaluate": {"output": "Metrics"}, "report": {"output": None}}
    assert [i.name for i in typed.step("train").inputs] == ["data"], "output parameters are not inputs"
    assert [(p.name, p.type.value, p.include_file) for p in typed.parameters] == \
        [("notes", "str", True), ("rows", "int", False)]
    assert '"artifact": "Model"' in typed.to_json()
    plain = load_pipeline(str(ROOT / "tests/unit/path_steps.py")).build()
    assert '"artifact"' not in plain.to_json(), "untyped pipelines keep their IR byte for byte"


BAD = '''\
from pipecast import Model, Output, OutputPath, pipeline, step


@step
def train(rows: int, model: Output[Model]) -> None:
    model.path.write_text("m")


@step
def export(weights: OutputPath = "x"):
    pass


@pipeline(name="bad")
def bad():
    train(rows=1, model="here")
    export()
'''


def test_misused_output_parameters_are_clear_errors_at_file_and_line(pipecast_home, tmp_path):
    (tmp_path / "bad_typed.py").write_text(BAD)
    shown = pipecast_cli(pipecast_home, "inspect", str(tmp_path / "bad_typed.py"))
    assert shown.returncode == 2, shown.stderr
    assert "Traceback" not in shown.stderr
    assert "bad_typed.py:16" in shown.stderr and "'model' is an output parameter of step 'train'" in shown.stderr
    assert "do not pass 'model'" in shown.stderr
    assert "bad_typed.py:17" in shown.stderr and "output parameter 'weights' has a default" in shown.stderr


def test_a_cache_hit_fetches_no_input(pipecast_home, tmp_path, monkeypatch):
    """The second run is served from the cache without downloading or reading a single input."""
    pipeline = load_pipeline(str(ROOT / "tests/unit/typed_steps.py")).build()
    root = str(tmp_path / "artifacts")
    (tmp_path / "notes.txt").write_text(NOTES)
    given = {"rows": 4, "notes": str(tmp_path / "notes.txt")}
    first = run_pipeline(pipeline, given, artifact_root=root, store=RunStore(str(tmp_path / "runs.db")))
    assert first.status == "succeeded"

    def refuse(*args, **kwargs):
        raise AssertionError("an input was fetched before the cache check")

    monkeypatch.setattr(typed_io, "fetch", refuse)
    monkeypatch.setattr(paths, "download", refuse)
    monkeypatch.setattr(include, "fetch", refuse)
    again = run_pipeline(pipeline, given, artifact_root=root, store=RunStore(str(tmp_path / "runs.db")))
    assert [s.status for s in again.steps.values()] == ["cached"] * 4
    model = again.step_outputs("train")["model"]
    assert isinstance(model, Model) and model.metadata == {"framework": "numpy"}
    assert json.loads((model.path / "config.json").read_text()) == {"rows": 4}


def _check_typed_run(record: dict, fs_cat) -> None:
    steps = {s["step"]: s["outputs"] for s in record["steps"]}
    data = steps["prepare"]["output"]
    assert (data["artifact"], data["type"], data["materializer"]) == ("Dataset", "numpy.ndarray", "numpy")
    assert data["metadata"] == {"rows": 3, "source": NOTES}
    model = steps["train"]["model"]
    assert (model["artifact"], model["type"], model["metadata"]) == ("Model", "directory", {"framework": "numpy"})
    assert json.loads(fs_cat(model["uri"] + "/config.json")) == {"rows": 3}
    weights = steps["train"]["weights"]
    assert (weights["artifact"], weights["type"], weights["size"]) == ("Artifact", "file", 1000)
    assert fs_cat(weights["uri"]) == b"w" * 1000
    assert steps["train"]["output"]["metrics"] == {"loss": 0.25, "rows": 3}
    assert steps["evaluate"]["output"] == {**steps["evaluate"]["output"], "artifact": "Metrics",
                                           "metrics": {"accuracy": 0.53, "train_loss": 0.25}}
    assert "artifact" not in steps["report"]["output"]
    assert json.loads(fs_cat(steps["report"]["output"]["uri"])) == "accuracy=0.53 rows=3"


NOTES = "notes from outside\n"


def _run(home: Path, root: str, notes: str, **env: str) -> dict:
    run = pipecast_cli(home, "run", "tests/unit/typed_steps.py", "-q", "--artifact-root", root, "-p", f"notes={notes}",
                       **env)
    assert run.returncode == 0, run.stderr
    shown = pipecast_cli(home, "runs", "show", run.stdout.strip().splitlines()[-1], **env)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_a_local_run_stores_and_shows_typed_artifacts(pipecast_home, tmp_path):
    root = f"file://{tmp_path / 'artifacts'}"
    (tmp_path / "notes.txt").write_text(NOTES)
    record = _run(pipecast_home, root, str(tmp_path / "notes.txt"))
    _check_typed_run(record, lambda uri: Path(urlparse(uri).path).read_bytes())
    stored = record["parameters"]["notes"]  # the IncludeFile, stored content-addressed before any step ran
    assert stored == f"{root}/typed/inputs/{hashlib.sha256(NOTES.encode()).hexdigest()}"
    assert Path(urlparse(stored).path, "outputs/content/notes.txt").read_text() == NOTES
    graph = RunStore(str(pipecast_home / "runs.db")).graph(record["id"])
    assert graph is not None
    assert {s["name"]: s.get("artifacts") for s in graph["steps"]} == {
        "prepare": {"output": "Dataset"}, "train": {"output": "Metrics", "model": "Model", "weights": "Artifact"},
        "evaluate": {"output": "Metrics"}, "report": None}
    # The same content from another path is the same input: every step from the cache.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "copy.txt").write_text(NOTES)
    again = _run(pipecast_home, root, str(tmp_path / "elsewhere" / "copy.txt"))
    assert [s["cached"] for s in again["steps"]] == [1, 1, 1, 1] and again["parameters"]["notes"] == stored
    _check_typed_run(again, lambda uri: Path(urlparse(uri).path).read_bytes())
    # Changed content re-runs the step that reads it (its hash is in the cache key); the rest gets equal inputs.
    (tmp_path / "notes.txt").write_text("other notes\n")
    changed = _run(pipecast_home, root, str(tmp_path / "notes.txt"))
    assert [s["cached"] for s in changed["steps"]] == [0, 1, 1, 1]
    assert changed["steps"][0]["outputs"]["output"]["metadata"]["source"] == "other notes\n"
    missing = pipecast_cli(pipecast_home, "run", "tests/unit/typed_steps.py", "-q", "--artifact-root", root,
                           "-p", "notes=no/such/file.txt")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr
    assert "parameter 'notes' (IncludeFile) names 'no/such/file.txt', which does not exist here" in missing.stderr


def test_typed_artifacts_pass_through_moto_s3(pipecast_home, moto_s3):
    fs = moto_s3.fs
    fs.mkdir("typed-bucket")
    fs.pipe_file("typed-bucket/outside/notes.txt", NOTES.encode())  # an IncludeFile given as a URI
    record = _run(pipecast_home, "s3://typed-bucket/artifacts", "s3://typed-bucket/outside/notes.txt", **moto_s3.env)
    _check_typed_run(record, fs.cat_file)
    digest = hashlib.sha256(NOTES.encode()).hexdigest()
    assert record["parameters"]["notes"] == f"s3://typed-bucket/artifacts/typed/inputs/{digest}"
    assert fs.cat_file(f"typed-bucket/artifacts/typed/inputs/{digest}/outputs/content/notes.txt") == NOTES.encode()
    metrics = load_outputs("s3://typed-bucket/artifacts", "typed", record["id"], "evaluate")["output"]
    assert isinstance(metrics, Metrics) and metrics["train_loss"] == 0.25
    assert metrics.uri == f"s3://typed-bucket/artifacts/typed/runs/{record['id']}/evaluate/outputs/output.json"


def test_an_unwritten_output_path_fails_the_step_saying_which(tmp_path):
    given = typed_io.prepare_outputs({"model": Model, "weights": None, "scores": Metrics}, tmp_path)
    assert isinstance(given["model"], Model) and given["weights"] == tmp_path / "weights" / "weights"
    given["weights"].write_text("w")
    with pytest.raises(PipecastError, match=r"step 's' did not write its output 'model'"):
        typed_io.collect_outputs("s", given)
    given["model"].path.mkdir()
    assert typed_io.collect_outputs("s", given)["scores"].metrics == {}



def test_a_directory_is_included_once_by_content_and_fetched_checked(tmp_path):
    """Two directories with equal files are one stored input; a copy is fetched and checked; no root: refused."""
    from pipecast.runtime.artifacts import ArtifactStore

    pipeline = load_pipeline(str(ROOT / "tests/unit/typed_steps.py")).build()
    for name in ("a", "b"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "x.csv").write_text("x\n1\n")
    root = str(tmp_path / "root")
    first = include.ingest(pipeline, {"notes": str(tmp_path / "a"), "rows": 1}, root)
    second = include.ingest(pipeline, {"notes": f"file://{tmp_path / 'b'}", "rows": 1}, root)
    assert first == second and first["rows"] == 1
    assert include.ingest(pipeline, first, root) == first, "a stored value is kept as it is"
    store = ArtifactStore(root)
    local = include.fetch(store, "typed", first["notes"], tmp_path / "got", "it")
    assert (local / "sub" / "x.csv").read_text() == "x\n1\n"
    sha = include.reference_sha(store, "typed", first["notes"])
    assert sha == include.content_hash(tmp_path / "a") and include.reference_sha(store, "typed", "/etc") is None
    with pytest.raises(ParameterError, match=r"this run has no artifact root"):
        include.ingest(pipeline, {"notes": str(tmp_path / "a")}, None)


def test_a_path_value_the_run_start_did_not_store_is_fetched_and_hashed_by_the_step(tmp_path):
    """A run the engine starts itself (a schedule) passes the IncludeFile's text as given: the step fetches it."""
    from pipecast.runtime.executor import StepInvocation, execute_step

    (tmp_path / "notes.txt").write_text(NOTES)
    root = str(tmp_path / "root")

    def prepare(notes: str, run_id: str):
        return execute_step(StepInvocation(function="tests.unit.typed_steps:prepare", pipeline="typed", step="prepare",
                                           run_id=run_id, artifact_root=root, values={"rows": 2, "notes": notes},
                                           outputs=("output",)))

    by_path = prepare(str(tmp_path / "notes.txt"), "r1")
    assert by_path.meta["outputs"]["output"]["metadata"] == {"rows": 2, "source": NOTES}
    by_uri = prepare(f"file://{tmp_path / 'notes.txt'}", "r2")  # another text, the same content: a cache hit
    assert by_uri.cached and by_uri.meta["cache_key"] == by_path.meta["cache_key"]
    (tmp_path / "notes.txt").write_text("changed\n")
    assert not prepare(str(tmp_path / "notes.txt"), "r3").cached
    with pytest.raises(ArtifactError, match=r"step 'prepare' input 'notes': 'data/gone.csv' does not exist where "
                                            r"the step runs; start the run with pipecast run or submit"):
        prepare("data/gone.csv", "r4")


def test_output_parameters_work_in_a_supervised_child_and_in_a_map(pipecast_home, tmp_path):
    """``fit`` has a timeout (each try in a child process) and is mapped; ``pick`` takes ``list[Model]``."""
    pipeline = load_pipeline(str(ROOT / "tests/unit/typed_flow_steps.py")).build()
    run = run_pipeline(pipeline, {}, artifact_root=str(tmp_path / "root"), store=RunStore(str(tmp_path / "r.db")))
    assert run.outputs == {"output": "model 3 seed=3"}
    fits = run.step_outputs("fit")
    assert [m.metadata for m in fits["model"]] == [{"seed": 1}, {"seed": 2}, {"seed": 3}]
    assert [(log.path / "a.txt").read_text() for log in fits["log"]] == ["x"] * 3
    assert [m["score"] for m in fits["output"]] == [0.1, 0.2, 0.3]


def test_runs_show_gives_an_engine_runs_artifact_types_from_its_graph():
    """A submitted run's store record has no artifact root; the graph recorded at submit has the types."""
    from pipecast.compiler.drawing import graph_record
    from pipecast.runs.artifacts import with_artifacts

    graph = graph_record(load_pipeline(str(ROOT / "tests/unit/typed_steps.py")).build())
    shown = with_artifacts({"id": "r", "pipeline": "typed", "metadata": {}, "steps": []}, graph)
    assert shown["artifacts"].startswith("not listed")
    assert shown["artifact_types"] == {"prepare": {"output": "Dataset"}, "evaluate": {"output": "Metrics"},
                                       "train": {"output": "Metrics", "model": "Model", "weights": "Artifact"}}
    plain = graph_record(load_pipeline(str(ROOT / "tests/unit/path_steps.py")).build())
    assert "artifacts" not in json.dumps(plain) and "artifact_types" not in with_artifacts(
        {"id": "r", "pipeline": "paths", "metadata": {}, "steps": []}, plain)


def test_submit_stores_an_include_file_before_the_engine_sees_the_run(echo_target, pipecast_home, tmp_path):  # noqa: F811
    """``submit_pipeline`` to a test target: the run is recorded with the stored URI, which the engine gets."""
    from dataclasses import replace

    from pipecast.flow import submit_pipeline

    (tmp_path / "notes.txt").write_text(NOTES)
    root = f"file://{tmp_path / 'root'}"
    built = replace(load_pipeline(str(ROOT / "tests/unit/typed_steps.py")).build(), artifact_root=root)
    handle = submit_pipeline(built, "echo", {"notes": str(tmp_path / "notes.txt")}, {},
                             {"base_url": "http://engine.example"})
    record = RunStore.default().get(handle.run_id)
    digest = hashlib.sha256(NOTES.encode()).hexdigest()
    assert record["parameters"] == {"notes": f"{root}/typed/inputs/{digest}", "rows": 3}
    assert Path(tmp_path, "root/typed/inputs", digest, "outputs/content/notes.txt").read_text() == NOTES
    shown = json.loads(pipecast_cli(pipecast_home, "runs", "show", handle.run_id).stdout)
    assert shown["artifact_types"]["train"] == {"output": "Metrics", "model": "Model", "weights": "Artifact"}
    with pytest.raises(ParameterError, match="this run has no artifact root"):
        submit_pipeline(replace(built, artifact_root=None), "echo", {"notes": str(tmp_path / "notes.txt")}, {},
                        {"base_url": "http://engine.example"})
