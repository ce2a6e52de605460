"""A step served from pipecast's cache has its outputs under its own listed URI, copied inside S3 and checked.

SageMaker lists a processing step's typed outputs at ``<root>/<pipeline>/runs/<execution id>/<step>/outputs/<name>``
(test_typed_outputs.py), and a new execution has a new execution id: a cache hit must put the outputs there. The
runtime copies each stored file with CopyObject and ``ChecksumAlgorithm=SHA256`` and compares S3's SHA-256 of the
copy with the recorded one (pipecast/runtime/cache_copy.py). Against moto's S3 server (moto 5 computes that
checksum on copy, ``s3/responses.py``): the second execution downloads no output and finds every output at its
own URI with its recorded hash; a source changed since it was recorded makes the step run again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from pipecast.runtime import cache_copy
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import StepInvocation, Upstream, execute_step, load_outputs

ROOT = "s3://cache-copy/artifacts"
OTHER = "s3://cache-copy/other"  # a cache of its own
PIPELINE = "typed_outputs"
SOURCE = "tests.targets.kfp.typed_cases"


@pytest.fixture
def s3(moto_s3) -> Iterator[object]:
    fs = moto_s3.fs
    if not fs.exists("cache-copy"):
        fs.mkdir("cache-copy")
    yield fs


def run(run_id: str, root: str = ROOT) -> dict[str, bool]:
    """The typed pipeline's first two steps (a Dataset; a model folder and Metrics) in run ``run_id``."""
    prepare = execute_step(StepInvocation(f"{SOURCE}:prepare", PIPELINE, "prepare", run_id, root, values={"rows": 3},
                                          outputs=("table", "count")))
    train = execute_step(StepInvocation(f"{SOURCE}:train", PIPELINE, "train", run_id, root,
                                        upstream={"table": Upstream("prepare", "table")},
                                        outputs=("output", "model", "scores")))
    return {"prepare": prepare.cached, "train": train.cached}


def stored(fs, run_id: str, root: str = ROOT) -> dict[str, str]:
    """The sha256 of every object under the run's step folders' outputs, by path in the run."""
    base = f"{root.removeprefix('s3://')}/{PIPELINE}/runs/{run_id}/"
    return {path.removeprefix(base): hashlib.sha256(fs.cat_file(path)).hexdigest()
            for path in fs.find(base) if "/outputs/" in path}


def recorded(run_id: str, root: str = ROOT) -> dict[str, str]:
    """The sha256 the runtime recorded for every output file of the run, by path in the run."""
    store = ArtifactStore(root)
    found = {}
    for step in ("prepare", "train"):
        folder = store.step_dir(PIPELINE, run_id, step)
        records = store.read_json(f"{folder}/meta.json")["outputs"]
        for source, destination, sha256, _size in cache_copy.files(store, folder, folder, records):
            assert source == destination
            found[destination.split(f"/runs/{run_id}/", 1)[1]] = sha256
    return found


def test_a_cache_hit_copies_each_output_inside_s3_to_its_own_uri_checked_by_s3s_sha256(s3, monkeypatch):
    import s3fs

    assert run("execution01") == {"prepare": False, "train": False}
    assert cache_copy.server_side(ArtifactStore(ROOT))
    copies: list[dict] = []
    real_call = s3fs.S3FileSystem.call_s3

    def no_download(name):
        real = getattr(s3fs.S3FileSystem, name)

        def guarded(self, path, *args, **kwargs):
            assert "/outputs/" not in str(path), f"the cache hit downloaded {path!r}"
            return real(self, path, *args, **kwargs)
        return guarded

    def recording(self, method, *args, **kwargs):
        if method == "copy_object":
            copies.append(kwargs)
        return real_call(self, method, *args, **kwargs)

    with monkeypatch.context() as patch:
        for name in ("_cat_file", "_open", "_get_file", "cat_file", "open", "get_file"):
            patch.setattr(s3fs.S3FileSystem, name, no_download(name))
        patch.setattr(s3fs.S3FileSystem, "call_s3", recording)
        assert run("execution02") == {"prepare": True, "train": True}
    assert len(copies) == 5 and all(c["ChecksumAlgorithm"] == "SHA256" for c in copies)  # 4 values, 1 model file
    assert stored(s3, "execution02") == recorded("execution02") == stored(s3, "execution01")
    assert set(recorded("execution02")) == {"prepare/outputs/table.json", "prepare/outputs/count.json",
                                            "train/outputs/output.json", "train/outputs/scores.json",
                                            "train/outputs/model/config.json"}
    model = load_outputs(ROOT, PIPELINE, "execution02", "train", names={"model"})["model"]
    assert model.uri.endswith("/runs/execution02/train/outputs/model")
    assert (model.path / "config.json").read_text() == '{"rows": 3}'


def test_a_store_without_checksums_reads_the_copy_back_and_a_changed_source_is_a_miss(s3, monkeypatch):
    import s3fs

    assert run("execution11", OTHER) == {"prepare": False, "train": False}
    real_call = s3fs.S3FileSystem.call_s3

    def without_checksum(self, method, *args, **kwargs):
        answer = real_call(self, method, *args, **kwargs)
        if method == "copy_object":
            answer = {**answer, "CopyObjectResult": {"ETag": answer["CopyObjectResult"]["ETag"]}}
        return answer

    with monkeypatch.context() as patch:  # an S3-compatible store that returns no checksum: the copy is read back
        patch.setattr(s3fs.S3FileSystem, "call_s3", without_checksum)
        assert run("execution12", OTHER) == {"prepare": True, "train": True}
    assert stored(s3, "execution12", OTHER) == recorded("execution12", OTHER) == stored(s3, "execution11", OTHER)
    # The recorded model file changes behind pipecast's back: the copy's checksum differs, so the step runs again
    # and the new run's folder holds exactly what that run recorded.
    s3.pipe_file(f"cache-copy/other/{PIPELINE}/runs/execution12/train/outputs/model/config.json", b"{}")
    s3.pipe_file(f"cache-copy/other/{PIPELINE}/runs/execution11/train/outputs/model/config.json", b"{}")
    assert run("execution13", OTHER) == {"prepare": True, "train": False}
    assert stored(s3, "execution13", OTHER) == recorded("execution13", OTHER) == stored(s3, "execution11", OTHER) | {
        "train/outputs/model/config.json": hashlib.sha256(b'{"rows": 3}').hexdigest()}
    store = ArtifactStore(OTHER)
    source = store.step_dir(PIPELINE, "execution11", "train")
    elsewhere = store.step_dir(PIPELINE, "execution14", "train")
    assert not cache_copy.copy_verified(store, source, elsewhere, store.read_json(f"{source}/meta.json")["outputs"])
    assert s3.find(elsewhere) == []  # what a failed check copied is removed
