"""Pipelines of the sagemaker escape-hatch tests: a step's own processor_args, and a step setting the wrong kind."""

from __future__ import annotations

from pipecast import pipeline, step


@step(settings={"sagemaker": {"processor_args": {"volume_kms_key": "alias/step-key", "tags": {"stage": "prep"}}}})
def prepare(n: int) -> int:
    return n


@step(settings={"sagemaker": {"step_type": "training", "estimator_args": {
    "output_kms_key": "alias/models", "use_spot_instances": True, "max_wait": 7200}}}, timeout="1h")
def fit(n: int) -> int:
    return n * 2


@pipeline(name="job_args", settings={"sagemaker": {"processor_args": {"tags": {"team": "ml"}}}})
def job_args(n: int = 3):
    """A processing step with its own arguments, a spot training step, the pipeline's tags for processing."""
    fit(prepare(n))


@step(settings={"sagemaker": {"estimator_args": {"output_kms_key": "alias/models"}}})
def wrong_kind() -> int:
    return 1


@pipeline(name="wrong_kind")
def wrong_kind_pipeline():
    """A processing step that sets estimator_args."""
    wrong_kind()
