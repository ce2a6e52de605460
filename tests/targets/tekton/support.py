"""Tekton test support: the strict CRD schemas, reading emitted files back, and the replayer.

The replayer does to each pipeline task what the Tekton controller does, read in its source (tektoncd/pipeline
main, 2026-08, v1.x), then what the kubelet does (``tests/helpers/kube_semantics.py``). Tasks run in
``runAfter`` order. Every pass is ``substitution.ApplyReplacements``: one ``strings.Replacer`` over the text
for the ``$(name)`` keys the pass knows, leaving other ``$(…)`` as written; but each pass scans what the
earlier passes wrote, which is what the replay must not forgive.

At the PipelineRun (pkg/reconciler/pipelinerun/pipelinerun.go, resources/apply.go):

1. ApplyParameters: PipelineRun params (else the Pipeline's defaults) as ``params.x``, ``params["x"]``
   and ``params['x']``, into the pipeline tasks' params and, through propagateParams, into an inline
   taskSpec's steps (command, args, env values), where a task param of the same name stands for it;
2. ApplyContexts: ``context.pipelineRun.name``/``.namespace``/``.uid`` and ``context.pipeline.name``, into
   the same places;
3. ApplyPipelineTaskContexts: ``context.pipelineTask.retries``, into the task's params.

At the TaskRun (pkg/reconciler/taskrun/taskrun.go applyParamsContextsResultsAndWorkspaces, createPod):

4. ApplyParameters: the TaskRun's params over the taskSpec's defaults (resources/apply.go
   replacementsFromDefaultParams: a default holding ``$(params.`` is left out, then set to itself with one
   reference replaced by another default, once per reference that has one);
5. ApplyContexts: ``context.taskRun.name``/``.namespace``/``.uid``, ``context.task.name``,
   ``context.task.retry-count``;
6. ApplyResults, ApplyArtifacts (``step.artifacts.path``, ``artifacts.path``), ApplyStepExitCodePath
   (``steps.step-<name>.exitCode.path``), ApplyWorkspaces (none declared), ApplyCredentialsPath
   (``credentials.path``).

A pipeline task with a ``taskRef`` (pipecast's shared Tasks) gets the referenced Task's spec as written: the
PipelineRun's passes 1 and 2 touch its params only (propagateParams rewrites an inline taskSpec, never a
referenced one), and the Task sees no Pipeline variable (docs/variables.md: ``context.pipelineRun.*`` is
"available in a Pipeline", a Task has ``context.taskRun.*`` and ``context.task.*``). A reference to a Task the
bundle does not hold fails the run (``CouldntGetTask``).

The pod gets the TaskRun's labels and annotations: the Task's (or inline taskSpec's) ``metadata`` and the
PipelineRun's annotations (pkg/pod/pod.go; pipelinerun.go combineTaskRunAndTaskSpecAnnotations; docs/labels.md
"Label propagation"), which Tekton never substitutes, and Tekton's own labels ``tekton.dev/pipelineRun``,
``tekton.dev/pipelineTask``, ``tekton.dev/taskRun`` and, for a referenced Task, ``tekton.dev/task``
(docs/labels.md "Automatic labeling"), read by ``fieldRef`` env through the downward API.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.helpers.cases import ROOT
from tests.helpers.kube_semantics import container_argv, container_env, strictify
from tests.helpers.replay import run_task
from tests.helpers.replay.store import on_local_store

SCHEMAS = ROOT / "tests" / "schemas" / "tekton"


def documents(files: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every YAML document of every file."""
    return [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc is not None]


def of_kind(files: Mapping[str, str], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents(files) if doc.get("kind") == kind]


# -- schemas -------------------------------------------------------------------------------------------

def _v1_schema(file: str) -> dict[str, Any]:
    crd = yaml.safe_load((SCHEMAS / file).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@functools.cache
def validator(kind: str) -> jsonschema.Draft7Validator:
    """A strict validator for ``Task``, ``Pipeline``, ``PipelineRun`` or ``EmbeddedTask`` (an inline taskSpec)."""
    if kind == "EmbeddedTask":
        spec = _v1_schema("300-task.yaml")["properties"]["spec"]
        spec["properties"].update({
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            }},
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        })
        schema = spec
    else:
        schema = _v1_schema({"Task": "300-task.yaml", "Pipeline": "300-pipeline.yaml",
                             "PipelineRun": "300-pipelinerun.yaml"}[kind])
    return jsonschema.Draft7Validator(strictify(schema))


