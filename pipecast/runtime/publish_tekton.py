"""Tekton Pipelines: decision values as Task results, map items, fan-in and the final status (issue 16).

Tekton evaluates ``when`` expressions (``input``/``operator`` ``in``|``notin``/``values``: text equality only,
docs/pipelines.md "Guard Task execution using when expressions") and fans a task out with ``matrix`` over an
array (docs/matrix.md). Python's comparisons are not text equality, so a small task per if/elif/else chain
evaluates the chain here, with :class:`~pipecast.runtime.flow_plan.FlowPlan`'s rules, and writes the name of the
branch that runs (or ``none``) to its result file ``$(results.branch.path)``; each branch's tasks test it with
``in``. A map's items are published as an array result of item indices (``"0"``, ``"1"``…), which the mapped
tasks' ``matrix`` iterates; each item's runtime takes item ``i`` from the list itself, so values keep their exact
JSON. Results travel in the pod's termination message, 4096 bytes for all of a task's results by default
(``results-from: termination-message``), and Tekton refuses more than ``default-max-matrix-combinations-count``
(256) combinations: both are checked here before a result is written, so the step fails saying why.

Task commands (``python -m pipecast.runtime.publish_tekton items|decide ...``) and step options
(``python -m pipecast.runtime run ... --tekton-*``):

    --tekton-index I                    this TaskRun's matrix value: the item index
    --tekton-item INPUT=COMBINE:WHICH   bind INPUT to item I of the map (lists in INPUT#k; WHICH ``-`` or k)
    --tekton-collect INPUT=COMBINE:STEP/OUTPUT   bind INPUT to every item's OUTPUT of STEP (lists in INPUT#k)
    --tekton-one-of INPUT=STEP/OUTPUT   one per source: INPUT is the output of the source whose branch ran
    --tekton-status INPUT=STEP=STATUS[=MAPPED]   a step's ``$(tasks.<name>.status)`` for a handler's status
    --tekton-if SPEC                    the branches around the step inside its map (percent-encoded JSON: a
                                        mini plan, the branches, the steps read per item); its lists in
                                        ``pipecast-if#k``, the parameters they read in ``--tekton-if-param``
    --tekton-check STEP=item|items|step  an upstream the runtime may have skipped: this item's instance, every
                                        item (skipped when all were), or the step

Conditions inside a map cannot be ``when`` expressions: a ``when`` belongs to the whole matrixed task, evaluated
once before it fans out (docs/matrix.md, docs/pipelines.md). So every TaskRun starts, and the runtime of an item
whose branch does not run, or whose upstream item did not run, records the instance skipped and exits 0
(:class:`ItemSkipped`), as ``pipecast run`` skips it; a fan-in gets the items that ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from collections.abc import Sequence
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.checks import check_substituted
from pipecast.runtime.executor import StepInvocation, Upstream, load_outputs, now
from pipecast.runtime.flow_plan import FlowPlan, combined, final_status, zip_mismatch
from pipecast.runtime.params import decode_constant, decode_parameter, encode_constant
from pipecast.runtime.publish_kfp import HookSkipped

RESULT_LIMIT = 4096  # Tekton's default: one termination message per pod, for all of its results
MAX_COMBINATIONS = 256  # config-defaults default-max-matrix-combinations-count
MAX_INDEX = 1 << 31  # an item index read where the map's size is not at hand
NO_BRANCH = "none"
_STATUS = {"Succeeded": "succeeded", "Failed": "failed", "None": "skipped"}


IF_LISTS = "pipecast-if"  # the name a map's lists are bound to for the conditions inside it (not an identifier)


class ItemSkipped(HookSkipped):
    """This item does not run (its branch, or an upstream item, did not): recorded skipped, the TaskRun exits 0."""


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The runtime's ``--tekton-*`` step options."""
    run.add_argument("--tekton-index", default=None)
    run.add_argument("--tekton-if", default=None)
    for flag in ("item", "collect", "one-of", "status", "check", "if-param"):
        run.add_argument(f"--tekton-{flag}", action="append", default=[])


