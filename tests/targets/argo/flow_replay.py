"""Replay of a Workflow with control flow, following only what Argo's workflow controller does (argo-workflows
v4.1.2, read in its source; each rule cites where):

- **DAG tasks** run when every task their ``depends`` (or ``dependencies``) names is fulfilled; ``depends`` is then
  evaluated over ``TaskResults`` (``Succeeded``, ``Failed``, ``Errored``, ``Skipped``, ``Omitted``) and a false
  one marks the task ``Omitted`` (workflow/controller/dag.go ``executeDAGTask``, ``evaluateDependsLogic``).
- **References** ``{{tasks.X.outputs.parameters.Y}}`` and ``{{tasks.X.status}}`` resolve from the task's
  ancestors only, strictly: an unresolved one is an error (dag.go ``buildLocalScopeFromTask``,
  ``resolveDependencyReferences`` with ``ReplaceStrictAny``).
- **``when``** is substituted, then parsed by govaluate with unquoted words turned into strings
  (workflow/controller/steps.go ``shouldExecute``); false marks the task ``Skipped``. The evaluator below knows
  numbers, ``true``/``false``, words, ``== != < <= > >= && || !`` and parentheses, and refuses anything else.
- **``withItems``/``withParam``**: the list must be JSON (``withParam value could not be parsed as a JSON list``);
  empty: the task is ``Skipped`` ("Skipped, empty params"); else one task per item, ``{{item}}`` substituted
  (a number as ``fmt.Sprintf("%v")``, a string as itself, a list or map as JSON), named ``task(i:item)``, under a
  ``TaskGroup`` that fails when an item failed (dag.go ``expandTask``, operator.go ``processItem``).
- **A template's ``failFast``**: once a child failed, no new child starts and the DAG fails (operator.go
  ``checkParallelism``). The replay runs one task at a time, an order Argo's ``parallelism`` allows.
- **Exit hooks** (``hooks.exit``) run after the task *completed* (Succeeded, Failed or Error; not Skipped or
  Omitted), their arguments resolved with ``tasks.<name>.status`` (exit_handler.go ``runOnExitNode``). That holds
  for a task of any DAG template, a map's item body too: dag.go ``executeDAGTask`` adds
  ``tasks.<name>.status`` to the task's local scope and runs its exit hook once ``node.Completed()``, and the task
  counts as done only when the hook's node is fulfilled (the replay runs the hook right after the task).
- **A DAG's phase**: each leaf task's phase, where an omitted or skipped leaf inherits its branch's, failures
  first; any failed leaf fails the DAG (dag.go ``assessDAGPhase``). The Workflow's ``onExit`` runs after the
  entrypoint with ``workflow.status`` set to its phase.

Containers are run as :mod:`tests.targets.argo.support` does (Argo's template passes, then the kubelet's).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipecast.runtime.publish_argo import OUT_DIR
from pipecast.targets.kube.crd import STEP_LABEL
from tests.helpers.cases import ROOT, env_with_cases
from tests.helpers.kube_semantics import container_argv, container_env
from tests.helpers.replay.store import on_local_store
from tests.targets.argo.support import global_scope, template_as_run, template_replace, workflow_spec

_RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed")
_COMPLETED = ("Succeeded", "Failed", "Error")


@dataclass
class Run:
    """What the replayed Workflow did: every node's phase (``dag/task(i:item)``), pods in order, its phase."""

    phases: dict[str, str] = field(default_factory=dict)
    pods: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    phase: str = ""
    logs: dict[str, str] = field(default_factory=dict)


