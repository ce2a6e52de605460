"""Control flow on Tekton Pipelines (issue 16): ``matrix`` maps, ``when`` branches, ``finally`` handlers and hooks.

What Tekton does, read in tektoncd/pipeline (v1.x; docs/matrix.md, docs/pipelines.md,
pkg/reconciler/pipelinerun/resources/pipelinerunresolution.go ``skip``, pipelinerunstate.go
``GetPipelineTaskStatus``), and how pipecast uses it:

- **Maps.** A mapped step is a task with ``matrix.params`` ``index``: the item indices, a literal array for
  constant lists, else the array result ``index`` of a ``<map>-items`` task that reads the lists
  (:mod:`pipecast.runtime.publish_tekton`). Each TaskRun runs instance ``step[i]`` and takes item ``i`` from the
  lists itself. Tekton fans out at most ``default-max-matrix-combinations-count`` (256) TaskRuns, skips a task
  whose matrix is empty, and cannot nest a matrix: checked at compile time for constants, by the items task at
  run time; a nested map is emulated (:mod:`pipecast.targets.tekton_nested`: the outer map's TaskRuns run the
  inner items). Fan-in reads the items' outputs from the artifact store (a matrixed task's results are
  aggregated only as arrays of strings), counting them from the items task's ``count`` result.
- **Conditions.** ``when`` compares text only (``in``/``notin``; CEL needs the alpha
  ``enable-cel-in-whenexpression`` flag), so a ``<chain>-branch`` task evaluates each if/elif/else chain with
  Python's meaning and writes the branch that runs; every task of a branch has ``when: [{input:
  $(tasks.<chain>-branch.results.branch), operator: in, values: [<branch>]}]``. Tekton runs the dependents of a
  task skipped by its ``when`` (``skipBecauseParentTaskWasSkipped`` ignores ``WhenExpressionsSkip``), so every
  task after a branch carries the branch's ``when`` too, as pipecast skips everything after a branch that did
  not run. ``OneOf`` is one ``when`` with the branches of its sources as ``values``.
- **Exit handler and hooks** are ``finally`` tasks: they run after every other task, whatever happened
  (``finally`` has no ``runAfter``). A handler's status is built from ``$(tasks.<name>.status)`` of its group's
  tasks; ``on_failure``/``on_success`` test ``$(tasks.status)`` (``Failed``; ``Succeeded`` or ``Completed``).
  A finally task may have a ``when`` on results and statuses and a ``matrix`` (docs/pipelines.md "Guard finally
  Task execution using when expressions", "Specifying matrix in finally tasks"), so a handler inside a branch
  carries the branch's ``when``, and one inside a map is matrixed over the map's item indices, its TaskRun ``i``
  building item ``i``'s status from the records (:meth:`TektonFlow.runs_items`).
- **Parallelism bounds** are refused: Tekton bounds neither a matrix's TaskRuns nor a run's running tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.runtime.params import encode_constant
from pipecast.runtime.publish_tekton import IF_LISTS, RESULT_LIMIT, compact, condition_arg, index_text
from pipecast.targets import tekton_nested as nested
from pipecast.targets.base import EmitContext
from pipecast.targets.tekton_share import RUN_ID

FINALLY = (ir.Trigger.ALWAYS, ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
INDEX_PARAM = "index"
_FIX = "run it with the local target (`pipecast run FILE`), or move the loop or decision inside one step"
Guard = dict[str, frozenset[str]]  # chain -> the branches of it that let the task run


class TektonFlow:
    """The control flow of one pipeline as Tekton tasks: extra tasks, guards, matrices, finally."""

    def __init__(self, pipeline: ir.Pipeline, names: Mapping[str, str], context: EmitContext,
                 max_combinations: int) -> None:
        self.plan = FlowPlan(pipeline)
        self.pipeline, self.names, self.context = pipeline, dict(names), context
        self.max_combinations = max_combinations
        taken = set(names.values())
        self.item_chains = {chain for chain, groups in self.plan.chains.items() if _in_map(self.plan, groups[0])}
        self.branch_tasks = {chain: _unique(f"{_dns(chain)}-branch", taken) for chain in self.plan.chains
                             if chain not in self.item_chains}
        self.items_tasks = {g.name: _unique(f"{_dns(g.name)}-items", taken) for g in pipeline.groups
                            if g.kind is ir.GroupKind.MAP and not _constant(g) and not nested.is_inner(pipeline, g)}
        self.finally_steps = {s.name for s in pipeline.steps if s.trigger in FINALLY}
        self.guards: dict[str, Guard] = {}
        self._check()
        for step in pipeline.steps:
            self.guards[step.name] = self._guard(step)
        self.checks, self.skippable = item_checks(self.plan, self.finally_steps)
        self._check_skippable_reads()

    # -- checks ----------------------------------------------------------------------------------------------

    def _check(self) -> None:
        pipeline, context = self.pipeline, self.context
        for group in pipeline.groups:
            where = str(group.location)
            if group.kind is ir.GroupKind.MAP:
                inner = nested.is_inner(pipeline, group)  # emulated: its items run in the outer item's TaskRun
                for operand in group.items:
                    if operand.kind is ir.BindingKind.OUTPUT and self.plan.maps[operand.step or ""] and not (
                            inner and nested.reads_own_outer(self.plan, group, operand)):
                        context.error(f"map {group.name!r} iterates an output of mapped step {operand.step!r} "
                                      "outside its own outer item; a Tekton matrix cannot be nested, and the "
                                      "emulation reads only lists its outer item makes", location=where, fix=_FIX)
                if _constant(group) and not inner:
                    count = constant_count(group)
                    if not 0 < count <= self.max_combinations:
                        context.error(f"map {group.name!r} has {count} items; Tekton fans a task out into 1 to "
                                      f"{self.max_combinations} TaskRuns (default-max-matrix-combinations-count; "
                                      "an empty matrix skips the task and everything after it)", location=where,
                                      fix="map over 1 to that many items, or raise the cluster's limit and the "
                                          "max_matrix_combinations setting")
        size = len(f'{{"key":"index","value":{_json_string(index_text(self.max_combinations))},"type":1}}')
        if self.items_tasks and size + 64 > RESULT_LIMIT:
            context.error(f"a map's item indices take {size} bytes of its items task's termination message at "
                          f"max_matrix_combinations={self.max_combinations}; Tekton keeps {RESULT_LIMIT} bytes of "
                          "a task's results", fix="lower max_matrix_combinations")
        for step in pipeline.steps:
            if step.name in self.finally_steps:
                self._check_finally(step)
            else:
                late = [u for u in step.upstream() if u in self.finally_steps]
                if late:
                    context.error(f"step {step.name!r} reads {late[0]!r}, which runs as a Tekton finally task; "
                                  "nothing runs after finally tasks", step=step,
                                  fix="read it from another handler or hook, or run it with the local target "
                                      "(`pipecast run FILE`)")

    def _check_skippable_reads(self) -> None:
        """Refuse a map's list or an if/elif/else outside maps that reads a step its runtime may skip.

        Such a step's task succeeds even when its record says skipped, so the items or branch task would run
        and find no value, where ``pipecast run`` skips what follows.
        """
        reads = [(f"map {g.name!r}", g, [o.step for o in g.items if o.kind is ir.BindingKind.OUTPUT and o.step])
                 for g in self.pipeline.groups if g.name in self.items_tasks]
        reads += [(f"condition {c!r}", self.plan.chains[c][0], self.chain_steps(c)) for c in self.branch_tasks]
        for what, group, steps in reads:
            late = [s for s in steps if s in self.skippable]
            if late:
                self.context.error(f"{what} reads step {late[0]!r}, which may be skipped by a condition inside a "
                                   "map; Tekton sees its task succeed, so it cannot skip what reads it",
                                   location=str(group.location), fix=_FIX)

    def _check_finally(self, step: ir.Step) -> None:
        read = [b.step for b in step.bindings if b.step] + [s.step for b in step.bindings for s in b.sources]
        late = [u for u in read if u in self.finally_steps]  # its `after` on every other step is what finally does
        if late:
            self.context.error(f"handler {step.name!r} reads {late[0]!r}; both run as Tekton finally tasks, "
                               "which run side by side (no runAfter)", step=step, fix=_FIX)

    # -- guards --------------------------------------------------------------------------------------------

    def _guard(self, step: ir.Step) -> Guard:
        """The branches that must have run for ``step`` to run: its own, and those of every step it reads.

        A handler's are only its own (a finally task inside a branch carries the branch's ``when``): it runs
        whatever happened to what it follows.
        """
        guard: Guard = {}
        for group in self.plan.conditions[step.name]:
            if (group.chain or group.name) not in self.item_chains:  # in a map: the step's runtime decides
                _merge(guard, {group.chain or group.name: frozenset({group.name})})
        if step.name in self.finally_steps:
            return guard
        one_of = {s.step for b in step.bindings for s in b.sources}
        for name in step.upstream():
            if name not in one_of:
                _merge(guard, self.guards.get(name, {}))
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.ONE_OF and self._item_branches(binding):
                for source in binding.sources:  # branches in a map: the runtime takes this item's
                    _merge(guard, self.guards.get(source.step, {}))
            elif binding.kind is ir.BindingKind.ONE_OF:
                _merge(guard, self._one_of(step, [self.guards.get(s.step, {}) for s in binding.sources]))
            elif binding.kind in (ir.BindingKind.ITEM, ir.BindingKind.COLLECTED):
                pass
        for group in self._maps_of(step):
            for operand in group.items:
                if operand.kind is ir.BindingKind.OUTPUT:
                    _merge(guard, self.guards.get(operand.step or "", {}))
        if any(not branches for branches in guard.values()):
            self.context.error(f"step {step.name!r} reads outputs of two branches of one if/elif/else chain, so "
                               "it could never run", step=step, fix="read one of them with OneOf")
        return guard

    def runs_items(self, step: ir.Step) -> bool:
        """Whether the step's task runs :mod:`pipecast.runtime.tekton_nested`: emulated, or a handler in a map.

        Also a step after a nested step that a condition inside a map may skip (:func:`nested.after_nested`).
        A handler inside a map is a finally task matrixed over the map's item indices (docs/pipelines.md
        "Specifying matrix in finally tasks"); item ``i`` reads its own item's status (``report[i]``: item
        ``i``'s instances only), which ``$(tasks.<name>.status)`` cannot give (one status for the whole matrix),
        so its runtime builds it from the records, as GitHub's emulation does.
        """
        mapped_handler = step.name in self.finally_steps and bool(self.plan.maps[step.name])
        return nested.emulated(self.plan, step) or mapped_handler or nested.after_nested(self.plan, step,
                                                                                         self.checks)

    def _item_branches(self, binding: ir.Binding) -> bool:
        """Whether a OneOf's sources are branches of a chain inside a map (decided item by item)."""
        return any((g.chain or g.name) in self.item_chains for s in binding.sources
                   for g in self.plan.conditions[s.step])

    def _one_of(self, step: ir.Step, guards: list[Guard]) -> Guard:
        """The guard of a OneOf: its sources' guards, which may differ only in the branch of one chain."""
        chains = {c for g in guards for c in g}
        differing = [c for c in chains if len({g.get(c) for g in guards}) > 1]
        if not guards or any(not g for g in guards) or len(differing) > 1:
            self.context.error(f"step {step.name!r} reads OneOf outputs that are not the branches of one "
                               "if/elif/else chain; Tekton's when can test one chain's branch for it",
                               step=step, fix=_FIX)
            return {}
        merged = dict(guards[0])
        for chain in differing:
            merged[chain] = frozenset().union(*(g.get(chain, frozenset()) for g in guards))
        return merged

    def chain_guard(self, chain: str) -> Guard:
        """The guard of a chain's branch task: the branches around the chain, and those of what it reads."""
        guard: Guard = {}
        first = self.plan.chains[chain][0]
        for group in self.plan.ancestors(first.parent):
            if group.kind is ir.GroupKind.CONDITION:
                _merge(guard, {group.chain or group.name: frozenset({group.name})})
        for step in self.chain_steps(chain):
            _merge(guard, self.guards.get(step, {}))
        return guard

    def chain_steps(self, chain: str) -> list[str]:
        """The steps whose outputs the chain's conditions read."""
        found: dict[str, None] = {}
        for group in self.plan.chains[chain]:
            if group.condition is not None:
                found.update(dict.fromkeys(group.condition.steps()))
        return list(found)

    def when(self, guard: Guard) -> list[dict[str, Any]]:
        """Tekton ``when`` expressions for a guard, one per chain, in the chains' order."""
        order = list(self.plan.chains)
        return [{"input": f"$(tasks.{self.branch_tasks[chain]}.results.branch)", "operator": "in",
                 "values": [g.name for g in self.plan.chains[chain] if g.name in guard[chain]]}
                for chain in sorted(guard, key=order.index)]

    def guard_tasks(self, guard: Guard) -> list[str]:
        """The branch tasks a guard's ``when`` reads."""
        return [self.branch_tasks[chain] for chain in guard]

    # -- maps ----------------------------------------------------------------------------------------------

    def _maps_of(self, step: ir.Step) -> list[ir.Group]:
        return [self.plan.groups[name] for name in self.plan.maps[step.name]]

    def step_map(self, step: ir.Step) -> ir.Group | None:
        """The map whose matrix a step's task has: its outermost (None outside maps; inner items are emulated)."""
        maps = self._maps_of(step)
        return maps[0] if maps else None

    def matrix(self, group: ir.Group) -> dict[str, Any]:
        """The ``matrix`` of a mapped task: the item indices."""
        value: Any = f"$(tasks.{self.items_tasks[group.name]}.results.index[*])" if group.name in self.items_tasks \
            else [str(i) for i in range(constant_count(group))]
        return {"params": [{"name": INDEX_PARAM, "value": value}]}

    def list_args(self, group: ir.Group, name: str) -> tuple[list[str], list[ir.Parameter], list[str]]:
        """The map's lists bound to ``NAME#k``: arguments, the parameters they use, the steps they read."""
        args: list[str] = []
        params: list[ir.Parameter] = []
        steps: list[str] = []
        for k, operand in enumerate(group.items):
            if operand.kind is ir.BindingKind.PARAMETER:
                param = self.pipeline.parameter(operand.parameter or "")
                params.append(param)
                args += ["--param", f"{name}#{k}={param.type.value}:$(params.{param.name})"]
            elif operand.kind is ir.BindingKind.OUTPUT:
                steps.append(operand.step or "")
                args += ["--upstream", f"{name}#{k}={operand.step}/{operand.output}"]
            else:
                args += ["--const", f"{name}#{k}={encode_constant(operand.value_json or 'null')}"]
        return args, params, steps


    # -- tasks ---------------------------------------------------------------------------------------------

    def adjust(self, step: ir.Step, task: dict[str, Any]) -> dict[str, Any]:
        """The step's task with its matrix, item/fan-in/OneOf/status arguments, ``when`` and extra ``runAfter``."""
        spec = task["taskSpec"]
        args: list[str] = spec["steps"][0]["args"]
        params: list[ir.Parameter] = []
        run_after = list(task.get("runAfter", []))
        extra: list[tuple[str, str]] = []  # task params passed as Tekton values (statuses)
        group = self.step_map(step)
        if self.runs_items(step):
            self._nested(step, spec, group, params, run_after)
            extra += self._task_statuses(step, spec["steps"][0]["args"])
        elif group is not None:
            index = f"$(params.{INDEX_PARAM})"
            args[args.index("--step") + 1] = f"{step.name}[{index}]"
            for binding in step.bindings:  # chained: item i reads item i of the step before it in the map
                source = self.plan.steps.get(binding.step or "")
                if binding.kind is ir.BindingKind.OUTPUT and source and self.step_map(source) is group:
                    word = args.index(f"{binding.input}={binding.step}/{binding.output}")
                    args[word] = f"{binding.input}={binding.step}[{index}]/{binding.output}"
            args += ["--tekton-index", index]
            if group.name in self.items_tasks:
                run_after.append(self.items_tasks[group.name])
            conditions = self.plan.item_conditions(step)
            if conditions:
                args += self._item_if(group, conditions, params, run_after)
        for name, mode in self.checks.get(step.name, []) if not self.runs_items(step) else ():
            args += ["--tekton-check", f"{name}={mode}"]  # an emulated step's runtime reads the records itself
        for binding in step.bindings if not self.runs_items(step) else ():
            if binding.kind in (ir.BindingKind.ITEM, ir.BindingKind.COLLECTED):
                mapped = self.plan.groups[binding.group or ""] if binding.kind is ir.BindingKind.ITEM \
                    else self.plan.groups[self.plan.maps[binding.step or ""][-1]]
                lists, used, steps = self.list_args(mapped, binding.input)
                combine = (mapped.combine or ir.Combine.ZIP).value
                params += used
                run_after += [self.names[s] for s in steps]
                if binding.kind is ir.BindingKind.ITEM:
                    which = "-" if binding.index is None else str(binding.index)
                    args += [*lists, "--tekton-item", f"{binding.input}={combine}:{which}"]
                else:
                    args += [*lists, "--tekton-collect", f"{binding.input}={combine}:{binding.step}/{binding.output}"]
            elif binding.kind is ir.BindingKind.ONE_OF:
                for one in binding.sources:  # a branch in this step's map: this item's instance of it
                    inside = group is not None and self.step_map(self.plan.steps[one.step]) is group
                    ref = f"{one.step}[$(params.{INDEX_PARAM})]" if inside else one.step
                    args += ["--tekton-one-of", f"{binding.input}={ref}/{one.output}"]
            elif binding.kind is ir.BindingKind.STATUS:
                for name in status_steps(self.plan, binding.group, step):
                    param = f"status-{self.names[name]}"
                    extra.append((param, f"$(tasks.{self.names[name]}.status)"))
                    mark = "=mapped" if self.plan.maps[name] else ""
                    args += ["--tekton-status", f"{binding.input}={name}=$(params.{param}){mark}"]
        guard = self.guards[step.name]
        when = self.when(guard)
        run_after += self.guard_tasks(guard)
        if step.name in self.finally_steps:
            when += self._finally_when(step, group)
            run_after = []
        declared = {p["name"] for p in spec.get("params", [])}
        for key, value in [(p.name, f"$(params.{p.name})") for p in params] + extra:
            if key not in declared:
                declared.add(key)
                spec.setdefault("params", []).append({"name": key, "type": "string"})
                task.setdefault("params", []).append({"name": key, "value": value})
        if group is not None:
            spec.setdefault("params", []).append({"name": INDEX_PARAM, "type": "string"})
        built: dict[str, Any] = {"name": task["name"]}
        if run_after:
            built["runAfter"] = list(dict.fromkeys(run_after))
        built.update({k: v for k, v in task.items() if k not in ("name", "displayName", "runAfter", "taskSpec",
                                                                 "workspaces")})
        if group is not None:
            built["matrix"] = self.matrix(group)
        if when:
            built["when"] = when
        if "workspaces" in task:
            built["workspaces"] = task["workspaces"]
        built["taskSpec"] = spec
        return built

    def _nested(self, step: ir.Step, spec: dict[str, Any], group: ir.Group | None, params: list[ir.Parameter],
                run_after: list[str]) -> None:
        """A step in (or collecting) a nested map: its runtime runs the outer item's inner items (tekton_nested)."""
        container = spec["steps"][0]
        index = f"$(params.{INDEX_PARAM})" if group is not None else None
        decide = nested.decides(self.plan, step, self.checks)
        container["args"], used = nested.nested_args(self.plan, step, container["args"], index, decide)
        container["command"] = [*container["command"][:2], nested.MODULE]
        params += [self.pipeline.parameter(name) for name in used]
        if group is not None and group.name in self.items_tasks:
            run_after.append(self.items_tasks[group.name])
        for mapped in self._maps_of(step):  # the inner list may be one a step of the outer body makes
            run_after += [self.names[o.step] for o in mapped.items if o.kind is ir.BindingKind.OUTPUT and o.step]
        run_after += [self.names[name] for name in nested.decision_reads(self.plan, step)]  # its runtime decides

    def _task_statuses(self, step: ir.Step, args: list[str]) -> list[tuple[str, str]]:
        """``--task-status STEP=$(params.status-<task>)`` for a handler run by the nested runtime.

        Its status comes from the records; an instance without one is counted failed when its task's status is
        ``Failed`` (every TaskRun of a matrix is created, so a TaskRun that died before its runtime wrote the record
        failed), as ``pipecast run`` records every instance. The params carry ``$(tasks.<name>.status)``.
        """
        found: list[tuple[str, str]] = []
        words: list[str] = []
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.STATUS:
                for name in status_steps(self.plan, binding.group, step):
                    param = f"status-{self.names[name]}"
                    if (param, f"$(tasks.{self.names[name]}.status)") not in found:
                        found.append((param, f"$(tasks.{self.names[name]}.status)"))
                        words += [nested.TASK_STATUS, f"{name}=$(params.{param})"]
        at = 1 if args and args[0] == "--decide" else 0  # the runtime reads --decide first
        args[at:at] = words
        return found

    def _item_if(self, group: ir.Group, conditions: list[ir.Group], params: list[ir.Parameter],
                 run_after: list[str]) -> list[str]:
        """``--tekton-if``: the branches around a step inside its map, which its runtime decides for its item.

        A ``when`` belongs to the whole matrixed task (Tekton evaluates it once, before fanning out), so every
        TaskRun starts and the runtime skips its item as ``pipecast run`` would (the rules of FlowPlan).
        """
        chains = [g for c in conditions for g in self.plan.chains[c.chain or c.name] if g.branch <= c.branch]
        groups = [group, *sorted(set(chains), key=lambda g: g.name)]  # each branch and the earlier ones
        operands = [o for g in chains for o in g.all_operands()]
        reads = list(dict.fromkeys(o.step for o in operands if o.kind is ir.BindingKind.OUTPUT and o.step))
        run_after += [self.names[name] for name in reads]
        args: list[str] = []
        for name in dict.fromkeys(o.parameter for o in operands if o.kind is ir.BindingKind.PARAMETER):
            param = self.pipeline.parameter(name or "")
            params.append(param)
            args += ["--tekton-if-param", f"{param.name}={param.type.value}:$(params.{param.name})"]
        combine = None
        if any(o.kind is ir.BindingKind.ITEM for o in operands):
            lists, used, steps = self.list_args(group, IF_LISTS)
            params += used
            run_after += [self.names[s] for s in steps]
            args += lists
            combine = (group.combine or ir.Combine.ZIP).value
        mini = ir.Pipeline(name=self.pipeline.name, groups=tuple(groups))
        plan = compact({**ir._to_plain(mini), "ir_version": mini.written_version()})  # a gather elsewhere is not in it
        spec = {"plan": plan, "groups": [g.name for g in conditions], "combine": combine,
                "mapped": [name for name in reads if self.step_map(self.plan.steps[name]) is group]}
        return [*args, "--tekton-if", encode_constant(ir.canonical_json(spec))]

    def _finally_when(self, step: ir.Step, group: ir.Group | None) -> list[dict[str, Any]]:
        """A handler runs when the outputs it reads exist; a hook when the run failed, or did not.

        A handler inside a map (a finally task matrixed over the map's item indices) also needs its items task
        to have succeeded: Tekton creates no finally task whose matrix reads a result it cannot resolve
        (pipelinerun.go ``runNextSchedulableTask``: ``ResolveResultRef`` fails, the task is passed over), and
        ``hasResultReferences`` (pipelinerunresolution.go) looks at ``params`` and ``when`` only, so without this
        ``when`` such a task would be neither run nor counted skipped. A read of a mapped step tests its whole
        task, as ``pipecast run`` skips a handler whose mapped input step failed as a whole; an item a condition
        skipped is left to the runtime (its TaskRun succeeded).
        """
        if step.trigger is ir.Trigger.ON_FAILURE:
            return [{"input": "$(tasks.status)", "operator": "in", "values": ["Failed"]}]
        if step.trigger is ir.Trigger.ON_SUCCESS:
            return [{"input": "$(tasks.status)", "operator": "in", "values": ["Succeeded", "Completed"]}]
        read = [b.step for b in step.bindings if b.kind in (ir.BindingKind.OUTPUT, ir.BindingKind.COLLECTED)
                and b.step]
        tasks = [self.items_tasks[group.name]] if group is not None and group.name in self.items_tasks else []
        tasks += [self.names[name] for name in dict.fromkeys(read)]
        return [{"input": f"$(tasks.{task}.status)", "operator": "in", "values": ["Succeeded"]} for task in tasks]

    def condition_parameters(self, chain: str) -> list[ir.Parameter]:
        """The pipeline parameters the chain's conditions read, once each."""
        found = dict.fromkeys(o.parameter for group in self.plan.chains[chain] for o in group.all_operands()
                              if o.kind is ir.BindingKind.PARAMETER and o.parameter)
        return [self.pipeline.parameter(name) for name in found]

    def aux_tasks(self) -> list[tuple[str, str]]:
        """``(kind, key)`` of every extra task, ``("branch", chain)`` or ``("items", map)``."""
        return [("branch", chain) for chain in self.branch_tasks] + [("items", m) for m in self.items_tasks]

    def aux_plan(self, kind: str, key: str, root: str, python: str) -> dict[str, Any]:
        """What an extra task needs: name, the step it borrows image and env from, command, params, results."""
        pipeline = self.pipeline
        base = ["--pipeline", pipeline.name, "--run-id", RUN_ID, "--artifact-root", root]
        if kind == "branch":
            members = set().union(*(self.plan.members[g.name] for g in self.plan.chains[key]))
            args = ["decide", *base, "--result", "$(results.branch.path)"]
            used = self.condition_parameters(key)
            for param in used:
                args += ["--param", f"{param.name}={param.type.value}:$(params.{param.name})"]
            for group in self.plan.chains[key]:
                args += ["--branch", f"{group.name}={condition_arg(group.condition)}"]
            reads = self.chain_steps(key)
            guard = self.chain_guard(key)
            name, result = self.branch_tasks[key], "branch"
            display = f"{key} (if/elif/else: which branch runs)"
        else:
            group = self.plan.groups[key]
            members = self.plan.members[key]
            lists, used, reads = self.list_args(group, "list")
            args = ["items", *base, "--result", "$(results.index.path)", "--map", key,
                    "--combine", (group.combine or ir.Combine.ZIP).value, "--max", str(self.max_combinations), *lists]
            guard = {}
            for operand_step in reads:
                _merge(guard, self.guards.get(operand_step, {}))
            for outer in self.plan.ancestors(group.parent):
                if outer.kind is ir.GroupKind.CONDITION:
                    _merge(guard, {outer.chain or outer.name: frozenset({outer.name})})
            name, result = self.items_tasks[key], "index"
            display = f"{key} (the map's item indices)"
        first = next((s for s in pipeline.steps if s.name in members), pipeline.steps[0])  # empty branches
        return {"name": name, "display": display, "step": first, "args": args, "params": used,
                "command": [python, "-m", "pipecast.runtime.publish_tekton"], "result": result,
                "array": kind == "items", "when": self.when(guard),
                "runAfter": list(dict.fromkeys([self.names[s] for s in reads] + self.guard_tasks(guard)))}

    def first_user(self, task_name: str, tasks: list[dict[str, Any]]) -> int:
        """Where to place an extra task: before the first task that runs after it."""
        for i, task in enumerate(tasks):
            if task_name in task.get("runAfter", []):
                return i
        return len(tasks)


