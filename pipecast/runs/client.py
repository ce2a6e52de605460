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
        """The orchestrator URL and the engine's run id, with the metadata the target recorded.

        Each value is itself (a ``str`` compares equal to the text) and has ``.value``, as ZenML's
        ``run_metadata["orchestrator_url"].value`` does; a missing one (no URL yet) is None.
        """
        raw = {"orchestrator_url": self.url, "engine_run_id": self.engine_run_id, **self.metadata}
        return {key: metadata_value(value) for key, value in raw.items()}

    @property
    def stack(self) -> str | None:
        """The stack the run ran on, when it ran through one."""
        stack = self.metadata.get("stack")
        return stack if isinstance(stack, str) else None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PipelineRun:
        """A run from one record of the run store."""
        return cls(
            id=record["id"], pipeline=record["pipeline"], target=record["target"], status=record["status"],
            parameters=record["parameters"], engine_run_id=record["engine_run_id"], url=record["url"],
            created_at=record["created_at"], ended_at=record["ended_at"], detail=record["detail"],
            steps=record["steps"], metadata=record["metadata"],
        )


class MetadataStr(str):
    """A text metadata value: the text itself, with ``.value`` (ZenML's form)."""

    @property
    def value(self) -> str:
        """The plain text."""
        return str(self)


class MetadataInt(int):
    """A whole-number metadata value, with ``.value``."""

    @property
    def value(self) -> int:
        """The plain number."""
        return int(self)


class MetadataFloat(float):
    """A number metadata value, with ``.value``."""

    @property
    def value(self) -> float:
        """The plain number."""
        return float(self)


class MetadataList(list):  # type: ignore[type-arg]
    """A list metadata value, with ``.value``."""

    @property
    def value(self) -> list[Any]:
        """The plain list."""
        return list(self)


class MetadataDict(dict):  # type: ignore[type-arg]
    """A mapping metadata value, with ``.value``."""

    @property
    def value(self) -> dict[str, Any]:
        """The plain dict."""
        return dict(self)


def metadata_value(value: Any) -> Any:
    """``value`` as itself with a ``.value`` attribute (bool and None stay as they are: Python cannot extend them)."""
    if isinstance(value, bool) or value is None:
        return value
    wrappers: tuple[tuple[type, Any], ...] = ((str, MetadataStr), (int, MetadataInt), (float, MetadataFloat),
                                             (list, MetadataList), (dict, MetadataDict))
    for plain, wrapped in wrappers:
        if isinstance(value, plain):
            return wrapped(value)
    return value


class Client:
    """Reads the run store (``path``: default ``$PIPECAST_RUN_STORE`` or ``~/.pipecast/runs.db``)."""

    def __init__(self, path: str | None = None) -> None:
        self.store = RunStore(path)

    def get_pipeline_run(self, name_or_id: str) -> PipelineRun:
        """A run by its id, or the newest run of the pipeline with that name."""
        return PipelineRun.from_record(self.store.get(name_or_id))

    def list_pipeline_runs(self, pipeline: str | None = None, limit: int = 20, *, stack: str | None = None,
                           status: str | None = None) -> list[PipelineRun]:
        """The latest ``limit`` runs, newest first, of ``pipeline`` or of every pipeline.

        ``stack`` keeps the runs made on that stack; ``status`` those in that status (``succeeded``, ``failed``,
        ``running``... as recorded: a submitted run's status is refreshed by ``wait`` or ``pipecast runs wait``).
        """
        return [PipelineRun.from_record(r) for r in self.store.list(pipeline=pipeline, limit=limit, stack=stack,
                                                                    status=status)]
