"""A lower bound on the Argo Workflow the Kubeflow Pipelines backend makes of a KFP IR, in bytes.

The object Kubernetes stores for a Kubeflow run is not the IR: the KFP v2 backend compiles the IR into an Argo
``Workflow`` (``backend/src/v2/compiler/argocompiler/``, kubeflow/pipelines 7b70c7b of August 2026, checked
against tag 2.4.0, the oldest backend pipecast supports), and that Workflow must fit under
:data:`WORKFLOW_LIMIT`. This module counts only what every such backend writes, as Go's ``encoding/json``
writes it (:mod:`.go_json`), so the estimate is never above the real size:

- ``spec.arguments.parameters``: each DAG component's spec (``components-root`` and one per sub-DAG) holds every
  task of its DAG; each container component's spec and container, keyed by a 64-hex hash of the container
  (``components-<hash>``, ``implementations-<hash>``: one entry for identical containers); each component's
  Kubernetes platform config (``kubernetes-<component>``). All as ``stablyMarshalJSON`` text
  (``argo.go``: ``saveComponentSpec``, ``saveComponentImpl``, ``saveKubernetesSpec``, ``saveProtoToArguments``;
  ``dag.go``: ``DAG`` saves the DAG component's spec).
- per container task, two DAG tasks (``dag.go``, ``task``): ``<name>-driver`` (``container.go``,
  ``containerDriverTask``: component and container placeholders, the task's own spec as JSON, ``parent-dag-id``,
  ``kubernetes-config``, ``depends`` on its upstream tasks) and ``<name>`` (``containerExecutorTask``:
  ``pod-spec-patch`` and ``cached-decision`` read from the driver, ``when`` for a condition, ``depends`` on the
  driver).
- per DAG task (a condition, an exit handler): ``dagDriverTask`` with the task's spec, and ``dagTask``.
- per loop task (``parameterIterator``): ``iteratorTask`` (one task), and in its own templates
  ``iterationItemTask``'s ``iteration-driver`` and the loop body's ``iteration-item-driver``, each with the
  task's spec, plus ``iteration-iterations`` (``withSequence``) and ``iteration-item``. A loop is these five
  tasks whatever its number of items: a ``map`` of 5,000 items costs what a map of 5 does.

Not counted (so the real Workflow is bigger): the fixed templates (drivers, executors, launcher; ~10 KB), the
DAG templates' own fields, the root driver and its runtime config, exit hooks, what only newer backends add
(``task-name``, retry parameters), commas between list items, and what protojson may leave out (empty and
zero values are dropped here).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipecast.targets.kfpspec.go_json import DIFFERENT_NUMBERS, Measure, dumps, embedded, go_json, measure, text_measure

# Argo's controller fails a Workflow whose JSON (``json.Marshal``) is over MAX_WORKFLOW_SIZE, default 1 MiB, once
# even the node status compressed does not bring it under, unless node status offloading to a database is
# configured (argo-workflows ``workflow/packer/packer.go``, ``getMaxWorkflowSize``/``compressWorkflow``;
# ``workflow/hydrator/hydrator.go``, ``Dehydrate``; ``docs/offloading-large-workflows.md``). The spec is never
# compressed. Kubeflow's manifests configure no offloading.
WORKFLOW_LIMIT = 1024 * 1024
# etcd refuses a request over --max-request-bytes, default 1.5 MiB (etcd ``embed.DefaultMaxRequestBytes``): the
# bound on any Kubernetes object, the Workflow too even where Argo offloads its node status.
ETCD_REQUEST_LIMIT = 1572864
HASH = "0" * 64  # a sha256 in hex (argo.go, hashComponentContainer); its value does not change the size
KEPT_EMPTY = frozenset({"cachingOptions"})  # message fields protojson writes as {} when set
EXIT_STRATEGY = "ALL_UPSTREAM_TASKS_COMPLETED"
DUMMY_IMAGES = frozenset({"argostub/createpvc", "argostub/deletepvc"})  # argo.go, dummyImages: no executor task


@dataclass(frozen=True, slots=True)
class WorkflowEstimate:
    """What the backend's Workflow certainly holds, in bytes of JSON.

    Attributes:
        arguments: ``spec.arguments.parameters`` entries (component specs, containers, platform configs).
        tasks: The DAG tasks made for the IR's tasks (drivers, executors, loops).
        task_count: The IR's tasks, in every DAG.
    """

    arguments: int
    tasks: int
    task_count: int

    @property
    def total(self) -> int:
        """The lower bound on the Workflow's size."""
        return self.arguments + self.tasks


