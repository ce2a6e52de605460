"""A map inside a map, flattened onto Airflow's one level of dynamic task mapping.

Airflow refuses a mapped task group inside a mapped task group ("Nested Mapped TaskGroups are not yet
supported", task SDK ``definitions/_internal/expandinput.py``) and a mapped task inside one ("operator expansion
in an expanded task group is not yet supported", ``definitions/mappedoperator.py``), but it expands any task
over any list. So:

* the inner map's publisher task (``<inner>_items``) returns the flat list of every outer item's inner items,
  ``[i, j, outer item, inner item]`` in ``pipecast run``'s order (:mod:`pipecast.runtime.airflow_nested`); it
  waits for the outer publisher and for the steps of the outer body whose list it iterates;
* each step inside the inner map is one task expanded over that list: map index k runs ``step[i][j]``, and
  ``map_index_template`` shows ``i.j`` in Airflow's UI; chained steps are one mapped task group over the list,
  so a failed pair fails its own chain only (unless the inner map has a ``parallelism`` bound, which is
  ``max_active_tis_per_dagrun`` on its tasks: at most M of its instances at once across all outer items, since
  Airflow bounds a task, not a slice of it);
* the steps of the outer body stay mapped over the outer publisher (``step[i]``); one collecting the inner map
  gets outer item i's inner outputs in item order, and a step after the maps gets lists of lists — read from the
  artifact store in the order of the published flat list. They run ``none_failed``: Airflow skips a task mapped
  over an empty list, and ``pipecast run`` gives an outer item without inner items ``[]``. Airflow judges their
  trigger rule over every instance of the inner task (they are not in its mapped task group), so a failed pair
  stops them for every outer item, as a failure stops the next step of a separately mapped map.

Conditions around and inside the maps are decided per instance by the step's runtime (Airflow's skip for that map
index only), as inside a single map; an inner map in a branch of the outer body has no pairs for the rows whose
branch does not run. An exit handler or hook outside the inner maps reads the status of the pairs it covers from
their flat list (:func:`cover_pairs`); one inside the inner map is a mapped teardown over the pairs whose instance
k reads pair k's status, one in the outer body that collects the inner map a mapped teardown over the rows that
reads its row's pairs. A ``OneOf`` in (or collecting) a nested map reads the branch instance that ran for its own
pair or row. Steps in pods take part as TaskFlow tasks do (``pod_flow.py``): a pod inside the inner map is a
``KubernetesPodOperator`` expanded over the flat list (its pair its argument), chained pods are operators of the
inner mapped task group (``expand_kwargs``), and a pod that reads the pairs (collecting an inner map, or a handler
covering one) gets the inner publishers' XComs rendered into its environment. Refused (one clear error each): a
third level of maps, a step collecting a nested map at a level the flattening does not give.
"""

from __future__ import annotations

from typing import Any

from pipecast.compiler import ir
from pipecast.targets.airflow.flow import ALTERNATIVE, FlowScope, _mini_plan
from pipecast.targets.airflow.tasks import Field
from pipecast.targets.base import EmitContext

_READS = (ir.BindingKind.OUTPUT, ir.BindingKind.COLLECTED)


def inner_maps(scope: FlowScope) -> dict[str, str]:
    """Each map inside a map: inner map -> the map around it."""
    found = {}
    for group in scope.pipeline.groups:
        if group.kind is ir.GroupKind.MAP:
            around = [g for g in scope.plan.ancestors(group.parent) if g.kind is ir.GroupKind.MAP]
            if around:
                found[group.name] = around[0].name
    return found


def _depth(scope: FlowScope, step: str) -> int:
    return len(scope.plan.maps[step])


def _reads_nested(scope: FlowScope, step: ir.Step) -> bool:
    return any(b.kind is ir.BindingKind.COLLECTED and b.step and _depth(scope, b.step) > 1 for b in step.bindings)


def handles(scope: FlowScope, step: ir.Step) -> bool:
    """Whether the step is lowered here: inside an inner map, or collecting one."""
    return _depth(scope, step.name) > 1 or _reads_nested(scope, step)


def choose_groups(scope: FlowScope) -> None:
    """Which maps of a nested map are mapped task groups: an inner map of chained steps, never an outer map.

    An outer map stays separately mapped tasks (a mapped task group cannot hold the inner map's tasks). An inner
    map of chained steps is one mapped task group over the flat list, so pair k's next step waits for pair k only
    and a failed pair fails its own chain (the rules of :meth:`FlowScope.choose_groups`).
    """
    for inner, outer in inner_maps(scope).items():
        group_id = scope.groups.pop(outer, None)
        if group_id:
            scope.grouped = {s: g for s, g in scope.grouped.items() if g != group_id}
        if scope.plan.groups[inner].parallelism:
            continue  # Airflow bounds a task's instances, not a mapped task group's
        members = [s for s in scope.pipeline.steps if scope.plan.maps[s.name][1:] == (inner,)
                   and s.trigger is ir.Trigger.ALL_SUCCESS]  # a handler: a mapped teardown after the whole map
        names = {m.name for m in members}
        if len(members) >= 2 and any(set(m.upstream()) & names for m in members) \
                and not scope._reads_itself(names):
            scope.groups[inner] = f"{inner}_group"
            scope.grouped.update({m: scope.groups[inner] for m in names})


