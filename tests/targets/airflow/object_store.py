"""The object store of replayed pods: ``replay://BUCKET/KEY``, kept in a folder of this machine.

Every pod has a disk of its own, so pipecast refuses a node-local artifact root for pods: on a cluster they
share an object store (``s3://``, ``gs://``...). The replay plays every pod on this machine, and this store plays
the object store: an fsspec filesystem under the protocol ``replay`` that keeps ``BUCKET/KEY`` under the folder
``$PIPECAST_REPLAY_STORE``. A pod's process gets it from ``pod_site/sitecustomize.py`` (on its PYTHONPATH), so
its command runs exactly as written, and so do the processes the runtime starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

STORE_VAR = "PIPECAST_REPLAY_STORE"
SITE = Path(__file__).resolve().parent / "pod_site"


class ReplayStore(DirFileSystem):
    """``replay://BUCKET/KEY`` as ``$PIPECAST_REPLAY_STORE/BUCKET/KEY``: an object store nobody else can see."""

    protocol = "replay"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(path=os.environ[STORE_VAR], fs=LocalFileSystem(auto_mkdir=True), **kwargs)


def pod_env(store: Path, pythonpath: str) -> dict[str, str]:
    """What a replayed pod's process needs to reach the store (besides the pod's own environment)."""
    return {STORE_VAR: str(store), "PYTHONPATH": os.pathsep.join([str(SITE), pythonpath])}