def prune(value: Any) -> Any:
    """``value`` without what protojson may leave out (empty, zero and false values): only ever smaller.

    ``cachingOptions: {}`` stays: protojson writes a set message even when empty (the backend's own fixture
    ``pipeline_with_condition`` shows ``"cachingOptions":{}`` in each task's JSON).
    """
    if isinstance(value, dict):
        kept = {key: prune(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if not _empty(item) or key in KEPT_EMPTY}
    if isinstance(value, list):
        return [item for item in (prune(entry) for entry in value) if not _empty(item)]
    return value


def _empty(value: Any) -> bool:
    return value is None or value is False or value == "" or value == {} or value == [] or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)


# Text that may hold a value prune() drops (checked on the dumped text; a false alarm only costs time).
_MAYBE_EMPTY = re.compile(r'""|false|null|\[\]|\{\}|[:\[,]-?0(?:\.0*)?(?:[eE][-+]?\d+)?[,\]}]')


def proto_measure(message: Any) -> Measure:
    """``stablyMarshalJSON`` of a message as the IR writes it (``argocompiler/proto.go``), measured."""
    text = dumps(message)
    if _MAYBE_EMPTY.search(text.replace('"cachingOptions":{}', "")):
        message = prune(message)
        text = dumps(message)
    return measure(message, text)


# Where compact JSON may hold a number (every number follows one of these), and the texts of the values prune()
# drops but zero: without them a message's text is Go's text (but for <>&, U+2028/9) and prune() keeps all of it.
_NUMBER = re.compile(r"[:\[,]-?\d")
_EMPTY_TEXTS = ('""', "false", "null", "[]", "{}")
_CACHING = '"cachingOptions":{}'
ZERO = Measure(0, 0, 0)


def proto_total(messages: Sequence[Any]) -> Measure | None:
    """The sum of :func:`proto_measure` over ``messages``, from one dump of them all; None when it may differ.

    Size, quotes and backslashes add up, so the list's text measures its messages plus its own brackets and
    commas. Exact when the text holds no empty value and no number (then :func:`proto_measure` of each is Go's
    text too), or when neither :data:`_MAYBE_EMPTY` nor ``DIFFERENT_NUMBERS`` finds anything in the whole text
    (then they find nothing in any message's text, a part of it, and each message is measured by the same
    formula). None otherwise: measure them one by one.
    """
    if not messages:
        return ZERO
    text = dumps(list(messages))
    stripped = text.replace(_CACHING, "")
    if any(empty in stripped for empty in _EMPTY_TEXTS):
        return None
    if _NUMBER.search(text) and (_MAYBE_EMPTY.search(stripped) or DIFFERENT_NUMBERS.search(text)):
        return None
    found = text_measure(text)
    return Measure(found.size - len(messages) - 1, found.quotes, found.backslashes)


def _add(measures: Iterator[Measure]) -> Measure:
    size = quotes = backslashes = 0
    for found in measures:
        size, quotes, backslashes = size + found.size, quotes + found.quotes, backslashes + found.backslashes
    return Measure(size, quotes, backslashes)


def proto_json(message: Mapping[str, Any]) -> str:
    """``stablyMarshalJSON`` of a message as the IR writes it, as text (for tests and small values)."""
    return go_json(prune(dict(message)))


def _parameter(name: str, value: str, default: str | None = None) -> dict[str, str]:
    entry = {"name": name, "value": value}
    if default is not None:
        entry["default"] = default
    return entry


def _depends(deps: list[str]) -> str:
    """``dag.go``, ``depends``: ``a.Succeeded && b.Succeeded``."""
    return " && ".join(f"{dep}.Succeeded" for dep in deps)


def _output(task: str, name: str) -> str:
    return "{{tasks." + task + ".outputs.parameters." + name + "}}"


