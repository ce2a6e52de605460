"""Lowering control flow (maps, conditions, exit handlers, hooks) to Airflow's own constructs.

* A map group becomes a publisher task (``<group>_items``) that returns the map's list, which Airflow stores as
  its XCom; each step in the map is a TaskFlow task expanded over that XCom (dynamic task mapping,
  ``.expand(item=...)``), so Airflow makes one task instance per item (``map_index`` i runs ``step[i]``) and
  its UI lists them. ``ParallelFor(parallelism=M)`` is ``max_active_tis_per_dagrun`` on each mapped task (in a
  mapped task group, a share of M per task); the pipeline's bound is the DAG's ``max_active_tasks``. A map of
  chained steps is one mapped task group over the publisher's XCom (:meth:`FlowScope.choose_groups`), pods
  included, so each item's chain proceeds on its own.
* An if/elif/else chain becomes one ``@task.branch`` task (``<chain>_branch``) upstream of every step of its
  branches; it returns the task ids of the branch that runs and Airflow skips the others' tasks. Airflow's
  default trigger rule (``all_success``) skips a task with a skipped upstream, as pipecast does; a step that
  reads ``OneOf`` has ``none_failed_min_one_success`` (it runs when one branch ran and none failed).
* A chain inside a map has no branch task (an unmapped task cannot skip one item): each step of its branches is
  mapped, and its runtime decides the item's branch (the rules of :mod:`pipecast.runtime.flow_plan`) and raises
  Airflow's skip for an item whose branch did not run, so only that map index is skipped. Airflow judges a mapped
  task's trigger rule over every instance of an upstream mapped task outside a mapped task group, so the steps
  after one that may skip items are ``none_failed`` and their runtime skips item ``i`` when item ``i`` upstream
  did not run; a fan-in gets the items that ran.
* An exit handler is a teardown task (``all_done``) after every task of its group; hooks are teardown tasks after
  every other task that skip themselves when their event did not happen. A teardown's success does not make a
  failed run a success (Airflow leaves teardowns out of the run's state), as pipecast's handlers. A handler inside
  a map is a mapped teardown expanded over the map's publisher: Airflow starts its instances once every instance
  of the group's mapped tasks is done (they are not in one mapped task group), and instance ``i`` reads the
  status of item ``i`` only (the runtime reads the ``meta.json`` of instance ``i`` of each covered step).

Values reach the tasks as data: the runtime (:mod:`pipecast.runtime.publish_airflow`) reads the payload the
task writes to its stdin (secrets: in its environment, rendered by Airflow from op_kwargs); a step in a pod runs
the same runtime with its payload from the pod (:mod:`pipecast.targets.airflow.pod_flow`). A map inside a map
is flattened onto one level of task mapping (:mod:`pipecast.targets.airflow.nested`, which checks what it does
not express).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.targets.airflow.tasks import Field
from pipecast.targets.base import EmitContext

ALTERNATIVE = "run it with --set mode=local (BashOperator tasks on the worker) or with the local target"
_HOOKS = (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
_FLOW_BINDINGS = {ir.BindingKind.ITEM, ir.BindingKind.COLLECTED, ir.BindingKind.ONE_OF, ir.BindingKind.STATUS}


@dataclass
class FlowScope:
    """The control flow of one pipeline, as the DAG needs it."""

    pipeline: ir.Pipeline
    plan: FlowPlan
    publishers: dict[str, str] = field(default_factory=dict)  # map group -> publisher task id
    branches: dict[str, str] = field(default_factory=dict)  # chain -> branch task id (chains outside maps)
    partial: set[str] = field(default_factory=set)  # steps whose instances may skip item by item
    groups: dict[str, str] = field(default_factory=dict)  # map -> its mapped task group's id (chained maps)
    grouped: dict[str, str] = field(default_factory=dict)  # step -> the mapped task group it is built in
    shares: dict[str, int] = field(default_factory=dict)  # step in a bounded group -> its share of the bound
    inside: dict[str, list[ir.Group]] = field(default_factory=dict)  # group -> the groups inside it, at any depth

    @classmethod
    def of(cls, pipeline: ir.Pipeline) -> FlowScope:
        """The scope of ``pipeline``: a publisher task per map, a branch task per if/elif/else chain."""
        plan = FlowPlan(pipeline)
        scope = cls(pipeline, plan)
        for group in pipeline.groups:
            if group.kind is ir.GroupKind.MAP:
                scope.publishers[group.name] = f"{group.name}_items"
            elif group.kind is ir.GroupKind.CONDITION and group.chain == group.name and not _in_map(plan, group):
                scope.branches[group.name] = f"{group.name}_branch"
        for group in pipeline.groups:  # once, so a branch's tasks are found without a pass over every group
            for around in plan.ancestors(group.parent):
                scope.inside.setdefault(around.name, []).append(group)
        for step in pipeline.steps:  # steps in topological order: what reads a step that may skip items
            reads = set(step.upstream()) | {s for g in scope.plan.item_conditions(step) if g.condition
                                            for s in g.condition.steps()}
            if scope.plan.item_conditions(step) or reads & scope.partial:
                scope.partial.add(step.name)
        return scope

    def names(self) -> list[str]:
        """The extra task and group ids (before the steps' own, which must not take them)."""
        return [*self.publishers.values(), *self.branches.values(), *self.groups.values()]

    def choose_groups(self) -> None:
        """Which maps become one mapped task group: those whose body has two or more chained steps.

        Airflow decides a trigger rule per map index only between tasks of one mapped task group
        (``_get_relevant_map_indexes``, airflow/models/taskinstance.py): there item ``i``'s next step starts once
        item ``i``'s step is done and a failed item fails its own chain only, as ``pipecast run`` chains items.
        A ``parallelism`` bound M counts, in ``pipecast run``, the running instances of all the map's steps
        together (``FlowRunner._next``: one count per map). Airflow has no bound on a mapped task group: its
        scheduler counts ``max_active_tis_per_dagrun`` per task id (``ConcurrencyMap.task_dagrun_concurrency_map``
        keyed by dag, run and task id, airflow/jobs/scheduler_job_runner.py; ``TaskConcurrencyDep``), and every
        item of a group's task shares its task id. So M is shared out over the group's tasks (:meth:`bound_of`,
        the shares add up to M: never more than M at once, as in ``pipecast run``), and over separately mapped
        steps too; a map with fewer than one slot per task (M below the number of its steps) stays separately
        mapped, each task bounded by M (chained steps then run one after the other: never more than M).
        A step in a pod is a KubernetesPodOperator inside the group, not expanded (Airflow refuses "operator
        expansion in an expanded task group"): the group is expanded over each item with the pod's arguments
        (``expand_kwargs``), and the pod takes them as its templated ``arguments``, a ``MappedArgument`` Airflow
        resolves per map index (``Templater.render_template`` resolves it; the value is not rendered by Jinja).
        Kept as separately mapped tasks too: exit handlers (mapped teardowns after the whole group), and a body
        that reads a step which itself reads the body (the group is built at once, after everything it reads).
        """
        for group in self.pipeline.groups:
            if group.kind is not ir.GroupKind.MAP:
                continue
            body = [s for s in self.pipeline.steps if self.plan.maps[s.name][:1] == (group.name,)]
            members = [s for s in body if s.trigger is ir.Trigger.ALL_SUCCESS]
            if len(members) >= 2 and group.parallelism is not None and group.parallelism >= len(members):
                # Also where the steps stay separately mapped: steps that do not read each other run at once.
                share, extra = divmod(group.parallelism, len(members))
                self.shares.update({m.name: share + (i < extra) for i, m in enumerate(members)})
            if len(members) < 2 or (group.parallelism is not None and group.parallelism < len(members)) \
                    or not any(set(s.upstream()) & {m.name for m in members} for s in members) \
                    or self._reads_itself({m.name for m in members}):
                continue
            self.groups[group.name] = f"{group.name}_group"
            self.grouped.update({m.name: self.groups[group.name] for m in members})

    def bound_of(self, step: str, own_map: str) -> int | None:
        """The step's ``max_active_tis_per_dagrun`` (None: no bound).

        In a mapped task group its share of the map's bound (the first steps take one more when the bound does
        not divide evenly), else the whole bound.
        """
        return self.shares.get(step, self.plan.groups[own_map].parallelism)

    def _reads_itself(self, members: set[str]) -> bool:
        """Whether a member reads (through its upstream or its conditions) a step outside that reads a member."""
        after: set[str] = set()
        for step in self.pipeline.steps:  # topological order: the steps outside that depend on a member
            if step.name not in members and self._reads(step) & (members | after):
                after.add(step.name)
        return any(self._reads(self.pipeline.step(m)) & after for m in members)

    def _reads(self, step: ir.Step) -> set[str]:
        return set(step.upstream()) | {s for g in self.plan.item_conditions(step) if g.condition
                                       for s in g.condition.steps()}

    def is_flow_step(self, step: ir.Step) -> bool:
        """Whether the step runs as a TaskFlow task (its values are resolved at run time)."""
        return bool(self.plan.maps[step.name]) or step.trigger is not ir.Trigger.ALL_SUCCESS or any(
            b.kind in _FLOW_BINDINGS for b in step.bindings)


def check(scope: FlowScope, context: EmitContext, modes: dict[str, str]) -> None:
    """What this lowering does not express, reported once per step."""
    pipeline = scope.pipeline
    most = context.settings.max_map_length
    for group in pipeline.groups:
        if group.kind is ir.GroupKind.MAP:
            for operand in group.items:
                if operand.kind is ir.BindingKind.CONSTANT and isinstance(operand.value, list) \
                        and len(operand.value) > most:
                    context.error(f"map {group.name!r} iterates a constant list of {len(operand.value)} items; "
                                  f"Airflow expands at most {most} (its [core] max_map_length, pipecast's "
                                  "max_map_length setting)", location=str(group.location),
                                  fix="split the list, or raise the deployment's [core] max_map_length and the "
                                      "max_map_length setting")


def _mini_plan(pipeline: ir.Pipeline, groups: list[ir.Group]) -> str:
    """The groups a publisher or branch task evaluates, as an IR the runtime rebuilds its FlowPlan from."""
    return ir.Pipeline(name=pipeline.name, groups=tuple(groups)).to_json(indent=None).strip()


def publisher_fields(scope: FlowScope, group: ir.Group, root: str, python: str, task_ids: dict[str, str],
                     upstream_extra: list[str]) -> list[Field]:
    """The publisher task of map ``group``: its upstream (the steps whose output it iterates) and its spec."""
    upstream = [task_ids[o.step] for o in group.items if o.kind is ir.BindingKind.OUTPUT and o.step]
    spec = {"root": root, "pipeline": scope.pipeline.name, "group": group.name,
            "plan": _mini_plan(scope.pipeline, [group])}
    return [Field("upstream", _unique(upstream + upstream_extra)), Field("flow", "items"),
            Field("python", python), Field("spec", spec)]


def with_map_steps(scope: FlowScope, group: ir.Group, fields: list[Field]) -> list[Field]:
    """A publisher's fields, its spec given the steps inside its map, which it records failed when it fails.

    ``pipecast run`` fails each step of a map whose list cannot be made (``FlowRunner._decide``), unless it is
    skipped first (an upstream that did not run, ``FlowRunner._skip_reason``); each entry holds what that rule
    reads: ``[step, trigger, upstream, tolerated upstream (OneOf sources), [OneOf sources...]]``, in the
    pipeline's (topological) order. A handler's upstream are the steps whose outputs it reads.
    """
    entries = []
    for step in scope.pipeline.steps:
        if group.name not in scope.plan.maps[step.name]:
            continue
        sources = [[s.step for s in b.sources] for b in step.bindings if b.kind is ir.BindingKind.ONE_OF]
        data = {b.step for b in step.bindings if b.kind in (ir.BindingKind.OUTPUT, ir.BindingKind.COLLECTED) and b.step}
        if step.trigger is ir.Trigger.ALL_SUCCESS:
            needs, tolerated = list(step.upstream()), sorted({s for b in sources for s in b} - data)
        else:
            needs, tolerated = [b.step for b in step.bindings if b.kind is ir.BindingKind.OUTPUT and b.step], []
        entries.append([step.name, step.trigger.value, list(dict.fromkeys(needs)), tolerated, sources])
    for entry in fields:
        if entry.key == "spec":
            entry.value["steps"] = entries
    return fields


def branch_fields(scope: FlowScope, chain: str, root: str, python: str, task_ids: dict[str, str],
                  upstream_extra: list[str]) -> list[Field]:
    """The ``@task.branch`` task of an if/elif/else chain: the task ids each branch follows, in order."""
    groups = scope.plan.chains[chain]
    upstream = [task_ids[name] for g in groups if g.condition for name in g.condition.steps()]
    follows = [sorted(_branch_tasks(scope, g.name, task_ids)) for g in groups]
    spec = {"root": root, "pipeline": scope.pipeline.name, "chain": chain, "plan": _mini_plan(scope.pipeline, groups)}
    return [Field("upstream", _unique(upstream + upstream_extra)), Field("flow", "branch"),
            Field("python", python), Field("spec", spec), Field("follow", follows)]


def _branch_tasks(scope: FlowScope, group: str, task_ids: dict[str, str]) -> set[str]:
    """The tasks inside branch ``group`` (each has the branch task upstream): steps, publishers, branch tasks."""
    members = {task_ids[s] for s in scope.plan.members[group]}
    for inner in scope.inside.get(group, []):
        members.add(scope.publishers.get(inner.name) or scope.branches.get(inner.name) or "")
    return members - {""}


def enclosing(scope: FlowScope, step_group: str | None) -> tuple[list[str], str | None]:
    """The branch tasks a task inside ``step_group`` waits for, and the publisher of its map (if any)."""
    branches, publisher = [], None
    for group in scope.plan.ancestors(step_group):
        if group.kind is ir.GroupKind.CONDITION and (group.chain or group.name) in scope.branches:
            branches.append(scope.branches[group.chain or group.name])
        elif group.kind is ir.GroupKind.MAP and publisher is None:
            publisher = scope.publishers[group.name]
    return branches, publisher


def step_flow_fields(scope: FlowScope, step: ir.Step, argv: list[str], root: str, variables: dict[str, str],
                     task_ids: dict[str, str], env: dict[str, str]) -> list[Field]:
    """A step's TaskFlow entry beyond its upstream: the runtime spec, trigger rule, map and bounds."""
    pipeline, plan = scope.pipeline, scope.plan
    own_map = plan.maps[step.name][0] if plan.maps[step.name] else None
    dropped: set[str] = set()
    spec: dict[str, Any] = {"root": root, "pipeline": pipeline.name, "map": own_map,
                            "trigger": step.trigger.value}
    items: dict[str, int | None] = {}
    mapped: dict[str, list[str]] = {}
    collected: dict[str, list[str]] = {}
    one_of: dict[str, list[list[Any]]] = {}
    status: dict[str, list[list[Any]]] = {}
    counts: dict[str, str] = {}
    for b in step.bindings:
        if b.kind is ir.BindingKind.ITEM:
            items[b.input] = b.index
        elif b.kind is ir.BindingKind.OUTPUT and b.step and plan.maps[b.step]:
            mapped[b.input] = [b.step, b.output or ""]
            dropped.add(f"{b.input}={b.step}/{b.output}")
        elif b.kind is ir.BindingKind.COLLECTED and b.step and b.group:
            collected[b.input] = [b.step, b.output or "", b.group]
            counts[b.group] = scope.publishers[b.group]
        elif b.kind is ir.BindingKind.ONE_OF:  # a third element: the source is in this step's map (its item's)
            one_of[b.input] = [[s.step, s.output, *([1] if own_map and plan.maps[s.step][:1] == (own_map,) else [])]
                               for s in b.sources]
        elif b.kind is ir.BindingKind.STATUS:
            status[b.input] = _covered(scope, b.group, counts, own_map)
    if step.trigger in _HOOKS:
        spec["covers"] = _covered(scope, None, counts)
    if step.name in scope.partial:
        _item_fields(scope, step, own_map, spec)
        for _name, mode, group in spec["check"]:
            if mode == "items":
                counts[group] = scope.publishers[group]
    spec.update({k: v for k, v in (("items", items), ("mapped_upstream", mapped), ("collected", collected),
                                   ("one_of", one_of), ("status", status)) if v})
    kept = [a for i, a in enumerate(argv) if not (a in dropped and argv[i - 1] == "--upstream")
            and not (i + 1 < len(argv) and argv[i + 1] in dropped and a == "--upstream")]
    spec["argv"] = kept
    used = "".join(kept)  # only the parameters this step's command reads
    spec["vars"] = {variables[p.name]: [p.name, p.type.value] for p in pipeline.parameters
                    if f"\x00{variables[p.name]}\x00" in used}
    fields = [Field("flow", "run"), Field("python", argv[0]), Field("spec", spec)]
    if counts:
        fields.append(Field("counts", counts))
    if env:
        fields.append(Field("env", dict(sorted(env.items()))))
    if own_map:
        fields.append(Field("map", scope.publishers[own_map]))
        if step.name in scope.grouped:
            fields.append(Field("group", scope.grouped[step.name]))
        bound = scope.bound_of(step.name, own_map)
        if bound:
            fields.append(Field("max_active_tis_per_dagrun", bound))
    if any(b.kind is ir.BindingKind.ONE_OF for b in step.bindings):
        fields.append(Field("trigger_rule", "none_failed_min_one_success"))
    elif step.name in scope.partial and step.trigger is ir.Trigger.ALL_SUCCESS:
        fields.append(Field("trigger_rule", "none_failed"))  # the runtime skips the items whose upstream did not run
    if step.trigger is not ir.Trigger.ALL_SUCCESS:
        fields += [Field("trigger_rule", "all_done"), Field("teardown", True)]
    return fields


def _covered(scope: FlowScope, group: str | None, counts: dict[str, str],
             own_map: str | None = None) -> list[list[Any]]:
    """The steps an exit group (None: the whole run, for hooks) covers, with their map; their maps' counts.

    A handler inside map ``own_map`` reads its own item's instances only, so that map needs no count.
    """
    if group is None:
        steps = [s.name for s in scope.pipeline.steps if s.trigger not in _HOOKS]
    else:
        steps = [s.name for s in scope.pipeline.steps if s.name in scope.plan.members[group]]
    covered: list[list[Any]] = []
    for name in steps:
        own = scope.plan.maps[name][0] if scope.plan.maps[name] else None
        if own and own != own_map:
            counts[own] = scope.publishers[own]
        covered.append([name, own])
    return covered


def waits_for(scope: FlowScope, step: ir.Step, task_ids: dict[str, str]) -> list[str]:
    """The tasks a handler or hook waits for beyond its data: every task of its group (hooks: of the run)."""
    if step.trigger is ir.Trigger.ALWAYS:
        groups = [b.group for b in step.bindings if b.kind is ir.BindingKind.STATUS and b.group]
        names = {s for g in groups for s in scope.plan.members[g]}
        extra = [scope.publishers[g.name] if g.kind is ir.GroupKind.MAP else scope.branches.get(g.name, "")
                 for g in scope.pipeline.groups if any(g.name == x or _inside(scope, g, x) for x in groups)]
    elif step.trigger in _HOOKS:
        names = {s.name for s in scope.pipeline.steps if s.trigger not in _HOOKS}
        extra = [*scope.publishers.values(), *scope.branches.values()]
    else:
        return []
    return [task_ids[s.name] for s in scope.pipeline.steps if s.name in names] + [e for e in extra if e]


def _in_map(plan: FlowPlan, group: ir.Group) -> bool:
    return any(g.kind is ir.GroupKind.MAP for g in plan.ancestors(group.parent))


def condition_upstream(scope: FlowScope, step: ir.Step, task_ids: dict[str, str]) -> list[str]:
    """The tasks whose outputs the step's item conditions read (and those of the earlier branches of each chain)."""
    groups = [g for c in scope.plan.item_conditions(step) for g in scope.plan.chains[c.chain or c.name]]
    return [task_ids[name] for g in groups if g.condition for name in g.condition.steps()]


def _item_fields(scope: FlowScope, step: ir.Step, own_map: str | None, spec: dict[str, Any]) -> None:
    """What a step that may skip item by item adds to its spec: the item conditions and the upstream to check.

    Airflow decides a mapped task's trigger rule over every instance of a mapped upstream task when the two are
    not in one mapped task group (``_get_relevant_map_indexes`` returns None, airflow/models/taskinstance.py),
    so the task is ``none_failed`` and its runtime skips item ``i`` when item ``i`` upstream did not run.
    """
    plan = scope.plan
    conditions = scope.plan.item_conditions(step)
    if conditions:
        chains = [g for c in conditions for g in plan.chains[c.chain or c.name]]
        groups = [plan.groups[own_map or ""], *sorted(set(chains + conditions), key=lambda g: g.name)]
        reads = [name for g in chains if g.condition for name in g.condition.steps()]
        spec["conditions"] = {"plan": _mini_plan(scope.pipeline, groups), "groups": [g.name for g in conditions],
                              "mapped": sorted({n for n in reads if own_map and plan.maps[n][:1] == (own_map,)})}
    data = {b.step for b in step.bindings if b.kind in (ir.BindingKind.OUTPUT, ir.BindingKind.COLLECTED)}
    check = []
    handler = step.trigger is ir.Trigger.ALWAYS  # runs whatever its group did: only the data it reads is checked
    chains = [g for c in conditions for g in plan.chains[c.chain or c.name]]  # earlier branches are tested too
    for name in [*step.upstream(), *(n for g in chains if g.condition for n in g.condition.steps())]:
        if name not in data and any(name == s.step for b in step.bindings for s in b.sources):
            continue  # a OneOf source: its own rule
        if handler and name not in data and name in step.upstream():
            continue  # a step of its group (pipecast run tolerates those too: FlowRunner._instance_skip)
        upstream_map = plan.maps[name][0] if plan.maps[name] else None
        mode = "step" if upstream_map is None else "item" if upstream_map == own_map else "items"
        check.append([name, mode, upstream_map])
    spec["check"] = list(map(list, dict.fromkeys(map(tuple, check))))


def _inside(scope: FlowScope, group: ir.Group, outer: str) -> bool:
    return any(g.name == outer for g in scope.plan.ancestors(group.parent))


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))