def check(scope: FlowScope, context: EmitContext) -> None:
    """What this flattening does not express, one error per step (steps in pods alike)."""
    plan, inner = scope.plan, inner_maps(scope)
    for step in scope.pipeline.steps:
        maps = plan.maps[step.name]
        nested = handles(scope, step)
        if len(maps) > 2:
            context.error("Airflow runs a map inside a map flattened onto one level of task mapping; a third "
                          "level of maps is not flattened", step=step,
                          fix="flatten the lists into fewer maps (ParallelFor(Product(...)) or a step that "
                              "returns the flat list), or " + ALTERNATIVE)
        elif nested and any(b.kind is ir.BindingKind.COLLECTED and b.step and _depth(scope, b.step) == 2
                            and b.group not in inner and b.group != plan.maps[b.step][0] for b in step.bindings):
            context.error("this step collects a nested map at a level Airflow's flattening does not give",
                          step=step, fix=ALTERNATIVE)


def pairs_fields(scope: FlowScope, group: ir.Group, root: str, python: str, task_ids: dict[str, str],
                 upstream_extra: list[str]) -> list[Field]:
    """The inner map's publisher: the flat list of (outer item, inner item) pairs, after what its lists read."""
    outer = inner_maps(scope)[group.name]
    chains = _chains(scope, scope.plan.branches_around(group))  # the branches between the two maps
    above = scope.plan.ancestors(scope.plan.groups[outer].parent)[::-1]  # FlowPlan walks a group's every ancestor
    groups = list({g.name: g for g in [*above, scope.plan.groups[outer], *_between(scope, group), group,
                                       *chains]}.values())
    operands = [o for g in [scope.plan.groups[outer], group] for o in g.items if o.kind is ir.BindingKind.OUTPUT
                and o.step]
    operands += [o for g in chains if g.condition for o in g.condition.all_operands()
                 if o.kind is ir.BindingKind.OUTPUT and o.step]
    upstream = [scope.publishers[outer], *(task_ids[o.step or ""] for o in operands), *upstream_extra]
    spec = {"root": root, "pipeline": scope.pipeline.name, "group": group.name, "outer": outer,
            "plan": _mini_plan(scope.pipeline, groups),
            "depths": {o.step: _depth(scope, o.step or "") for o in operands}}
    return [Field("upstream", list(dict.fromkeys(upstream))), Field("flow", "items"), Field("python", python),
            Field("spec", spec), Field("trigger_rule", "none_failed")]


def _between(scope: FlowScope, group: ir.Group) -> list[ir.Group]:
    """The groups between inner map ``group`` and the map around it (its mini plan needs their parents)."""
    found: list[ir.Group] = []
    for around in scope.plan.ancestors(group.parent):
        if around.kind is ir.GroupKind.MAP:
            return found
        found.append(around)
    return found


def _chains(scope: FlowScope, branches: list[ir.Group]) -> list[ir.Group]:
    """Every branch of the chains of ``branches`` (an else branch runs when the earlier ones do not)."""
    chains = [g for b in branches for g in scope.plan.chains.get(b.chain or "", [b])]
    return list({g.name: g for g in chains}.values())


def cover_pairs(scope: FlowScope, step: ir.Step, fields: list[Field]) -> list[Field]:
    """A handler or hook (outside the inner maps) covering steps of an inner map: their instances are its pairs.

    Each covered entry ``[step, its outer map]`` of such a step gains its inner map, and the task reads that map's
    flat list (``pairs``), so its runtime reads the ``meta.json`` of every ``step[i][j]`` (of row i only for a
    handler inside the outer map), as ``pipecast run`` gives a handler the status of the instances it covers.
    """
    spec = next(f.value for f in fields if f.key == "spec")
    used: list[str] = []
    for entries in [spec.get("covers", []), *spec.get("status", {}).values()]:
        for entry in entries:
            maps = scope.plan.maps[entry[0]]
            if len(maps) == 2:
                entry.append(maps[1])
                used.append(maps[1])
    if used:
        fields.append(Field("pairs", {g: scope.publishers[g] for g in dict.fromkeys(used)}))
    return fields


def extra_upstream(scope: FlowScope, step: ir.Step) -> list[str]:
    """The inner publishers whose flat list a collecting step reads (Airflow's XCom of a finished task)."""
    return [scope.publishers[g] for g in _pairs(scope, step)]


def _pairs(scope: FlowScope, step: ir.Step) -> list[str]:
    return list(dict.fromkeys(scope.plan.maps[b.step][1] for b in step.bindings
                              if b.kind is ir.BindingKind.COLLECTED and b.step and _depth(scope, b.step) == 2))


