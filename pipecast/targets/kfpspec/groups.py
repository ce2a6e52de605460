"""Control-flow groups on the KFP IR as kfp 2.17's compiler nests them: loops, conditions, exit handlers.

Each group is a task of the DAG around it whose component is a DAG (``kfp/compiler/pipeline_spec_builder.py``,
``build_spec_by_group``): ``for-loop-N`` (a map, :mod:`.maps`), ``condition-N`` (a branch, with a CEL
``triggerPolicy.condition``, :mod:`.conditions`), ``condition-branches-N`` (an if/elif/else chain of more than
one branch, holding its branches; a ``OneOf`` is its ``valueFromOneof`` output) and ``exit-handler-N`` (an
``ExitHandler``; its handler is a task beside it with ``triggerPolicy.strategy: ALL_UPSTREAM_TASKS_COMPLETED``
reading ``taskFinalStatus``). N counts groups in the order they were opened, as kfp's does. A value a task reads
from outside its group travels as a ``pipelinechannel--`` input of every group in between; a dependency on a
task outside is the group task's (kfp's ``_get_uncommon_ancestors``).

The engine skips a branch whose condition is false (KFP: the DAG driver writes ``condition=false`` and the Argo
task has ``when: ... != false``, ``backend/src/v2/compiler/argocompiler/dag.go``); a task after a group waits for
it to have *succeeded* (``depends: X.Succeeded``, the same file's ``depends``). A ``OneOf`` reader gets the
name of the branch step that ran (its ``pipecast_ran`` output, the first selector whose task completed:
``driver/resolve.go``, ``GetProducerTask``) and reads that step's output from the artifact store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext
from pipecast.targets.kfpspec import combinations, hooks
from pipecast.targets.kfpspec.conditions import CHANNEL, CelWriter, Unlowerable
from pipecast.targets.kfpspec.maps import MapLowering, group_numbers

STEP_OUTPUT = "pipecast_ran"  # the output parameter a OneOf source publishes: its step's instance name
ONE_OF_INPUT = "pipecast_one_of_"
FINAL_STATUS = "TASK_FINAL_STATUS"
Scope = str | None  # a group's name, "<chain>#branches", or None for the root DAG


def _placeholder(name: str) -> str:
    return "{{$.inputs.parameters['" + name + "']}}"


class GroupLowering:
    """The groups of one pipeline: their KFP names, the per-step options they add, and the nesting."""

    def __init__(self, pipeline: ir.Pipeline, context: EmitContext, tasks_by_step: Mapping[str, str],
                 param_types: Mapping[str, str], maps: MapLowering, output_types: Mapping[str, Mapping[str, str]]):
        self.pipeline, self.context, self.maps = pipeline, context, maps
        self.tasks_by_step, self.param_types, self.output_types = tasks_by_step, param_types, output_types
        self.groups = {g.name: g for g in pipeline.groups}
        self.chains: dict[str, list[ir.Group]] = {}
        for group in sorted(pipeline.groups, key=lambda g: g.branch):
            if group.kind is ir.GroupKind.CONDITION:
                self.chains.setdefault(group.chain or group.name, []).append(group)
        numbers = group_numbers(pipeline)
        self.names: dict[str, str] = {}  # scope -> kfp task name
        self.parent: dict[str, Scope] = {}
        for group in pipeline.groups:
            chain = self.chains.get(group.chain or group.name, [])
            self.parent[group.name] = group.parent
            if group.kind is ir.GroupKind.MAP:
                self.names[group.name] = maps.loops[group.name]
            elif group.kind is ir.GroupKind.EXIT:
                self.names[group.name] = f"exit-handler-{numbers[group.name]}"
            else:
                self.names[group.name] = f"condition-{numbers[group.name]}"
                if len(chain) > 1:
                    key = f"{chain[0].name}#branches"
                    self.parent[group.name] = key
                    if group.branch == 0:
                        self.names[key] = f"condition-branches-{numbers[key]}"
                        self.parent[key] = group.parent
        self.scope_of = {s.name: s.group for s in pipeline.steps}
        self.handlers: dict[str, str] = {}  # step -> the exit group whose status it reads
        self.one_ofs: dict[tuple[str, str], str] = {}  # (reader step, input) -> its oneof output key
        self.sources: set[str] = set()  # steps a OneOf reads: they publish STEP_OUTPUT
        self._check(context)

    # --- checks ---------------------------------------------------------------------------------------------------
    def _refuse(self, step: ir.Step | None, message: str, fix: str) -> None:
        self.context.unsupported(message, step=step, fix=fix)

    def _check(self, context: EmitContext) -> None:
        for name, task in self.tasks_by_step.items():
            if task in self.names.values():
                context.error(f"step {name!r} has the task name {task!r}, which a control-flow group takes on KFP",
                              step=self.pipeline.step(name), fix="rename the step")
        for group in self.pipeline.groups:
            if group.kind is ir.GroupKind.EXIT and group.parent is not None:
                first = next((s for s in self.pipeline.steps if s.group == group.name), None)
                self._refuse(first, f"exit handler {group.name!r} ({group.location}) is inside another group; KFP "
                             "runs an ExitHandler only at the pipeline's top level (kfp's compiler refuses it too)",
                             "open the ExitHandler outside the map or branch")
        oneof = 0
        for step in self.pipeline.steps:
            if step.trigger in hooks.HOOKS:  # the exit task of hooks.wrap's group (wrap refused what it could not)
                if hooks.GROUP in self.groups:
                    self.handlers[step.name] = hooks.GROUP
                continue
            for binding in step.bindings:
                if binding.kind is ir.BindingKind.STATUS:
                    self._check_handler(step, binding)
                elif binding.kind is ir.BindingKind.ONE_OF:
                    oneof += 1
                    self._check_one_of(step, binding, oneof)
            for upstream in step.upstream() if not any(b.kind is ir.BindingKind.STATUS for b in step.bindings) else ():
                self._check_reach(step, upstream)
        for name, exit_group in self.handlers.items():  # both hooks are one task (hooks.TASK): one exit task
            if len({self.tasks_by_step[n] for n, g in self.handlers.items() if g == exit_group}) > 1:
                self._refuse(self.pipeline.step(name), f"exit handler {exit_group!r} has several handler steps; KFP "
                             "runs one exit task per ExitHandler", "call one handler step that does the rest")
        for step in self.pipeline.steps:
            for upstream in step.upstream() if step.trigger not in hooks.HOOKS else ():  # a hook: wrap's refusal
                if upstream in self.handlers:
                    self._refuse(step, f"step {step.name!r} reads handler {upstream!r}; on KFP an exit task is an "
                                 "exit hook of its group, which no task can wait for", "read the status in the "
                                 "handler itself")
        self.writer = CelWriter(self._channel_type)
        for chain in self.chains.values():
            for group in chain:
                try:
                    self.writer.chain(chain, group)
                except Unlowerable as err:
                    first = next((s for s in self.pipeline.steps if s.group == group.name), None)
                    self._refuse(first, f"condition of {group.label or 'branch'} {group.name!r} ({group.location}) "
                                 f"cannot be a KFP trigger policy: {err}", "compare str, bool, int or float "
                                 "parameters and step outputs, or decide inside a step and branch on its bool output")

    def _check_handler(self, step: ir.Step, binding: ir.Binding) -> None:
        if binding.group is None:
            self._refuse(step, f"step {step.name!r} reads the whole run's status, which the KFP targets do not "
                         "lower yet", "wrap the steps in an ExitHandler and read its status")
            return
        self.handlers[step.name] = binding.group
        if step.group is not None or self.groups[binding.group].parent is not None:
            self._refuse(step, f"handler {step.name!r} is inside a group; a KFP exit task sits beside its "
                         "ExitHandler at the pipeline's top level", "call the handler after the with block, outside "
                         "any group")
        read = [b.step for b in step.bindings if b.kind in (ir.BindingKind.OUTPUT, ir.BindingKind.COLLECTED)]
        read += [s.step for b in step.bindings for s in b.sources]
        if read:  # its .after() holds the group's steps: the exit task's dependency on the group is that
            self._refuse(step, f"handler {step.name!r} reads outputs of {', '.join(map(repr, read))}; a KFP "
                         "exit task reads only pipeline parameters and its group's final status (kfp's compiler "
                         "refuses other inputs too)", "pass what it needs as parameters, or read it in a step "
                         "inside the group")

    def _check_one_of(self, step: ir.Step, binding: ir.Binding, number: int) -> None:
        groups = [self.scope_of.get(s.step) for s in binding.sources]
        chains = {self.groups[g].chain or g if g and self.groups[g].kind is ir.GroupKind.CONDITION else None
                  for g in groups}
        chain = self.chains.get(next(iter(chains)) or "", []) if len(chains) == 1 else []
        if (None in chains or len(chains) != 1 or sorted(groups, key=str) != sorted((g.name for g in chain), key=str)
                or chain[-1].condition is not None):
            self._refuse(step, f"input {binding.input!r} of step {step.name!r} is a OneOf that KFP cannot "
                         "express: it needs one output of a step called directly in each branch of one "
                         "if/elif/else chain that ends with Else (KFP fails a OneOf when no branch ran)",
                         "take one output from each branch, and end the chain with Else()")
            return
        self.one_ofs[(step.name, binding.input)] = f"{CHANNEL}{self.names[chain[0].name + '#branches']}-oneof-{number}"
        self.sources.update(s.step for s in binding.sources)

    def _enclosing(self, scope: Scope) -> list[str]:
        found = []
        while scope is not None:
            found.append(scope)
            scope = self.parent[scope]
        return found

    def _check_reach(self, step: ir.Step, upstream: str) -> None:
        tolerated = {s.step for b in step.bindings for s in b.sources}
        if upstream in tolerated or upstream in self.handlers:
            return
        mine = set(self._enclosing(self.scope_of[step.name]))
        for scope in self._enclosing(self.scope_of[upstream]):
            group = self.groups.get(scope)
            if group is not None and group.kind is ir.GroupKind.CONDITION and scope not in mine:
                self._refuse(step, f"step {step.name!r} reads step {upstream!r} from outside its branch "
                             f"{scope!r}; KFP's compiler refuses a task depending on a task inside a dsl.If it "
                             "is not in", "move the step into the branch, or read the value with OneOf")
                return

    # --- per step -------------------------------------------------------------------------------------------------
    def step_args(self, step: ir.Step) -> list[str]:
        """The runtime options of the step's OneOf inputs and final status."""
        extra: list[str] = []
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.ONE_OF:
                extra += ["--kfp-one-of", f"{binding.input}={_placeholder(ONE_OF_INPUT + binding.input)}"]
                extra += [arg for s in binding.sources
                          for arg in ("--kfp-one-of-source", f"{binding.input}={s.step}/{s.output}")]
            elif binding.kind is ir.BindingKind.STATUS and binding.group:
                extra += ["--kfp-status", f"{binding.input}={_placeholder(binding.input)}"]
                extra += self._covered(binding.group)
        if step.trigger in hooks.HOOKS and step.name in self.handlers:
            extra += ["--kfp-hook", f"{step.trigger.value}={_placeholder(hooks.status_input(step))}"]
            if hooks.status_input(step) == hooks.STATUS_INPUT:
                extra += self._covered(hooks.GROUP)
            for name, kind in sorted(self.output_types.get(self.tasks_by_step[step.name], {}).items()):
                extra += ["--kfp-hook-output", f"{name}={kind}"]
        return extra

    def _covered(self, group: str) -> list[str]:
        publishers = combinations.reported_as(self.pipeline)  # a failed publisher is reported as its map's steps
        return [arg for name in (s.name for s in self.pipeline.steps if group in self._enclosing(s.group))
                for arg in ("--kfp-covered", name + "[*]" * len(self.maps.chain.get(name, ()))
                            + (f"={','.join(publishers[name])}" if name in publishers else ""))]

    def component_inputs(self, step: ir.Step) -> dict[str, dict[str, Any]]:
        """The inputs those options read, as the step's component declares them."""
        inputs: dict[str, dict[str, Any]] = {}
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.ONE_OF:
                inputs[ONE_OF_INPUT + binding.input] = {"parameterType": "STRING"}
            elif binding.kind is ir.BindingKind.STATUS and binding.group:
                inputs[binding.input] = {"isOptional": True, "parameterType": FINAL_STATUS}
        if step.name in self.handlers and hooks.status_input(step) == hooks.STATUS_INPUT:
            inputs[hooks.STATUS_INPUT] = {"isOptional": True, "parameterType": FINAL_STATUS}
        return inputs

    def task_inputs(self, step: ir.Step) -> dict[str, dict[str, Any]]:
        """Where the step's task reads them (as in the root DAG: :meth:`organize` routes them through groups)."""
        inputs: dict[str, dict[str, Any]] = {}
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.ONE_OF:
                key = self.one_ofs.get((step.name, binding.input))
                if key:
                    branches = key[len(CHANNEL):].rpartition("-oneof-")[0]
                    inputs[ONE_OF_INPUT + binding.input] = {"taskOutputParameter": {
                        "outputParameterKey": key, "producerTask": branches}}
            elif binding.kind is ir.BindingKind.STATUS and binding.group:
                inputs[binding.input] = {"taskFinalStatus": {"producerTask": self.names[binding.group]}}
        if step.name in self.handlers and hooks.status_input(step) == hooks.STATUS_INPUT:
            inputs[hooks.STATUS_INPUT] = {"taskFinalStatus": {"producerTask": self.names[hooks.GROUP]}}
        return inputs

    def extra_outputs(self, step: ir.Step) -> dict[str, str]:
        """Output parameters the step publishes for the groups (a OneOf source's name)."""
        return {STEP_OUTPUT: "STRING"} if step.name in self.sources else {}

    # --- nesting --------------------------------------------------------------------------------------------------
    def _channel_type(self, operand: ir.Operand) -> tuple[str, str]:
        if operand.kind is ir.BindingKind.PARAMETER:
            return f"{CHANNEL}{operand.parameter}", self.param_types[operand.parameter or ""]
        task = self.tasks_by_step[operand.step or ""]
        kind = self.output_types.get(task, {}).get(operand.output or "")
        if kind is None:
            raise Unlowerable(f"output {operand.output!r} of step {operand.step!r} is not an output parameter "
                              "(only str, int, float and bool outputs are)")
        return f"{CHANNEL}{task}-{operand.output}", kind

    def organize(self, tasks: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
        """Nest the tasks in their groups' DAG components (added to ``components``); return the root's tasks."""
        return _Nesting(self, tasks, components).build()


class _Nesting:
    """One pass of :meth:`GroupLowering.organize`."""

    def __init__(self, flow: GroupLowering, tasks: dict[str, Any], components: dict[str, Any]) -> None:
        self.flow, self.tasks, self.components = flow, tasks, components
        step_of = {task: step for step, task in flow.tasks_by_step.items()}
        self.scope: dict[str, Scope] = {name: flow.scope_of[step_of[name]] for name in tasks}
        self.body: dict[Scope, dict[str, Any]] = {None: {}, **{s: {} for s in flow.names}}
        self.declared: dict[str, dict[str, Any]] = {s: {} for s in flow.names}
        self.inputs: dict[str, dict[str, Any]] = {s: {} for s in flow.names}
        self.deps: dict[str, set[str]] = {s: set() for s in flow.names}
        self.outputs: dict[str, dict[str, Any]] = {s: {} for s in flow.names}
        self.output_defs: dict[str, dict[str, Any]] = {s: {} for s in flow.names}
        self.types = {task: dict(kinds) for task, kinds in flow.output_types.items()}
        for scope, name in flow.names.items():
            self.scope[name] = flow.parent[scope]
        self.owner: dict[str, str] = {}  # a loop's item channel -> the loop
        for group in flow.maps.loops:
            self.owner[flow.maps.item_channel(group)] = group

    def build(self) -> dict[str, Any]:
        flow = self.flow
        self._one_of_outputs()
        handlers = {flow.tasks_by_step[step]: group for step, group in flow.handlers.items()}
        for name, task in self.tasks.items():
            scope = self.scope[name]
            self.body[scope][name] = task
            local: set[str] = set()
            params = (task.get("inputs") or {}).get("parameters") or {}
            for key, source in params.items():
                params[key] = self._resolve(scope, source, local)
            for dep in task.pop("dependentTasks", []):
                self._depend(scope, dep, local)
            if name in handlers:  # kfp's build_task_spec_for_exit_task
                local = {flow.names[handlers[name]]}
                task["triggerPolicy"] = {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
            if local:
                task["dependentTasks"] = sorted(local)
            self.body[scope][name] = dict(sorted(task.items()))  # kfp's key order
        for scope in flow.names:
            self._group_needs(scope)
        for scope in sorted(flow.names, key=lambda s: -len(flow._enclosing(s))):
            task, component = self._group(scope)
            self.body[flow.parent[scope]][flow.names[scope]] = task
            self.components[f"comp-{flow.names[scope]}"] = component
        return dict(sorted(self.body[None].items()))

    def _origin(self, source: Mapping[str, Any]) -> tuple[str, ...] | None:
        if "componentInputParameter" in source:
            name = source["componentInputParameter"]
            if name in self.owner:
                return ("item", name)
            if name.startswith(CHANNEL):
                return ("param", name[len(CHANNEL):])
            return ("param", name)
        if "taskOutputParameter" in source:
            spec = source["taskOutputParameter"]
            return ("task", spec["producerTask"], spec["outputParameterKey"])
        return None

    def _resolve(self, scope: Scope, source: Mapping[str, Any], local: set[str]) -> Mapping[str, Any]:
        """``source`` (as the root DAG would read it) as a task in ``scope`` reads it."""
        origin = self._origin(source)
        if origin is None:
            return source
        if origin[0] == "param":
            if scope is None:
                return {"componentInputParameter": origin[1]}
            return self._through(scope, f"{CHANNEL}{origin[1]}", self.flow.param_types[origin[1]], source)
        if origin[0] == "item":
            owner = self.owner[origin[1]]
            if scope == owner or scope is None:  # None: never (an item is read inside its loop)
                return source
            return self._through(scope, origin[1], "STRING", source)
        producer, key = origin[1], origin[2]
        if self.scope[producer] == scope or scope is None:  # None: a root task reads only root producers
            local.add(producer)
            return source
        return self._through(scope, f"{CHANNEL}{producer}-{key}", self.types[producer][key], source)

    def _through(self, scope: str, channel: str, kind: str, source: Mapping[str, Any]) -> Mapping[str, Any]:
        """Read ``source`` in group ``scope`` as its input ``channel``, passed in by the group's task."""
        self.declared[scope][channel] = {"parameterType": kind}
        if channel not in self.inputs[scope]:
            self.inputs[scope][channel] = self._resolve(self.flow.parent[scope], source, self.deps[scope])
        return {"componentInputParameter": channel}

    def _depend(self, scope: Scope, dep: str, local: set[str]) -> None:
        """Record that a task in ``scope`` runs after task ``dep`` (lifted to the groups around it if outside)."""
        chain = self.flow._enclosing(self.scope[dep])
        if self.scope[dep] == scope:
            local.add(dep)
        elif scope is None or scope in chain:
            child = next(c for c in chain if self.flow.parent[c] == scope)
            local.add(self.flow.names[child])
        else:
            self._depend(self.flow.parent[scope], dep, self.deps[scope])

    def _group_needs(self, scope: str) -> None:
        """What a loop's iterator and a branch's condition read, through the group's own task."""
        flow, group = self.flow, self.flow.groups.get(scope)
        if group is None:
            return
        if group.kind is ir.GroupKind.MAP:
            source = flow.maps.list_source(scope)
            if self._origin(source) is not None:
                self._resolve(scope, source, set())
        elif group.kind is ir.GroupKind.CONDITION:
            for operand in self._operands(flow.chains[group.chain or group.name], group):
                if operand.kind is ir.BindingKind.PARAMETER:
                    self._resolve(scope, {"componentInputParameter": operand.parameter}, set())
                elif operand.kind is ir.BindingKind.OUTPUT:
                    producer = flow.tasks_by_step[operand.step or ""]
                    if operand.output not in self.types.get(producer, {}):
                        continue  # not an output parameter: reported by GroupLowering._check
                    self._resolve(scope, {"taskOutputParameter": {"outputParameterKey": operand.output,
                                                                   "producerTask": producer}}, set())

    @staticmethod
    def _operands(chain: list[ir.Group], current: ir.Group) -> list[ir.Operand]:
        """What the branch's condition reads: its own and its earlier siblings' operands (it runs when they fail)."""
        found: list[ir.Operand] = []
        for group in chain:
            found.extend(group.all_operands())
            if group.name == current.name:
                break
        return found

    def _one_of_outputs(self) -> None:
        """Each OneOf: its branches publish their step's name, and the chain's DAG the one that ran."""
        flow = self.flow
        for (reader, input_name), key in flow.one_ofs.items():
            binding = next(b for b in flow.pipeline.step(reader).bindings if b.input == input_name)
            chain_key = flow.parent[flow.scope_of[binding.sources[0].step] or ""] or ""
            selectors = []
            for source in binding.sources:
                task, branch = flow.tasks_by_step[source.step], flow.scope_of[source.step] or ""
                channel = f"{CHANNEL}{task}-{STEP_OUTPUT}"
                self.outputs[branch][channel] = {"valueFromParameter": {"outputParameterKey": STEP_OUTPUT,
                                                                        "producerSubtask": task}}
                self.output_defs[branch][channel] = {"parameterType": "STRING"}
                selectors.append((flow.chains[flow.groups[branch].chain or branch].index(flow.groups[branch]),
                                  {"outputParameterKey": channel, "producerSubtask": flow.names[branch]}))
            self.outputs[chain_key][key] = {"valueFromOneof": {"parameterSelectors": [
                s for _, s in sorted(selectors, key=lambda pair: pair[0])]}}
            self.output_defs[chain_key][key] = {"parameterType": "STRING"}
            self.types.setdefault(flow.names[chain_key], {})[key] = "STRING"

    def _group(self, scope: str) -> tuple[dict[str, Any], dict[str, Any]]:
        flow, name = self.flow, self.flow.names[scope]
        group = flow.groups.get(scope)
        task: dict[str, Any] = {"componentRef": {"name": f"comp-{name}"}}
        if self.deps[scope]:
            task["dependentTasks"] = sorted(self.deps[scope])
        if self.inputs[scope]:
            task["inputs"] = {"parameters": dict(sorted(self.inputs[scope].items()))}
        declared = self.declared[scope]
        if group is not None and group.kind is ir.GroupKind.MAP:
            policy, iterator, item = flow.maps.iterator(scope)
            if policy:
                task["iteratorPolicy"] = policy
            task["parameterIterator"] = iterator
            declared[item] = {"parameterType": "STRING"}
        task["taskInfo"] = {"name": name}
        if group is not None and group.kind is ir.GroupKind.CONDITION:
            try:
                task["triggerPolicy"] = {"condition": flow.writer.chain(flow.chains[group.chain or group.name], group)}
            except Unlowerable:  # reported by GroupLowering._check: nothing is written
                task["triggerPolicy"] = {"condition": "false"}
        dag: dict[str, Any] = {}
        if self.outputs[scope]:
            dag["outputs"] = {"parameters": dict(sorted(self.outputs[scope].items()))}
        dag["tasks"] = dict(sorted(self.body[scope].items()))
        component: dict[str, Any] = {"dag": dag}
        if declared:
            component["inputDefinitions"] = {"parameters": dict(sorted(declared.items()))}
        if self.output_defs[scope]:
            component["outputDefinitions"] = {"parameters": dict(sorted(self.output_defs[scope].items()))}
        return task, component
