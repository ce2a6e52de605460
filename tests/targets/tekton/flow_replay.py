"""A Tekton PipelineRun replayed as Tekton's controller runs it, with control flow (issue 16).

Only what the controller does, read in tektoncd/pipeline (v1.x, 2026-08):

- **Graph.** A task's parents are its ``runAfter`` and every task whose results it references in its params,
  ``matrix`` or ``when`` (pkg/apis/pipeline/v1/pipeline_types.go ``PipelineTask.Deps``). Tasks run when their
  parents are done; here one at a time, in an order that respects the graph.
- **Skipping** (pkg/reconciler/pipelinerun/resources/pipelinerunresolution.go ``skip``), checked in this order
  on v1.x main (v0.68 tests the parents and result references before the ``when``; :data:`ORDERS`):
  the run is stopping (a task failed: ``StoppingSkip``, no new task starts); a ``when`` expression is false
  (``WhenExpressionsSkip``; ``in``/``notin`` is exact text equality, when_types.go ``isTrue``, and an input
  whose result could not be resolved stays the literal ``$(…)`` text); a parent was skipped for any reason but
  its ``when`` (``skipBecauseParentTaskWasSkipped``: a parent skipped by ``when`` does not skip its children);
  a result reference cannot be resolved (``MissingResultsSkip``); a matrix parameter is an empty array
  (``skipBecauseEmptyArrayInMatrixParams``).
- **Matrix** (docs/matrix.md): one TaskRun per combination of the ``matrix.params`` arrays, after whole-array
  result replacement (``$(tasks.X.results.Y[*])``); more than ``default-max-matrix-combinations-count`` (256)
  is refused (matrix_types.go ``validateCombinationsCount``). Every TaskRun of a matrix runs; the task failed
  when any did (``haveAnyTaskRunsFailed``).
- **Results** are read from ``$(results.<name>.path)`` after the step; all of a TaskRun's results must fit
  Tekton's 4096-byte termination message (``results-from: termination-message``, the default). An array
  result must be a JSON array of strings.
- **Retries**: a failed TaskRun is run again up to the task's ``retries``.
- **Finally** tasks run once every DAG task is done, whatever happened, with ``$(tasks.<name>.status)``
  (``Succeeded``/``Failed``/``None``) and ``$(tasks.status)`` (``Succeeded``, ``Failed``, ``Completed`` when a
  task was skipped) replaced (pipelinerunstate.go ``GetPipelineTaskStatus``); their ``when`` is evaluated like
  the others' (``IsFinallySkipped``: missing results in ``params``/``when``, then ``when``, then an empty
  matrix); a finally task may have a ``matrix`` (docs/pipelines.md "Specifying matrix in finally tasks"), fanned
  out as a DAG task's.
- **Cancel** (docs/pipelineruns.md "Cancelling a PipelineRun", "Gracefully cancelling a PipelineRun";
  pkg/reconciler/pipelinerun/cancel.go, pipelinerunstate.go, pipelinerunresolution.go), modelled as the request
  arriving while one task's TaskRuns run (:class:`Cancel`): every running TaskRun is cancelled (its pod deleted:
  the kubelet sends SIGTERM, which Tekton's entrypoint forwards to the step's process group, cmd/entrypoint/
  runner.go ``syscall.Kill(-cmd.Process.Pid, s)``), retries are not run, and
  no new DAG task starts (``DAGExecutionQueue`` returns nothing once ``IsCancelled``/``IsGracefullyCancelled``).
  ``spec.status: Cancelled`` (what ``tkn pipelinerun cancel`` sets; pkg/cmd/pipelinerun/cancel.go in
  tektoncd/cli) ends the run there: finally tasks are not scheduled. ``CancelledRunFinally`` (``tkn pipelinerun
  cancel --grace CancelledRunFinally``) skips the DAG tasks not started (``skip``: ``GracefullyCancelledSkip``)
  and then runs the finally tasks, with ``$(tasks.<t>.status)`` ``Failed`` for a cancelled task (its TaskRuns'
  Succeeded condition is False: ``haveAnyRunsFailed``), ``None`` for a skipped one, and ``$(tasks.status)``
  ``Failed`` (``haveAnyTaskRunsFailed``). The run ends ``Cancelled`` (``GetPipelineConditionStatus``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.cases import ROOT, env_with_cases
from tests.helpers.replay.store import on_local_store
from tests.targets.tekton.support import (
    NAMESPACE,
    _pipeline_values,
    _task_invocation,
    of_kind,
    run_order,
    task_objects,
    task_spec_of,
)

MAX_COMBINATIONS = 256
TERMINATION_LIMIT = 4096
_TASK_REF = re.compile(r"\$\(tasks\.([a-z0-9-]+)\.")
_RESULT_REF = re.compile(r"\$\(tasks\.([a-z0-9-]+)\.results\.([A-Za-z0-9_.-]+?)(\[\*\])?\)")
_STATUS_REF = re.compile(r"\$\(tasks\.(?:([a-z0-9-]+)\.)?status\)")


@dataclass
class TaskState:
    """What happened to one pipeline task."""

    status: str = "None"  # Succeeded | Failed | None (skipped or not run)
    skipped: str | None = None  # Tekton's SkippingReason
    results: dict[str, Any] = field(default_factory=dict)
    runs: list[tuple[list[str], int, str]] = field(default_factory=list)  # (argv, exit code, stderr) per TaskRun


@dataclass
class FlowReplay:
    """A replayed PipelineRun: each task's state and the run's outcome."""

    tasks: dict[str, TaskState]
    status: str  # Succeeded | Completed | Failed | Cancelled


@dataclass(frozen=True)
class Cancel:
    """A cancel request (``spec.status``) that arrives while ``task``'s TaskRuns run, once ``running()`` holds."""

    status: str  # Cancelled | CancelledRunFinally
    task: str
    running: Callable[[], bool]


