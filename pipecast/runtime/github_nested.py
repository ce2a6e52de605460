"""A GitHub Actions matrix job that runs its outer item's inner-map items (nested maps, emulated; issue 16).

Its command::

    python -m pipecast.runtime.github_nested --flow PLAN [--flow-param NAME=TYPE:VALUE]... run ARGS

GitHub cannot nest matrices (:mod:`pipecast.targets.github.nested`), so a step inside an inner map runs as a
matrix job over the outer map, and this runtime runs outer item ``$PIPECAST_GITHUB_INDEX``'s instances
``step[i][j]`` itself, each a child process with its own retries and record, as
:mod:`pipecast.runtime.inline_flow` runs a Compose service's items (same plan, same rules). A step outside the
maps that collects a nested step runs here too, with no index: the collected lists of lists are built from the
instances' records.

Two things differ from Compose. GitHub's ``needs`` and ``if:`` already decided that the job runs (a job whose
upstream failed or was skipped never starts), and GitHub records no whole mapped step, so the step is never
skipped from records here. And the jobs of one matrix run at once, so none writes the step's own record (as
``pipecast run`` records only a mapped step's instances); the log says how the items went.

An exit handler's status is built from the records of its group's instances (under its own item: ``report[i]``
or ``report[i][j]``), as ``pipecast run`` builds it; an instance without a record counts by its job's result in
``$PIPECAST_GITHUB_NEEDS``. A handler inside a map that is not nested runs here too, for that reason (its one
instance ``report[i]``). A step outside the maps keeps its ``--github-output``/``--github-items`` flags.

With ``--decide`` (first; a step that also sits in, or reads, a condition inside a map: GitHub's ``if:`` cannot
read the matrix, :mod:`pipecast.runtime.publish_github_flow`) the runtime decides from the records as Compose's
does: the whole step is skipped when an upstream step was (a mapped upstream's status made from its instances',
at every depth), each instance ``step[i][j]`` when a branch around it is false at its item (the outer item's
branch and the inner item's alike), and an inner map whose list a step of a branch that did not run at the outer
item makes has no items there (every engine skips the loop; ``pipecast run`` then collects ``[]`` for it).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.runtime.command import parse_command
from pipecast.runtime.executor import StepInvocation
from pipecast.runtime.flow_plan import Path, final_status, instance_name
from pipecast.runtime.inline_flow import InlineStep, step_main
from pipecast.runtime.process import Cancellation
from pipecast.runtime.publish_github_flow import split_publish, summarize_skip

INDEX_ENV = "PIPECAST_GITHUB_INDEX"
DECIDE = "--decide"
NEEDS_ENV = "PIPECAST_GITHUB_NEEDS"  # toJSON(needs): each job's result, for a handler's status
STEPS_ENV = "PIPECAST_GITHUB_STEPS"  # job id -> step name of the jobs a handler's status covers
_RAN = ("succeeded",)
_HOOKS = (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
_UNRECORDED = {"failure": "failed", "cancelled": "cancelled"}  # a job result that tells why an instance has no record


class OuterItemStep(InlineStep):
    """One matrix job's share of a nested map: the instances under outer item ``outer`` (all when None)."""

    def __init__(self, plan: ir.Pipeline, params: dict[str, Any], base: StepInvocation,
                 cancellation: Cancellation, outer: int | None, decide: bool = False,
                 publish: list[str] | None = None) -> None:
        super().__init__(plan, params, base, cancellation)
        self.outer, self.decide, self.publish = outer, decide, publish or []

    def skip_reason(self) -> str | None:
        """None when GitHub decided (it started the job: its upstream jobs succeeded, its ``if:`` held).

        With ``--decide``, from the records as Compose's runtime: an upstream step the runtime skipped still ended
        its job with success.
        """
        return super().skip_reason() if self.decide else None

    def status(self, name: str) -> str:
        """The recorded status; with ``--decide``, a mapped step's (no record of its own here) from its instances'.

        As :class:`~pipecast.runtime.publish_github_flow.GitHubItemStep` makes it, at every depth: failed or
        cancelled if one was, skipped if every instance was (or has no record: its job's runtime skipped it whole),
        else succeeded (no instances too, as ``pipecast run`` settles an empty map).
        """
        maps = self.plan.maps.get(name)
        if not self.decide or not maps or self.record(name):
            return super().status(name)
        statuses = {super(OuterItemStep, self).status(instance_name(name, p)) for p in self.paths_of(name)}
        if "failed" in statuses or "cancelled" in statuses:
            return "failed" if "failed" in statuses else "cancelled"
        return "skipped" if statuses and statuses <= {"skipped", "without a record"} else "succeeded"

    def map_items(self, group: str, path: Path) -> list[Any]:
        """The items; with ``--decide``, none where a step whose output the map iterates did not run at ``path``.

        That step sits in a branch that was false at the outer item (or after an item that was skipped): every
        engine skips the loop there, rather than fail on a value that was never made.
        """
        if self.decide and (group, path) not in self.items:
            for operand in self.plan.groups[group].items:
                if operand.kind is ir.BindingKind.OUTPUT:
                    source = operand.step or ""
                    name = instance_name(source, path[:len(self.plan.maps[source])])
                    if self.status(name) not in _RAN:
                        print(f"pipecast: map {group!r} at {instance_name('', path) or 'the top'} has no items: "
                              f"step {name!r} {self.status(name)}", file=sys.stderr, flush=True)
                        self.items[(group, path)] = []
        return super().map_items(group, path)

    def argv(self, path: Path) -> list[str]:
        """The instance's command; a step outside maps keeps its publishing flags (a map or ``if:`` reads them)."""
        argv = super().argv(path)
        return [*argv, *self.publish] if not self.plan.maps[self.step.name] else argv

    def group_status(self, group: str | None, path: Path) -> dict[str, Any]:
        """The final status of exit group ``group`` at item ``path``, from the records of its steps' instances.

        No mapped step has a record of its own here (its matrix jobs run at once), so a mapped member counts by
        its instances under ``path``, expanded from the plan as ``pipecast run`` expands them (an inner map that
        did not run at an outer item has none there).
        """
        members = self.plan.members[group] if group else {
            s.name for s in self.plan.pipeline.steps if s.trigger not in _HOOKS and s.name != self.step.name}
        states: list[tuple[str, str, str | None]] = []
        for step in self.plan.pipeline.steps:
            if step.name in members:
                names = [instance_name(step.name, p) for p in self.instances_under(step.name, path)]
                states += [(n, self.final(n), self._report_error(n)) for n in names]
        return final_status(states)

    def instances_under(self, name: str, path: Path) -> list[Path]:
        """The instance paths of step ``name`` under item path ``path`` (``[()]`` outside maps)."""
        maps = self.plan.maps[name]
        paths: list[Path] = [path[:len(maps)]]
        for depth in range(len(paths[0]), len(maps)):
            grown: list[Path] = []
            for base in paths:
                if base and self.inner_skipped(maps[depth], base):
                    continue  # pipecast run records one skipped instance there: nothing to count
                grown += [(*base, i) for i in range(len(self.map_items(maps[depth], base)))]
            paths = grown
        return paths

    def final(self, name: str) -> str:
        """``name``'s status as a handler counts it; without a record, by its job's result.

        From ``toJSON(needs)``: a job that failed or was cancelled before its runtime recorded the instance makes it
        failed or cancelled; otherwise it did not run (its job was skipped).
        """
        status = super().final(name)
        if status != "without a record" or not os.environ.get(NEEDS_ENV):
            return status
        step = name.split("[", 1)[0]
        needs = json.loads(os.environ.get(NEEDS_ENV) or "{}")
        jobs = [job for job, covered in json.loads(os.environ.get(STEPS_ENV) or "{}").items() if covered == step]
        results = {_UNRECORDED.get((needs.get(job) or {}).get("result", "skipped")) for job in jobs}
        return "failed" if "failed" in results else "cancelled" if "cancelled" in results else status

    def expand(self) -> list[Path]:
        """The item paths under the outer item (every path outside maps or without an index)."""
        maps = self.plan.maps[self.step.name]
        if self.outer is None or not maps:
            return super().expand()
        count = len(self.map_items(maps[0], ()))
        if self.outer >= count:
            raise PipecastError(f"step {self.step.name!r}: matrix job {self.outer} has no item (the map has {count})")
        paths: list[Path] = [(self.outer,)]
        for name in maps[1:]:
            paths = [(*path, i) for path in paths for i in range(len(self.map_items(name, path)))]
        return paths

    def write(self, name: str, status: str, reason: str | None = None, **extra: Any) -> None:
        """Record an instance; the mapped step as a whole only in the log (its matrix jobs run at once).

        A skip also goes to the job's summary page: the job itself shows succeeded.
        """
        if status == "skipped":
            share = f"{name} (outer item {self.outer})" if name == self.step.name and self.outer is not None else name
            summarize_skip(self.base, share, reason)
        if name == self.step.name and self.plan.maps[self.step.name]:
            share = f" (outer item {self.outer})" if self.outer is not None else ""
            print(f"pipecast: step {name!r}{share} {status}" + (f": {reason}" if reason else ""), file=sys.stderr,
                  flush=True)
            return
        super().write(name, status, reason, **extra)


def outer_index(text: str | None) -> int | None:
    """The matrix job's outer item from ``$PIPECAST_GITHUB_INDEX`` (None when the job has no matrix)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:  # e.g. an engine that left `${{ matrix.index }}` unsubstituted
        raise PipecastError(f"${INDEX_ENV} is {text!r}, not the matrix job's item index") from None


def main(argv: list[str] | None = None) -> int:
    """Run one matrix job's share of a nested map; the exit status as ``python -m pipecast.runtime``'s."""
    args = list(sys.argv[1:] if argv is None else argv)
    decide = bool(args) and args[0] == DECIDE

    def start(plan: ir.Pipeline, params: dict[str, Any], rest: list[str],
              cancellation: Cancellation) -> tuple[StepInvocation, Callable[[], int]]:
        rest, publish = split_publish(rest)
        base, _ = parse_command(rest)
        return base, lambda: OuterItemStep(plan, params, base, cancellation,
                                           outer_index(os.environ.get(INDEX_ENV)), decide, publish).run()

    return step_main(args[1:] if decide else args, start)


if __name__ == "__main__":
    sys.exit(main())
