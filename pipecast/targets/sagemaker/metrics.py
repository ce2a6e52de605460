"""A training step's metrics as the job's metrics: one ``MetricDefinition`` per declared name (issue 17).

SageMaker reads a training job's metrics from its log: ``AlgorithmSpecification.MetricDefinitions`` lists
``{"Name", "Regex"}`` pairs, and SageMaker searches the job's stdout/stderr with each regex and records the
value of its first capture group as the metric, which Studio and CloudWatch (``/aws/sagemaker/TrainingJobs``)
show ("Define training metrics", docs.aws.amazon.com/sagemaker/latest/dg/training-metrics.html; botocore's
``MetricDefinition``). So the names must be known at compile time: a training step declares them with
``settings={"sagemaker": {"metrics": ["accuracy", "loss"]}}`` (or ``--set 'metrics=[...]'``), and its runtime
command gets ``--sagemaker-metric NAME`` for each (:func:`pipecast.runtime.publish_sagemaker.print_metrics`
prints ``pipecast-metric NAME=VALUE``, the line each regex matches).

Names are SageMaker's ``MetricName`` (1 to 255 characters) in a subset that reads the same in every regex
flavour once ``.`` is escaped: ASCII letters, digits and ``_ . : / -``. No space or ``=`` can be in a name, so
no other name's line, and no warning line of the runtime, can contain ``pipecast-metric NAME=``. A job takes at
most 40 definitions (botocore's ``MetricDefinitionList``), each regex at most 500 characters (``MetricRegex``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import Problem, Severity
from pipecast.runtime.publish_sagemaker import METRIC_NAME, METRIC_PREFIX

MAX_DEFINITIONS = 40  # botocore's SageMaker model: MetricDefinitionList has at most 40 items
MAX_NAME = 255  # MetricName: 1 to 255 characters
MAX_REGEX = 500  # MetricRegex: 1 to 500 characters
NAME = METRIC_NAME  # at most MAX_NAME characters
PREFIX = METRIC_PREFIX  # the runtime's line: PREFIX + NAME + "=" + VALUE
VALUE = r"([-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"  # repr() of a finite float; the first (only) group
FLAG = "--sagemaker-metric"


def names_problem(names: Sequence[str]) -> str | None:
    """Why SageMaker (or the regex pipecast writes) cannot take these metric names, else None."""
    if len(names) > MAX_DEFINITIONS:
        return f"has {len(names)} names; a SageMaker training job takes at most {MAX_DEFINITIONS} metric definitions"
    for name in names:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            return (f"has {name!r:.80}; a metric name is 1 to {MAX_NAME} ASCII letters, digits and _ . : / - "
                    "(SageMaker's MetricName, in characters a regex matches literally)")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        return f"names {', '.join(map(repr, duplicates))} twice; each is one metric definition"
    return None


def regex(name: str) -> str:
    """The regex SageMaker applies to the job's log for ``name``: its first group is the value."""
    return PREFIX + name.replace(".", r"\.") + "=" + VALUE


def definitions(names: Sequence[str]) -> list[dict[str, Any]]:
    """The job's ``MetricDefinitions``, one per declared name, in their order."""
    return [{"Name": name, "Regex": regex(name)} for name in names]


def arguments(names: Sequence[str]) -> list[str]:
    """The runtime's options: print each of ``names`` for SageMaker's log scraping."""
    return [word for name in names for word in (FLAG, name)]


def not_training(step: ir.Step) -> Problem:
    """The compile's warning for metric names on a processing step, whose job has no metric definitions."""
    return Problem("setting 'metrics' applies to training steps: a SageMaker processing job has no "
                   "MetricDefinitions, so these metrics are only in pipecast's run store (pipecast runs show)",
                   step=step.name, location=str(step.location),
                   fix='set step_type="training" on the step, or set metrics on training steps only',
                   severity=Severity.WARNING, target="sagemaker")
