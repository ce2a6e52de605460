"""pipecast: compile plain-Python ML pipelines for workflow engines, submit, track, or run them here.

Importing pipecast imports no engine SDK; names load on first use so the CLI starts fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipecast.control import Elif, Else, ExitHandler, If, OneOf, ParallelFor, Product, Zip, is_in, not_in
    from pipecast.dsl import Resources, Retry, Secret, pipeline, step
    from pipecast.runs.client import Client
    from pipecast.runtime.context import StepContext, context, log_metadata
    from pipecast.runtime.materializers import Materializer, register_materializer
    from pipecast.runtime.paths import InputPath, OutputPath
    from pipecast.typed_artifacts import Artifact, Dataset, IncludeFile, Input, Metrics, Model, Output

__all__ = ["Artifact", "Client", "Dataset", "Elif", "Else", "ExitHandler", "If", "IncludeFile", "Input", "InputPath",
           "Materializer", "Metrics", "Model", "OneOf", "Output", "OutputPath", "ParallelFor", "Product",
           "Resources", "Retry", "Secret", "StepContext", "Zip", "context", "is_in", "log_metadata",
           "not_in", "pipeline", "register_materializer", "step"]
__version__ = "0.1.0"

_HOMES = {
    "Resources": "pipecast.dsl", "Retry": "pipecast.dsl", "Secret": "pipecast.dsl", "pipeline": "pipecast.dsl",
    "step": "pipecast.dsl", "Client": "pipecast.runs.client", "Materializer": "pipecast.runtime.materializers",
    "register_materializer": "pipecast.runtime.materializers", "StepContext": "pipecast.runtime.context",
    "context": "pipecast.runtime.context", "log_metadata": "pipecast.runtime.context",
    "InputPath": "pipecast.runtime.paths", "OutputPath": "pipecast.runtime.paths",
    **dict.fromkeys(("Artifact", "Dataset", "IncludeFile", "Input", "Metrics", "Model", "Output"),
                    "pipecast.typed_artifacts"),
    **dict.fromkeys(("Elif", "Else", "ExitHandler", "If", "OneOf", "ParallelFor", "Product", "Zip", "is_in",
                     "not_in"), "pipecast.control"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pipecast' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
