"""Tekton test support: compiling cases, the strict CRD schemas, and the replayer.

The replayer does what the Tekton controller and the kubelet do to the emitted text, as documented:
PipelineRun params over Pipeline param defaults; ``$(params.x)`` and ``$(context.pipelineRun.name)``
in pipeline-task params; task params over ``taskSpec`` param defaults; ``$(params.x)`` in the step's
command, args and env values, each replaced in one pass (Tekton's ``strings.Replacer``, so a
substituted value is never substituted again); then the kubelet's ``$(VAR)``/``$$`` expansion. Tasks run
in ``runAfter`` order.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pipecast.targets.base import EmitOptions, compile_pipeline
from tests.helpers.cases import ROOT, case, golden_settings
from tests.helpers.kube_semantics import container_argv, container_env, strictify
from tests.helpers.replay import run_task

SCHEMAS = ROOT / "tests" / "schemas" / "tekton"


def emit(case_name: str, **settings: Any) -> dict[str, str]:
    """The tekton files of a golden case, with the golden settings plus ``settings``."""
    options = EmitOptions(settings={**golden_settings("tekton"), **settings})
    return compile_pipeline(case(case_name).build(), "tekton", options).as_dict()


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
    """A strict validator for ``Pipeline``, ``PipelineRun`` or ``EmbeddedTask`` (an inline taskSpec)."""
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
        schema = _v1_schema({"Pipeline": "300-pipeline.yaml", "PipelineRun": "300-pipelinerun.yaml"}[kind])
    return jsonschema.Draft7Validator(strictify(schema))


def schema_errors(doc: Mapping[str, Any]) -> list[str]:
    """Every schema error of a Pipeline or PipelineRun, including its inline taskSpecs'."""
    errors = [f"{doc['kind']}: {e.json_path}: {e.message}" for e in validator(doc["kind"]).iter_errors(doc)]
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


def substitute(text: str, replacements: Mapping[str, str]) -> str:
    """Tekton's ``ApplyReplacements``: every ``$(key)`` replaced in one left-to-right pass."""
    if not replacements:
        return text
    keys = sorted((f"$({k})" for k in replacements), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(k) for k in keys))
    return pattern.sub(lambda m: replacements[m.group(0)[2:-1]], text)


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


def task_invocations(files: Mapping[str, str], run_name: str,
                     params: Mapping[str, str] | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """(task name, argv, env) of every task, in ``runAfter`` order, as the cluster would run them."""
    run = of_kind(files, "PipelineRun")[0]
    pipelines = of_kind(files, "Pipeline")
    spec = run["spec"]["pipelineSpec"] if "pipelineSpec" in run["spec"] else pipelines[0]["spec"]
    if "pipelineRef" in run["spec"]:
        assert pipelines and pipelines[0]["metadata"]["name"] == run["spec"]["pipelineRef"]["name"]
    given = {p["name"]: p["value"] for p in run["spec"].get("params", [])}
    given.update(params or {})
    values: dict[str, str] = {}
    for param in spec.get("params", []):
        assert param["type"] == "string"
        value = given.get(param["name"], param.get("default"))
        assert value is not None, f"param {param['name']!r} has no value"
        values[f"params.{param['name']}"] = value
    values["context.pipelineRun.name"] = run_name
    invocations = []
    for task in run_order(spec["tasks"]):
        task_values = {}
        for param in task.get("params", []):
            check_references(param["value"], values, f"task {task['name']!r} param {param['name']!r}")
            task_values[param["name"]] = substitute(param["value"], values)
        declared = {p["name"]: p for p in task["taskSpec"].get("params", [])}
        assert set(task_values) <= set(declared), f"task {task['name']!r} passes undeclared params"
        scope = {}
        for name, param in declared.items():
            value = task_values.get(name, param.get("default"))
            assert value is not None, f"task {task['name']!r} param {name!r} has no value"
            scope[f"params.{name}"] = value
        (step,) = task["taskSpec"]["steps"]
        env_items = []
        for item in step.get("env", []):
            if "value" in item:
                check_references(item["value"], scope, f"task {task['name']!r} env {item['name']!r}")
                item = {**item, "value": substitute(item["value"], scope)}
            env_items.append(item)
        env = container_env(env_items)
        command = [substitute(part, scope) for part in step["command"]]
        args = [substitute(part, scope) for part in step.get("args", [])]
        for part in [*step["command"], *step.get("args", [])]:
            check_references(part, scope, f"task {task['name']!r} command")
        invocations.append((task["name"], container_argv(command, args, env), env))
    return invocations


def replay(files: Mapping[str, str], run_name: str, params: Mapping[str, str] | None = None,
           cwd: Path | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """Run every task's command on this machine, in order; return what ran."""
    invocations = task_invocations(files, run_name, params)
    for _, argv, env in invocations:
        run_task(argv, env=env, cwd=cwd)
    return invocations