def check_feature_flags(api: Any, definitions: list[dict[str, Any]], run: dict[str, Any]) -> None:
    """Refuse, before anything is created, a map on a cluster whose ``enable-api-fields`` is ``stable``.

    ``matrix`` and array results are beta (docs/matrix.md); Tekton enables beta fields by default since 0.49
    (``feature-flags`` ConfigMap in ``tekton-pipelines``), and a cluster set to ``stable`` rejects the Pipeline
    when it is applied. A ConfigMap pipecast cannot read leaves the decision to Tekton's own validation.
    """
    from pipecast.errors import SubmitError
    from pipecast.targets.kube.client import KubeError
    from pipecast.targets.kube.objects import Kube
    from pipecast.targets.versions import TEKTON_NAMESPACE

    specs = [d["spec"] for d in definitions if d.get("kind") == "Pipeline"]
    specs += [run["spec"]["pipelineSpec"]] if "pipelineSpec" in run.get("spec", {}) else []
    if not any("matrix" in task for spec in specs for task in spec.get("tasks", [])):
        return
    try:
        flags = Kube(api.cluster, TEKTON_NAMESPACE).get("ConfigMap", "feature-flags").get("data") or {}
    except KubeError:
        return
    level = flags.get("enable-api-fields", "beta")
    if level == "stable":
        raise SubmitError(f"the cluster's Tekton runs with enable-api-fields: {level!r} (ConfigMap feature-flags in "
                          f"{TEKTON_NAMESPACE}), which rejects the matrix and array results pipecast's maps use; "
                          "set it to 'beta' (Tekton's default) or run the pipeline without maps")


