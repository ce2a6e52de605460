"""Test tools for the KFP-IR targets (kubeflow, vertex): strict parsing and the replayer (DESIGN §4).

The replayer reads an emitted IR YAML back, runs its root DAG's tasks in waves ordered only by
``dependentTasks`` (a wave runs in reverse name order, so a missing edge shows up as a failure), and
builds each task's command with KFP's own local-execution code: ``kfp.local``'s ExecutorInput builder
and placeholder substitution, the code the KFP SDK documents as consistent with the remote backend.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.local import executor_input_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2

from pipecast.targets.kfpspec.references import check_references
from tests.helpers.kube_semantics import container_env
from tests.helpers.replay import run_task


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


def spec_doc_is_kubernetes(text: str) -> bool:
    """Kubeflow runs tasks as Kubernetes pods (the kubelet expands env values); Vertex AI's runner does not."""
    return text.startswith("# Kubeflow Pipelines")


def task_commands(text: str, parameters: Mapping[str, Any], run_id: str, workdir: Path,
                  secrets: Mapping[tuple[str, str], str] | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """Every root task's resolved argv and env, in replay order, as KFP would start them."""
    spec_doc, platform_doc = documents(text)
    spec = parse_strictly(text)
    root_inputs = (spec_doc["root"].get("inputDefinitions") or {}).get("parameters") or {}
    values = {name: p["defaultValue"] for name, p in root_inputs.items() if "defaultValue" in p}
    unknown = set(parameters) - set(root_inputs)
    assert not unknown, f"parameters the IR does not declare: {unknown}"
    values.update(parameters)
    platform = {}
    if platform_doc is not None:
        platform = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = spec_doc["root"]["dag"]["tasks"]
    commands = []
    for wave in task_waves(tasks):
        for name in wave:
            task = tasks[name]
            component = spec.components[task["componentRef"]["name"]]
            arguments: dict[str, Any] = {}
            for input_name, source in ((task.get("inputs") or {}).get("parameters") or {}).items():
                if "componentInputParameter" in source:
                    arguments[input_name] = values[source["componentInputParameter"]]
                else:
                    arguments[input_name] = source["runtimeValue"]["constant"]
            executor_input = executor_input_utils.construct_executor_input(
                component_spec=component, arguments=arguments, task_root=str(workdir / name),
                block_input_artifact=True)
            executor_dict = executor_input_utils.executor_input_to_dict(executor_input, component)
            container = spec_doc["deploymentSpec"]["executors"][component.executor_label]["container"]
            argv = placeholder_utils.replace_placeholders(
                full_command=[*container["command"], *(container.get("args") or [])],
                executor_input_dict=executor_dict, pipeline_resource_name=spec_doc["pipelineInfo"]["name"],
                task_resource_name=name, pipeline_root=str(workdir), unique_pipeline_id=run_id)
            if spec_doc_is_kubernetes(text):
                env = container_env(container.get("env") or [])  # the kubelet's $(VAR)/$$ expansion
            else:
                env = {item["name"]: item["value"] for item in container.get("env") or []}
            for group in (platform.get(component.executor_label) or {}).get("secretAsEnv") or []:
                for pair in group["keyToEnv"]:
                    env[pair["envVar"]] = (secrets or {})[(group["secretName"], pair["secretKey"])]
            commands.append((name, argv, env))
    return commands


def replay(text: str, parameters: Mapping[str, Any], run_id: str, workdir: Path,
           secrets: Mapping[tuple[str, str], str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Run every task of the IR on this machine; fail on the first task that fails."""
    return [run_task(argv, env) for _, argv, env in task_commands(text, parameters, run_id, workdir, secrets)]
