"""GitHub Actions: a failed item stops its map's items that have not started, as ``pipecast run`` does.

GitHub's own ``strategy.fail-fast`` (default true) "will cancel all in-progress and queued jobs in the matrix if
any job in the matrix fails" (docs.github.com, workflow syntax, ``jobs.<job_id>.strategy.fail-fast``): items
``pipecast run`` lets finish would end cancelled, and a handler would read them so. So every matrix job is
emitted with ``fail-fast: false`` and an ordinary step's matrix job with ``PIPECAST_GITHUB_FAIL_FAST=STEP``:

* an item of STEP that fails writes ``STEP/fail-fast.json`` in the run's artifact store (which item, its error);
* an item of STEP that starts afterwards finds it, records itself skipped with
  :data:`~pipecast.runtime.inline_flow`'s item reason (``not started: an item failed and the step stops
  (fail-fast)``) and exits 0, without running the step. Items already running finish and are recorded.

The marker names the run attempt (``$GITHUB_RUN_ATTEMPT``, which GitHub sets in every job): the run id pipecast uses
has no attempt number, so "Re-run failed jobs" (attempt 2) must not find attempt 1's marker and skip the very
item it re-runs.

The matrix job's result is still ``failure`` (the failed item's job failed), so GitHub skips the steps after the
map, as ``pipecast run`` does. One marker file, not every item's record: a job reads one object, however many
items the map has. The scope is the step's own items; a job that does not need the failed one still starts
(GitHub's ``needs``).
"""

from __future__ import annotations

import os
import sys

from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import StepInvocation, now

FAIL_FAST_ENV = "PIPECAST_GITHUB_FAIL_FAST"  # the mapped step whose items stop one another
MARKER = "fail-fast.json"
STOPPED = "not started: an item failed and the step stops (fail-fast)"  # inline_flow.run_item's words


def _marker(store: ArtifactStore, invocation: StepInvocation, step: str) -> str:
    return store.file_in(store.step_dir(invocation.pipeline, invocation.run_id, step), MARKER)


def stopped(invocation: StepInvocation) -> bool:
    """Whether an item of the step already failed: then ``invocation``'s item is recorded skipped."""
    step = os.environ.get(FAIL_FAST_ENV)
    if not step:
        return False
    store = ArtifactStore(invocation.artifact_root)
    marker = _marker(store, invocation, step)
    if not store.exists(marker):
        return False
    found = store.read_json(marker)
    if found.get("attempt") != _attempt():
        return False  # an earlier attempt's failure: this attempt re-runs the item
    failed = found.get("item", "?")
    store.write_json(f"{store.step_dir(invocation.pipeline, invocation.run_id, invocation.step)}/meta.json",
                     {"step": invocation.step, "status": "skipped", "ended_at": now(), "reason": STOPPED})
    print(f"pipecast: step {invocation.step!r} skipped: {STOPPED} (item {failed!r} failed)", file=sys.stderr,
          flush=True)
    from pipecast.runtime.publish_github_flow import summarize_skip

    summarize_skip(invocation, invocation.step, STOPPED)  # the job itself shows succeeded
    return True


def mark_failed(invocation: StepInvocation, error: str) -> None:
    """Record that item ``invocation.step`` failed, so the step's items that start later skip themselves."""
    step = os.environ.get(FAIL_FAST_ENV)
    if not step:
        return
    store = ArtifactStore(invocation.artifact_root)
    store.write_json(_marker(store, invocation, step),
                     {"item": invocation.step, "error": error, "attempt": _attempt(), "at": now()})


def _attempt() -> str:
    return os.environ.get("GITHUB_RUN_ATTEMPT", "")
