"""A Tekton TaskRun that runs its outer item's inner-map items (nested maps, emulated; issue 16).

Its command::

    python -m pipecast.runtime.tekton_nested [--decide] [--task-status STEP=STATUS]... [--outer-index I]
        --flow PLAN [--flow-param NAME=TYPE:VALUE]... run ARGS

``PLAN`` is percent-encoded (:func:`pipecast.runtime.params.encode_constant`), so ``$(…)`` text in a constant
list reaches the runtime as written: Tekton substitutes variables in every argument.

Tekton cannot nest a ``matrix`` (:mod:`pipecast.targets.tekton_flow`), so a step inside an inner map is a task
whose matrix is the *outer* map's item indices, and the runtime of TaskRun ``I`` (``$(params.index)``) runs outer
item ``I``'s instances ``step[I][j]`` as child processes, each with its own retries, cache entry and record, at
most the inner map's ``parallelism`` at once. A step that collects a nested step (per outer item inside the outer
map, or lists of lists after it) runs here too and builds the lists from the instances' records.

This is GitHub's emulation (:class:`pipecast.runtime.github_nested.OuterItemStep`) with the index as an option:
Tekton's ``runAfter`` and ``when`` already decided that the task runs (a parent that failed stops the run), and
the TaskRuns of one matrix run at once, so none writes the mapped step's own record. A handler run here (inside a
map, or collecting a nested one) gets ``--task-status STEP=$(tasks.<name>.status)`` per step its status covers:
an instance without a record in a ``Failed`` task counts failed.

With ``--decide`` (first; a step in a condition inside a map, or reading a step such a condition may skip) the
runtime also decides from the records, as GitHub's does: a ``when`` belongs to the whole matrixed task (Tekton
evaluates it once, before fanning out; docs/matrix.md), so it cannot skip one outer item, nor one inner item.
The step is skipped when an upstream step was; each instance ``step[I][j]`` when a branch around it is false at
its item (the outer item's branch and the inner item's alike); and an inner map over a list that a step of a
branch that did not run at outer item ``I`` makes has no items there. A skipped instance is recorded, and the
TaskRun exits 0.
"""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.runtime.command import parse_command
from pipecast.runtime.executor import StepInvocation
from pipecast.runtime.github_nested import DECIDE, OuterItemStep
from pipecast.runtime.inline_flow import step_main
from pipecast.runtime.process import Cancellation

OUTER_INDEX = "--outer-index"
TASK_STATUS = "--task-status"


class TektonItemStep(OuterItemStep):
    """The emulation with Tekton's task statuses: a handler's instance without a record counts by its task's."""

    def __init__(self, plan: ir.Pipeline, params: dict[str, Any], base: StepInvocation, cancellation: Cancellation,
                 outer: int | None, decide: bool, task_statuses: dict[str, str]) -> None:
        super().__init__(plan, params, base, cancellation, outer, decide)
        self.task_statuses = task_statuses

    def final(self, name: str) -> str:
        """``name``'s status as a handler counts it: no record in a ``Failed`` task means its TaskRun failed.

        Tekton creates every TaskRun of a matrix (docs/matrix.md), so an instance of a failed task without a record
        died before its runtime wrote one; one of a task that did not run (``None``) did not run.
        """
        status = super().final(name)
        if status == "without a record" and self.task_statuses.get(name.split("[", 1)[0]) == "Failed":
            return "failed"
        return status


def split_task_statuses(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``--task-status STEP=STATUS`` options first (any number), and the rest of the command."""
    found: dict[str, str] = {}
    while argv and argv[0] == TASK_STATUS:
        if len(argv) < 2 or "=" not in argv[1]:
            raise PipecastError(f"{TASK_STATUS} needs STEP=STATUS")
        step, _, status = argv[1].partition("=")
        found[step] = status
        argv = argv[2:]
    return found, argv


def split_outer_index(argv: list[str]) -> tuple[int | None, list[str]]:
    """The TaskRun's outer item (``--outer-index I`` first, None without) and the rest of the command."""
    if not argv or argv[0] != OUTER_INDEX:
        return None, argv
    if len(argv) < 2:
        raise PipecastError(f"{OUTER_INDEX} needs the TaskRun's item index")
    try:
        return int(argv[1]), argv[2:]
    except ValueError:  # e.g. `$(params.index)` left unsubstituted
        raise PipecastError(f"{OUTER_INDEX} is {argv[1]!r}, not the TaskRun's matrix item index") from None


def main(argv: list[str] | None = None) -> int:
    """Run one TaskRun's share of a nested map; the exit status as ``python -m pipecast.runtime``'s."""
    words = list(sys.argv[1:] if argv is None else argv)
    decide = bool(words) and words[0] == DECIDE
    words = words[1:] if decide else words
    try:
        statuses, words = split_task_statuses(words)
        outer, rest = split_outer_index(words)
        rest = [urllib.parse.unquote(word) if i and rest[i - 1] == "--flow" else word for i, word in enumerate(rest)]
    except PipecastError as err:
        print(f"pipecast: error: {err}", file=sys.stderr)
        return 2

    def start(plan: ir.Pipeline, params: dict[str, Any], run_args: list[str],
              cancellation: Cancellation) -> tuple[StepInvocation, Callable[[], int]]:
        base, _ = parse_command(run_args)
        return base, lambda: TektonItemStep(plan, params, base, cancellation, outer, decide, statuses).run()

    return step_main(rest, start)


if __name__ == "__main__":
    sys.exit(main())
