"""The map-size limit Kubeflow Pipelines and Vertex AI share (:meth:`pipecast.targets.base.Target.map_limit`)."""

from __future__ import annotations

from pipecast.targets.map_limits import MapLimit


def list_limit() -> MapLimit:
    """No item count; the whole list is one argument of every item's task, bounded at the publisher's LIST_LIMIT."""
    from pipecast.runtime.publish_kfp import LIST_LIMIT

    return MapLimit(None, f"KFP and Vertex AI pass a map's whole list to every item's task as one argument, "
                    f"bounded by pipecast at {LIST_LIMIT} bytes (half of Linux's 131,072-byte MAX_ARG_STRLEN)",
                    "map over something smaller (ids or paths of the items)", max_bytes=LIST_LIMIT)
