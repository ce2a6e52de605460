"""``pipecast schedules`` on Kubeflow Pipelines: see :mod:`pipecast.schedules.kfp`."""

from pipecast.schedules.kfp import delete_kubeflow as delete_schedule
from pipecast.schedules.kfp import list_kubeflow as list_schedules

__all__ = ["delete_schedule", "list_schedules"]
