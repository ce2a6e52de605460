"""What the tests share, one module per topic; the layout every test folder follows.

- ``tests/helpers/<topic>.py``: used by more than one target or layer: the golden cases and compiling them
  (:mod:`.cases`), replay plumbing (:mod:`.replay`: running a task's command, comparing with ``pipecast run``,
  the replays' object stores), the fake Kubernetes API, side virtualenvs, process waits...
- ``tests/targets/<target>/``: ``test_*.py``; ``support.py`` (that target's own helpers: reading emitted files
  back, schemas, linters); ``replay.py`` (the engine's replayer, when it is more than a few functions);
  ``pipelines.py`` (pipelines compiled besides the golden cases); ``fake_<api>.py`` (a local server that
  answers as the engine's API does); ``<name>_venv.py`` (a side virtualenv of engine software) and
  ``in_<name>_<what>.py`` (a script run inside such an interpreter).
"""
