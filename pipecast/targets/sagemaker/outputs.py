"""Typed artifacts as processing-job outputs, so SageMaker Studio lists what a step produced, with its S3 URI.

A step that returns a :mod:`typed artifact <pipecast.typed_artifacts>` (``Dataset``, ``Model``, ``Metrics``,
``Artifact``) gets one ``ProcessingOutput`` per typed output in its job's ``ProcessingOutputConfig``: the
``OutputName`` is the output's name and the ``S3Uri`` is where pipecast's runtime writes it, in the step's folder
of the run (the execution id joined in with ``Std:Join``)::

    <artifact root>/<pipeline>/runs/<execution id>/<step>/outputs/<name>

The stored object is ``<name>.<ext>`` (the materializer's extension) or the folder ``<name>/`` (a path), so the
URI is the key prefix of both. A step served from pipecast's cache has its outputs there too: the runtime copies
them from the run that made them, inside S3, each copy checked against the recorded sha256
(:mod:`pipecast.runtime.cache_copy`); its ``meta.json`` names that run (``cached_from``).

pipecast's runtime writes the output itself, as everywhere else. SageMaker, with ``S3UploadMode: EndOfJob``,
uploads "the contents" of the output's ``LocalPath`` directory to ``S3Uri`` when the job ends (CreateProcessingJob,
``ProcessingS3Output``; the directory "will be created by the platform"). pipecast writes nothing into that
directory, so SageMaker uploads nothing and never touches the runtime's files: the output is a listing, not a
second copy. (``AppManaged``, the API's flag for outputs the application uploads itself, is not in AWS's pipeline
definition schema, so it is not used.)

A job takes at most 10 (botocore's ``ProcessingOutputs``), and the URI must be ``s3://``: otherwise the outputs are
stored as usual and the compile warns that Studio does not list them.

A training job has no processing outputs: SageMaker uploads two fixed folders when it ends (CreateTrainingJob,
``OutputDataConfig``; "How Amazon SageMaker Processes Training Output"): ``/opt/ml/model`` as ``model.tar.gz``,
which DescribeTrainingJob reports as ``ModelArtifacts.S3ModelArtifacts`` (the model a ``ModelStep`` or the model
registry takes), and ``/opt/ml/output/data`` as ``output.tar.gz`` beside it, both under
``S3OutputPath/<job name>/output/``. So a training step's first ``Model`` output is copied into
``/opt/ml/model`` and each other typed output into ``/opt/ml/output/data/<name>/`` by the runtime
(:mod:`pipecast.runtime.publish_sagemaker`) after the step succeeds or comes from the cache. The stored output in
the artifact store stays the one pipecast's runtime and downstream steps read; the archives are SageMaker's copy.
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


def training_arguments(step: ir.Step) -> tuple[list[str], list[str]]:
    """The runtime's options putting a training step's typed outputs where SageMaker uploads them, and its extra Models.

    Only the first ``Model`` can be the job's model (``/opt/ml/model`` is one archive); the others go to output data.
    """
    typed = typed_outputs(step)
    models = [output.name for output in typed if output.artifact == "Model"]
    argv = ["--sagemaker-model", models[0]] if models else []
    for output in typed:
        if not models or output.name != models[0]:
            argv += ["--sagemaker-output-data", output.name]
    return argv, models[1:]


def extra_models(step: ir.Step, names: list[str]) -> Problem:
    """The compile's warning for a training step with more than one ``Model`` output."""
    return Problem(f"a SageMaker training job has one model (/opt/ml/model, its ModelArtifacts); Model output(s) "
                   f"{', '.join(map(repr, names))} go to its output data (/opt/ml/output/data, output.tar.gz) instead",
                   step=step.name, location=str(step.location),
                   fix="return one Model per training step, or split the step", severity=Severity.WARNING,
                   target="sagemaker")


def unlisted(step: ir.Step, why: str) -> Problem:
    """The compile's warning for a step whose typed outputs SageMaker Studio does not list."""
    return Problem(f"SageMaker Studio does not list this step's typed outputs: {why}", step=step.name,
                   location=str(step.location), fix="the outputs are stored as usual (pipecast runs show lists them)",
                   severity=Severity.WARNING, target="sagemaker")
