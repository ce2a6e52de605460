"""``pipecast.Client``: read runs from the run store, whatever engine ran them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipecast.runs.store import RunStore


@dataclass(frozen=True)
class PipelineRun:
    """One recorded run.

    ``run_metadata["orchestrator_url"]`` is the run's page in the engine's UI (for a local run, a
    ``file://`` URL of the run's folder).
    """

    id: str
    pipeline: str
    target: str
    status: str
    parameters: dict[str, Any]
    engine_run_id: str | None
    url: str | None
    created_at: str
    ended_at: str | None
    detail: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def run_metadata(self) -> dict[str, Any]:
        """The orchestrator URL and the engine's run id, with the metadata the target recorded."""
        return {"orchestrator_url": self.url, "engine_run_id": self.engine_run_id, **self.metadata}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PipelineRun:
        """A run from one record of the run store."""
        return cls(
            id=record["id"], pipeline=record["pipeline"], target=record["target"], status=record["status"],
            parameters=record["parameters"], engine_run_id=record["engine_run_id"], url=record["url"],
            created_at=record["created_at"], ended_at=record["ended_at"], detail=record["detail"],
            steps=record["steps"], metadata=record["metadata"],
        )


class Client:
    """Reads the run store (``path``: default ``$PIPECAST_RUN_STORE`` or ``~/.pipecast/runs.db``)."""

    def __init__(self, path: str | None = None) -> None:
        self.store = RunStore(path)

    def get_pipeline_run(self, name_or_id: str) -> PipelineRun:
        """A run by its id, or the newest run of the pipeline with that name."""
        return PipelineRun.from_record(self.store.get(name_or_id))

    def list_pipeline_runs(self, pipeline: str | None = None, limit: int = 20) -> list[PipelineRun]:
        """The latest ``limit`` runs, newest first, of ``pipeline`` or of every pipeline."""
        return [PipelineRun.from_record(r) for r in self.store.list(pipeline=pipeline, limit=limit)]
