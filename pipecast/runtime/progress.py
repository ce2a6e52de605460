"""Progress views for local runs: a live table on a terminal, one line per event otherwise."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from typing import Any, TextIO

from pipecast.runtime.local_runner import LocalRun, Progress, StepState

_STYLE = {"pending": "dim", "running": "yellow", "cached": "cyan", "done": "green", "failed": "bold red",
          "skipped": "dim", "cancelled": "magenta"}


class PlainProgress(Progress):
    """One line per finished step, on stderr (for logs and CI)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()

    def start(self, run: LocalRun) -> None:
        """Print the run's id and its number of steps."""
        self._write(f"run {run.id}: {len(run.steps)} steps")

    def update(self, state: StepState) -> None:
        """Print a line when a step reaches a final state."""
        if state.status in ("running", "pending"):
            return
        extra = f" ({state.seconds:.2f}s)" if state.status in ("done", "failed") else ""
        if state.items is not None:
            extra = f" ({state.items} item{'' if state.items == 1 else 's'})"
        error = f": {state.error}" if state.error else ""
        self._write(f"  {state.status:<9} {state.name}{extra}{error}")

    def finish(self, run: LocalRun) -> None:
        """Print the run's summary line."""
        self._write(summary_line(run))

    def _write(self, text: str) -> None:
        with self.lock:  # one write per line: steps' own lines are written whole too (step_output)
            self.stream.write(text + "\n")
            self.stream.flush()


class RichProgress(Progress):
    """A live view: counts by state and the steps running now, then a summary table."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.live: Any = None
        self.run: LocalRun | None = None
        self.lock = threading.Lock()

    def start(self, run: LocalRun) -> None:
        """Start the live table of the steps' states."""
        from rich.live import Live

        self.run = run
        self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=True)
        self.live.start()

    def update(self, state: StepState) -> None:
        """Redraw the live table."""
        if self.live is not None:
            with self.lock:
                self.live.update(self._render())

    def _render(self) -> Any:
        from rich.text import Text

        assert self.run is not None
        counts = Counter(s.status for s in self.run.steps.values())
        text = Text(f"{self.run.pipeline.name} ")
        for status in ("pending", "running", "cached", "done", "failed", "skipped"):
            text.append(f" {status} {counts.get(status, 0)}", style=_STYLE[status])
        running = [s.name for s in self.run.steps.values() if s.status == "running" and s.items is None][:6]
        if running:
            text.append("\n  running: " + ", ".join(running), style="yellow")
        return text

    def finish(self, run: LocalRun) -> None:
        """Stop the live table; print the final table (up to 50 steps) and the summary line."""
        from rich.table import Table

        if self.live is not None:
            self.live.stop()
        table = Table(title=f"run {run.id}", title_justify="left")
        for column in ("step", "status", "tries", "seconds", "error"):
            table.add_column(column)
        for state in run.steps.values():
            status = state.status if state.items is None else f"{state.status} ({state.items} items)"
            table.add_row(state.name, f"[{_STYLE[state.status]}]{status}", str(state.attempts or ""),
                          f"{state.seconds:.2f}" if state.seconds else "", state.error or "")
        if len(run.steps) <= 50:
            self.console.print(table)
        self.console.print(summary_line(run))


def summary_line(run: LocalRun) -> str:
    """The run's status, its steps counted by status, and where its outputs are."""
    counts = Counter(s.status for s in run.steps.values())
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"run {run.id} {run.status}: {parts}\n  outputs: {run.url}"


def default_progress() -> Progress:
    """A live view on a terminal, plain lines otherwise."""
    return RichProgress() if sys.stderr.isatty() else PlainProgress()