CANCEL_STATUSES = ("Cancelled", "CancelledRunFinally")  # StoppedRunFinally lets running TaskRuns finish: not modelled
CANCEL_WAIT = 120.0  # seconds: bounds every wait of a cancel


def _refs(task: dict[str, Any]) -> set[str]:
    text = json.dumps({k: task.get(k) for k in ("params", "matrix", "when")})
    return set(_TASK_REF.findall(text)) - {"status"}


def parents(task: dict[str, Any]) -> set[str]:
    """``PipelineTask.Deps``: runAfter and the tasks whose results it references."""
    return set(task.get("runAfter", [])) | _refs(task)


def _resolve(text: str, states: dict[str, TaskState]) -> tuple[Any, bool]:
    """``text`` with result references replaced; (value, every reference resolved). A whole ``[*]`` is a list."""
    whole = _RESULT_REF.fullmatch(text)
    if whole and whole.group(3):
        value = states.get(whole.group(1), TaskState()).results.get(whole.group(2))
        return (value, True) if isinstance(value, list) else (text, False)
    resolved = True

    def one(match: re.Match[str]) -> str:
        nonlocal resolved
        value = states.get(match.group(1), TaskState()).results.get(match.group(2))
        if not isinstance(value, str) or match.group(3):
            resolved = False
            return match.group(0)
        return value

    return _RESULT_REF.sub(one, text), resolved


def _when_allows(when: list[dict[str, Any]], states: dict[str, TaskState], statuses: dict[str, str]) -> bool:
    for expression in when:
        text = _STATUS_REF.sub(lambda m: statuses.get(m.group(0)[2:-1], m.group(0)), expression["input"])
        value, _ = _resolve(text, states)
        inside = value in expression["values"]
        if inside != (expression["operator"] == "in"):
            return False
    return True


