"""Python's start-up hook in replayed pods: registers the ``replay://`` object store (``../store.py``)."""

import os

if os.environ.get("PIPECAST_REPLAY_STORE"):
    import fsspec

    fsspec.register_implementation("replay", "tests.helpers.replay.store.ReplayStore")