class Replayer:
    def __init__(self, files: Mapping[str, str], name: str, params: Mapping[str, str] | None, store: Path,
                 scratch: Path) -> None:
        self.spec, values = workflow_spec(files)
        values.update(params or {})
        self.globals = global_scope(self.spec, name, values)
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.name, self.store, self.scratch = name, store, scratch
        self.run = Run()

    def replay(self) -> Run:
        phase = self.dag(self.templates[self.spec["entrypoint"]], {}, self.name)
        self.run.phase = phase
        if "onExit" in self.spec:
            scope = {**self.globals, "workflow.status": phase}
            exit_phase = self.dag(self.templates[self.spec["onExit"]], {}, f"{self.name}.onExit", scope)
            self.run.phase = phase if exit_phase == "Succeeded" else "Failed"
        return self.run

    # -- DAGs -----------------------------------------------------------------------------------------

    def dag(self, template: dict[str, Any], inputs: Mapping[str, str], path: str,
            scope: Mapping[str, str] | None = None) -> str:
        scope = dict(scope or self.globals)
        validate_dag(template)
        declared = [p["name"] for p in template.get("inputs", {}).get("parameters", [])]
        assert sorted(inputs) == sorted(declared), f"arguments {sorted(inputs)} for inputs {declared}"
        local = {**scope, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
        tasks = json.loads(template_replace(json.dumps(template["dag"]["tasks"]), local))
        by_name = {t["name"]: t for t in tasks}
        deps = {t["name"]: _dependencies(t) for t in tasks}
        for name, needed in deps.items():
            assert set(needed) <= set(by_name), f"task {name!r} depends on unknown tasks {needed}"
        phases: dict[str, str] = {}
        outputs: dict[str, dict[str, str]] = {}
        fail_fast = bool(template.get("failFast"))
        stopped = False
        pending = [t["name"] for t in tasks]
        while pending and not stopped:
            ready = [n for n in pending if all(d in phases for d in deps[n])]
            assert ready, f"no task can run among {pending}: a cycle or an unknown dependency"
            name = ready[0]
            pending.remove(name)
            task = by_name[name]
            node = f"{path}/{name}"
            if "depends" in task and not _depends(task["depends"], {d: phases[d] for d in deps[name]}):
                phases[name] = self.run.phases[node] = "Omitted"
                continue
            ancestry = _ancestors(name, deps)
            task_scope = dict(local)
            for ancestor in ancestry:
                task_scope[f"tasks.{ancestor}.status"] = phases[ancestor]
                for key, value in outputs.get(ancestor, {}).items():
                    task_scope[f"tasks.{ancestor}.outputs.parameters.{key}"] = value
            hooks = task.pop("hooks", None)
            resolved = json.loads(template_replace(json.dumps(task), task_scope))
            assert "{{tasks." not in json.dumps(resolved), f"Argo cannot resolve a reference in {resolved}"
            items = _items(resolved)
            if items is None:
                phase, outputs[name], stopped = self.execute(resolved, node, task_scope, fail_fast, phases)
            elif not items:
                phase = "Skipped"
            else:
                phase, stopped = self.expand(resolved, items, node, task_scope, fail_fast, phases)
            phases[name] = self.run.phases[node] = phase
            if hooks and phase in _COMPLETED:
                hook = hooks["exit"]
                hook_scope = {**task_scope, f"tasks.{name}.status": phase}
                arguments = json.loads(template_replace(json.dumps(hook.get("arguments", {})), hook_scope))
                hook_phase, _, _ = self.execute({"name": f"{name}.onExit", "template": hook["template"],
                                                 "arguments": arguments}, f"{node}.onExit", hook_scope, False, {})
                self.run.phases[f"{node}.onExit"] = hook_phase
        if stopped:
            return "Failed"
        return _assess(tasks, deps, phases)

    def expand(self, task: dict[str, Any], items: list[Any], node: str, scope: Mapping[str, str], fail_fast: bool,
               phases: Mapping[str, str]) -> tuple[str, bool]:
        group = "Succeeded"
        for index, item in enumerate(items):
            if fail_fast and (group != "Succeeded" or any(p in ("Failed", "Error") for p in phases.values())):
                return "Failed", True  # checkParallelism: no new child once one failed
            text = _item_text(item)
            one = json.loads(template_replace(json.dumps({k: v for k, v in task.items()
                                                          if k not in ("withItems", "withParam")}),
                                              {**scope, "item": text}))
            name = f"{node}({index}:{text})"
            phase, _, _ = self.execute(one, name, scope, False, {})
            self.run.phases[name] = phase
            if phase in ("Failed", "Error"):
                group = phase
        return group, False

    def execute(self, task: dict[str, Any], node: str, scope: Mapping[str, str], fail_fast: bool,
                phases: Mapping[str, str]) -> tuple[str, dict[str, str], bool]:
        """One (expanded) task: its ``when``, then its template. Returns its phase, outputs, and a fail-fast stop."""
        if fail_fast and any(p in ("Failed", "Error") for p in phases.values()):
            return "Failed", {}, True
        if task.get("when") and not govaluate(task["when"]):
            return "Skipped", {}, False
        template = self.templates[task["template"]]
        arguments = {p["name"]: p["value"] for p in task.get("arguments", {}).get("parameters", [])}
        if "dag" in template:
            return self.dag(template, arguments, node, {k: v for k, v in scope.items()
                                                        if not k.startswith(("tasks.", "inputs."))}), {}, False
        phase, outputs = self.pod(template, task, node, scope)
        return phase, outputs, False

    def pod(self, template: dict[str, Any], task: dict[str, Any], node: str,
            scope: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        pod_name = f"{self.name}-{len(self.run.pods)}"
        globals_only = {k: v for k, v in scope.items() if k.startswith("workflow.")}
        ran = template_as_run(template, task, globals_only, pod_name)
        assert "{{" not in ran["metadata"]["labels"][STEP_LABEL], "the pod's step label was not substituted"
        container = ran["container"]
        env = container_env(container.get("env", []), None)
        argv = on_local_store(container_argv(container["command"], container.get("args", []), env), self.store)
        out = self.scratch / pod_name
        if argv[2] == "pipecast.runtime.publish_argo":
            argv += ["--out", str(out)]  # each pod has its own /tmp: the replay's is a folder per pod
        argv[0] = sys.executable
        full_env = {**env_with_cases(), **env}
        result = subprocess.run(argv, env=full_env, cwd=str(ROOT), capture_output=True, text=True, timeout=300)
        self.run.pods.append(node)
        self.run.logs[node] = result.stderr
        if result.returncode != 0:
            return "Failed", {}
        outputs = {}
        for parameter in template.get("outputs", {}).get("parameters", []):
            path = parameter["valueFrom"]["path"]
            assert path.startswith(OUT_DIR + "/")
            outputs[parameter["name"]] = (out / path[len(OUT_DIR) + 1:]).read_text(encoding="utf-8")
        self.run.outputs[node] = outputs
        return "Succeeded", outputs


def validate_dag(template: Mapping[str, Any]) -> None:
    """What Argo's validation refuses in a DAG template (workflow/validate/validate.go ``validateDAG``): names
    starting with a digit, ``depends`` mixed with ``dependencies``, an input the template does not declare, and a
    ``{{tasks.X…}}`` reference to a task that is not an ancestor (a task with hooks may read its own status)."""
    tasks = template["dag"]["tasks"]
    using_depends = any("depends" in t for t in tasks)
    deps = {t["name"]: _dependencies(t) for t in tasks}
    declared = {p["name"] for p in template.get("inputs", {}).get("parameters", [])}
    for tag in re.findall(r"\{\{inputs\.parameters\.([^}]+)\}\}", json.dumps(tasks)):
        assert tag in declared, f"Argo: failed to resolve {{{{inputs.parameters.{tag}}}}}"
    for task in tasks:
        assert not task["name"][0].isdigit(), f"Argo: task name {task['name']!r} cannot begin with a digit"
        assert not (using_depends and "dependencies" in task), "Argo: cannot use both 'depends' and 'dependencies'"
        ancestry = set(_ancestors(task["name"], deps))
        for ref, rest in re.findall(r"\{\{tasks\.([A-Za-z0-9-]+)\.([^}]+)\}\}", json.dumps(task)):
            own_status = ref == task["name"] and rest == "status" and "hooks" in task
            assert ref in ancestry or own_status, f"Argo: {task['name']!r} reads task {ref!r}, not an ancestor"


def replay_flow(files: Mapping[str, str], name: str, params: Mapping[str, str] | None = None, *, store: Path,
                scratch: Path) -> Run:
    """Run the Workflow in ``files`` as Argo's controller would, its tasks' commands on this machine."""
    return Replayer(files, name, params, store, scratch).replay()


def _dependencies(task: Mapping[str, Any]) -> list[str]:
    if "depends" in task:
        return list(dict.fromkeys(re.findall(r"([A-Za-z0-9-]+)\.(?:" + "|".join(_RESULTS) + r")\b",
                                             task["depends"])))
    return list(task.get("dependencies", []))


def _ancestors(name: str, deps: Mapping[str, list[str]]) -> list[str]:
    found: dict[str, None] = {}
    stack = list(deps[name])
    while stack:
        current = stack.pop()
        if current not in found:
            found[current] = None
            stack += deps[current]
    return list(found)


def _depends(logic: str, phases: Mapping[str, str]) -> bool:
    """``depends`` over the dependencies' ``TaskResults`` (names with '-' read as '_', as Argo does)."""
    def result(match: re.Match[str]) -> str:
        phase = phases[match.group(1)]
        wanted = {"Errored": "Error"}.get(match.group(2), match.group(2))
        return "true" if phase == wanted else "false"

    text = re.sub(r"([A-Za-z0-9-]+)\.(" + "|".join(_RESULTS[:5]) + r")\b", result, logic)
    return govaluate(text)


def _items(task: Mapping[str, Any]) -> list[Any] | None:
    if "withItems" in task:
        return list(task["withItems"])
    if "withParam" in task:
        try:
            items = json.loads(task["withParam"])
        except ValueError as err:
            raise AssertionError(f"Argo: withParam value could not be parsed as a JSON list: {err}") from None
        assert isinstance(items, list), "Argo: withParam value could not be parsed as a JSON list"
        return items
    return None


def _item_text(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return f"{item}"
    if isinstance(item, str):
        return item
    return json.dumps(item, separators=(",", ":"))


def _assess(tasks: list[dict[str, Any]], deps: Mapping[str, list[str]], phases: Mapping[str, str]) -> str:
    """assessDAGPhase: a skipped or omitted task inherits its branch's phase, failures first."""
    branch: dict[str, str] = {}
    for task in tasks:  # listed in an order where dependencies come first (checked by the emitter's tests)
        name = task["name"]
        inherited = [branch[d] for d in deps[name] if d in branch]
        failed = [p for p in inherited if p in ("Failed", "Error")]
        phase = phases.get(name, "")
        branch[name] = phase if phase in _COMPLETED else (failed[0] if failed else "Succeeded")
    leaves = [t["name"] for t in tasks if not any(t["name"] in deps[o] for o in deps)]
    failed = [branch[leaf] for leaf in leaves if branch[leaf] in ("Failed", "Error")]
    return failed[0] if failed else "Succeeded"


# -- govaluate, the part `when` and `depends` use ----------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<op>==|!=|<=|>=|&&|\|\||[<>!()-])|(?P<word>[A-Za-z_]\w*))")


def govaluate(text: str) -> bool:
    """Evaluate ``text`` as Argo's ``shouldExecute`` does (words are strings); refuse what is not modelled."""
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        assert match and match.end() > position, f"the replay does not model this `when`: {text!r} at {position}"
        position = match.end()
        if match.group("number"):
            tokens.append(("value", float(match.group("number"))))
        elif match.group("op"):
            tokens.append(("op", match.group("op")))
        else:
            word = match.group("word")
            tokens.append(("value", {"true": True, "false": False}.get(word, word)))
    parser = _Parser(tokens)
    value = parser.disjunction()
    assert parser.index == len(tokens), f"govaluate would fail on {text!r}"
    assert isinstance(value, bool), f"Argo: `when` {text!r} is not a boolean"
    return value


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens, self.index = tokens, 0

    def _peek(self) -> Any:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def _take(self) -> tuple[str, Any]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def disjunction(self) -> Any:
        value = self.conjunction()
        while self._peek() == "||":
            self._take()
            right = self.conjunction()
            assert isinstance(value, bool) and isinstance(right, bool), "govaluate: || needs booleans"
            value = value or right
        return value

    def conjunction(self) -> Any:
        value = self.comparison()
        while self._peek() == "&&":
            self._take()
            right = self.comparison()
            assert isinstance(value, bool) and isinstance(right, bool), "govaluate: && needs booleans"
            value = value and right
        return value

    def comparison(self) -> Any:
        left = self.unary()
        if self._peek() in ("==", "!=", "<", "<=", ">", ">="):
            op = self._take()[1]
            right = self.unary()
            if op in ("==", "!="):
                same = type(left) is type(right) and left == right
                return same if op == "==" else not same
            assert isinstance(left, float) and isinstance(right, float), f"govaluate: {op} compares numbers only"
            return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
        return left

    def unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            value = self.unary()
            assert isinstance(value, bool), "govaluate: ! needs a boolean"
            return not value
        if self._peek() == "-":
            self._take()
            value = self.unary()
            assert isinstance(value, float), "govaluate: - needs a number"
            return -value
        kind, value = self._take()
        if (kind, value) == ("op", "("):
            inner = self.disjunction()
            assert self._take() == ("op", ")"), "govaluate: unbalanced parentheses"
            return inner
        assert kind == "value", f"govaluate: unexpected {value!r}"
        return value