def apply(inv: StepInvocation, ns: argparse.Namespace) -> StepInvocation:
    """The invocation with its map item, collected results, OneOf source and final status bound."""
    if not (ns.tekton_item or ns.tekton_collect or ns.tekton_one_of or ns.tekton_status or ns.tekton_check
            or ns.tekton_if):
        return inv
    values, upstream = dict(inv.values), dict(inv.upstream)
    store = ArtifactStore(inv.artifact_root)
    checks = dict(spec.partition("=")[::2] for spec in ns.tekton_check)
    for step, mode in checks.items():
        reason = _upstream_skip(store, inv, step, mode, ns.tekton_index)
        if reason:
            _skip(store, inv, reason)
    if ns.tekton_if is not None:
        _decide_item(store, inv, ns, values, upstream)
    for spec, collect in [(s, False) for s in ns.tekton_item] + [(s, True) for s in ns.tekton_collect]:
        name, _, rest = spec.partition("=")
        combine, _, what = rest.partition(":")
        combos = map_items(name, combine, _lists(inv, name, values, upstream))
        if collect:  # the items that ran, when some may have been skipped (pipecast run leaves those out)
            step, _, output = what.rpartition("/")
            names = [f"{step}[{i}]" for i in range(len(combos))]
            if checks.get(step) == "items":
                names = [n for n in names if _status(store, inv, n) == "succeeded"]
            upstream[name] = tuple(Upstream(n, output) for n in names)
            continue
        index = _index(ns.tekton_index, len(combos), name)
        values[name] = combos[index] if what == "-" else combos[index][int(what)]
    sources: dict[str, list[Upstream]] = {}
    for spec in ns.tekton_one_of:
        name, _, ref = spec.partition("=")
        step, _, output = ref.rpartition("/")
        sources.setdefault(name, []).append(Upstream(step, output))
    for name, refs in sources.items():
        ran = [r for r in refs if _succeeded(store, inv, r.step)]
        if not ran and ns.tekton_index is not None:  # branches in this map: none ran for this item
            _skip(store, inv, f"input {name!r}: no branch of its OneOf ran for this item")
        if len(ran) != 1:
            raise PipecastError(f"input {name!r} is one of {[r.step for r in refs]}, but {len(ran)} of them ran "
                                f"({[r.step for r in ran]}); exactly one branch must have run")
        upstream[name] = ran[0]
    states: dict[str, list[tuple[str, str, str | None]]] = {}
    for spec in ns.tekton_status:
        name, step, status, *mapped = spec.split("=")
        states.setdefault(name, []).extend(_states(store, inv, step, status, bool(mapped)))
    values.update({name: final_status(found) for name, found in states.items()})
    return dataclasses.replace(inv, values=values, upstream=upstream)


def _status(store: ArtifactStore, inv: StepInvocation, step: str) -> str:
    path = f"{store.step_dir(inv.pipeline, inv.run_id, step)}/meta.json"
    return str(store.read_json(path).get("status") or "unknown") if store.exists(path) else "without a record"


def _skip(store: ArtifactStore, inv: StepInvocation, reason: str) -> None:
    """Record this instance skipped, as ``pipecast run`` does, and end the TaskRun with status 0."""
    store.write_json(f"{store.step_dir(inv.pipeline, inv.run_id, inv.step)}/meta.json",
                     {"step": inv.step, "status": "skipped", "ended_at": now(), "reason": reason})
    raise ItemSkipped(f"step {inv.step!r} skipped: {reason}")


def _upstream_skip(store: ArtifactStore, inv: StepInvocation, step: str, mode: str, index: str | None) -> str | None:
    """Why this instance is skipped because of upstream ``step`` (None: it ran), by ``--tekton-check``'s mode."""
    if mode == "item":
        name = f"{step}[{_index(index, MAX_INDEX, step)}]"
        status = _status(store, inv, name)
        return None if status == "succeeded" else f"upstream {name!r} {status}"
    if mode == "items":
        statuses = {_status(store, inv, n) for n in itertools.takewhile(
            lambda n: _status(store, inv, n) != "without a record", (f"{step}[{i}]" for i in itertools.count()))}
        return f"upstream step {step!r} was skipped" if statuses <= {"skipped"} else None
    status = _status(store, inv, step)
    return None if status == "succeeded" else f"upstream step {step!r} was skipped"


def _decide_item(store: ArtifactStore, inv: StepInvocation, ns: argparse.Namespace, values: dict[str, Any],
                 upstream: dict[str, Any]) -> None:
    """Skip this item when a branch around the step inside its map does not run for it (FlowPlan's rules)."""
    spec = decode_constant(ns.tekton_if)
    plan = FlowPlan(ir._from_plain(ir.Pipeline, spec["plan"]))  # the IR's own codec
    params = {}
    for text in ns.tekton_if_param:
        name, _, typed = text.partition("=")
        kind, _, value = typed.partition(":")
        params[name] = decode_parameter(kind, value)
    item: Any = None
    if spec.get("combine"):
        combos = map_items(IF_LISTS, spec["combine"], _lists(inv, IF_LISTS, values, upstream))
        item = combos[_index(ns.tekton_index, len(combos), IF_LISTS)]
    index = _index(ns.tekton_index, MAX_INDEX, "the item's conditions")

    def resolve(operand: ir.Operand, _path: tuple[int, ...]) -> Any:
        if operand.kind is ir.BindingKind.PARAMETER:
            return params[operand.parameter or ""]
        if operand.kind is ir.BindingKind.ITEM:
            return item if operand.index is None else item[operand.index]
        if operand.kind is ir.BindingKind.OUTPUT:
            step, output = operand.step or "", operand.output or ""
            name = f"{step}[{index}]" if step in spec["mapped"] else step
            return load_outputs(inv.artifact_root, inv.pipeline, inv.run_id, name, [output])[output]
        return operand.value

    for name in spec["groups"]:
        group = plan.groups[name]
        if not plan.branch_runs(group, (index,), resolve):
            why = "an earlier branch ran" if group.condition is None or plan.holds(
                group.condition, (index,), resolve) else f"`{group.condition}` is false"
            _skip(store, inv, f"{group.label or 'if'} branch {group.name!r}: {why}")