def schema_errors(doc: Mapping[str, Any]) -> list[str]:
    """Every schema error of a Task, Pipeline or PipelineRun, including its inline taskSpecs'."""
    errors = [f"{doc['kind']}: {e.json_path}: {e.message}" for e in validator(doc["kind"]).iter_errors(doc)]
    if doc["kind"] == "Task":
        return errors
    spec = doc["spec"].get("pipelineSpec") if doc["kind"] == "PipelineRun" else doc["spec"]
    if spec:
        if doc["kind"] == "PipelineRun":  # the run's pipelineSpec is open in its CRD: check it as a Pipeline's
            wrapped = {"apiVersion": doc["apiVersion"], "kind": "Pipeline", "metadata": {"name": "x"}, "spec": spec}
            errors += [f"pipelineSpec: {e.json_path}: {e.message}" for e in validator("Pipeline").iter_errors(wrapped)]
        for task in spec.get("tasks", []) + spec.get("finally", []):
            if "taskSpec" in task:
                errors += [f"task {task['name']!r} taskSpec: {e.json_path}: {e.message}"
                           for e in validator("EmbeddedTask").iter_errors(task["taskSpec"])]
    return errors


# -- replay --------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\((params|context|tasks|workspaces|results|steps|step)\.[^)]*\)")
NAMESPACE = "ml"
STEP_DIRS = "/tekton/steps"


def substitute(text: str, replacements: Mapping[str, str]) -> str:
    """Tekton's ``ApplyReplacements``: every ``$(key)`` replaced in one left-to-right pass."""
    if not replacements:
        return text
    keys = sorted((f"$({k})" for k in replacements), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(k) for k in keys))
    return pattern.sub(lambda m: replacements[m.group(0)[2:-1]], text)


def param_keys(name: str, value: str) -> dict[str, str]:
    """The three spellings Tekton replaces for a string param (``paramPatterns``)."""
    return {f"params.{name}": value, f'params["{name}"]': value, f"params['{name}']": value}


# Tekton's param names (docs/tasks.md "Specifying Parameters"; pkg/apis/pipeline/v1 task_validation.go
# stringAndArrayVariableNameFormat): the webhook refuses a Task, taskSpec or pipeline task param named otherwise.
PARAM_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9.-]*")


def check_references(text: str, scope: Mapping[str, str], where: str) -> None:
    """Every Tekton reference in emitted ``text`` must resolve in ``scope`` (Tekton rejects the rest)."""
    for found in _VARIABLE.finditer(text):
        assert found.group(0)[2:-1] in scope, f"{where}: Tekton would reject the reference {found.group(0)!r}"


def run_order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks in an order that respects ``runAfter`` (asserting every reference exists and there is no cycle)."""
    by_name = {t["name"]: t for t in tasks}
    done: list[str] = []
    pending = list(by_name)
    while pending:
        ready = [n for n in pending if all(d in done for d in by_name[n].get("runAfter", []))]
        assert ready, f"runAfter has a cycle or a missing task among {pending!r}"
        for name in ready:
            for dependency in by_name[name].get("runAfter", []):
                assert dependency in by_name, f"task {name!r} runs after missing task {dependency!r}"
        done += ready
        pending = [n for n in pending if n not in ready]
    return [by_name[n] for n in done]


def _step_texts(step: dict[str, Any], replace: Callable[[str], str]) -> dict[str, Any]:
    """The step with ``replace`` applied where Tekton substitutes: command, args and env values."""
    env = [{**item, "value": replace(item["value"])} if "value" in item else item for item in step.get("env", [])]
    return {**step, "command": [replace(c) for c in step["command"]],
            "args": [replace(a) for a in step.get("args", [])], "env": env}


def _default_replacements(params: list[dict[str, Any]]) -> dict[str, str]:
    """Tekton's replacementsFromDefaultParams for string params, as written (a quirk included: each reference
    that resolves sets the param to its default with only that reference replaced)."""
    replacements: dict[str, str] = {}
    for param in params:
        if "default" in param and "$(params." not in param["default"]:
            replacements.update(param_keys(param["name"], param["default"]))
    for param in params:
        if "default" in param and "$(params." in param["default"]:
            for match in re.findall(r"\$\(params\.[^)]*\)", param["default"]):
                key = match[2:-1]
                if key in replacements:
                    replacements.update(param_keys(param["name"], param["default"].replace(match, replacements[key])))
    return replacements


def _pipeline_values(spec: dict[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """Step 1's replacements: PipelineRun params, else the Pipeline's defaults (which must not refer on)."""
    values: dict[str, str] = {}
    for param in spec.get("params", []):
        assert param["type"] == "string"
        value = given.get(param["name"], param.get("default"))
        assert value is not None, f"param {param['name']!r} has no value"
        if param["name"] not in given:
            assert "$(params." not in value, "the replay does not resolve defaults that refer to params"
        values.update(param_keys(param["name"], value))
    return values


def task_objects(files: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The bundle's Task objects by name (the ones ``pipecast submit`` applies)."""
    return {doc["metadata"]["name"]: doc for doc in of_kind(files, "Task")}


