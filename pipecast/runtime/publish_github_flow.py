"""GitHub Actions: a step's runtime decides its own item's condition, as on Compose (``inline_flow``).

GitHub evaluates ``jobs.<id>.if`` before it expands ``strategy.matrix`` (docs.github.com, "Contexts": a job's
``if:`` sees github, needs, vars and inputs, never ``matrix``), so no job-level expression can skip one item. A
step that sits in a branch inside a map, or reads a step that may skip items, therefore runs::

    python -m pipecast.runtime.publish_github_flow --flow PLAN [--flow-param NAME=TYPE:VALUE]... run ARGS

with the arguments of :mod:`pipecast.runtime.inline_flow` and, in a matrix job, the item in
``$PIPECAST_GITHUB_INDEX`` (``${{ matrix.index }}``). It is :class:`~pipecast.runtime.inline_flow.InlineStep`
(``pipecast run``'s rules from :mod:`pipecast.runtime.flow_plan`) for one item: when the item's branch did not run
(or an upstream item did not), it records ``step[i]`` skipped and exits 0, so the matrix job succeeds and the steps
after it skip item by item; a ``OneOf`` reads that item's branch instance; a fan-in gets the items that ran.

The job of a skipped item still succeeds (GitHub cannot mark a started job skipped), so the skip is also written
to the job's summary page (``$GITHUB_STEP_SUMMARY``): :func:`summarize_skip`.

A matrix job never writes its step's own ``meta.json`` (each job is one item), so the status of a mapped step is
made from its items' records as ``InlineStep.run_items`` makes it: failed if one failed, skipped if every item
was, else succeeded. ``--github-output``/``--github-items`` in ``ARGS`` are kept for the step's own run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.runtime.executor import StepInvocation
from pipecast.runtime.flow_plan import FlowError, Path, instance_name
from pipecast.runtime.inline_flow import InlineStep, step_main
from pipecast.runtime.process import Cancellation

INDEX_ENV = "PIPECAST_GITHUB_INDEX"
SUMMARY_VAR = "GITHUB_STEP_SUMMARY"  # job_summary.SUMMARY_VAR, without importing it for every job
_PUBLISH_FLAGS = ("--github-output", "--github-items")


class GitHubItemStep(InlineStep):
    """One job of a step with control flow: the whole step, or one item of its matrix (``index``)."""

    def __init__(self, plan: ir.Pipeline, params: dict[str, Any], base: StepInvocation, cancellation: Cancellation,
                 index: int | None, publish: list[str]) -> None:
        super().__init__(plan, params, base, cancellation)
        self.index, self.publish = index, publish

    def status(self, name: str) -> str:
        """The recorded status; for a mapped step (no record of its own on GitHub), made from its items'."""
        maps = self.plan.maps.get(name)
        if not maps or self.record(name):
            return super().status(name)
        count = len(self.map_items(maps[0], ()))
        statuses = {super(GitHubItemStep, self).status(instance_name(name, (i,))) for i in range(count)}
        if "failed" in statuses or "cancelled" in statuses:
            return "failed" if "failed" in statuses else "cancelled"
        return "skipped" if statuses and statuses <= {"skipped", "without a record"} else "succeeded"

    def write(self, name: str, status: str, reason: str | None = None, **extra: Any) -> None:
        """Record ``name``; a skip also on the job's summary page (the job itself shows succeeded)."""
        super().write(name, status, reason, **extra)
        if status == "skipped":
            summarize_skip(self.base, name, reason)

    def argv(self, path: Path) -> list[str]:
        """The instance's command, with the step's publishing flags (they run after the step succeeded)."""
        return [*super().argv(path), *self.publish]

    def run(self) -> int:
        """Run the whole step (outside maps) or the matrix job's item."""
        if self.index is None or not self.plan.maps[self.step.name]:
            return super().run()
        path = (self.index,)
        name = instance_name(self.step.name, path)
        try:
            reason = self.skip_reason()
            if reason is None:
                count = len(self.expand())
                if self.index >= count:
                    raise FlowError(f"matrix job {self.index} has no item (the map has {count})")
                reason = self.instance_skip(path)
            if reason:
                self.write(name, "skipped", reason)
                return 0
            argv = self.argv(path)
        except FlowError as err:
            self.write(name, "failed", str(err))
            print(f"pipecast: step {name!r} failed: {err}", file=sys.stderr, flush=True)
            return 1
        from pipecast.runtime.__main__ import main as run_step

        return run_step(argv)


def summarize_skip(base: StepInvocation, name: str, reason: str | None) -> None:
    """Say on the job's summary page (``$GITHUB_STEP_SUMMARY``, when set) that ``name`` was skipped, and why."""
    if not os.environ.get(SUMMARY_VAR):
        return
    from pipecast.runtime.job_summary import append_summary

    state = f"skipped: {reason}" if reason else "skipped"
    append_summary(replace(base, step=name),
                   {"step": name, "status": state, "run_id": base.run_id, "pipeline": base.pipeline})


def split_publish(args: list[str]) -> tuple[list[str], list[str]]:
    """``run ARGS`` without the publishing flags, and those flags (``InlineStep`` rebuilds the command)."""
    kept, publish = [], []
    index = 0
    while index < len(args):
        if args[index] in _PUBLISH_FLAGS and index + 1 < len(args):
            publish += args[index:index + 2]
            index += 2
        else:
            kept.append(args[index])
            index += 1
    return kept, publish


def _index(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise PipecastError(f"${INDEX_ENV} is {text!r}, not a matrix item's index") from None


def main(argv: list[str] | None = None) -> int:
    """Run the job's step (or item) with its control flow; the exit status as ``python -m pipecast.runtime``'s."""
    from pipecast.runtime.command import parse_command

    def start(plan: ir.Pipeline, params: dict[str, Any], rest: list[str],
              cancellation: Cancellation) -> tuple[StepInvocation, Callable[[], int]]:
        rest, publish = split_publish(rest)
        base, _ = parse_command(rest)
        return base, lambda: GitHubItemStep(plan, params, base, cancellation, _index(os.environ.get(INDEX_ENV)),
                                            publish).run()

    return step_main(argv, start)


if __name__ == "__main__":
    sys.exit(main())