def replay_flow(files: dict[str, str], run_name: str, params: dict[str, str] | None = None, *, store: Path,
                work: Path, cancel: Cancel | None = None) -> FlowReplay:
    """Run the PipelineRun's tasks on this machine as Tekton's controller would schedule them (and cancel them)."""
    assert cancel is None or cancel.status in CANCEL_STATUSES, cancel
    run = of_kind(files, "PipelineRun")[0]
    spec = run["spec"]["pipelineSpec"] if "pipelineSpec" in run["spec"] else of_kind(files, "Pipeline")[0]["spec"]
    pipeline_name = run_name if "pipelineSpec" in run["spec"] else run["spec"]["pipelineRef"]["name"]
    given = {p["name"]: p["value"] for p in run["spec"].get("params", [])}
    given.update(params or {})
    values = _pipeline_values(spec, given)
    contexts = {"context.pipelineRun.name": run_name, "context.pipelineRun.namespace": NAMESPACE,
                "context.pipelineRun.uid": "0000-uid", "context.pipeline.name": pipeline_name}
    annotations = run["metadata"].get("annotations", {})
    dag = [{**t, "runAfter": sorted(parents(t))} for t in spec["tasks"]]
    tasks = task_objects(files)
    states: dict[str, TaskState] = {}
    cancelled = False
    for task in run_order(dag):
        state = states[task["name"]] = TaskState()
        original = next(t for t in spec["tasks"] if t["name"] == task["name"])
        if cancelled:  # no new DAG task starts; skip: GracefullyCancelledSkip (Cancelled: the run already ended)
            state.skipped = "GracefullyCancelledSkip"
            continue
        state.skipped = _skip_reason(original, states, stopping=any(s.status == "Failed" for s in states.values()))
        if state.skipped is None:
            at = cancel if cancel is not None and cancel.task == task["name"] else None
            _run(original, tasks, state, states, {}, values, contexts, run_name, annotations, store, work, at)
            cancelled = at is not None
    if cancelled and cancel is not None and cancel.status == "Cancelled":  # finally tasks are not scheduled
        return FlowReplay(states, "Cancelled")
    statuses = _statuses(spec["tasks"], states)
    for task in spec.get("finally", []):
        assert "runAfter" not in task, "Tekton refuses runAfter in finally tasks"
        state = states[task["name"]] = TaskState()
        state.skipped = _finally_skip_reason(task, states, statuses)
        if state.skipped is None:
            _run(task, tasks, state, states, statuses, values, contexts, run_name, annotations, store, work)
    if cancelled:  # GetPipelineConditionStatus: a graceful cancel ends Cancelled once the finally tasks are done
        return FlowReplay(states, "Cancelled")
    failed = any(s.status == "Failed" for s in states.values())
    skipped = any(s.skipped for s in states.values())
    return FlowReplay(states, "Failed" if failed else "Completed" if skipped else "Succeeded")


# The order ``skip`` tries its reasons in: v1.x main, and v0.68 (pipecast's minimum), which tests the parents
# and the result references before the when expressions. The replay runs both and requires the same decision
# (skipped or not) for every task, so a lowering cannot depend on the order.
ORDERS = {"v1": ("when", "parents", "results"), "v0.68": ("parents", "results", "when")}


def _skip_reason(task: dict[str, Any], states: dict[str, TaskState], *, stopping: bool) -> str | None:
    reasons = {version: _skip_reason_in(order, task, states, stopping=stopping) for version, order in ORDERS.items()}
    assert len({r is None for r in reasons.values()}) == 1, f"task {task['name']!r}: {reasons}"
    return reasons["v1"]