def constant_count(group: ir.Group) -> int:
    """How many items a map over constant lists has."""
    sizes = [len(o.value) if isinstance(o.value, list) else 0 for o in group.items]
    if group.combine is ir.Combine.PRODUCT:
        count = 1
        for size in sizes:
            count *= size
        return count
    return min(sizes) if sizes else 0


def status_steps(plan: FlowPlan, group: str | None, handler: ir.Step) -> list[str]:
    """The DAG steps a status covers: the exit group's, or every one that is not a finally task."""
    if group:
        return [s.name for s in plan.pipeline.steps if s.name in plan.members[group] and s.trigger not in FINALLY]
    return [s.name for s in plan.pipeline.steps if s.trigger not in FINALLY and s.name != handler.name]


def item_checks(plan: FlowPlan, finally_steps: set[str]) -> tuple[dict[str, list[tuple[str, str]]], set[str]]:
    """Per step, the steps it reads that their runtime may have skipped, and how to test them; those steps.

    Such a step's TaskRuns succeed (Tekton sees no skip), so what reads it tests their records: ``item`` (this
    item's instance, same map), ``items`` (a mapped step elsewhere: skipped when every item was) or ``step``.
    A step in (or collecting) a nested map decides from the records itself (:func:`nested.decides`).
    """
    partial: set[str] = set()
    checks: dict[str, list[tuple[str, str]]] = {}
    for step in plan.pipeline.steps:  # in topological order
        conditions = [g for g in plan.conditions[step.name] if _in_map(plan, g)]  # a nested step's outer ones too
        chains = [g for c in conditions for g in plan.chains[c.chain or c.name]]
        reads = [*step.upstream(), *(n for g in chains if g.condition for n in g.condition.steps())]
        data = {b.step for b in step.bindings if b.kind in (ir.BindingKind.OUTPUT, ir.BindingKind.COLLECTED)}
        sources = {s.step for b in step.bindings for s in b.sources}
        outputs = {b.step for b in step.bindings if b.kind is ir.BindingKind.OUTPUT}
        found: list[tuple[str, str]] = []
        for name in dict.fromkeys(reads):
            if name not in partial or (name in sources and name not in data):
                continue  # a OneOf source: the runtime takes the branch that ran
            if step.name in finally_steps and name not in outputs:
                continue  # a handler runs whatever its group did; it needs only the values it reads
            own, theirs = plan.maps[step.name], plan.maps[name]
            found.append((name, "step" if not theirs else "item" if theirs == own[:len(theirs)] else "items"))
        if conditions or found or sources & partial:
            partial.add(step.name)
        if found:
            checks[step.name] = found
    return checks, partial


def _in_map(plan: FlowPlan, group: ir.Group) -> bool:
    return any(g.kind is ir.GroupKind.MAP for g in plan.ancestors(group.parent))


def _constant(group: ir.Group) -> bool:
    return all(o.kind is ir.BindingKind.CONSTANT for o in group.items)


def _merge(guard: Guard, other: Guard) -> None:
    for chain, branches in other.items():
        guard[chain] = guard[chain] & branches if chain in guard else branches


def _dns(name: str) -> str:
    return name.lower().replace("_", "-")


def _unique(name: str, taken: set[str]) -> str:
    found, n = name[:63].rstrip("-"), 2
    while found in taken:
        found = f"{name[:60].rstrip('-')}-{n}"
        n += 1
    taken.add(found)
    return found


def _json_string(text: str) -> str:
    import json

    return json.dumps(text)
