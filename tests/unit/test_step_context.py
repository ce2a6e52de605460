"""Step context, metadata logging and the typed materializers: units, then one real ``pipecast run``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

import pipecast
from pipecast.errors import ArtifactError, ContextError
from pipecast.runs.artifacts import with_artifacts
from pipecast.runtime import materializers
from pipecast.runtime.context import LOGICAL_TIME_VAR, logical_time_from_env
from tests.helpers.cases import ROOT

RUN_SECONDS = 600  # a whole local run with pandas imported in three processes, on a busy machine


def test_context_and_log_metadata_outside_a_step_are_clear_errors():
    with pytest.raises(ContextError, match=r"pipecast.context\(\) was called outside a running step"):
        pipecast.context()
    with pytest.raises(ContextError, match=r"log_metadata\(\) was called outside a running step"):
        pipecast.log_metadata(accuracy=0.9)


@pytest.mark.parametrize(("text", "expected"), [
    ("", None), ("None", None),
    ("2026-01-02T03:04:05+00:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2026-01-02T03:04:05.123456+02:00",
     datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))),
])
def test_logical_time_is_read_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv(LOGICAL_TIME_VAR, text)
    assert logical_time_from_env() == expected


def test_a_logical_time_that_is_not_iso_8601_is_refused(monkeypatch):
    monkeypatch.setenv(LOGICAL_TIME_VAR, "next monday")
    with pytest.raises(ContextError, match="not an ISO 8601 time"):
        logical_time_from_env()


@pytest.mark.parametrize("array", [
    np.arange(12, dtype="int32").reshape(3, 4), np.array([1.5, np.nan, -np.inf]), np.array(3.0),
    np.array(["a", "bé"]), np.zeros((0, 2), dtype="complex128"), np.asfortranarray(np.eye(3)),
    np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
])
def test_numpy_arrays_round_trip_as_npy(array):
    encoded = materializers.encode(array)
    assert encoded.materializer.name == "numpy" and encoded.pickle_reason is None
    assert encoded.data.startswith(b"\x93NUMPY")  # the .npy magic: any numpy reads it, no pickle inside
    back = encoded.materializer.loads(encoded.data)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()


def test_object_arrays_and_array_subclasses_go_to_pickle_and_say_so():
    encoded = materializers.encode(np.array([{"a": 1}, None], dtype=object))
    assert encoded.materializer.name == "pickle" and "no materializer is registered" in (encoded.pickle_reason or "")
    assert materializers.choose(np.ma.masked_array([1, 2], mask=[0, 1])).name == "pickle"


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "i": pd.array([1, None, 3], dtype="Int64"), "f": [0.5, np.nan, 2.0], "s": ["a", "ü", None],
        "t": pd.to_datetime(["2026-01-01", "2026-01-02", None]).tz_localize("UTC"),
        "c": pd.Categorical(["x", "y", "x"]), "b": [True, False, True],
    }, index=pd.Index(["r0", "r1", "r2"], name="id"))


def test_dataframes_round_trip_as_parquet():
    original = frame()
    encoded = materializers.encode(original)
    assert encoded.materializer.name == "pandas-parquet" and encoded.materializer.extension == ".parquet"
    assert encoded.data[:4] == b"PAR1" and encoded.data[-4:] == b"PAR1"
    pd.testing.assert_frame_equal(encoded.materializer.loads(encoded.data), original)
    import pyarrow.parquet as pq

    assert pq.read_table(io.BytesIO(encoded.data)).column_names == ["i", "f", "s", "t", "c", "b", "id"]


def test_dataframes_parquet_cannot_hold_go_to_pickle_with_the_reason():
    numbered = pd.DataFrame({0: [1], 1: [2]})
    encoded = materializers.encode(numbered)
    assert encoded.materializer.name == "pickle" and encoded.pickle_reason == "Parquet needs text column names"
    mixed = pd.DataFrame({"a": [1, "x", b"y"]})  # pyarrow refuses a column of mixed objects
    encoded = materializers.encode(mixed)
    assert encoded.materializer.name == "pickle"
    assert (encoded.pickle_reason or "").startswith("the pandas-parquet materializer could not store it (")
    pd.testing.assert_frame_equal(encoded.materializer.loads(encoded.data), mixed)


def test_without_pyarrow_dataframes_are_pickled_and_parquet_reads_name_it(monkeypatch):
    data = materializers.encode(frame()).data
    monkeypatch.setattr(materializers, "pyarrow_installed", lambda: False)
    encoded = materializers.encode(frame())
    assert encoded.materializer.name == "pickle"
    assert "pyarrow is not installed" in (encoded.pickle_reason or "") and "pip install pyarrow" in \
        (encoded.pickle_reason or "")
    with pytest.raises(ArtifactError, match="reading it needs pyarrow: python -m pip install pyarrow"):
        materializers.by_name("pandas-parquet").loads(data)


def test_a_materializer_registered_for_the_type_hint_comes_first():
    class Celsius(float):
        pass

    class Text(materializers.Materializer):
        extension = ".txt"

        def __init__(self, name: str) -> None:
            self.name = name

        def can_save(self, value):
            return True

        def dumps(self, value):
            return repr(float(value)).encode()

        def loads(self, data):
            return float(data)

    materializers.register_materializer(Text("celsius-text"), Celsius)
    materializers.register_materializer(Text("float-text"), float)  # newer: consulted first by value
    try:
        assert materializers.choose(Celsius(1.0)).name == "float-text"
        assert materializers.choose(Celsius(1.0), hint=Celsius).name == "celsius-text"
        assert materializers.choose(2.0, hint=Celsius).name == "float-text"  # a hint never forces a wrong type
    finally:
        for name in ("float-text", "celsius-text"):
            materializers._ORDER.pop(0)
            materializers._BY_NAME.pop(name)


def test_runs_show_says_why_it_lists_no_artifacts_without_an_artifact_root():
    shown = with_artifacts({"id": "r", "pipeline": "p", "metadata": {}, "steps": []})
    assert shown["artifacts"].startswith("not listed: the run store does not know this run's artifact root")


def pipecast_cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PIPECAST_HOME": str(home), "PYTHONPATH": str(ROOT), **env}
    environment.pop("PIPECAST_RUN_STORE", None)
    return subprocess.run([sys.executable, "-m", "pipecast.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=environment, timeout=RUN_SECONDS)


def test_a_local_run_gives_steps_their_context_records_metadata_and_stores_typed_outputs(pipecast_home):
    """One real ``pipecast run``: a retried step, a supervised child (timeout), numpy, Parquet and pickle."""
    logical = "2026-03-01T00:00:00+00:00"  # as an engine's emitted task passes it (see docs/step-context.md)
    run = pipecast_cli(pipecast_home, "run", "tests/unit/context_steps.py", "-p", "rows=3", "-p", "label=x y",
                       **{LOGICAL_TIME_VAR: logical})
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.strip().splitlines()[-1]
    assert ("pipecast: warning: step 'summarise' output 'output_1' (tests.unit.context_steps.Reading) is stored "
            "with pickle") in run.stderr + run.stdout
    shown = pipecast_cli(pipecast_home, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    steps = {s["step"]: s for s in record["steps"]}
    root = record["metadata"]["artifact_root"]
    step_uri = f"{root}/contextual/runs/{run_id}/make_frame"
    assert steps["make_frame"]["metadata"] == {"rows": 3, "try_seen": 2, "context": {
        "run_id": run_id, "pipeline": "contextual", "step": "make_frame", "attempt": 2,
        "parameters": {"rows": 3, "label": "x y"}, "logical_time": logical, "artifact_uri": step_uri,
        "logger": "pipecast.step.make_frame"}}
    # A supervised try runs in a child process: parameters (and only they) still reach its context.
    assert steps["features"]["metadata"] == {"attempt": 1, "parameters": {"scale": 0.5}}
    assert record["logged_metadata"] == {"label": "x y", "rows": 3, "features": 3}
    outputs = {(step, name): out for step, s in steps.items() for name, out in s["outputs"].items()}
    assert {key: (out["materializer"], out["type"]) for key, out in outputs.items()} == {
        ("make_frame", "output"): ("pandas-parquet", "pandas.DataFrame"),
        ("features", "output"): ("numpy", "numpy.ndarray"),
        ("summarise", "output_0"): ("pandas-parquet", "pandas.DataFrame"),
        ("summarise", "output_1"): ("pickle", "tests.unit.context_steps.Reading"),
    }
    for (step, name), out in outputs.items():
        data = Path(urlparse(out["uri"]).path).read_bytes()
        assert out["uri"].startswith(f"{root}/contextual/runs/{run_id}/{step}/outputs/{name}.")
        assert out["size"] == len(data) and out["sha256"] == hashlib.sha256(data).hexdigest()
    assert "warning" in outputs[("summarise", "output_1")] and "warning" not in outputs[("features", "output")]
    values = np.load(urlparse(outputs[("features", "output")]["uri"]).path, allow_pickle=False)
    np.testing.assert_array_equal(values, [0.0, 0.5, 1.0])
    table = pd.read_parquet(urlparse(outputs[("summarise", "output_0")]["uri"]).path)
    assert list(table.index) == ["r0", "r1", "r2"] and list(table["y"]) == [0.0, 0.5, 1.0]

    again = pipecast_cli(pipecast_home, "run", "tests/unit/context_steps.py", "-p", "rows=3", "-p", "label=x y")
    assert again.returncode == 0, again.stderr
    cached = json.loads(pipecast_cli(pipecast_home, "runs", "show", again.stdout.strip().splitlines()[-1]).stdout)
    # A cached step keeps the metadata and outputs of the try that made them. make_frame read its run id and
    # logical time, which differ now: it runs again, says why, and its same frame lets the next steps hit.
    again_id = cached["id"]
    remade = json.loads(Path(urlparse(f"{root}/contextual/runs/{again_id}/make_frame/meta.json").path).read_text())
    assert not remade["cached"] and remade["cache_miss"].startswith(
        f"the cached result of run '{run_id}' step 'make_frame' does not apply: it read ")
    assert remade["context_read"]["logical_time"] is None and remade["context_read"]["run_id"] == again_id
    for step in cached["steps"]:
        assert {n: o["sha256"] for n, o in step["outputs"].items()} == \
            {n: o["sha256"] for n, o in steps[step["step"]]["outputs"].items()}
        if step["step"] == "make_frame":
            assert step["cached"] == 0 and step["metadata"]["context"]["run_id"] == again_id
            continue
        assert step["cached"] == 1 and step["metadata"] == steps[step["step"]]["metadata"]
    assert cached["logged_metadata"] == record["logged_metadata"]


def test_metadata_must_be_json_and_names_the_step():
    from pipecast.runtime.context import new_context

    ctx = new_context(run_id="r", pipeline="p", step="train", attempt=1, parameters={}, logical_time=None,
                      artifact_uri="file:///a")
    ctx.log_metadata(ok=[1, "a", None], run=False)
    with pytest.raises(ContextError, match=r"step 'train': metadata 'model' is not JSON"):
        ctx.log_metadata(model=object())
    with pytest.raises(ContextError, match=r"metadata 'loss' is not JSON"):
        ctx.log_metadata(loss=float("nan"))
    assert ctx.metadata == {"ok": [1, "a", None]} and ctx.run_metadata == {}
