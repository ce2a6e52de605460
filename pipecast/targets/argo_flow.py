"""Control flow on Argo Workflows (issue 16): maps, conditions, exit handlers, hooks and bounds, all native.

What Argo's workflow controller does, and what each construct becomes (argo-workflows v4.1,
workflow/controller/dag.go and operator.go):

- **A map** is two DAG templates, the way Argo users loop over several steps: the loop ``pipecast-map-N``, whose
  one task ``item`` carries ``withItems`` (constant lists) or ``withParam: "{{inputs.parameters.items}}"`` and
  calls the body ``pipecast-map-N-item`` with the item as its input ``i0`` (``expandTask`` substitutes ``{{item}}``
  into the task only). The items are the list's *indices*, published by a task (``map-N-items``) that runs
  :mod:`pipecast.runtime.publish_argo`; the body's steps run as instance ``step[i]`` and their runtime takes item
  ``i`` from the list itself, by the Workflow's plan (``pipecast-flow``, written once). Item ``i`` of a
  chained step reads item ``i`` of the step before, inside the same body. A nested map is a loop task inside the
  outer body (its items published per outer item, its body's inputs ``i0``, ``i1``); a condition inside a map is
  a chain publisher and ``when`` inside the body, so it reads this item's values. The map's ``parallelism`` and
  ``failFast`` are the loop template's: its children are the item bodies (``checkParallelism``). **Fan-in**
  reads every item's result from pipecast's artifact store (the items that ran, in item order; a list per outer
  item of a nested map), not Argo's aggregated output parameters (``processAggregateNodeOutputs``): those hold
  text only, and every one is kept in the Workflow's status (one 1 MiB object), while the store already holds
  each item's ``step[i]`` result whatever its type.
- **A condition** is ``when`` on the branch's tasks, reading one publisher task per if/elif/else chain. A chain
  with an elif, or with any comparison govaluate would read differently from Python (text: govaluate turns
  unquoted words into strings and date-like strings into times; lists; mixed types), is evaluated whole by its
  publisher with ``pipecast run``'s rules (:meth:`FlowPlan.holds`: in order, first branch that holds), which
  outputs one number, ``branch`` (the branch's place, ``-1``: none); each branch's ``when`` is
  ``{{...branch}} == k``, so the file grows linearly with the branches. A lone ``If`` (or ``If``/``Else``) on
  numbers and booleans keeps its comparison in ``when`` (Argo's UI then shows ``0.84 > 0.8``), the values
  published as govaluate literals. Either way only numbers and ``true``/``false`` are spliced into ``when``, so
  no value can change the expression. Skips propagate through ``depends: "X.Succeeded"``: Argo omits a
  task whose ``depends`` is false (``evaluateDependsLogic``), while plain ``dependencies`` would run it after a
  skipped task. A ``OneOf`` reader depends on ``(A.Succeeded || B.Succeeded)``; its runtime reads the branch
  that ran.
- **An exit handler** is an ``exit`` lifecycle hook on the group's own DAG task (``pipecast-exit-N``): Argo runs
  it when the task has completed, whatever its phase (``runOnExitNode``), and the group's failure still fails
  the run. The handler's status comes from ``{{tasks.exit-N.status}}`` and the steps' records in the store.
- **Hooks** are tasks of the Workflow's ``onExit`` DAG with ``when: "{{workflow.status}} != Succeeded"``
  (``on_failure``) or ``== Succeeded`` (``on_success``).
- **The pipeline's bound** is ``spec.parallelism`` (the run's active pods).

Inside a map body, an exit group is a task of the body with its ``exit`` hook, so the handler gets that item's
status (``{{tasks.exit-N.status}}`` of this item's task, and the records of this item's instances); a ``OneOf``
reader there depends on ``(A.Succeeded || B.Succeeded)`` of the same item's tasks and its runtime reads this item's
instance of the branch that ran. Refused, each with the alternative: several handlers of one group, and a step
reading a handler's output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.runtime.publish_argo import OUT_DIR, govaluate_literal
from pipecast.runtime.publish_tekton import condition_arg
from pipecast.targets.argo_maps import constant, instance, map_publisher, map_templates, path_input, plan_args
from pipecast.targets.argo_share import Templates, parameterize
from pipecast.targets.base import EmitContext
from pipecast.targets.kfpspec.sharing import unique
from pipecast.targets.kube.crd import STEP_LABEL

_FIX = "run it with the local target (`pipecast run FILE`), or move the inner loop or decision inside one step"
_HOOKS = (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)
_ORDER = (ir.Comparison.LT, ir.Comparison.LE, ir.Comparison.GT, ir.Comparison.GE)
_SCOPES = (ir.GroupKind.MAP, ir.GroupKind.EXIT)
_FROM_PLAN = (ir.BindingKind.ITEM, ir.BindingKind.COLLECTED)
Container = Callable[[ir.Step, str], dict[str, Any]]


class FlowLowering:
    """The DAG templates of a pipeline with control flow: the main DAG's tasks and every other template."""

    def __init__(self, pipeline: ir.Pipeline, context: EmitContext, names: dict[str, str], container: Container,
                 shared: Templates) -> None:
        self.pipeline, self.context, self.names, self.container, self.shared = (pipeline, context, names,
                                                                                container, shared)
        self.plan = FlowPlan(pipeline)
        self.plan_value: str | None = None  # the Workflow's plan parameter (argo_maps.plan_args), once built
        self.plan_groups: dict[str, ir.Group] = {}  # the groups in it
        self.templates: list[dict[str, Any]] = []
        self.publishers: list[dict[str, Any]] = []
        self.handlers = {b.group: s for s in pipeline.steps for b in s.bindings
                         if b.kind is ir.BindingKind.STATUS and b.group and s.trigger is ir.Trigger.ALWAYS}
        self.hooks = [s for s in pipeline.steps if s.trigger in _HOOKS]
        self.task_of: dict[tuple[str | None, str], str] = {}  # (scope, group or chain) -> its task's name
        self._value_cache: dict[str, ChainValues] = {}
        self._verdicts: dict[str, bool] = {}
        self._place: dict[str, int] = {}  # per branch: its place in its chain
        self._elements: dict[str | None, dict[str, None]] = {None: {}}  # per DAG: its steps and groups, in order
        self._in_group: dict[str, list[ir.Step]] = {}  # per group: its steps, in order
        for step in pipeline.steps:
            for group in self.plan.ancestors(step.group):
                self._in_group.setdefault(group.name, []).append(step)
            if step in self.hooks or step in self.handlers.values():
                continue
            node = step.name
            for group in self.plan.ancestors(step.group):
                if group.kind in _SCOPES:
                    self._elements.setdefault(group.name, {})[node] = None
                    node = group.name
            self._elements[None][node] = None
        self._check()

    # -- where things go --------------------------------------------------------------------------------

    def home(self, group: str | None) -> str | None:
        """The map or exit group whose DAG holds ``group``'s (or a step's) task; None: the main DAG."""
        for found in self.plan.ancestors(group):
            if found.kind in _SCOPES:
                return found.name
        return None

    def _unit(self, step: str, scope: str | None) -> str | None:
        """The element of ``scope`` that holds ``step``: the step itself or a group; None when outside."""
        node = step
        for group in self.plan.ancestors(self.plan.steps[step].group):
            if group.kind in _SCOPES:
                if group.name == scope:
                    return node
                node = group.name
        return node if scope is None else None

    def _members(self, element: str) -> list[ir.Step]:
        if element in self.plan.steps:
            return [self.plan.steps[element]]
        return [s for s in self._in_group.get(element, []) if s not in self.hooks]

    def _scope_conditions(self, element: str, scope: str | None) -> list[ir.Group]:
        """The condition branches around ``element`` inside ``scope`` (outermost first)."""
        start = self.plan.steps[element].group if element in self.plan.steps else self.plan.groups[element].parent
        found = []
        for group in self.plan.ancestors(start):
            if group.kind in _SCOPES:
                break
            found.append(group)
        return list(reversed(found)) if self.home(start) == scope else []

    # -- checks -----------------------------------------------------------------------------------------

    def _check(self) -> None:
        for step in self.pipeline.steps:
            for binding in step.bindings:
                if binding.kind is ir.BindingKind.STATUS and step.trigger not in (*_HOOKS, ir.Trigger.ALWAYS):
                    self.context.error(f"step {step.name!r} reads a status outside an exit handler or hook",
                                       step=step, fix=_FIX)
                if binding.step and self.plan.steps[binding.step] in self.handlers.values() and \
                        step.trigger not in _HOOKS:
                    self.context.error(f"step {step.name!r} reads an output of exit handler {binding.step!r}; on "
                                       "Argo the handler is the group task's exit hook, which no task can depend on",
                                       step=step, fix="pass the value to a pipeline hook, or read it in the handler")
        counts: dict[str, int] = {}
        for step in self.pipeline.steps:
            for binding in step.bindings:
                if binding.kind is ir.BindingKind.STATUS and binding.group:
                    counts[binding.group] = counts.get(binding.group, 0) + 1
                    if counts[binding.group] == 2:
                        self.context.error(f"exit group {binding.group!r} has several handlers; Argo runs one exit "
                                           "hook per task", step=step, fix="call one handler step per ExitHandler")

    def native(self, condition: ir.Condition) -> bool:
        """Whether govaluate gives comparison ``condition`` Python's meaning: numbers and booleans only.

        Any other comparison (text, lists, a membership in a parameter...) is tested by the chain's publisher
        with pipecast's own semantics, and ``when`` reads the plain ``true``/``false`` it publishes.
        """
        kinds = [self._kind(o) for o in condition.operands]
        right = condition.operands[1]
        if condition.op in (ir.Comparison.IN, ir.Comparison.NOT_IN):
            values = right.value if right.kind is ir.BindingKind.CONSTANT else None
            return isinstance(values, list) and kinds[0] in ("number", "bool") and all(
                _literal_kind(v) == kinds[0] for v in values)
        if condition.op in _ORDER:
            return kinds == ["number", "number"]
        return kinds[0] == kinds[1] and kinds[0] in ("number", "bool")

    def _kind(self, operand: ir.Operand) -> str:
        if operand.kind is ir.BindingKind.PARAMETER:
            kind = self.pipeline.parameter(operand.parameter or "").type
        elif operand.kind is ir.BindingKind.OUTPUT:
            step = self.plan.steps[operand.step or ""]
            kind = next(o for o in step.outputs if o.name == operand.output).type
        elif operand.kind is ir.BindingKind.CONSTANT:
            return _literal_kind(operand.value)
        else:
            return "item"
        return {ir.TypeName.INT: "number", ir.TypeName.FLOAT: "number", ir.TypeName.BOOL: "bool"}.get(kind, "other")

    # -- lowering ---------------------------------------------------------------------------------------

    def lower(self) -> tuple[list[dict[str, Any]], str | None]:
        """The main DAG's tasks, and the ``onExit`` template's name (None without hooks)."""
        tasks = self._scope_tasks(None)
        on_exit = None
        if self.hooks:
            on_exit = self._template_name("pipecast-exit-hooks")
            hook_tasks = []
            for step in self.hooks:
                task = self._step_task(step, {"phase": "{{workflow.status}}"})
                task["when"] = "{{workflow.status}} " + ("!=" if step.trigger is ir.Trigger.ON_FAILURE else "==") + \
                    " Succeeded"
                hook_tasks.append(task)
            self.templates.append({"name": on_exit, "dag": {"tasks": hook_tasks}})
        return tasks, on_exit

    def all_templates(self) -> list[dict[str, Any]]:
        """The group DAGs and the hooks' DAG, then the publishers (after :meth:`lower`)."""
        return [*self.templates, *self.publishers]

    def _template_name(self, name: str) -> str:
        taken = {t["name"] for t in [*self.templates, *self.publishers, *self.shared.all()]}
        found = unique(name, taken | self.shared.reserved)
        self.shared.reserved.add(found)  # a step's shared template named later must not take it
        return found

    def _scope_tasks(self, scope: str | None) -> list[dict[str, Any]]:
        """The tasks of one DAG: its steps, its child groups and the publishers they need, in step order."""
        elements = list(self._elements.get(scope, {}))
        tasks: list[dict[str, Any]] = []
        taken = {self.names[e] for e in elements if e in self.plan.steps}
        for element in elements:
            for chain in self._chains(element, scope):
                if (scope, chain.name) not in self.task_of:
                    self.task_of[(scope, chain.name)] = unique(f"{chain.name.replace('_', '-')}-values", taken)
                    taken.add(self.task_of[(scope, chain.name)])
                    tasks.append(self._chain_publisher(chain, scope, elements))
            if element in self.plan.groups:
                self.task_of[(scope, element)] = unique(element.replace("_", "-"), taken)
                taken.add(self.task_of[(scope, element)])
                group = self.plan.groups[element]
                if group.kind is ir.GroupKind.MAP and not constant(group):
                    self.task_of[(scope, f"{element}#items")] = unique(f"{element.replace('_', '-')}-items", taken)
                    taken.add(self.task_of[(scope, f"{element}#items")])
                    tasks.append(map_publisher(self, group, scope))
                tasks.append(self._group_task(group, scope, elements))
            else:
                tasks.append(self._step_task(self.plan.steps[element], None, scope, elements))
        return tasks

    def _chains(self, element: str, scope: str | None) -> list[ir.Group]:
        found = []
        for branch in self._scope_conditions(element, scope):
            chain = self.plan.groups[branch.chain or branch.name]
            if chain not in found:
                found.append(chain)
        return found

    def _depends(self, element: str, scope: str | None, elements: list[str]) -> str | None:
        """``depends``: every element the element's steps read succeeded (a OneOf: one of its branches did)."""
        members = {s.name for s in self._members(element)}
        needs: dict[str, None] = {}
        alternatives: list[list[str]] = []
        tolerated: set[str] = set()
        for step in self._members(element):
            for binding in step.bindings:
                if binding.kind is ir.BindingKind.ONE_OF:
                    units = [self._unit(s.step, scope) for s in binding.sources]
                    tolerated.update(s.step for s in binding.sources)
                    if element not in units:  # branches inside the element are its own business
                        alternatives.append([self._task(u, scope) for u in dict.fromkeys(units) if u])
            data = {b.step for b in step.bindings if b.kind is ir.BindingKind.OUTPUT}
            for name in step.upstream():
                unit = self._unit(name, scope)
                if unit is not None and unit != element and name not in members and (
                        name not in tolerated or name in data):
                    needs[self._task(unit, scope)] = None
        for chain in self._chains(element, scope):
            needs[self.task_of[(scope, chain.name)]] = None
        group = self.plan.groups.get(element)
        if group is not None and group.kind is ir.GroupKind.MAP and (scope, f"{element}#items") in self.task_of:
            needs[self.task_of[(scope, f"{element}#items")]] = None
        terms = [f"{task}.Succeeded" for task in needs]
        terms += ["(" + " || ".join(f"{t}.Succeeded" for t in picked) + ")" for picked in alternatives]
        return " && ".join(terms) or None

    def _task(self, unit: str, scope: str | None) -> str:
        return self.names[unit] if unit in self.plan.steps else self.task_of[(scope, unit)]

    def _when(self, element: str, scope: str | None) -> str | None:
        terms = [t for t in (self._branch(g, scope) for g in self._scope_conditions(element, scope)) if t]
        return terms[0] if len(terms) == 1 else " && ".join(f"({t})" for t in terms) or None

    def verdict(self, chain: ir.Group) -> bool:
        """Whether the chain's publisher picks its branch (an elif, or a comparison govaluate cannot make)."""
        found = self._verdicts.get(chain.name)
        if found is None:
            branches = self.plan.chains.get(chain.name, [chain])
            self._place.update((b.name, k) for k, b in enumerate(branches))
            found = len(branches) > 2 or any(b.condition is not None for b in branches[1:]) or not all(
                self.native(c) for b in branches if b.condition is not None for c in _comparisons(b.condition))
            self._verdicts[chain.name] = found
        return found

    def _branch(self, group: ir.Group, scope: str | None) -> str:
        """The publisher picked this branch; or (a lone if/else) the if's condition, negated for the else."""
        chain = self.plan.groups[group.chain or group.name]
        if self.verdict(chain):
            return f"{{{{tasks.{self.task_of[(scope, chain.name)]}.outputs.parameters.branch}}}} == " \
                f"{self._place[group.name]}"
        terms = []
        for earlier in self.plan.chains.get(group.chain or "", [group]):
            if earlier.name == group.name:
                break
            if earlier.condition is not None:
                terms.append(f"!({self._condition(earlier.condition, group, scope)})")
        if group.condition is not None:
            terms.append(f"({self._condition(group.condition, group, scope)})")
        return " && ".join(terms)

    def _condition(self, condition: ir.Condition, group: ir.Group, scope: str | None) -> str:
        if condition.op in (ir.Comparison.AND, ir.Comparison.OR):
            joiner = " && " if condition.op is ir.Comparison.AND else " || "
            return joiner.join(f"({self._condition(t, group, scope)})" for t in condition.terms)
        if condition.op is ir.Comparison.NOT:
            return f"!({self._condition(condition.terms[0], group, scope)})"
        left, right = condition.operands
        value = self._operand(left, group, scope)
        if condition.op in (ir.Comparison.IN, ir.Comparison.NOT_IN):
            options = right.value if isinstance(right.value, list) else []
            found = " || ".join(f"{value} == {_literal(v)}" for v in options) or "false"
            return f"({found})" if condition.op is ir.Comparison.IN else f"!({found})"
        return f"{value} {condition.op.value} {self._operand(right, group, scope)}"

    def _operand(self, operand: ir.Operand, group: ir.Group, scope: str | None) -> str:
        if operand.kind is ir.BindingKind.CONSTANT:
            return _literal(operand.value)
        chain = self.plan.groups[group.chain or group.name]
        name = self._values(chain).names[_operand_key(operand)]
        return f"{{{{tasks.{self.task_of[(scope, chain.name)]}.outputs.parameters.{name}}}}}"

    def _values(self, chain: ir.Group) -> ChainValues:
        """What the chain's publisher loads, tests and publishes (built once: every branch's `when` reads it)."""
        found = self._value_cache.get(chain.name)
        if found is None:
            found = self._value_cache[chain.name] = ChainValues()
            for branch in self.plan.chains.get(chain.name, [chain]):
                if branch.condition is not None:
                    found.visit(branch.condition)
        return found

    def _step_task(self, step: ir.Step, status: dict[str, str] | None = None, scope: str | None = None,
                   elements: list[str] | None = None) -> dict[str, Any]:
        """A step's task (or, with ``status``, the hook or handler task that gets its final status)."""
        template = self.container(step, self.names[step.name])
        args = template["container"]["args"]
        depth = len(self.plan.maps[step.name])
        if depth:  # instance step[i] (step[i][j]): the item indices are the body template's inputs
            args[args.index("--step") + 1] = instance(step.name, depth)
            for binding in step.bindings:  # chained: item i reads item i of the step before (as the runtime does)
                source = len(self.plan.maps.get(binding.step or "", ()))
                if binding.kind is ir.BindingKind.OUTPUT and source:
                    word = args.index(f"{binding.input}={binding.step}/{binding.output}")
                    args[word] = f"{binding.input}={instance(binding.step or '', source)}/{binding.output}"
        args += self._flow_args(step, status)
        template, arguments = parameterize(template, STEP_LABEL)
        task: dict[str, Any] = {"name": self.names[step.name], "template": self.shared.add(step, template)}
        if status is None and elements is not None:
            depends = self._depends(step.name, scope, elements)
            if depends:
                task["depends"] = depends
            when = self._when(step.name, scope)
            if when:
                task["when"] = when
        task["arguments"] = {"parameters": arguments}
        return task

    def _flow_args(self, step: ir.Step, status: dict[str, str] | None) -> list[str]:
        args: list[str] = []
        if self.plan.maps[step.name] or any(b.kind in _FROM_PLAN for b in step.bindings):
            args += plan_args(self, step)  # items, chained items, fan-ins: the runtime reads them by the plan
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.ONE_OF:
                args += ["--argo-one-of", f"{binding.input}=" + ",".join(f"{s.step}/{s.output}"
                                                                         for s in binding.sources)]
            elif binding.kind is ir.BindingKind.STATUS:
                phase = (status or {}).get("phase", "Succeeded")
                args += ["--argo-status", f"{binding.input}={phase}"]
                covers = [s.name for s in self.pipeline.steps if (s.name in self.plan.members[binding.group]
                          if binding.group else s.trigger not in _HOOKS and s.name != step.name)]
                args += ["--argo-covers", json.dumps(covers, separators=(",", ":"))]
        return args

    def _group_task(self, group: ir.Group, scope: str | None, elements: list[str]) -> dict[str, Any]:
        name = self._template_name(f"pipecast-{group.name.replace('_', '-')}")
        body: dict[str, Any] = {"name": name}
        self.templates.append(body)  # reserve the name before the tasks inside add theirs
        task: dict[str, Any] = {"name": self.task_of[(scope, group.name)], "template": name}
        depends = self._depends(group.name, scope, elements)
        if depends:
            task["depends"] = depends
        when = self._when(group.name, scope)
        if when:
            task["when"] = when
        if group.kind is ir.GroupKind.MAP:
            map_templates(self, group, scope, task, body)
            return task
        depth = self.plan.depth(group.name)
        if depth:  # an exit group inside a map body: its DAG gets the item path as the body's own inputs
            body["inputs"] = {"parameters": [{"name": f"i{k}"} for k in range(depth)]}
            task["arguments"] = {"parameters": [{"name": f"i{k}", "value": path_input(k)} for k in range(depth)]}
        body["dag"] = {"tasks": self._scope_tasks(group.name)}
        handler = self.handlers.get(group.name)
        if handler is not None:
            hook = self._step_task(handler, {"phase": f"{{{{tasks.{task['name']}.status}}}}"})
            task["hooks"] = {"exit": {"template": hook["template"], "arguments": hook["arguments"]}}
        return task

    def _publisher(self, task: str, near: ir.Step, args: list[str], outputs: list[str],
                   depth: int = 0) -> dict[str, Any]:
        """A task running :mod:`pipecast.runtime.publish_argo` in ``near``'s image, env and service account.

        Inside a map (``depth`` > 0) it gets the item path as its input ``at``, which its task sets from the
        body's ``i0``... (a container template reads only its own inputs).
        """
        template = self.container(near, task)
        container = template["container"]
        run = container["args"]
        base = ["--pipeline", self.pipeline.name, "--run-id", run[run.index("--run-id") + 1],
                "--artifact-root", run[run.index("--artifact-root") + 1]]
        if depth:
            args = [*args, "--at", "{{inputs.parameters.at}}"]
        container["command"] = [container["command"][0], "-m", "pipecast.runtime.publish_argo"]
        container["args"] = base + args
        container.pop("resources", None)  # a few lines of Python: no GPU, no large request
        for field in ("retryStrategy", "activeDeadlineSeconds", "nodeSelector", "tolerations", "affinity",
                      "podSpecPatch"):
            template.pop(field, None)
        template["name"] = self._template_name(f"pipecast-{task}")
        if depth:
            template["inputs"] = {"parameters": [{"name": "at"}]}
        template["outputs"] = {"parameters": [{"name": name, "valueFrom": {"path": f"{OUT_DIR}/{name}"}}
                                              for name in outputs]}
        self.publishers.append(template)
        found: dict[str, Any] = {"name": task, "template": template["name"]}
        if depth:
            found["arguments"] = {"parameters": [{"name": "at", "value": ",".join(path_input(k)
                                                                                  for k in range(depth))}]}
        return found

    def _chain_publisher(self, chain: ir.Group, scope: str | None, elements: list[str]) -> dict[str, Any]:
        args: list[str] = []
        needs: dict[str, None] = {}
        if self.verdict(chain):  # the chain's conditions as the IR writes them, tried in order by the publisher
            branches = self.plan.chains.get(chain.name, [chain])
            operands = [o for b in branches if b.condition is not None for o in b.condition.all_operands()]
            for name in dict.fromkeys(o.parameter or "" for o in operands if o.kind is ir.BindingKind.PARAMETER):
                param = self.pipeline.parameter(name)
                args += ["--param", f"{name}={param.type.value}:{{{{workflow.parameters.{name}}}}}"]
            args += [a for k, b in enumerate(branches) for a in ("--branch", f"{k}={condition_arg(b.condition)}")]
            reads = [o.step or "" for o in operands if o.kind is ir.BindingKind.OUTPUT]
            published = ["branch"]
        else:
            values = self._values(chain)
            for (kind, first, second), name in values.names.items():
                if kind == "parameter":
                    param = self.pipeline.parameter(first)
                    args += ["--param", f"{name}={param.type.value}:{{{{workflow.parameters.{first}}}}}"]
                else:
                    args += ["--upstream", f"{name}={first}/{second}"]
                args += ["--decision", name]
            reads = [first for (kind, first, _), _name in values.names.items() if kind == "output"]
            published = list(values.names.values())
        for step in reads:
            unit = self._unit(step, scope)
            if unit is not None:
                needs[self._task(unit, scope)] = None
        near = next(s for s in self.pipeline.steps if any(g.chain == chain.name for g in self.plan.conditions[s.name]))
        depth = self.plan.depth(chain.name)
        if depth:  # inside a map: this item's values (instances and items resolved by the plan)
            args = [*plan_args(self, near), *args]
        task = self._publisher(self.task_of[(scope, chain.name)], near, args, published, depth)
        if needs:
            task["depends"] = " && ".join(f"{n}.Succeeded" for n in needs)
        return task


