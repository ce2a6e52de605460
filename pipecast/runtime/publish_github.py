"""GitHub Actions: publish a step's decision values as job outputs, and read the jobs' results for a handler.

Decision values (the outputs a condition tests) go to the file named by ``$GITHUB_OUTPUT`` in GitHub's
multiline form, ``NAME<<DELIMITER`` / value / ``DELIMITER`` (docs.github.com, "Workflow commands":
"Multiline strings"), with a random delimiter that the value does not contain, so no value can set another
output. Each value is canonical JSON, which the workflow reads with ``fromJSON(...)``. GitHub keeps at most
1 MB per job output and 50 MB for a run's outputs (docs.github.com, "Defining outputs for jobs"): a larger
value fails the step here, with the reason, instead of being cut by GitHub.

An exit handler or hook gets the final status from ``toJSON(needs)`` (each job's ``result``: success,
failure, cancelled or skipped) passed in ``PIPECAST_GITHUB_NEEDS``, and the job → step names in
``PIPECAST_GITHUB_STEPS``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from typing import Any

from pipecast.compiler.ir import canonical_json
from pipecast.errors import PipecastError
from pipecast.runtime.checks import check_substituted
from pipecast.runtime.executor import StepInvocation, Upstream, load_outputs
from pipecast.runtime.flow_plan import combined, final_status, zip_mismatch

MAX_MATRIX_JOBS = 256  # "A matrix will generate a maximum of 256 jobs per workflow run"
MAX_OUTPUT_BYTES = 1024 * 1024  # GitHub: "Outputs are Unicode strings, and can be a maximum of 1 MB"
_RESULTS = {"success": "succeeded", "failure": "failed", "cancelled": "cancelled", "skipped": "skipped"}


def output_lines(name: str, value: Any) -> str:
    """The ``$GITHUB_OUTPUT`` text that sets output ``name`` to ``value`` as JSON (multiline form)."""
    text = canonical_json(value)
    size = len(text.encode("utf-8"))
    if size > MAX_OUTPUT_BYTES:
        raise PipecastError(f"output {name!r} is {size} bytes as JSON; GitHub keeps at most {MAX_OUTPUT_BYTES} "
                            "bytes per job output, and a condition reads it from there. Return a smaller value "
                            "(e.g. a score, not the data)")
    delimiter = f"pipecast_{secrets.token_hex(16)}"
    while delimiter in text:  # vanishingly unlikely; never let the value end the block early
        delimiter = f"pipecast_{secrets.token_hex(16)}"
    return f"{name}<<{delimiter}\n{text}\n{delimiter}\n"


def publish_outputs(invocation: StepInvocation, names: Sequence[str], lists: Sequence[str] = ()) -> None:
    """Append the step's outputs ``names`` to ``$GITHUB_OUTPUT`` (after the step succeeded).

    For each of ``lists`` (outputs a map iterates) it writes ``items_NAME``: the list's indices, the values of
    the map's matrix (checked against GitHub's 256 jobs per matrix).
    """
    target = os.environ.get("GITHUB_OUTPUT")
    if not target:
        raise PipecastError("--github-output needs $GITHUB_OUTPUT, which GitHub Actions sets in every job step")
    wanted = list(dict.fromkeys([*names, *lists]))
    values = load_outputs(invocation.artifact_root, invocation.pipeline, invocation.run_id, invocation.step, wanted)
    text = "".join(output_lines(name, values[name]) for name in names)
    for name in lists:
        value = values[name]
        if not isinstance(value, list):
            raise PipecastError(f"output {name!r} is {type(value).__name__} {value!r:.80}; a map iterates it, so "
                                "it must be a list")
        if len(value) > MAX_MATRIX_JOBS:
            raise PipecastError(f"output {name!r} has {len(value)} items; a map over it is a GitHub matrix, which "
                                f"runs at most {MAX_MATRIX_JOBS} jobs. Return fewer items, or batch them")
        text += output_lines(f"items_{name}", list(range(len(value))))
    with open(target, "a", encoding="utf-8") as file:
        file.write(text)


def status_from_needs(needs_json: str, steps_json: str) -> dict[str, Any]:
    """The status an exit handler or hook gets, from ``toJSON(needs)`` and the job → step names.

    GitHub does not give a failed job's error to the jobs after it: ``error`` names the failed job instead.
    """
    needs = json.loads(needs_json or "{}")
    steps = json.loads(steps_json or "{}")
    states = []
    for job, step in steps.items():
        result = (needs.get(job) or {}).get("result", "skipped")
        status = _RESULTS.get(result, "failed")
        states.append((step, status, f"job {job!r} ended with result {result!r}" if status == "failed" else None))
    return final_status(states)


def with_status(invocation: StepInvocation, inputs: Sequence[str]) -> StepInvocation:
    """``invocation`` with the final status (from the environment) bound to ``inputs``."""
    from dataclasses import replace

    status = status_from_needs(os.environ.get("PIPECAST_GITHUB_NEEDS", ""),
                               os.environ.get("PIPECAST_GITHUB_STEPS", ""))
    return replace(invocation, values={**invocation.values, **dict.fromkeys(inputs, status)})


def with_map_values(invocation: StepInvocation, items: Sequence[str], collected: Sequence[str],
                    index: int | None = None) -> StepInvocation:
    """``invocation`` with map items and collected results bound (GitHub matrix jobs).

    ``items``: ``INPUT=COMBINE:INDEX`` (INDEX ``-`` for the whole item) binds item ``$PIPECAST_GITHUB_INDEX``
    (the matrix's ``strategy.job-index``; or ``index``, an Azure ML parallel_for item) of the map; ``collected``:
    ``INPUT=COMBINE:STEP/OUTPUT`` binds every item's OUTPUT of the mapped STEP, in item order (read from the
    artifact store: a matrix job's own outputs keep only the last item's). The map's lists arrive as the inputs
    ``INPUT#0``, ``INPUT#1``... (a parameter, a constant or an upstream output), which are removed before the step
    runs.
    """
    from dataclasses import replace

    values, upstream = dict(invocation.values), dict(invocation.upstream)
    for spec, collect in [(s, False) for s in items] + [(s, True) for s in collected]:
        name, _, rest = spec.partition("=")
        combine, _, what = rest.partition(":")
        lists = _lists(invocation, name, values, upstream)
        combos = _combined(name, combine, lists)
        if collect:
            step, _, output = what.rpartition("/")
            upstream[name] = tuple(Upstream(f"{step}[{i}]", output) for i in range(len(combos)))
            continue
        if index is None:
            index = _job_index(name, os.environ.get("PIPECAST_GITHUB_INDEX", ""))
        if index >= len(combos):
            raise PipecastError(f"input {name!r}: matrix job {index} has no item (the map has {len(combos)})")
        values[name] = combos[index] if what == "-" else combos[index][int(what)]
    return replace(invocation, values=values, upstream=upstream)


def _job_index(name: str, text: str) -> int:
    """The matrix job's item index from ``$PIPECAST_GITHUB_INDEX`` (``${{ strategy.job-index }}``)."""
    what = f"input {name!r}: the matrix job's item index ($PIPECAST_GITHUB_INDEX)"
    check_substituted(what, text, "the job cannot know its item")
    try:
        return int(text)
    except ValueError:
        raise PipecastError(f"{what} is {text!r}, not a number") from None


def _lists(invocation: StepInvocation, name: str, values: dict[str, Any], upstream: dict[str, Any]) -> list[Any]:
    lists: list[list[Any]] = []
    while f"{name}#{len(lists)}" in values or f"{name}#{len(lists)}" in upstream:
        key = f"{name}#{len(lists)}"
        if key in values:
            value = values.pop(key)
        else:
            ref = upstream.pop(key)
            value = load_outputs(invocation.artifact_root, invocation.pipeline, invocation.run_id, ref.step,
                                 [ref.output])[ref.output]
        if not isinstance(value, list):
            raise PipecastError(f"input {name!r} maps over {type(value).__name__} {value!r:.80}, not a list")
        lists.append(value)
    return lists


def _combined(name: str, combine: str, lists: list[list[Any]]) -> list[Any]:
    """The map's items, as :meth:`pipecast.runtime.flow_plan.FlowPlan.items` builds them."""
    return combined(lists, combine, zip_mismatch(f"input {name!r}"))
