"""A cache hit's outputs copied into the new step folder inside S3, each copy checked by S3's own SHA-256.

A step served from the cache gets its outputs under its own folder of the run (``<run>/<step>/outputs/...``), where
the engines list them (SageMaker's processing outputs, KFP's artifacts, ``pipecast runs show``). On S3 each stored
file is copied with ``CopyObject`` and ``ChecksumAlgorithm=SHA256``: S3 computes the SHA-256 of the new object and
returns it (``CopyObjectResult.ChecksumSHA256``, a full-object checksum: CopyObject writes a single-part object),
so the copy is checked against the recorded sha256 without a byte leaving S3. Where the answer carries no checksum
(an S3-compatible store without it) the copy is read back and hashed; an object over CopyObject's 5 GiB is streamed
through this process and hashed on the way. Any mismatch removes what was copied and the hit becomes a miss.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from pipecast.runtime import paths
from pipecast.runtime.artifacts import ArtifactStore

MAX_COPY_OBJECT = 5 << 30  # CopyObject copies objects up to 5 GiB in one request (S3 API reference)


def server_side(store: ArtifactStore) -> bool:
    """Whether the store copies inside itself with a checksum (S3 through s3fs)."""
    protocol = getattr(store.fs, "protocol", None)
    return hasattr(store.fs, "call_s3") and protocol in ("s3", ("s3", "s3a"), ("s3a", "s3"))


def files(store: ArtifactStore, source_dir: str, step_dir: str,
          records: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[str, str, str, int]]:
    """(source, destination, sha256, size) of every stored file of the outputs ``records``."""
    for record in records.values():
        if record.get("materializer") == paths.MATERIALIZER:
            base = f"outputs/{record['file'].split('/')[1]}"
            for rel, entry in sorted(record["manifest"].items()):
                yield (store.file_in(store.file_in(source_dir, base), rel),
                       store.file_in(store.file_in(step_dir, base), rel), entry["sha256"], int(entry["size"]))
        else:
            yield (store.file_in(source_dir, record["file"]), store.file_in(step_dir, record["file"]),
                   record["sha256"], int(record["size"]))


def copy_verified(store: ArtifactStore, source_dir: str, step_dir: str,
                  records: Mapping[str, Mapping[str, Any]]) -> bool:
    """Copy every output file into ``step_dir``; False (and nothing left behind) if one does not match its hash."""
    copied: list[str] = []
    try:
        for source, destination, sha256, size in files(store, source_dir, step_dir, records):
            copied.append(destination)
            if not _copy(store, source, destination, sha256, size):
                raise ValueError(f"{destination!r} does not match its recorded sha256")
    except (OSError, ValueError, KeyError):  # a missing or changed source: a cache miss, never a failure
        for destination in copied:
            try:
                store.fs.rm_file(destination)
            except OSError:
                pass
        return False
    return True


def _copy(store: ArtifactStore, source: str, destination: str, sha256: str, size: int) -> bool:
    if size > MAX_COPY_OBJECT:
        with store.fs.open(source, "rb") as reader, store.fs.open(destination, "wb") as writer:
            digest, _size = paths.stream(reader, writer)
        return digest == sha256
    source_bucket, source_key, _version = store.fs.split_path(source)
    bucket, key, _version = store.fs.split_path(destination)
    answer = store.fs.call_s3("copy_object", Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256",
                              CopySource={"Bucket": source_bucket, "Key": source_key})
    store.fs.invalidate_cache(destination)
    checksum = (answer.get("CopyObjectResult") or {}).get("ChecksumSHA256")
    if checksum:
        return base64.b64decode(checksum).hex() == sha256
    check = hashlib.sha256()
    with store.fs.open(destination, "rb") as reader:
        for chunk in iter(lambda: reader.read(paths.CHUNK), b""):
            check.update(chunk)
    return check.hexdigest() == sha256