def _comparisons(condition: ir.Condition) -> list[ir.Condition]:
    """The comparisons (leaves) of a condition's and/or/not tree."""
    return [condition] if condition.operands else [c for t in condition.terms for c in _comparisons(t)]


def _literal_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    try:
        govaluate_literal("constant", value)
    except PipecastError:
        return "other"
    return "number"


def _literal(value: Any) -> str:
    try:
        return govaluate_literal("constant", value)
    except PipecastError:
        return "false"  # refused by the check; never emitted


def _operand_key(operand: ir.Operand) -> tuple[str, str, str]:
    if operand.kind is ir.BindingKind.PARAMETER:
        return ("parameter", operand.parameter or "", "")
    if operand.kind is ir.BindingKind.CONSTANT:
        return ("constant", operand.value_json or "null", "")
    return ("output", operand.step or "", operand.output or "")


class ChainValues:
    """The values a lone if/else on numbers and booleans publishes (``vN``, govaluate literals) for ``when``."""

    def __init__(self) -> None:
        self.names: dict[tuple[str, str, str], str] = {}

    def visit(self, condition: ir.Condition) -> None:
        """Add ``condition``'s values (depth first, so names follow the condition's text)."""
        for term in condition.terms:
            self.visit(term)
        for operand in condition.operands:
            if operand.kind is not ir.BindingKind.CONSTANT:
                self.names.setdefault(_operand_key(operand), f"v{len(self.names)}")

