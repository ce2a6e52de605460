"""The runtime side of a nested map flattened onto Airflow's one level of dynamic task mapping.

Airflow refuses a mapped task group inside a mapped task group and a mapped task inside one, so a map inside a
map (``pipecast/targets/airflow/nested.py``) is flattened: the inner map's publisher task returns the flat list
of every outer item's inner items, one entry ``[i, j, outer item, inner item]`` per instance ``step[i][j]``, in
the order ``pipecast run`` numbers them, and each step inside the inner map is one task expanded over that list.

Each instance reads what ``pipecast run`` reads for it: its item from the flat list, its upstream instances at
their own depth, and collected lists from the artifact store (an outer item without inner items: ``[]``). It is
skipped when one of those instances did not succeed (Airflow's trigger rules normally stop it first).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.ir import canonical_json
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.flow_plan import FlowPlan, final_status, instance_name
from pipecast.runtime.params import encode_constant

Path = tuple[int, ...]
# A step in a pod gets the inner publishers' flat lists in its environment, ``{inner map: list or null}`` as JSON,
# which Airflow renders from their XComs (``pipecast/targets/airflow/pod_flow.py``); a TaskFlow task's payload
# carries them as ``pairs``.
POD_PAIRS_VAR = "PIPECAST_AIRFLOW_PAIRS"


class NestedSkip(Exception):
    """The instance does not run (the reason is printed in the task's log)."""


def step_record(spec: dict[str, Any], run_id: str, name: str) -> dict[str, Any]:
    """A step instance's ``meta.json`` record in the artifact store ({} when it has none)."""
    store = ArtifactStore(spec["root"])
    path = f"{store.step_dir(spec['pipeline'], run_id, name)}/meta.json"
    return dict(store.read_json(path)) if store.exists(path) else {}


def _status(spec: dict[str, Any], run_id: str, name: str) -> str:
    return str(step_record(spec, run_id, name).get("status", "skipped"))


def _resolver(spec: dict[str, Any], payload: dict[str, Any], plan: FlowPlan,
              outer: list[Any] | None) -> Callable[[ir.Operand, Path], Any]:
    """Operands at item path ``path``: the outer item, a step's output at its own depth, parameters, constants."""
    def resolve(operand: ir.Operand, path: Path) -> Any:
        if operand.kind is ir.BindingKind.PARAMETER:
            return payload["params"][operand.parameter]
        if operand.kind is ir.BindingKind.ITEM:
            item = (outer or [])[path[0]]
            return item if operand.index is None else item[operand.index]
        if operand.kind is ir.BindingKind.OUTPUT and operand.step:
            depth = spec["depths"].get(operand.step, 0)
            name = instance_name(operand.step, path[:depth])
            return load_outputs(spec["root"], spec["pipeline"], payload["run_id"], name,
                                [operand.output or ""])[operand.output or ""]
        return operand.value
    return resolve


def pairs(spec: dict[str, Any], payload: dict[str, Any]) -> list[list[Any]]:
    """The inner map's flat list: ``[i, j, outer item, inner item]`` for every outer item i whose inner map runs.

    An outer item whose inner map is in a branch that does not run there, or whose inner list (or deciding value)
    comes from a step of the outer body that did not run, has no inner items, as ``pipecast run`` leaves that
    inner map unexpanded (the rules of ``FlowPlan.inner_map_skipped``, whose mini plan here has no steps: a
    step's depth comes from the spec).
    """
    plan = FlowPlan(ir.Pipeline.from_json(spec["plan"]))
    outer_group, inner_group = plan.groups[spec["outer"]], plan.groups[spec["group"]]
    resolve = _resolver(spec, payload, plan, None)
    outer = plan.items(outer_group, (), resolve)
    resolve = _resolver(spec, payload, plan, outer)
    branches = plan.branches_around(inner_group)
    reads = [o for b in branches for g in plan.chains.get(b.chain or "", [b]) if g.condition
             for o in g.condition.all_operands()] + list(inner_group.items)
    steps = {o.step: spec["depths"].get(o.step, 0) for o in reads if o.kind is ir.BindingKind.OUTPUT and o.step}
    flat: list[list[Any]] = []
    for i, outer_item in enumerate(outer):
        if any(_status(spec, payload["run_id"], instance_name(s, (i,)[:d])) != "succeeded" for s, d in steps.items()) \
                or not all(plan.branch_runs(b, (i,), resolve) for b in branches):
            continue
        flat += [[i, j, outer_item, item] for j, item in enumerate(plan.items(inner_group, (i,), resolve))]
    return flat


def _check_conditions(spec: dict[str, Any], payload: dict[str, Any], path: Path, outer_item: Any,
                      inner_item: Any) -> None:
    """Raise :class:`NestedSkip` when a branch around the step (inside its innermost map) does not run here.

    The rules of :mod:`pipecast.runtime.flow_plan`, at the instance's own path: items by their map, step outputs
    at their own depth.
    """
    conditions = spec.get("conditions")
    if not conditions:
        return
    plan = FlowPlan(ir.Pipeline.from_json(conditions["plan"]))
    outer_map = next(name for name, g in plan.groups.items() if g.kind is ir.GroupKind.MAP
                     and not any(a.kind is ir.GroupKind.MAP for a in plan.ancestors(g.parent)))

    def resolve(operand: ir.Operand, at: Path) -> Any:
        if operand.kind is ir.BindingKind.PARAMETER:
            return payload["params"][operand.parameter]
        if operand.kind is ir.BindingKind.ITEM:
            item = outer_item if operand.group == outer_map else inner_item
            return item if operand.index is None else item[operand.index]
        if operand.kind is ir.BindingKind.OUTPUT and operand.step:
            name = instance_name(operand.step, at[:conditions["depths"].get(operand.step, 0)])
            status = _status(spec, payload["run_id"], name)
            if status != "succeeded":
                raise NestedSkip(f"the condition reads {name!r}, which {status}")
            return load_outputs(spec["root"], spec["pipeline"], payload["run_id"], name,
                                [operand.output or ""])[operand.output or ""]
        return operand.value

    for name in conditions["groups"]:
        group = plan.groups[name]
        if not plan.branch_runs(group, path, resolve):
            raise NestedSkip(plan.skip_reason(group, path, resolve))


def instance_argv(spec: dict[str, Any], payload: dict[str, Any], argv: list[str]) -> list[str]:
    """The runtime command of a nested instance (raises :class:`NestedSkip` when it must not run).

    ``spec["nested"]``: the step's own path length (2: inside the inner map, 1: in the outer body, 0: after the
    maps); its item (``[i, j, outer, inner]`` from the flat list, or the outer item) or map index gives its path.
    """
    run_id, depth = payload["run_id"], spec["nested"]
    if depth == 2:
        i, j, outer_item, inner_item = payload["item"]
        path: Path = (i, j)
    else:
        path = (payload["map_index"],) if depth == 1 else ()
        outer_item, inner_item = payload.get("item"), None
    _check_conditions(spec, payload, path, outer_item, inner_item)
    argv = list(argv)
    if path:
        argv[argv.index("--step") + 1] = instance_name(argv[argv.index("--step") + 1], path)
    extra: list[str] = []
    for name, (group_depth, position) in spec.get("items", {}).items():
        value = outer_item if group_depth == 0 else inner_item
        value = value if position is None else value[position]
        extra += ["--const", f"{name}={encode_constant(canonical_json(value))}"]
    for name, (step, output, step_depth) in spec.get("mapped_upstream", {}).items():
        source = instance_name(step, path[:step_depth])
        if _status(spec, run_id, source) != "succeeded":
            raise NestedSkip(f"upstream {source!r} did not run")
        extra += ["--upstream", f"{name}={source}/{output}"]
    for name, sources in spec.get("one_of", {}).items():  # the branch that ran for this pair (or row)
        named = [(instance_name(step, path[:depth]), output) for step, output, depth in sources]
        ran = [(source, output) for source, output in named if _status(spec, run_id, source) == "succeeded"]
        if not ran:
            raise NestedSkip(f"input {name!r}: no branch of its OneOf ran for this item")
        extra += ["--upstream", f"{name}={ran[0][0]}/{ran[0][1]}"]
    for name, covered in spec.get("status", {}).items():  # a handler: the instances of its group it covers
        extra += ["--const", f"{name}={encode_constant(canonical_json(_group_status(spec, payload, covered, path)))}"]
    for name, (step, output, inner, outer) in spec.get("collected", {}).items():
        nested = _collected(spec, payload, step, output, inner, outer, path)
        extra += ["--collected", f"{name}={encode_constant(canonical_json(nested))}"]
    outputs = argv.index("--output") if "--output" in argv else len(argv)
    return argv[:outputs] + extra + argv[outputs:]


def _collected(spec: dict[str, Any], payload: dict[str, Any], step: str, output: str, inner: str | None,
               outer: str, path: Path) -> dict[str, Any]:
    """A mapped step's outputs in item order, as the executor reads a collected input.

    An inner map's per outer item (``path`` = (i,)); after the maps, lists of lists (``inner`` set) or a list (a
    step of the outer body).

    Every instance must have succeeded (else this instance is skipped, as ``pipecast run`` does not run a fan-in
    over a failed item); an outer item with no inner items gives an empty list.
    """
    run_id = payload["run_id"]
    if inner is None:
        names = _ran(spec, run_id, [instance_name(step, (i,)) for i in range(payload["counts"][outer])],
                     spec["trigger"] == "always")
        return {"items": [[n, output] for n in names]}
    flat = flat_lists(payload).get(inner)
    if flat is None and _status(spec, run_id, step) == "failed":  # its inner lists could not be made: no pairs,
        flat = []  # as pipecast run collects a step that failed as a whole (an empty list per row)
    if flat is None:
        raise NestedSkip(f"the items of inner map {inner!r} were not published (its publisher task did not succeed)")
    wanted = [path[0]] if path else list(range(payload["counts"][outer]))
    lists = []
    for i in wanted:
        names = _ran(spec, run_id, [instance_name(step, (i, j)) for pi, j, *_ in flat if pi == i],
                     spec["trigger"] == "always")
        lists.append({"items": [[n, output] for n in names]})
    return lists[0] if path else {"items": lists}


def _group_status(spec: dict[str, Any], payload: dict[str, Any], covered: list[list[Any]],
                  path: Path) -> dict[str, Any]:
    """The final status of an exit group, from the instances the handler at ``path`` covers.

    Each entry is ``[step, outer map or None, inner map?]``: a handler in the inner map covers its own pair, one
    in the outer body its row (the row's pairs from the flat list), one outside the maps every instance, as
    ``pipecast run`` gives a handler the status of the instances under its own item path.
    """
    states = []
    for name, outer, *inner in covered:
        if outer is None or _status(spec, payload["run_id"], name) == "failed":  # failed as a whole: its map's list
            names = [name]
        elif inner and len(path) < 2:
            names = covered_instances(payload, name, inner[0], path[0] if path else None)
        elif path:
            names = [instance_name(name, path[:1 + len(inner)])]
        else:
            names = [instance_name(name, (i,)) for i in range(payload["counts"][outer])]
        states += ended_badly(spec, payload["run_id"], names)
    return final_status(states)


def ended_badly(spec: dict[str, Any], run_id: str, names: list[str]) -> list[tuple[str, str, str | None]]:
    """Of these instances, those whose record says failed or cancelled, with the error: what a status reads."""
    found = []
    for instance in names:
        meta = step_record(spec, run_id, instance)
        if meta.get("status") in ("failed", "cancelled"):
            found.append((instance, str(meta["status"]), meta.get("error")))
    return found


def _ran(spec: dict[str, Any], run_id: str, names: list[str], handler: bool = False) -> list[str]:
    """The instances that ran, in order: those a condition skipped are left out, as ``pipecast run`` collects.

    A failed or cancelled one skips this instance (Airflow's ``none_failed`` normally stops it first: a skip the
    runtime raised after a failure is behind an instance Airflow marked ``upstream_failed``), unless it is an exit
    handler's: a handler runs whatever happened and gets the instances that ran (``FlowPlan.fan_in_failure``).
    """
    ran = []
    for name in names:
        status = _status(spec, run_id, name)
        if status in ("failed", "cancelled") and not handler:
            raise NestedSkip(f"upstream {name!r} {status}")
        if status == "succeeded":
            ran.append(name)
    return ran


def covered_instances(payload: dict[str, Any], name: str, inner: str, row: int | None) -> list[str]:
    """The instances ``name[i][j]`` of a step of inner map ``inner`` a handler or hook covers, in item order.

    From the inner map's flat list (none when its publisher did not succeed); ``row``: a handler inside the outer
    map covers its own outer item only.
    """
    flat = flat_lists(payload).get(inner) or []
    return [instance_name(name, (i, j)) for i, j, *_ in flat if row is None or i == row]


def flat_lists(payload: dict[str, Any]) -> dict[str, list[list[Any]] | None]:
    """Each inner map's flat list of pairs (None: its publisher did not succeed).

    A TaskFlow task's payload has them; a pod's payload (``publish_airflow.pod_payload``) does not, and its
    environment (:data:`POD_PAIRS_VAR`) has them instead.
    """
    if "pairs" in payload:
        return dict(payload["pairs"] or {})
    return dict(json.loads(os.environ.get(POD_PAIRS_VAR) or "{}"))
