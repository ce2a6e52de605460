"""File and directory artifacts: streamed uploads and downloads with sha256, real local and moto S3 runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from urllib.parse import urlparse

import pytest

from pipecast.errors import ArtifactError
from pipecast.runtime import paths
from pipecast.runtime.artifacts import ArtifactStore
from tests.helpers.cases import ROOT

RUN_SECONDS = 600  # a whole local run on a busy machine


def test_a_directory_round_trips_with_its_manifest_and_a_tampered_file_is_refused(tmp_path):
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.bin").write_bytes(b"a" * 10)
    (source / "b.txt").write_text("bee")
    store = ArtifactStore(str(tmp_path / "root"))
    folder = store.step_dir("p", "r", "s")
    record = paths.upload(store, folder, "model", source, "s")
    assert record["kind"] == "directory" and record["size"] == 13
    assert record["manifest"] == {"b.txt": {"sha256": hashlib.sha256(b"bee").hexdigest(), "size": 3},
                                  "sub/a.bin": {"sha256": hashlib.sha256(b"a" * 10).hexdigest(), "size": 10}}
    assert record["sha256"] == paths.manifest_hash(record["manifest"])
    assert not [p for p in Path(folder, "outputs").iterdir() if ".tmp-" in p.name], "the temporary name is gone"
    local = paths.download(store, folder, record, tmp_path / "in", "it")
    assert (local / "sub" / "a.bin").read_bytes() == b"a" * 10 and (local / "b.txt").read_text() == "bee"
    assert paths.verify(store, folder, record)
    Path(folder, "outputs/model/b.txt").write_text("bed")
    assert not paths.verify(store, folder, record)
    with pytest.raises(ArtifactError, match=r"'b\.txt' no longer matches the sha256"):
        paths.download(store, folder, record, tmp_path / "again", "it")


def test_a_file_keeps_its_name_and_a_missing_path_is_one_clear_error(tmp_path):
    store = ArtifactStore(str(tmp_path / "root"))
    folder = store.step_dir("p", "r", "s")
    (tmp_path / "data.csv").write_text("x\n1\n")
    record = paths.upload(store, folder, "data", tmp_path / "data.csv", "s")
    assert record["file"] == "outputs/data/data.csv" and record["sha256"] == hashlib.sha256(b"x\n1\n").hexdigest()
    assert paths.download(store, folder, record, tmp_path / "in", "it") == tmp_path / "in" / "data.csv"
    hostile = {**record, "kind": "directory", "manifest": {"../escape": record["manifest"]["data.csv"]}}
    with pytest.raises(ArtifactError, match="leaves"):
        paths.download(store, folder, hostile, tmp_path / "in2", "it")
    assert not (tmp_path / "escape").exists()
    with pytest.raises(ArtifactError, match=r"step 's' returned path .* for output 'gone', but nothing is there"):
        paths.upload(store, folder, "gone", tmp_path / "nope", "s")


def test_a_large_file_streams_in_bounded_memory(tmp_path):
    """64 MiB through upload and download: Python allocations stay near one chunk, never the file's size."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(64):
            handle.write(os.urandom(1 << 20))
    store = ArtifactStore(str(tmp_path / "root"))
    folder = store.step_dir("p", "r", "s")
    tracemalloc.start()
    try:
        record = paths.upload(store, folder, "big", big, "s")
        local = paths.download(store, folder, record, tmp_path / "in", "it")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert local.stat().st_size == 64 << 20 and record["size"] == 64 << 20
    assert peak < 3 * paths.CHUNK, f"peak {peak} bytes: the file was read whole"


def pipecast_cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PIPECAST_HOME": str(home), "PYTHONPATH": str(ROOT), **env}
    environment.pop("PIPECAST_RUN_STORE", None)
    return subprocess.run([sys.executable, "-m", "pipecast.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=environment, timeout=RUN_SECONDS)


def run_and_show(home: Path, root: str, **env: str) -> dict:
    run = pipecast_cli(home, "run", "tests/unit/path_steps.py", "-q", "--artifact-root", root, **env)
    assert run.returncode == 0, run.stderr
    shown = pipecast_cli(home, "runs", "show", run.stdout.strip().splitlines()[-1], **env)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_a_local_run_passes_a_directory_and_a_file_and_the_cache_keys_on_their_content(pipecast_home, tmp_path):
    root = f"file://{tmp_path / 'artifacts'}"
    record = run_and_show(pipecast_home, root)
    steps = {s["step"]: s for s in record["steps"]}
    model, report = steps["write_model"]["outputs"]["output"], steps["evaluate"]["outputs"]["output"]
    assert (model["type"], model["materializer"], model["size"]) == ("directory", "path", 256 * 4 + 13)
    assert report["type"] == "file" and report["uri"].endswith("/evaluate/outputs/output/report.csv")
    text = Path(urlparse(report["uri"]).path).read_bytes()
    assert report["sha256"] == hashlib.sha256(text).hexdigest() and report["size"] == len(text)
    assert text.decode() == 'bytes,1024\nconfig,{"layers": 2}\n'
    store = ArtifactStore(root)
    folder = store.step_dir("paths", record["id"], "summarise")
    assert store.read_json(f"{folder}/outputs/output.json") == "report.csv:bytes,1024"

    again = run_and_show(pipecast_home, root)  # every step from the cache, the path outputs copied and checked
    assert [s["cached"] for s in again["steps"]] == [1, 1, 1]
    assert {s["step"]: s["outputs"]["output"]["sha256"] for s in again["steps"]} == \
        {s["step"]: s["outputs"]["output"]["sha256"] for s in record["steps"]}
    moved = Path(urlparse(again["steps"][0]["outputs"]["output"]["uri"]).path)
    assert (moved / "weights" / "w.bin").read_bytes() == bytes(range(256)) * 4

    # The same model written again changes nothing downstream; a changed model re-runs what reads it.
    changed = pipecast_cli(pipecast_home, "run", "tests/unit/path_steps.py", "-q", "--artifact-root", root,
                           "-p", "size=5")
    assert changed.returncode == 0, changed.stderr
    shown = json.loads(pipecast_cli(pipecast_home, "runs", "show", changed.stdout.strip().splitlines()[-1]).stdout)
    assert [s["cached"] for s in shown["steps"]] == [0, 0, 0]


def test_paths_pass_through_moto_s3(pipecast_home, moto_s3):
    fs = moto_s3.fs
    fs.mkdir("paths-bucket")
    record = run_and_show(pipecast_home, "s3://paths-bucket/artifacts", **moto_s3.env)
    steps = {s["step"]: s for s in record["steps"]}
    model = steps["write_model"]["outputs"]["output"]
    assert model["uri"] == f"s3://paths-bucket/artifacts/paths/runs/{record['id']}/write_model/outputs/output"
    assert fs.cat_file(model["uri"] + "/weights/w.bin") == bytes(range(256)) * 4
    report = steps["evaluate"]["outputs"]["output"]
    assert hashlib.sha256(fs.cat_file(report["uri"])).hexdigest() == report["sha256"]
    from pipecast.runtime.executor import load_outputs

    assert load_outputs("s3://paths-bucket/artifacts", "paths", record["id"], "summarise") == \
        {"output": "report.csv:bytes,1024"}
    fetched = load_outputs("s3://paths-bucket/artifacts", "paths", record["id"], "write_model")["output"]
    assert (fetched / "config.json").read_text() == '{"layers": 2}'
