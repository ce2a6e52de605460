"""The object stores of replays: where replayed tasks of engines that share no disk keep their artifacts.

Two ways, one per kind of engine model. Kubernetes-based replays (Argo, Tekton) compile with the artifact root
:data:`REPLAY_STORE` and point each task's ``--artifact-root`` at one local folder (:func:`on_local_store`).
Airflow's pod replays run each pod's command exactly as written, so they get a real fsspec store instead:

Every pod has a disk of its own, so pipecast refuses a node-local artifact root for pods: on a cluster they
share an object store (``s3://``, ``gs://``...). The replay plays every pod on this machine, and this store plays
the object store: an fsspec filesystem under the protocol ``replay`` that keeps ``BUCKET/KEY`` under the folder
``$PIPECAST_REPLAY_STORE``. A pod's process gets it from ``pod_site/sitecustomize.py`` (on its PYTHONPATH), so
its command runs exactly as written, and so do the processes the runtime starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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


# The artifact root replays of pod-per-task engines compile with: an object store, as such an engine needs (a path
# on one node is refused at compile). No such bucket exists here, so the replay points each task's
# ``--artifact-root`` at one local directory every replayed task shares. That replaces a value pipecast wrote
# (which store), never a placeholder the engine would leave alone.
REPLAY_STORE = "s3://pipecast-replay/artifacts"


def on_local_store(argv: Sequence[str], root: Path) -> list[str]:
    """``argv`` with its ``--artifact-root`` :data:`REPLAY_STORE` pointed at the local directory ``root``."""
    result = list(argv)
    index = result.index("--artifact-root") + 1
    assert result[index] == REPLAY_STORE, f"the task's artifact root is {result[index]!r}, not the replay's store"
    result[index] = f"file://{root}"
    return result
