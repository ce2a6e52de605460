"""``pipecast schedules`` on Vertex AI Pipelines: see :mod:`pipecast.schedules.kfp`."""

from pipecast.schedules.kfp import delete_vertex as delete_schedule
from pipecast.schedules.kfp import list_vertex as list_schedules

__all__ = ["delete_schedule", "list_schedules"]
