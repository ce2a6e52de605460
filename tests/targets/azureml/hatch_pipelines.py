"""Pipelines of the azureml escape-hatch tests: a step's own node fields beside the pipeline's."""

from __future__ import annotations

from pipecast import pipeline, step

GPU_NODE = {"resources": {"instance_count": 2, "shm_size": "16g"}, "queue_settings": {"job_tier": "premium"},
            "tags": {"stage": "train"}}


@step
def prepare(n: int) -> int:
    return n


@step(settings={"azureml": {"compute": "gpu-cluster", "node_fields": GPU_NODE}})
def train(n: int) -> int:
    return n * 2


@pipeline(name="node_fields", settings={"azureml": {
    "node_fields": {"queue_settings": {"job_tier": "spot"}, "identity": {"type": "managed"}},
    "job_fields": {"tags": {"cost-center": "42"}}}})
def node_fields(n: int = 3):
    """The pipeline's node fields on every node without its own; a GPU step's own."""
    train(prepare(n))