def _skip_reason_in(order: tuple[str, ...], task: dict[str, Any], states: dict[str, TaskState], *,
                    stopping: bool) -> str | None:
    if stopping:
        return "StoppingSkip"
    texts = [p["value"] for p in task.get("params", []) if isinstance(p["value"], str)]
    texts += [v for p in task.get("matrix", {}).get("params", []) for v in
              (p["value"] if isinstance(p["value"], list) else [p["value"]])]
    checks = {
        "when": lambda: "WhenExpressionsSkip" if not _when_allows(task.get("when", []), states, {}) else None,
        "parents": lambda: "ParentTasksSkip" if any(states[p].skipped not in (None, "WhenExpressionsSkip")
                                                    for p in parents(task)) else None,
        # MissingResultsSkip needs the producer skipped by its when (or this task onError: continue)
        "results": lambda: "MissingResultsSkip" if any(
            not _resolve(text, states)[1] and any(states[m.group(1)].skipped == "WhenExpressionsSkip"
                                                  for m in _RESULT_REF.finditer(text)) for text in texts) else None,
    }
    for name in order:
        reason = checks[name]()
        if reason:
            return reason
    if any(_matrix_values(p["value"], states) == [] for p in task.get("matrix", {}).get("params", [])):
        return "EmptyArrayInMatrixParams"
    return None


def _finally_skip_reason(task: dict[str, Any], states: dict[str, TaskState],
                         statuses: dict[str, str]) -> str | None:
    """``IsFinallySkipped`` (pipelinerunresolution.go), in its order: missing results, ``when``, empty matrix.

    ``hasResultReferences`` looks at the ``params`` and ``when`` only (its matrix line appends ``Params`` again),
    so a finally task whose *matrix* reads a result that cannot be resolved is neither skipped there nor created
    (pipelinerun.go ``runNextSchedulableTask``: ``ResolveResultRef`` fails and the task is passed over): the
    PipelineRun would never finish. A lowering must skip such a task by its ``when`` first; the replay insists.
    """
    texts = [p["value"] for p in task.get("params", []) if isinstance(p["value"], str)]
    texts += [e["input"] for e in task.get("when", [])] + [v for e in task.get("when", []) for v in e["values"]]
    if not all(_resolve(text, states)[1] for text in texts):
        return "MissingResultsSkip"
    if not _when_allows(task.get("when", []), states, statuses):
        return "WhenExpressionsSkip"
    for param in task.get("matrix", {}).get("params", []):
        for text in param["value"] if isinstance(param["value"], list) else [param["value"]]:
            assert _resolve(text, states)[1], f"finally task {task['name']!r}: Tekton neither runs nor skips it"
    if any(_matrix_values(p["value"], states) == [] for p in task.get("matrix", {}).get("params", [])):
        return "EmptyArrayInMatrixParams"
    return None


def _matrix_values(value: Any, states: dict[str, TaskState]) -> list[str]:
    if isinstance(value, list):
        return [_resolve(v, states)[0] for v in value]
    resolved, _ = _resolve(value, states)
    assert isinstance(resolved, list), f"a matrix param must be an array, got {resolved!r}"
    return resolved


def _statuses(tasks: list[dict[str, Any]], states: dict[str, TaskState]) -> dict[str, str]:
    found = {f"tasks.{t['name']}.status": states[t["name"]].status for t in tasks}
    aggregate = "Succeeded"
    if any(states[t["name"]].status == "Failed" for t in tasks):
        aggregate = "Failed"
    elif any(states[t["name"]].skipped for t in tasks):
        aggregate = "Completed"
    found["tasks.status"] = aggregate
    return found