def resolved(task: dict[str, Any], tasks: Mapping[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, metadata) the task runs: its inline taskSpec, or the referenced Task's spec and metadata."""
    if "taskSpec" in task:
        assert "taskRef" not in task
        spec = task["taskSpec"]
        return spec, spec.get("metadata", {})
    name = task["taskRef"]["name"]
    assert set(task["taskRef"]) == {"name"} and name in tasks, f"task {task['name']!r}: CouldntGetTask {name!r}"
    return tasks[name]["spec"], tasks[name]["metadata"]


def task_spec_of(task: dict[str, Any], tasks: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The spec the pipeline task runs (inline, or the referenced Task's)."""
    return resolved(task, tasks)[0]


def inlined(files: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The Pipeline's (or embedded pipelineSpec's) tasks by name, each with the ``taskSpec`` it runs (a
    referenced Task's spec, with the Task's labels and annotations as its metadata) instead of a ``taskRef``."""
    run = of_kind(files, "PipelineRun")[0]
    spec = run["spec"]["pipelineSpec"] if "pipelineSpec" in run["spec"] else of_kind(files, "Pipeline")[0]["spec"]
    tasks = task_objects(files)
    found = {}
    for task in spec["tasks"] + spec.get("finally", []):
        task_spec, metadata = resolved(task, tasks)
        own = {k: v for k, v in metadata.items() if k in ("labels", "annotations")}
        found[task["name"]] = {**{k: v for k, v in task.items() if k != "taskRef"},
                               "taskSpec": {**task_spec, **({"metadata": own} if own else {})}}
    return found


def task_invocations(files: Mapping[str, str], run_name: str,
                     params: Mapping[str, str] | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """(task name, argv, env) of every task, in ``runAfter`` order, as the cluster would run them."""
    run = of_kind(files, "PipelineRun")[0]
    pipelines = of_kind(files, "Pipeline")
    spec = run["spec"]["pipelineSpec"] if "pipelineSpec" in run["spec"] else pipelines[0]["spec"]
    pipeline_name = run_name if "pipelineSpec" in run["spec"] else run["spec"]["pipelineRef"]["name"]
    if "pipelineRef" in run["spec"]:
        assert pipelines and pipelines[0]["metadata"]["name"] == pipeline_name
    given = {p["name"]: p["value"] for p in run["spec"].get("params", [])}
    given.update(params or {})
    values = _pipeline_values(spec, given)
    contexts = {"context.pipelineRun.name": run_name, "context.pipelineRun.namespace": NAMESPACE,
                "context.pipelineRun.uid": "0000-uid", "context.pipeline.name": pipeline_name}
    run_annotations = run["metadata"].get("annotations", {})
    invocations = []
    tasks = task_objects(files)
    for task in run_order(spec["tasks"]):
        invocations.append(_task_invocation(task, tasks, values, contexts, run_name, run_annotations))
    return invocations


def _task_invocation(task: dict[str, Any], tasks: Mapping[str, dict[str, Any]], values: Mapping[str, str],
                     contexts: Mapping[str, str], run_name: str, run_annotations: Mapping[str, str],
                     results_dir: str = "/tekton/results",
                     taskrun: str | None = None) -> tuple[str, list[str], dict[str, str]]:
    name = task["name"]
    task_spec, metadata = resolved(task, tasks)
    inline = "taskSpec" in task
    declared_results = {f"results.{r['name']}.path": f"{results_dir}/{r['name']}"
                        for r in task_spec.get("results", [])}
    (step,) = task_spec["steps"]
    declared = {p["name"]: p for p in task_spec.get("params", [])}
    for param in [*declared, *(p["name"] for p in task.get("params", []))]:
        assert PARAM_NAME.fullmatch(param), f"task {name!r}: Tekton refuses the param name {param!r}"
    for param in task.get("params", []):  # the reference checks run on the spec as written, as Tekton's webhook does
        check_references(param["value"], {**values, **contexts}, f"task {name!r} param {param['name']!r}")
    for part in [*step["command"], *step.get("args", []), *(e["value"] for e in step.get("env", []) if "value" in e)]:
        check_references(part, {**{k: "" for p in declared for k in param_keys(p, "")}, **declared_results},
                         f"task {name!r} step")
    # 1. pipeline ApplyParameters: the task's params, then an inline taskSpec's steps (a task param of the same
    # name wins); a referenced Task's steps are not touched
    task_params = {p["name"]: substitute(p["value"], values) for p in task.get("params", [])}
    scoped = {**values, **{k: v for p, value in task_params.items() for k, v in param_keys(p, value).items()
                           if k in values}}
    if inline:
        step = _step_texts(step, lambda text: substitute(text, scoped))
    # 2. pipeline ApplyContexts, in the same places; 3. ApplyPipelineTaskContexts, in the params
    task_params = {p: substitute(v, contexts) for p, v in task_params.items()}
    if inline:
        step = _step_texts(step, lambda text: substitute(text, contexts))
    retries = {"context.pipelineTask.retries": str(task.get("retries", 0))}
    task_params = {p: substitute(v, retries) for p, v in task_params.items()}
    # 4. TaskRun ApplyParameters: the TaskRun's params over the taskSpec's defaults
    assert set(task_params) <= set(declared), f"task {name!r} passes undeclared params"
    scope = _default_replacements(list(declared.values()))
    for param_name, value in task_params.items():
        scope.update(param_keys(param_name, value))
    for param_name, param in declared.items():  # Tekton refuses a TaskRun that misses a param with no default
        assert param_name in task_params or "default" in param, f"task {name!r} param {param_name!r} has no value"
    step = _step_texts(step, lambda text: substitute(text, scope))
    # 5. TaskRun ApplyContexts; 6. results (none declared), artifacts, exit code path, credentials
    taskrun = taskrun or f"{run_name}-{name}"
    later = [{"context.taskRun.name": taskrun, "context.taskRun.namespace": NAMESPACE,
              "context.taskRun.uid": "1111-uid", "context.task.name": name, "context.task.retry-count": "0"},
             declared_results,  # ApplyResults: $(results.<name>.path) is /tekton/results/<name> in the pod
             {"step.artifacts.path": f"{STEP_DIRS}/step-{step['name']}/artifacts/provenance.json",
              "artifacts.path": "/tekton/artifacts/provenance.json"},
             {f"steps.step-{step['name']}.exitCode.path": f"{STEP_DIRS}/step-{step['name']}/exitCode"},
             {"credentials.path": "/tekton/creds"}]
    for replacements in later:
        step = _step_texts(step, lambda text, r=replacements: substitute(text, r))
    annotations = {**metadata.get("annotations", {}), **run_annotations}
    automatic = {"tekton.dev/pipelineRun": run_name, "tekton.dev/pipelineTask": name, "tekton.dev/taskRun": taskrun,
                 **({} if inline else {"tekton.dev/task": task["taskRef"]["name"]})}
    pod = {"name": f"{taskrun}-pod", "namespace": NAMESPACE, "annotations": annotations,
           "labels": {**metadata.get("labels", {}), **automatic}}
    env = container_env(step.get("env", []), pod=pod)
    return name, container_argv(step["command"], step["args"], env), env


def replay(files: Mapping[str, str], run_name: str, params: Mapping[str, str] | None = None,
           *, store: Path, cwd: Path | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """Run every task's command on this machine, in order, with the artifacts under ``store`` (see
    :data:`~tests.helpers.replay.store.REPLAY_STORE`); return what ran."""
    invocations = task_invocations(files, run_name, params)
    for _, argv, env in invocations:
        run_task(on_local_store(argv, store), env=env, cwd=cwd)
    return invocations