def _workflow_parameter(name: str) -> str:
    return "{{workflow.parameters." + name + "}}"


# Stand-ins while a shape of DAG tasks is measured (see _Model.sized), and how JSON writes them.
_TASK = "\x01task"  # the task's JSON in a DAG task's arguments
_TASK_JSON = '"\\u0001task"'
_NAME = "\x02"  # the task's name
_NAME_JSON = "\\u0002"
_DEP = "\x03"  # its dependencies
_DEPENDS_JSON = ',"depends":"\\u0003.Succeeded"'
_PLAIN = re.compile(r"[A-Za-z0-9_.-]*")  # characters JSON writes as themselves


class _Model:
    """The backend's Workflow for one IR, measured (``bulk``: each DAG's tasks dumped at once where that is exact)."""

    def __init__(self, spec: Mapping[str, Any], platform: Mapping[str, Any] | None, bulk: bool = True) -> None:
        self.bulk = bulk
        self.components: Mapping[str, Any] = spec.get("components") or {}
        self.executors: Mapping[str, Any] = (spec.get("deploymentSpec") or {}).get("executors") or {}
        kubernetes = ((platform or {}).get("platforms") or {}).get("kubernetes") or {}
        self.configs: Mapping[str, Any] = (kubernetes.get("deploymentSpec") or {}).get("executors") or {}
        self.root = spec.get("root") or {}
        self.task_measures: dict[int, Measure] = {}  # id(task) → its JSON, measured once
        self.shapes: dict[tuple[str, bool, bool, bool], tuple[int, int, int, int]] = {}
        self.dag_measures: dict[int, tuple[Measure, int]] = {}  # id(DAG component) → see dag_tasks
        self.found_dags: list[tuple[str, Mapping[str, Any]]] | None = None

    def estimate(self) -> WorkflowEstimate:
        count = sum(len((component.get("dag") or {}).get("tasks") or {}) for _, component in self.dags())
        return WorkflowEstimate(arguments=self.arguments(), tasks=self.tasks(), task_count=count)

    def container(self, component: str) -> Mapping[str, Any] | None:
        label = (self.components.get(component) or {}).get("executorLabel")
        return (self.executors.get(label) or {}).get("container") if label else None

    def key(self, component: str) -> str:
        """``argo.go``, ``hashComponentContainer``: the container's hash, else the component's name."""
        return HASH if self.container(component) is not None else component

    def task_json(self, task: Mapping[str, Any]) -> Measure:
        found = self.task_measures.get(id(task))
        if found is None:
            found = self.task_measures[id(task)] = proto_measure(task)
        return found

    def dags(self) -> list[tuple[str, Mapping[str, Any]]]:
        """Every DAG component reachable from the root, once (``compiler/visitor.go``, ``dfs``)."""
        if self.found_dags is None:
            self.found_dags = list(self.walk())
        return self.found_dags

    def walk(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        seen: set[str] = set()
        pending: list[tuple[str, Mapping[str, Any]]] = [("root", self.root)]
        while pending:
            name, component = pending.pop()
            if name in seen or "dag" not in component:
                continue
            seen.add(name)
            yield name, component
            for task in ((component.get("dag") or {}).get("tasks") or {}).values():
                ref = (task.get("componentRef") or {}).get("name", "")
                if ref in self.components:
                    pending.append((ref, self.components[ref]))

    def dag_spec(self, component: Mapping[str, Any]) -> Measure:
        """A DAG component's JSON, each task measured once and put in its place."""
        tasks = (component.get("dag") or {}).get("tasks") or {}
        if self.bulk:  # one holder for all ('"\u0001"': 8 bytes, 2 quotes, a backslash), all tasks' JSON in
            found = proto_measure(dict(component, dag=dict(component["dag"], tasks=dict.fromkeys(tasks, "\x01"))))
            parts, count = self.dag_tasks(component)[0], len(tasks)
            return Measure(found.size - 8 * count + parts.size, found.quotes - 2 * count + parts.quotes,
                           found.backslashes - count + parts.backslashes)
        holders = {name: f"\x01{index}" for index, name in enumerate(tasks)}
        shell = dict(component, dag=dict(component["dag"], tasks=holders))
        found = proto_measure(shell)
        for name, task in tasks.items():
            found = embedded(found, holders[name], self.task_json(task), as_string=False)
        return found

    def arguments(self) -> int:
        """``spec.arguments.parameters``: one entry per DAG, per distinct container, per platform config."""
        total = 0
        smallest: dict[str, Measure] = {}  # container JSON → the smallest spec of the components running it
        configs: set[str] = set()
        for name, component in self.dags():
            total += _entry(f"components-{name}", self.dag_spec(component))
            for ref in {(task.get("componentRef") or {}).get("name", "") for task in
                        ((component.get("dag") or {}).get("tasks") or {}).values()}:
                container = self.container(ref)
                if container is None or ref in configs:
                    continue
                configs.add(ref)
                # Components with the same container share one hash, and saveProtoToArguments keeps the first.
                text, spec = proto_json(container), proto_measure(self.components[ref])
                if text not in smallest or spec.size < smallest[text].size:
                    smallest[text] = spec
                label = self.components[ref]["executorLabel"]
                if label in self.configs:
                    total += _entry(f"kubernetes-{ref}", proto_measure(self.configs[label]))
        for text, spec in smallest.items():
            total += _entry(f"implementations-{HASH}", Measure.of(text)) + _entry(f"components-{HASH}", spec)
        return total

    def tasks(self) -> int:
        """The DAG tasks ``dag.go``'s ``task`` makes for every IR task."""
        if self.bulk:
            return sum(self.dag_tasks(component)[1] for _, component in self.dags())
        return sum(self.sized(name, task) for _, component in self.dags()
                   for name, task in ((component.get("dag") or {}).get("tasks") or {}).items())

    def dag_tasks(self, component: Mapping[str, Any]) -> tuple[Measure, int]:
        """A DAG's tasks: the sum of their JSON measures, and the bytes of their DAG tasks (:meth:`sized` of each).

        One pass and one dump per group of tasks whose JSON the DAG tasks hold equally often (:func:`proto_total`);
        the tasks one by one where that is not exact or a name is not plain.
        """
        found = self.dag_measures.get(id(component))
        if found is not None:
            return found
        tasks: Mapping[str, Any] = (component.get("dag") or {}).get("tasks") or {}
        groups: dict[int, list[Mapping[str, Any]]] = {}  # copies of the task's JSON → the tasks
        words: list[str] = []  # names and dependencies, all plain or the one-by-one path
        size = 0
        for name, task in tasks.items():
            deps = task.get("dependentTasks") or []
            policy = task.get("triggerPolicy") or {}
            shape = ((task.get("componentRef") or {}).get("name", ""), "parameterIterator" in task,
                     policy.get("strategy") == EXIT_STRATEGY, bool(policy.get("condition")))
            sizes = self.shapes.get(shape)
            if sizes is None:
                sizes = self.shapes[shape] = self.shape(task)
            base, names, dep_slots, copies = sizes
            depends = 13 + sum(len(dep) + 10 for dep in deps) + 14 * (len(deps) - 1) if deps else 0
            size += base + names * len(name) + dep_slots * depends
            groups.setdefault(copies, []).append(task)
            words.append(name)
            words += deps
        if not _PLAIN.fullmatch("".join(words)):
            found = (_add(self.task_json(task) for task in tasks.values()),
                     sum(self.sized(name, task) for name, task in tasks.items()))
        else:
            total = ZERO
            for copies, group in groups.items():
                part = proto_total(group)
                if part is None:
                    part = _add(self.task_json(task) for task in group)
                # each task's JSON as a string: its measure's as_string (2 quotes around each)
                size += copies * (part.size + part.quotes + part.backslashes + 2 * len(group))
                total = _add(iter((total, part)))
            found = (total, size)
        self.dag_measures[id(component)] = found
        return found

    def sized(self, name: str, task: Mapping[str, Any]) -> int:
        """Bytes of the DAG tasks of one IR task.

        The DAG tasks of one shape (component, loop, exit task, condition) are measured once, with ``_NAME`` for
        the task's name and ``_DEP`` for its dependencies; a task then adds its name and ``depends`` by length
        (names of plain characters only, as DNS-1123 names are) and its JSON where ``_TASK`` stands.
        """
        deps = list(task.get("dependentTasks") or [])
        if not _PLAIN.fullmatch(name) or not all(_PLAIN.fullmatch(dep) for dep in deps):
            return sum(self.measured(dag_task, task) for dag_task in self.task(name, task))
        policy = task.get("triggerPolicy") or {}
        shape = ((task.get("componentRef") or {}).get("name", ""), "parameterIterator" in task,
                 policy.get("strategy") == EXIT_STRATEGY, bool(policy.get("condition")))
        if shape not in self.shapes:
            self.shapes[shape] = self.shape(task)
        base, names, dep_slots, copies = self.shapes[shape]
        depends = 13 + sum(len(dep) + 10 for dep in deps) + 14 * (len(deps) - 1) if deps else 0
        return base + names * len(name) + dep_slots * depends + copies * self.task_json(task).as_string

    def shape(self, task: Mapping[str, Any]) -> tuple[int, int, int, int]:
        """Bytes of a shape's DAG tasks without name, depends and task JSON; how often each of those is written."""
        shell = {key: task[key] for key in ("componentRef", "parameterIterator", "triggerPolicy") if key in task}
        base = names = dep_slots = copies = 0
        for dag_task in self.task(_NAME, dict(shell, dependentTasks=[_DEP])):
            text = dumps(dag_task)
            base += measure(dag_task, text).size
            names += text.count(_NAME_JSON)
            dep_slots += text.count(_DEPENDS_JSON)
            copies += text.count(_TASK_JSON)
        base -= names * len(_NAME_JSON) + dep_slots * len(_DEPENDS_JSON) + copies * len(_TASK_JSON)
        return base, names, dep_slots, copies

    def measured(self, dag_task: dict[str, Any], task: Mapping[str, Any]) -> int:
        """Bytes of one DAG task, the IR task's JSON in place of ``_TASK``."""
        found = measure(dag_task)
        if any(param["value"] == _TASK for param in dag_task["arguments"]["parameters"]):
            found = embedded(found, _TASK, self.task_json(task), as_string=True)
        return found.size

    def task(self, name: str, task: Mapping[str, Any], iteration: bool = False) -> Iterator[dict[str, Any]]:
        """``dag.go``, ``task``: the DAG tasks of one IR task (its JSON as ``_TASK``)."""
        ref = (task.get("componentRef") or {}).get("name", "")
        component = self.components.get(ref) or {}
        policy = task.get("triggerPolicy") or {}
        deps = [] if iteration or policy.get("strategy") == EXIT_STRATEGY else list(task.get("dependentTasks") or [])
        parent = "{{inputs.parameters.parent-dag-id}}"
        if not iteration and "parameterIterator" in task:
            yield from self.iterator(name, task, ref)
            return
        params = [_parameter("component", _workflow_parameter(f"components-{self.key(ref)}"))]
        driver = f"{name}-driver"
        if "dag" in component:  # dagDriverTask, then dagTask
            if iteration:
                params.append(_parameter("iteration-index", "{{inputs.parameters.iteration-index}}"))
            params += [_parameter("parent-dag-id", parent), _parameter("task", _TASK)]
            yield _dag_task(driver, "system-dag-driver", params, deps)
            dag = _dag_task(name, ref, [_parameter("parent-dag-id", _output(driver, "execution-id")),
                                        _parameter("condition", _output(driver, "condition"))], [driver])
            if policy.get("condition"):
                dag["when"] = _output(driver, "condition") + " != false"
            yield dag
            return
        container = self.container(ref)
        if container is None:
            return  # an importer: one task of its own, not counted
        params += [_parameter("task", _TASK), _parameter("container", _workflow_parameter(f"implementations-{HASH}")),
                   _parameter("parent-dag-id", parent)]
        if iteration:
            params.append(_parameter("iteration-index", "{{inputs.parameters.iteration-index}}"))
        if component.get("executorLabel") in self.configs:
            params.append(_parameter("kubernetes-config", _workflow_parameter(f"kubernetes-{ref}")))
        if container.get("image") in DUMMY_IMAGES:  # the driver alone, under the task's name
            yield _dag_task(name, "system-container-driver", params, deps)
            return
        yield _dag_task(driver, "system-container-driver", params, deps)
        # containerExecutorTask (not the retry parameters and template of newer backends)
        executor = _dag_task(name, "system-container-executor", [
            _parameter("pod-spec-patch", _output(driver, "pod-spec-patch")),
            _parameter("cached-decision", _output(driver, "cached-decision"), default="false")], [driver])
        if policy.get("condition"):
            executor["when"] = _output(driver, "condition") + " != false"
        yield executor

    def iterator(self, name: str, task: Mapping[str, Any], ref: str) -> Iterator[dict[str, Any]]:
        """``dag.go``, ``iteratorTask`` and ``iterationItemTask``: five tasks however many items."""
        parent = "{{inputs.parameters.parent-dag-id}}"
        yield _dag_task(name, f"{ref}-{name}-iterator", [_parameter("parent-dag-id", parent)],
                        list(task.get("dependentTasks") or []))
        yield _dag_task("iteration-driver", "system-dag-driver", [
            _parameter("component", _workflow_parameter(f"components-{self.key(ref)}")),
            _parameter("parent-dag-id", parent), _parameter("task", _TASK)], [])
        iterations = _dag_task("iteration-iterations", f"{ref}-iteration", [
            _parameter("parent-dag-id", _output("iteration-driver", "execution-id")),
            _parameter("iteration-index", "{{item}}")], ["iteration-driver"])
        iterations["withSequence"] = {"count": _output("iteration-driver", "iteration-count")}
        yield iterations
        yield from self.task("iteration-item", task, iteration=True)


def _dag_task(name: str, template: str, params: list[dict[str, str]], deps: list[str]) -> dict[str, Any]:
    """An Argo ``DAGTask`` with the fields the backend sets (argo ``workflow_types.go`` json names)."""
    task: dict[str, Any] = {"name": name, "template": template, "arguments": {"parameters": params}}
    if deps:
        task["depends"] = _depends(deps)
    return task


def _entry(name: str, value: Measure) -> int:
    """Bytes of one ``spec.arguments.parameters`` entry holding ``value`` as its string."""
    return measure({"name": name, "value": ""}).size - 2 + value.as_string


def estimate(spec: Mapping[str, Any], platform: Mapping[str, Any] | None = None) -> WorkflowEstimate:
    """The lower bound for the PipelineSpec ``spec`` and its Kubernetes platform spec ``platform``."""
    return _Model(spec, platform).estimate()


# The start of the compile problem, which submit looks for among a warn-mode compile's warnings.
PROBLEM = "the Argo Workflow the Kubeflow Pipelines backend makes of pipeline "


def problem(name: str, spec: Mapping[str, Any], platform: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The message and fix when even the lower bound is over :data:`WORKFLOW_LIMIT`, else None."""
    found = estimate(spec, platform)
    if found.total <= WORKFLOW_LIMIT:
        return None
    fit = WORKFLOW_LIMIT * max(found.task_count, 1) // found.total
    message = (f"{PROBLEM}{name!r} is at least {describe(found.total)} for its {found.task_count:,} tasks, over "
               f"the {WORKFLOW_LIMIT:,} bytes (1 MiB) Argo's controller keeps (MAX_WORKFLOW_SIZE; etcd takes no object "
               f"over {ETCD_REQUEST_LIMIT:,}): the backend stores every task's spec twice and adds a driver and an "
               "executor task for each, whatever compiled the IR")
    fix = (f"use fewer tasks (about {fit:,} of these fit): a map (ParallelFor, .expand) is one Argo loop whatever "
           "its number of items, so 5,000 calls of a step fit as a map over a list; or split the pipeline")
    return message, fix


def describe(size_bytes: int) -> str:
    """``2,432,141 bytes (2.32 MiB)``."""
    return f"{size_bytes:,} bytes ({size_bytes / 1048576:.2f} MiB)"


__all__ = ["ETCD_REQUEST_LIMIT", "PROBLEM", "WORKFLOW_LIMIT", "WorkflowEstimate", "describe", "estimate", "problem",
           "prune"]