def _run(task: dict[str, Any], tasks: dict[str, dict[str, Any]], state: TaskState, states: dict[str, TaskState],
         statuses: dict[str, str],
         values: dict[str, str], contexts: dict[str, str], run_name: str, annotations: dict[str, str],
         store: Path, work: Path, cancel: Cancel | None = None) -> None:
    """Run every TaskRun of the task (one per matrix combination), with retries; record results and status.

    With ``cancel``, the TaskRuns start together (a matrix's TaskRuns are created at once), and once
    ``cancel.running()`` holds each is cancelled: SIGTERM, no retry, and the task's status is ``Failed``.
    """
    params = []
    for param in task.get("params", []):
        text = _STATUS_REF.sub(lambda m: statuses[m.group(0)[2:-1]], param["value"])
        value, resolved = _resolve(text, states)
        assert resolved, f"task {task['name']!r}: Tekton fails the run on the unresolvable reference in {text!r}"
        params.append({**param, "value": value})
    matrix = [(p["name"], _matrix_values(p["value"], states)) for p in task.get("matrix", {}).get("params", [])]
    combos = list(itertools.product(*(v for _, v in matrix))) if matrix else [()]
    assert len(combos) <= MAX_COMBINATIONS, f"Tekton refuses a matrix of {len(combos)} combinations"
    failed = False
    invocations = []
    for i, combo in enumerate(combos):
        extra = [{"name": name, "value": value} for (name, _), value in zip(matrix, combo)]
        taskrun = f"{run_name}-{task['name']}" + (f"-{i}" if matrix else "")
        results_dir = work / taskrun / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        _, argv, env = _task_invocation({**task, "params": params + extra}, tasks, values, contexts, run_name,
                                        annotations, results_dir=str(results_dir), taskrun=taskrun)
        invocations.append((taskrun, results_dir, argv, env))
    if cancel is not None:
        state.runs += _cancelled([(on_local_store(argv, store), env) for _, _, argv, env in invocations], cancel)
        state.status = "Failed"  # a cancelled TaskRun's Succeeded condition is False (reason TaskRunCancelled)
        return
    for taskrun, results_dir, argv, env in invocations:
        for _attempt in range(task.get("retries", 0) + 1):
            code, stderr = _process(on_local_store(argv, store), env)
            state.runs.append((argv, code, stderr))
            if code == 0:
                break
        if code != 0:
            failed = True
            continue
        for result in task_spec_of(task, tasks).get("results", []):
            path = results_dir / result["name"]
            assert path.exists(), f"task {task['name']!r} wrote no result {result['name']!r}"
            text = path.read_text(encoding="utf-8")
            value: Any = json.loads(text) if result.get("type") == "array" else text
            if result.get("type") == "array":
                assert isinstance(value, list) and all(isinstance(v, str) for v in value), value
            state.results[result["name"]] = value
        message = json.dumps([{"key": k, "value": v if isinstance(v, str) else json.dumps(v), "type": 1}
                              for k, v in state.results.items()])
        assert len(message.encode()) <= TERMINATION_LIMIT, f"{taskrun}: results over Tekton's termination message"
    state.status = "Failed" if failed else "Succeeded"


def _command(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    command = list(argv)
    if Path(command[0]).name in ("python", "python3"):
        command[0] = sys.executable
    full = env_with_cases()
    full.update(env)
    return command, full


def _process(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    command, full = _command(argv, env)
    done = subprocess.run(command, env=full, cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


def _cancelled(invocations: list[tuple[list[str], dict[str, str]]], cancel: Cancel) -> list[tuple[list[str], int, str]]:
    """Start the TaskRuns together, wait for ``cancel.running()``, SIGTERM each, and wait for them to end.

    The stderr pipe is read after the exit: a cancelled step writes little (its record says why)."""
    started = []
    try:
        for argv, env in invocations:
            command, full = _command(argv, env)
            started.append((argv, subprocess.Popen(command, env=full, cwd=str(ROOT), stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.PIPE, text=True, start_new_session=True)))
        deadline = time.monotonic() + CANCEL_WAIT
        while not cancel.running():  # an event the test names (its steps announce they run); bounded
            assert time.monotonic() < deadline, f"task {cancel.task!r}: its TaskRuns never ran"
            assert all(p.poll() is None for _, p in started), "a TaskRun ended before the cancel"
            time.sleep(0.02)
        for _, process in started:
            os.killpg(process.pid, signal.SIGTERM)  # the entrypoint forwards it to the step's process group
        return [(argv, process.wait(timeout=CANCEL_WAIT), process.stderr.read() if process.stderr else "")
                for argv, process in started]
    finally:
        for _, process in started:
            if process.poll() is None:
                process.kill()  # the kubelet's SIGKILL after the grace period
