"""Test tools for the KFP-IR targets (kubeflow, vertex): strict parsing and the replayer (DESIGN §4).

The replayer reads an emitted IR YAML back, runs its root DAG's tasks in waves ordered only by
``dependentTasks`` (a wave runs in reverse name order, so a missing edge shows up as a failure), and
starts each task with the argv and env the engine would give it (:mod:`.engine_model`: the KFP backend's
driver and launcher, the kubelet, Vertex AI), substituting only what the engine substitutes. After each
task the launcher's collection runs: a declared output parameter the task did not write fails it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from pipecast.targets.kfpspec.references import check_references
from tests.helpers.replay import run_task
from tests.targets.kfp.engine_model import (
    KFP_2_17,
    VERTEX,
    Engine,
    Job,
    TaskOutputs,
    as_proto_value,
    collect_outputs,
    prepare_output_folders,
    resolve_inputs,
    resolve_task,
)


def documents(text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The PipelineSpec document and the platform spec document (or None)."""
    docs = list(yaml.safe_load_all(text))
    assert 1 <= len(docs) <= 2, f"expected one or two YAML documents, got {len(docs)}"
    return docs[0], (docs[1] if len(docs) == 2 else None)


def parse_strictly(text: str) -> pipeline_spec_pb2.PipelineSpec:
    """Parse every part into its protobuf with unknown fields rejected, and check references; return the spec."""
    spec_doc, platform_doc = documents(text)
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())
    # deploymentSpec is a Struct inside PipelineSpec, so only this parse checks the executors' fields.
    json_format.ParseDict(spec_doc["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())
    if platform_doc is not None:
        json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec())
        # PlatformDeploymentConfig.executors holds Structs too: parse each as kfp-kubernetes does.
        executors = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for config in executors.values():
            json_format.ParseDict(config, kubernetes_executor_config_pb2.KubernetesExecutorConfig())
    problems = check_references(spec_doc, platform_doc)
    assert not problems, problems
    return spec


def task_waves(tasks: Mapping[str, Any]) -> list[list[str]]:
    """Tasks in waves: each wave holds every task whose ``dependentTasks`` all ran in earlier waves."""
    done: set[str] = set()
    waves = []
    while len(done) < len(tasks):
        wave = sorted((name for name, task in tasks.items()
                       if name not in done and set(task.get("dependentTasks") or []) <= done), reverse=True)
        assert wave, f"dependentTasks leave {sorted(set(tasks) - done)} unreachable"
        waves.append(wave)
        done.update(wave)
    return waves


def default_engine(text: str) -> Engine:
    """The engine a file is for: Kubeflow (the newest backend) or Vertex AI, from the file's header."""
    return KFP_2_17 if text.startswith("# Kubeflow Pipelines") else VERTEX


@dataclass(frozen=True)
class ResolvedTask:
    """One root task as the engine starts it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    component: dict[str, Any]
    executor_input: dict[str, Any]
    pipeline_root: str


def task_commands(text: str, parameters: Mapping[str, Any], run_id: str, *, engine: Engine | None = None,
                  secrets: Mapping[tuple[str, str], str] | None = None,
                  display_name: str = "replayed-run") -> list[tuple[str, list[str], dict[str, str]]]:
    """Every root task's argv and env, in replay order, as ``engine`` would start them for run ``run_id``."""
    return [(t.name, t.argv, t.env) for t in resolved_tasks(text, parameters, run_id, engine=engine, secrets=secrets,
                                                            display_name=display_name)]


def resolved_tasks(text: str, parameters: Mapping[str, Any], run_id: str, *, engine: Engine | None = None,
                   secrets: Mapping[tuple[str, str], str] | None = None, display_name: str = "replayed-run",
                   folder: str = "/tmp/kfp-replay", env: Mapping[str, str] | None = None,
                   pipeline_root: str | None = None) -> list[ResolvedTask]:
    """Every root task, in replay order; each task's output files go to ``folder/<task>``; ``env`` is what
    the cluster adds to every task's environment (credentials, say). The pipeline root is the run's
    (``pipeline_root``), else the IR's ``defaultPipelineRoot``, else the engine's default."""
    spec_doc, platform_doc = documents(text)
    parse_strictly(text)
    engine = engine or default_engine(text)
    pipeline_root = pipeline_root or spec_doc.get("defaultPipelineRoot") or engine.pipeline_root
    root_inputs = (spec_doc["root"].get("inputDefinitions") or {}).get("parameters") or {}
    unknown = set(parameters) - set(root_inputs)
    assert not unknown, f"parameters the IR does not declare: {unknown}"
    # The run's parameters, missing ones filled with the root defaults (argocompiler/argo.go).
    values = {name: p["defaultValue"] for name, p in root_inputs.items() if "defaultValue" in p}
    values.update(parameters)
    platform = {}
    if platform_doc is not None:
        platform = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = spec_doc["root"]["dag"]["tasks"]
    job = Job(uuid=run_id, display_name=display_name)
    commands = []
    for wave in task_waves(tasks):
        for name in wave:
            task = tasks[name]
            component = spec_doc["components"][task["componentRef"]["name"]]
            label = component["executorLabel"]
            secret_env = dict(env or {})
            for group in (platform.get(label) or {}).get("secretAsEnv") or []:
                for pair in group["keyToEnv"]:
                    secret_env[pair["envVar"]] = (secrets or {})[(group["secretName"], pair["secretKey"])]
            argv, task_env, inputs = resolve_task(
                task=task, component=component, container=spec_doc["deploymentSpec"]["executors"][label]["container"],
                root=values, job=job, task_name=name, task_number=len(commands) + 1, engine=engine,
                extra_env=secret_env, folder=f"{folder}/{name}", pipeline_root=pipeline_root)
            commands.append(ResolvedTask(name, argv, task_env, component, inputs, pipeline_root))
    return commands


def replay(text: str, parameters: Mapping[str, Any], run_id: str, *, engine: Engine | None = None,
           secrets: Mapping[tuple[str, str], str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Run every task of the IR on this machine; fail on the first task that fails (or whose outputs the
    launcher cannot collect)."""
    return [process for process, _ in replay_tasks(text, parameters, run_id, engine=engine, secrets=secrets).values()]


def replay_tasks(text: str, parameters: Mapping[str, Any], run_id: str, *, engine: Engine | None = None,
                 secrets: Mapping[tuple[str, str], str] | None = None, env: Mapping[str, str] | None = None,
                 pipeline_root: str | None = None, allow_failures: bool = False, with_states: bool = False,
                 schedule_time: str | None = None) -> dict[str, tuple[subprocess.CompletedProcess[str], TaskOutputs]]:
    """Run every task, then collect its outputs as the launcher does; by task name, in replay order.

    A failed task fails the test unless ``allow_failures``; ``with_states`` returns ``(results, states, run
    state)`` instead, states by task path (``exit-handler-1/condition-branches-3/condition-4``);
    ``schedule_time`` what the engine gives ``{{$.pipeline_job_schedule_time_utc}}`` (``Job.schedule_time``).

    Tasks are resolved when their wave starts, so that ``taskOutputParameter`` inputs read what ran before. A
    ``ParallelFor`` task (``parameterIterator``) runs its DAG once per item (:func:`_iterations`); its tasks are
    reported as ``for-loop-N[i]/task``.
    """
    engine = engine or default_engine(text)
    spec_doc, platform_doc = documents(text)
    parse_strictly(text)
    pipeline_root = pipeline_root or spec_doc.get("defaultPipelineRoot") or engine.pipeline_root
    root_inputs = (spec_doc["root"].get("inputDefinitions") or {}).get("parameters") or {}
    unknown = set(parameters) - set(root_inputs)
    assert not unknown, f"parameters the IR does not declare: {unknown}"
    values = {name: p["defaultValue"] for name, p in root_inputs.items() if "defaultValue" in p}
    values.update(parameters)
    platform = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if platform_doc else {}
    job = Job(uuid=run_id, display_name="replayed-run", schedule_time=schedule_time)
    run = _Run(spec_doc, platform, job, engine, pipeline_root,
               dict(env or {}), secrets or {})
    run.check = not allow_failures
    with tempfile.TemporaryDirectory(prefix="kfp-replay-") as folder:
        run.folder = folder
        run.state = run.dag(spec_doc["root"]["dag"]["tasks"], {k: as_proto_value(v) for k, v in values.items()}, "")
    return run.results if not with_states else (run.results, run.states, run.state)  # type: ignore[return-value]


@dataclass
class _Run:
    spec: dict[str, Any]
    platform: Mapping[str, Any]
    job: Job
    engine: Engine
    pipeline_root: str
    env: dict[str, str]
    secrets: Mapping[tuple[str, str], str]
    folder: str = ""
    results: dict[str, tuple[subprocess.CompletedProcess[str], TaskOutputs]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)  # every task that ran: COMPLETE, FAILED or CANCELED
    group_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # a DAG task's output parameters
    state: str = ""  # the root DAG's
    check: bool = True  # a failed task fails the test (run_task's message) instead of going on as the engine does

    def dag(self, tasks: Mapping[str, Any], inputs: Mapping[str, Any], prefix: str) -> str:
        """Run one DAG's tasks in ``dependentTasks`` waves; ``inputs`` are the DAG's input values. Return its state.

        What the KFP backend compiles the DAG into (``backend/src/v2/compiler/argocompiler/dag.go``): a task runs
        only when every task it depends on *succeeded* (``depends``: ``X.Succeeded`` for each, so a failed or
        skipped upstream task omits it); a task with ``triggerPolicy.strategy: ALL_UPSTREAM_TASKS_COMPLETED`` is
        not a task of the DAG but the exit lifecycle hook of the task it depends on, run when that task ended
        whatever its phase (``addExitTask``, ``common.go``); a task has one exit hook, the last such task in name
        order (``DAG``: ``taskToExitTemplate[dep] = name`` over the sorted task names, so a second exit task of the
        same producer is never run). A DAG fails when one of its tasks failed.
        """
        produced: dict[str, dict[str, Any]] = {}
        local: dict[str, str] = {}  # this DAG's tasks that ran, by name: their state
        hooks = {name: task for name, task in tasks.items() if _is_exit_task(task)}
        body = {name: task for name, task in tasks.items() if name not in hooks}
        for wave in task_waves(body):
            for name in wave:
                task = body[name]
                if any(local.get(dep) != "COMPLETE" for dep in task.get("dependentTasks") or []):
                    continue  # omitted: an upstream task failed or was skipped
                local[name] = self._task(name, task, inputs, produced, local, prefix)
        exit_of = {}
        for name, task in sorted(hooks.items()):
            (producer,) = task["dependentTasks"]
            exit_of[producer] = name  # the backend keeps the last one
        for producer, name in sorted(exit_of.items()):
            if producer in local:  # the hook of a task that ran
                local[name] = self._task(name, hooks[name], inputs, produced, local, prefix)
        return "FAILED" if "FAILED" in local.values() else "COMPLETE"

    def _task(self, name: str, task: Mapping[str, Any], inputs: Mapping[str, Any],
              produced: dict[str, dict[str, Any]], local: Mapping[str, str], prefix: str) -> str:
        component = self.spec["components"][task["componentRef"]["name"]]
        if "dag" in component:
            if "parameterIterator" in task:
                return self._loop(name, task, component, inputs, produced, prefix)
            return self._group(name, task, component, inputs, produced, local, prefix)
        label = component["executorLabel"]
        secret_env = dict(self.env)
        for group in (self.platform.get(label) or {}).get("secretAsEnv") or []:
            for pair in group["keyToEnv"]:
                secret_env[pair["envVar"]] = self.secrets[(group["secretName"], pair["secretKey"])]
        key = prefix + name
        argv, task_env, executor = resolve_task(
            task=task, component=component,
            container=self.spec["deploymentSpec"]["executors"][label]["container"], root=inputs, job=self.job,
            task_name=name, task_number=len(self.results) + 1, engine=self.engine, extra_env=secret_env,
            folder=f"{self.folder}/{key.replace('/', '.')}", pipeline_root=self.pipeline_root,
            produced=produced, final=self._final(task, local))
        prepare_output_folders(executor, self.engine)
        process = run_task(argv, task_env, check=self.check)
        if process.returncode != 0:
            self.results[key] = (process, TaskOutputs({}, {}))
            self.states[key] = "FAILED"
            return "FAILED"
        outputs = collect_outputs(component, executor, self.pipeline_root)
        self.results[key] = (process, outputs)
        self.states[key] = "COMPLETE"
        produced[name] = outputs.parameters
        return "COMPLETE"

    def _final(self, task: Mapping[str, Any], local: Mapping[str, str]) -> dict[str, Any]:
        """``taskFinalStatus`` values (``driver/resolve.go``): the producer's state, its name, the run's name."""
        wanted = [source["taskFinalStatus"]["producerTask"]
                  for source in ((task.get("inputs") or {}).get("parameters") or {}).values()
                  if "taskFinalStatus" in source]
        assert not wanted or self.engine.final_status, (
            "compiling DAG \"root\": failed to add implicit deps: task final status not supported yet "
            f"({self.engine.name}: backend/src/v2/compiler/argocompiler/dag.go)")
        names = dict(self.engine.states)
        return {producer: {"error": {}, "pipelineJobResourceName": f"run-resource-{self.job.uuid}",
                           "pipelineTaskName": producer, "state": names.get(local[producer], local[producer])}
                for producer in wanted if producer in local}

    def _group(self, name: str, task: Mapping[str, Any], component: Mapping[str, Any], inputs: Mapping[str, Any],
               produced: dict[str, dict[str, Any]], local: Mapping[str, str], prefix: str) -> str:
        """A DAG task (a condition, a chain of branches, an exit handler): the DAG driver resolves its inputs and
        evaluates its ``triggerPolicy.condition`` (``driver/dag.go``, ``DAG``; a false condition records the
        execution as not triggered, MLMD's CANCELED, ``metadata/client.go``) and the Argo task is skipped
        (``when: condition != false``); else its tasks run. Its outputs are read by the tasks after it
        (``driver/resolve.go``, ``GetProducerTask``): ``valueFromParameter`` the sub-task's, ``valueFromOneof``
        the first selector whose sub-task is COMPLETE or CACHED."""
        declared = ((component.get("inputDefinitions") or {}).get("parameters")) or {}
        values = resolve_inputs(task, declared, inputs, self.job, name, len(self.results) + 1, produced)
        condition = (task.get("triggerPolicy") or {}).get("condition")
        if condition and not evaluate_condition(condition, values):
            self.states[prefix + name] = "CANCELED"
            return "CANCELED"
        runner = dataclasses.replace(self, states={})  # shares results and group_outputs
        sub = component["dag"]["tasks"]
        state = runner.dag(sub, values, f"{prefix}{name}/")
        self.states.update(runner.states)
        outputs = {}
        for key, spec in ((component["dag"].get("outputs") or {}).get("parameters") or {}).items():
            selectors = ([spec["valueFromParameter"]] if "valueFromParameter" in spec
                         else spec["valueFromOneof"]["parameterSelectors"])
            for selector in selectors:
                ran = runner.states.get(f"{prefix}{name}/{selector['producerSubtask']}")
                found = runner.produced_outputs(f"{prefix}{name}/", selector["producerSubtask"])
                if ran in ("COMPLETE", "CACHED") and selector["outputParameterKey"] in found:
                    outputs[key] = found[selector["outputParameterKey"]]
                    break
        produced[name] = self.group_outputs[prefix + name] = outputs
        self.states[prefix + name] = state
        return state

    def produced_outputs(self, prefix: str, name: str) -> dict[str, Any]:
        """The output parameters task ``name`` of the DAG at ``prefix`` produced (a container's or a DAG's)."""
        if prefix + name in self.results:
            return self.results[prefix + name][1].parameters
        return self.group_outputs.get(prefix + name, {})

    def _loop(self, name: str, task: Mapping[str, Any], component: Mapping[str, Any], inputs: Mapping[str, Any],
              produced: Mapping[str, Mapping[str, Any]], prefix: str) -> str:
        """A ``ParallelFor``: the driver resolves the loop task's inputs and makes one iteration per item
        (``backend/src/v2/driver/dag.go``, ``DAG``; ``resolver/parameters.go``, ``resolveParameterIterator`` and
        ``getItems``: a LIST value, or a string holding a JSON list); each iteration's tasks read the item as the
        loop item input. No items: the loop is skipped. Iterations run here last item first, so that nothing can
        lean on them running in order (the engine runs them at once, up to ``parallelismLimit``)."""
        iterator = task["parameterIterator"]
        declared = dict(((component.get("inputDefinitions") or {}).get("parameters")) or {})
        declared.pop(iterator["itemInput"])  # given by the iterator, per iteration
        values = resolve_inputs(task, declared, inputs, self.job, name, len(self.results) + 1, produced)
        items_spec = iterator["items"]
        if "raw" in items_spec:
            items = as_proto_value(json.loads(items_spec["raw"]))
        else:
            items = values[items_spec["inputParameter"]]
            if isinstance(items, str):
                items = as_proto_value(json.loads(items))
        assert isinstance(items, list), f"task {name!r}: value of type {type(items).__name__} cannot be iterated"
        states = []
        for index in reversed(range(len(items))):
            runner = dataclasses.replace(self, states={})
            states.append(runner.dag(component["dag"]["tasks"], {**values, iterator["itemInput"]: items[index]},
                                     f"{prefix}{name}[{index}]/"))
            self.states.update(runner.states)
        return "FAILED" if "FAILED" in states else "COMPLETE"


def _is_exit_task(task: Mapping[str, Any]) -> bool:
    return (task.get("triggerPolicy") or {}).get("strategy") == "ALL_UPSTREAM_TASKS_COMPLETED"


def evaluate_condition(condition: str, values: Mapping[str, Any]) -> bool:
    """A trigger policy's CEL condition on the task's resolved inputs, as the driver evaluates it
    (``backend/src/v2/expression/expression.go``, ``Condition``: the ExecutorInput as the CEL context, a
    non-bool result an error), here with cel-python, a conforming CEL implementation."""
    import celpy

    environment = celpy.Environment()
    program = environment.program(environment.compile(condition))
    result = program.evaluate({"inputs": celpy.json_to_cel({"parameter_values": dict(values)})})
    assert isinstance(result, celpy.celtypes.BoolType), f"evaluation error: return type is not bool, got {result!r}"
    return bool(result)