def _index(text: str | None, count: int, name: str) -> int:
    check_substituted(f"input {name!r}: the matrix's item index", text or "", "the task cannot know its item")
    try:
        index = int(text or "")
    except ValueError:
        raise PipecastError(f"input {name!r}: the matrix gave item index {text!r}, not a number") from None
    if not 0 <= index < count:
        raise PipecastError(f"input {name!r}: the matrix gave item {index}, but the map has {count} items")
    return index


def _succeeded(store: ArtifactStore, inv: StepInvocation, step: str) -> bool:
    path = f"{store.step_dir(inv.pipeline, inv.run_id, step)}/meta.json"
    return store.exists(path) and store.read_json(path).get("status") == "succeeded"


def _states(store: ArtifactStore, inv: StepInvocation, step: str, status: str,
            mapped: bool) -> list[tuple[str, str, str | None]]:
    """``(instance, status, error)`` of a step from Tekton's status; a failure's error and items from the store.

    Tekton reports ``Failed`` for a cancelled TaskRun too (``GetPipelineTaskStatus``: its Succeeded condition is
    False), so the records tell: an instance its runtime recorded ``cancelled`` (the TaskRun's pod got SIGTERM, as
    in a graceful cancel) is cancelled, as ``pipecast run`` records it; one without a record failed.
    """
    mine = _STATUS.get(status, "failed")
    if mine != "failed":
        return [(step, mine, None)]
    names = [step]
    if mapped:
        names = list(itertools.takewhile(
            lambda n: store.exists(f"{store.step_dir(inv.pipeline, inv.run_id, n)}/meta.json"),
            (f"{step}[{i}]" for i in itertools.count())))
    found: list[tuple[str, str, str | None]] = []
    for name in names:
        path = f"{store.step_dir(inv.pipeline, inv.run_id, name)}/meta.json"
        meta = store.read_json(path) if store.exists(path) else {}
        recorded = meta.get("status", "failed")
        if recorded == "failed":
            found.append((name, "failed", meta.get("error") or f"Tekton reported task status {status!r}"))
        elif recorded == "cancelled":
            found.append((name, "cancelled", None))
    return found or [(step, "failed", f"Tekton reported task status {status!r}")]


def _lists(inv: StepInvocation, name: str, values: dict[str, Any], upstream: dict[str, Any]) -> list[list[Any]]:
    """The map's lists, bound to ``NAME#0``, ``NAME#1``… (removed before the step runs)."""
    lists: list[list[Any]] = []
    while f"{name}#{len(lists)}" in values or f"{name}#{len(lists)}" in upstream:
        key = f"{name}#{len(lists)}"
        if key in values:
            value = values.pop(key)
        else:
            ref = upstream.pop(key)
            value = load_outputs(inv.artifact_root, inv.pipeline, inv.run_id, ref.step, [ref.output])[ref.output]
        if not isinstance(value, list):
            raise PipecastError(f"input {name!r} maps over {type(value).__name__} {value!r:.80}, not a list")
        lists.append(value)
    return lists


def map_items(name: str, combine: str, lists: list[list[Any]]) -> list[Any]:
    """The map's items, as :meth:`pipecast.runtime.flow_plan.FlowPlan.items` builds them."""
    return combined(lists, combine, zip_mismatch(f"map {name!r}"))


# -- the items and decide tasks ------------------------------------------------------------------------------

def write_result(path: str, name: str, text: str, limit: int = RESULT_LIMIT) -> None:
    """Write result ``name`` (no newline: ``when`` compares the whole text); refuse one over Tekton's limit."""
    size = len(text.encode("utf-8"))
    if size > limit:
        raise PipecastError(f"result {name!r} is {size} bytes; Tekton keeps at most {limit} bytes of a task's "
                            "results (its pod's termination message)")
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)


