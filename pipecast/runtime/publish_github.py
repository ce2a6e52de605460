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
from pipecast.runtime.executor import StepInvocation, load_outputs
from pipecast.runtime.flow_plan import final_status

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


def publish_outputs(invocation: StepInvocation, names: Sequence[str]) -> None:
    """Append the step's outputs ``names`` to ``$GITHUB_OUTPUT`` (after the step succeeded)."""
    target = os.environ.get("GITHUB_OUTPUT")
    if not target:
        raise PipecastError("--github-output needs $GITHUB_OUTPUT, which GitHub Actions sets in every job step")
    values = load_outputs(invocation.artifact_root, invocation.pipeline, invocation.run_id, invocation.step, names)
    text = "".join(output_lines(name, values[name]) for name in names)
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
