"""pipecast: compile plain-Python ML pipelines for workflow engines, submit, track, or run them here.

Importing pipecast imports no engine SDK.
"""

from __future__ import annotations

from typing import Any

from pipecast.dsl import Resources, Retry, Secret, pipeline, step

__all__ = ["Client", "Resources", "Retry", "Secret", "pipeline", "register_materializer", "step"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Loaded on first use so `import pipecast` stays small.
    if name == "Client":
        from pipecast.runs.client import Client

        return Client
    if name == "register_materializer":
        from pipecast.runtime.materializers import register_materializer

        return register_materializer
    raise AttributeError(f"module 'pipecast' has no attribute {name!r}")