def index_text(count: int) -> str:
    """The array result a map's matrix iterates: ``["0","1",…]``."""
    return json.dumps([str(i) for i in range(count)], separators=(",", ":"))


def condition_arg(condition: ir.Condition | None) -> str:
    """A branch's condition as one command argument (percent-encoded JSON; ``-`` for an else)."""
    if condition is None:
        return "-"
    return encode_constant(ir.canonical_json(compact(ir._to_plain(condition))))  # the IR's own codec


def compact(value: Any) -> Any:
    """The IR's JSON without the fields that hold their default (None, empty): ``from_plain`` restores them."""
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items() if v not in (None, [])}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipecast.runtime.publish_tekton",
                                     description="Publish a map's item indices or a chain's branch as a Tekton "
                                                 "result.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("items", "decide"):
        task = sub.add_parser(name)
        task.add_argument("--pipeline", required=True)
        task.add_argument("--run-id", required=True)
        task.add_argument("--artifact-root", required=True)
        task.add_argument("--result", required=True)
        task.add_argument("--param", action="append", default=[])
        task.add_argument("--const", action="append", default=[])
        task.add_argument("--upstream", action="append", default=[])
    items = sub.choices["items"]
    items.add_argument("--map", required=True)
    items.add_argument("--combine", default="zip")
    items.add_argument("--max", type=int, default=MAX_COMBINATIONS)
    sub.choices["decide"].add_argument("--branch", action="append", default=[])
    return parser


def _operands(ns: argparse.Namespace) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    values: dict[str, Any] = {}
    for item in ns.param:
        name, _, typed = item.partition("=")
        kind, _, text = typed.partition(":")
        values[name] = decode_parameter(kind, text)
    for item in ns.const:
        name, _, encoded = item.partition("=")
        values[name] = decode_constant(encoded)
    refs = {}
    for item in ns.upstream:
        name, _, ref = item.partition("=")
        step, _, output = ref.rpartition("/")
        refs[name] = (step, output)
    return values, refs


def items(ns: argparse.Namespace) -> None:
    """Publish the indices of a map's items (result ``index``)."""
    values, refs = _operands(ns)
    for name, (step, output) in refs.items():
        values[name] = load_outputs(ns.artifact_root, ns.pipeline, ns.run_id, step, [output])[output]
    lists = []
    for k in range(len(values)):
        value = values[f"list#{k}"]
        if not isinstance(value, list):
            raise PipecastError(f"map {ns.map!r} iterates {type(value).__name__} {value!r:.80}, not a list")
        lists.append(value)
    count = len(map_items(ns.map, ns.combine, lists))
    if count > ns.max:
        raise PipecastError(f"map {ns.map!r} has {count} items; Tekton fans a task out into at most {ns.max} "
                            "TaskRuns (config-defaults default-max-matrix-combinations-count). Map over fewer "
                            "items, batch several items per step, or raise the cluster's limit and the "
                            "max_matrix_combinations setting")
    if not count:
        raise PipecastError(f"map {ns.map!r} has no items; Tekton skips a task whose matrix is empty and every "
                            "task after it, where pipecast gives the step after the map an empty list. Map over "
                            "a list with items (or run it with the local target)")
    write_result(ns.result, "index", index_text(count))


def decide(ns: argparse.Namespace) -> None:
    """Publish the name of the chain's branch that runs (``branch``), or ``none``."""
    values, refs = _operands(ns)

    def resolve(operand: ir.Operand, _path: tuple[int, ...]) -> Any:
        if operand.kind is ir.BindingKind.PARAMETER:
            return values[operand.parameter or ""]
        if operand.kind is ir.BindingKind.OUTPUT:
            step, output = operand.step or "", operand.output or ""
            return load_outputs(ns.artifact_root, ns.pipeline, ns.run_id, step, [output])[output]
        if operand.kind is ir.BindingKind.CONSTANT:
            return operand.value
        raise PipecastError(f"a condition of this chain reads {operand.kind.value}, which Tekton cannot give it")

    del refs  # outputs are read as the conditions name them
    plan = FlowPlan(ir.Pipeline(name=ns.pipeline))
    chosen = NO_BRANCH
    for spec in ns.branch:
        name, _, text = spec.partition("=")
        if text == "-":
            chosen = name
            break
        condition = ir._from_plain(ir.Condition, decode_constant(text))  # the IR's own codec
        if plan.holds(condition, (), resolve):
            chosen = name
            break
    write_result(ns.result, "branch", chosen)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``items`` or ``decide`` task; exit 2 with one message on bad input."""
    ns = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        items(ns) if ns.command == "items" else decide(ns)
    except PipecastError as err:
        print(f"pipecast: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