def step_fields(scope: FlowScope, step: ir.Step, argv: list[str], root: str, variables: dict[str, str],
                env: dict[str, str]) -> list[Field]:
    """A step inside or collecting a nested map: its runtime spec (:mod:`pipecast.runtime.airflow_nested`)."""
    plan = scope.plan
    maps = plan.maps[step.name]
    spec: dict[str, Any] = {"root": root, "pipeline": scope.pipeline.name, "nested": len(maps),
                            "trigger": step.trigger.value}
    items: dict[str, list[Any]] = {}
    mapped: dict[str, list[Any]] = {}
    collected: dict[str, list[Any]] = {}
    one_of: dict[str, list[list[Any]]] = {}
    status: dict[str, list[Any]] = {}
    covered_pairs: list[str] = []
    counts: dict[str, str] = {}
    dropped: set[str] = set()
    for b in step.bindings:
        if b.kind is ir.BindingKind.ITEM:
            items[b.input] = [maps.index(b.group or ""), b.index]
        elif b.kind is ir.BindingKind.OUTPUT and b.step and plan.maps[b.step]:
            mapped[b.input] = [b.step, b.output or "", _depth(scope, b.step)]
            dropped.add(f"{b.input}={b.step}/{b.output}")
        elif b.kind is ir.BindingKind.COLLECTED and b.step and b.group:
            source_maps = plan.maps[b.step]
            collected[b.input] = [b.step, b.output or "", source_maps[1] if len(source_maps) > 1 else None,
                                  source_maps[0]]
            counts[source_maps[0]] = scope.publishers[source_maps[0]]
        elif b.kind is ir.BindingKind.ONE_OF:  # each source at its own depth: the instance of this pair or row
            one_of[b.input] = [[src.step, src.output, _depth(scope, src.step)] for src in b.sources]
        elif b.kind is ir.BindingKind.STATUS and b.group:  # [step, outer map, inner map]: the instances it covers
            status[b.input] = [[s.name, *(plan.maps[s.name][:1] or [None]), *plan.maps[s.name][1:]]
                               for s in scope.pipeline.steps if s.name in plan.members[b.group]]
            for entry in status[b.input]:
                if entry[1] and len(maps) < 1:  # a handler outside the maps counts the rows
                    counts[entry[1]] = scope.publishers[entry[1]]
                if entry[2:] and len(maps) < 2:  # a handler outside the inner map reads its pairs
                    covered_pairs.append(entry[2])
    spec.update({k: v for k, v in (("items", items), ("mapped_upstream", mapped), ("collected", collected),
                                   ("one_of", one_of), ("status", status)) if v})
    conditions = plan.item_conditions(step)
    if conditions:  # decided per instance, as a condition inside a single map (flow.py)
        chains = _chains(scope, conditions)
        groups = [plan.groups[m] for m in maps] + [g for m in maps[1:] for g in _between(scope, plan.groups[m])]
        groups = list({g.name: g for g in [*groups, *chains]}.values())
        reads = {o.step for g in chains if g.condition for o in g.condition.all_operands()
                 if o.kind is ir.BindingKind.OUTPUT and o.step}
        spec["conditions"] = {"plan": _mini_plan(scope.pipeline, groups), "groups": [g.name for g in conditions],
                              "depths": {name: _depth(scope, name) for name in sorted(reads)}}
    kept = [a for i, a in enumerate(argv) if not (a in dropped and argv[i - 1] == "--upstream")
            and not (i + 1 < len(argv) and argv[i + 1] in dropped and a == "--upstream")]
    spec["argv"] = kept
    used = "".join(kept)
    spec["vars"] = {variables[p.name]: [p.name, p.type.value] for p in scope.pipeline.parameters
                    if f"\x00{variables[p.name]}\x00" in used}
    fields = [Field("flow", "run"), Field("python", argv[0]), Field("spec", spec)]
    if counts:
        fields.append(Field("counts", counts))
    pairs = list(dict.fromkeys(_pairs(scope, step) + covered_pairs))
    if pairs:
        fields.append(Field("pairs", {g: scope.publishers[g] for g in pairs}))
    if env:
        fields.append(Field("env", dict(sorted(env.items()))))
    if maps:
        own = maps[-1]
        fields.append(Field("map", scope.publishers[own]))
        if step.name in scope.grouped:
            fields.append(Field("group", scope.grouped[step.name]))
        if plan.groups[own].parallelism:
            fields.append(Field("max_active_tis_per_dagrun", plan.groups[own].parallelism))
    if len(maps) == 2:
        fields.append(Field("nested_item", True))  # map_index_template: i.j in Airflow's UI
        if step.trigger is ir.Trigger.ALWAYS:  # a mapped teardown: instance k once every pair is done
            fields += [Field("trigger_rule", "all_done"), Field("teardown", True)]
        elif step.name in scope.partial:  # the runtime skips the pairs whose upstream pair or branch did not run
            fields.append(Field("trigger_rule", "none_failed"))
    elif step.trigger is ir.Trigger.ALWAYS:  # a handler collecting an inner map: a (mapped) teardown
        fields += [Field("trigger_rule", "all_done"), Field("teardown", True)]
    else:  # it collects an inner map, which Airflow skips when the flat list is empty: then it gets [] lists
        fields.append(Field("trigger_rule", "none_failed"))
    return fields
