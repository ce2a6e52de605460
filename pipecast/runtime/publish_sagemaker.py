"""SageMaker Pipelines: publish a step's decision values in a property file, for ``Std:JsonGet`` conditions.

A ``ConditionStep`` reads a step's values through a *property file*: a JSON file the processing job writes
under one of its ``ProcessingOutputConfig`` outputs, declared in the step's ``PropertyFiles``
(``PropertyFileName``, ``OutputName``, ``FilePath``) and read with
``{"Std:JsonGet": {"PropertyFile": {"Get": "Steps.STEP.PropertyFiles.NAME"}, "Path": "OUTPUT"}}`` (AWS, "Property
Files and JsonGet", docs.aws.amazon.com/sagemaker/latest/dg/build-and-manage-propertyfile.html; the sagemaker SDK's
``PropertyFile`` and ``JsonGet``). AWS documents no size limit for a property file; the values here are scalars.
SageMaker uploads the output folder when the job ends (``S3UploadMode: EndOfJob``) and reads the file then.

After the step succeeds (or came from the cache) the runtime writes ``{"OUTPUT": value, ...}`` to the path
given by ``--sagemaker-property-file``, one key per ``--sagemaker-publish OUTPUT``. Only scalars are written:
a condition compares numbers, booleans or text, and a value of another type fails the step here, saying so,
instead of reaching a condition SageMaker would evaluate differently from ``pipecast run``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from pipecast.errors import PipecastError
from pipecast.runtime.executor import StepInvocation, load_outputs


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The runtime's ``--sagemaker-property-file`` / ``--sagemaker-publish`` options."""
    run.add_argument("--sagemaker-property-file", default=None)
    run.add_argument("--sagemaker-publish", action="append", default=[])


def property_file(values: dict[str, Any]) -> str:
    """The property file's JSON text: each decision value under its output's name (scalars only)."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise PipecastError(f"output {name!r} is {value!r}; a SageMaker condition reads it from a JSON "
                                "property file, which holds no NaN or infinity")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise PipecastError(f"output {name!r} is {type(value).__name__} {value!r:.80}; a SageMaker condition "
                                "reads it, and compares only numbers, booleans and text")
        if value is None:
            raise PipecastError(f"output {name!r} is None; a SageMaker condition reads it, and has no null to "
                                "compare with")
    return json.dumps(values, sort_keys=True, ensure_ascii=False, allow_nan=False)


def publish(invocation: StepInvocation, path: str | None, names: Sequence[str]) -> None:
    """Write the step's outputs ``names`` to the property file at ``path`` (after the step succeeded)."""
    if not path or not names:
        return
    values = load_outputs(invocation.artifact_root, invocation.pipeline, invocation.run_id, invocation.step,
                          list(dict.fromkeys(names)))
    text = property_file(values)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
