"""Typed artifacts as processing-job outputs, so SageMaker Studio lists what a step produced, with its S3 URI.

A step that returns a :mod:`typed artifact <pipecast.typed_artifacts>` (``Dataset``, ``Model``, ``Metrics``,
``Artifact``) gets one ``ProcessingOutput`` per typed output in its job's ``ProcessingOutputConfig``: the
``OutputName`` is the output's name and the ``S3Uri`` is where pipecast's runtime writes it, in the step's folder
of the run (the execution id joined in with ``Std:Join``)::

    <artifact root>/<pipeline>/runs/<execution id>/<step>/outputs/<name>

The stored object is ``<name>.<ext>`` (the materializer's extension) or the folder ``<name>/`` (a path), so the
URI is the key prefix of both. A step served from pipecast's cache writes no output there: its ``meta.json`` in
the step folder names the run that holds them (``cached_from``).

pipecast's runtime writes the output itself, as everywhere else. SageMaker, with ``S3UploadMode: EndOfJob``,
uploads "the contents" of the output's ``LocalPath`` directory to ``S3Uri`` when the job ends (CreateProcessingJob,
``ProcessingS3Output``; the directory "will be created by the platform"). pipecast writes nothing into that
directory, so SageMaker uploads nothing and never touches the runtime's files: the output is a listing, not a
second copy. (``AppManaged``, the API's flag for outputs the application uploads itself, is not in AWS's pipeline
definition schema, so it is not used.)

Only processing jobs have such outputs (a training job has one ``OutputDataConfig`` for ``/opt/ml/model``), a
job takes at most 10 (botocore's ``ProcessingOutputs``), and the URI must be ``s3://``: otherwise the outputs are
stored as usual and the compile warns that Studio does not list them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import Problem, Severity
from pipecast.runtime.artifacts import safe_segment
from pipecast.targets.sagemaker import expressions
from pipecast.targets.sagemaker.flow import PROPERTY_FILE

MAX_OUTPUTS = 10  # botocore's SageMaker model: ProcessingOutputs has at most 10 items
MAX_S3_URI = 1024  # botocore's S3Uri
LOCAL_PATH = "/opt/ml/processing/pipecast-artifacts"  # + "/<index>": left empty, so SageMaker uploads nothing


def typed_outputs(step: ir.Step) -> list[ir.OutputSpec]:
    """The step's outputs that are typed artifacts, in their order."""
    return [output for output in step.outputs if output.artifact]


def artifact_outputs(pipeline: ir.Pipeline, step: ir.Step, root: str, parameter_names: Mapping[str, str],
                     taken: int) -> tuple[list[dict[str, Any]], str | None]:
    """The ``ProcessingOutput`` items of ``step``'s typed outputs, and why they are left out (or None).

    ``taken``: how many outputs the job already has (the property file's).
    """
    typed = typed_outputs(step)
    if not typed:
        return [], None
    if not root.startswith("s3://"):
        return [], f"the artifact root {root!r} is not in S3, and a processing output's S3Uri must be"
    if taken + len(typed) > MAX_OUTPUTS:
        return [], (f"the step has {len(typed)} typed outputs and a SageMaker processing job lists at most "
                    f"{MAX_OUTPUTS - taken} more")
    if taken and any(output.name == PROPERTY_FILE for output in typed):
        return [], f"its output {PROPERTY_FILE!r} has the name of the processing output of its property file"
    items = []
    for index, output in enumerate(typed):
        folder = (f"{root.rstrip('/')}/{safe_segment(pipeline.name)}/runs/{expressions.RUN_ID_PLACEHOLDER}/"
                  f"{step.name}/outputs/{output.name}")
        nominal = folder.replace(expressions.RUN_ID_PLACEHOLDER, "x" * 12)
        if len(nominal) > MAX_S3_URI:
            return [], (f"the S3 URI of output {output.name!r} is {len(nominal)} characters; SageMaker takes "
                        f"{MAX_S3_URI}")
        items.append({"OutputName": output.name, "S3Output": {
            "S3Uri": expressions.to_expression(folder, parameter_names),
            "LocalPath": f"{LOCAL_PATH}/{index}", "S3UploadMode": "EndOfJob"}})
    return items, None


def unlisted(step: ir.Step, why: str) -> Problem:
    """The compile's warning for a step whose typed outputs SageMaker Studio does not list."""
    return Problem(f"SageMaker Studio does not list this step's typed outputs: {why}", step=step.name,
                   location=str(step.location), fix="the outputs are stored as usual (pipecast runs show lists them)",
                   severity=Severity.WARNING, target="sagemaker")
