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

**Chain jobs.** ``python -m pipecast.runtime.publish_github`` runs as the job of an if/elif/else chain (no user
code) and writes ``branch``: the place of the first branch whose condition holds with ``pipecast run``'s rules
(:meth:`~pipecast.runtime.flow_plan.FlowPlan.holds`: text compared as Python does, case and all), or -1. Each
branch job's ``if:`` then tests ``needs.CHAIN.outputs.branch == 'K'``: one test per branch, so the workflow
grows linearly with the chain::

    --branch K=COND           one per branch, in order (COND: the IR's condition as percent-encoded JSON, - for
                              an else)
    --param NAME=TYPE:TEXT    a parameter as the run's input gives it
    --value STEP/OUTPUT=JSON  a step's decision value, as its job published it (canonical JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.ir import canonical_json
from pipecast.errors import PipecastError
from pipecast.runtime.checks import check_substituted
from pipecast.runtime.executor import StepInvocation, Upstream, load_outputs
from pipecast.runtime.flow_plan import FlowPlan, combined, final_status, zip_mismatch
from pipecast.runtime.params import decode_constant, decode_parameter

MAX_MATRIX_JOBS = 256  # "A matrix will generate a maximum of 256 jobs per workflow run"
MAX_OUTPUT_BYTES = 1024 * 1024  # GitHub: "Outputs are Unicode strings, and can be a maximum of 1 MB"
NO_BRANCH = -1  # ``branch`` when no branch of the chain runs (no job's if: compares with it)
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


def chosen_branch(branches: Sequence[str], params: Sequence[str], values: Sequence[str]) -> int:
    """The place of the chain's first branch whose condition holds (``pipecast run``'s rules), or -1."""
    known: dict[tuple[str, str], Any] = {}
    for spec in params:
        name, _, typed = spec.partition("=")
        kind, _, text = typed.partition(":")
        known[("parameter", name)] = decode_parameter(kind, text)
    for spec in values:
        ref, _, text = spec.partition("=")
        try:
            known[("output", ref)] = json.loads(text)
        except ValueError:
            raise PipecastError(f"output {ref!r} reached the chain as {text!r:.80}, not the JSON its job "
                                "published (did that job run?)") from None

    def resolve(operand: ir.Operand, _path: tuple[int, ...]) -> Any:
        if operand.kind is ir.BindingKind.CONSTANT:
            return operand.value
        key = ("parameter", operand.parameter or "") if operand.kind is ir.BindingKind.PARAMETER else \
            ("output", f"{operand.step}/{operand.output}")
        if key not in known:
            raise PipecastError(f"a condition of this chain reads {key[0]} {key[1]!r}, which the job was not given")
        return known[key]

    plan = FlowPlan(ir.Pipeline(name="chain"))  # holds() needs no group of the pipeline
    for spec in branches:
        place, _, text = spec.partition("=")
        if text == "-" or plan.holds(ir._from_plain(ir.Condition, decode_constant(text)), (), resolve):
            return int(place)
    return NO_BRANCH


def main(argv: Sequence[str] | None = None) -> int:
    """Decide a chain's branch and append ``branch=K`` to ``$GITHUB_OUTPUT`` (exit 2 with one line on an error)."""
    parser = argparse.ArgumentParser(prog="python -m pipecast.runtime.publish_github")
    for flag in ("--branch", "--param", "--value"):
        parser.add_argument(flag, action="append", default=[])
    ns = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        target = os.environ.get("GITHUB_OUTPUT")
        if not target:
            raise PipecastError("the chain's job needs $GITHUB_OUTPUT, which GitHub Actions sets in every job step")
        branch = chosen_branch(ns.branch, ns.param, ns.value)
    except PipecastError as err:
        print(f"pipecast: error: {err}", file=sys.stderr)
        return 2
    with open(target, "a", encoding="utf-8") as file:
        file.write(f"branch={branch}\n")
    print(f"pipecast: branch {branch} of the chain runs" if branch != NO_BRANCH else "pipecast: no branch runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
