"""Argo test support: compiling cases, the strict Argo JSON schema, and the replayer.

The replayer does what the Argo controller and the kubelet do to the emitted text, as documented:
Workflow arguments over the WorkflowTemplate's; ``{{workflow.parameters.x}}`` and ``{{workflow.name}}``
in the container's command, args and env values, resolved in one pass (``fasttemplate``: a substituted
value is never scanned again; an unknown tag is an error); ``{{=…}}`` expression tags evaluated (only
the ``sprig.b64dec('…')`` form pipecast writes is modelled); then the kubelet's ``$(VAR)``/``$$``
expansion. Tasks run in DAG ``dependencies`` order.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pipecast.targets.base import EmitOptions, compile_pipeline
from tests.helpers.cases import ROOT, case, golden_settings
from tests.helpers.kube_semantics import container_argv, container_env, strictify
from tests.helpers.replay import run_task

SCHEMA = ROOT / "tests" / "schemas" / "argo" / "schema.json"
KINDS = ("Workflow", "WorkflowTemplate", "CronWorkflow")


def emit(case_name: str, **settings: Any) -> dict[str, str]:
    """The argo files of a golden case, with the golden settings plus ``settings``."""
    options = EmitOptions(settings={**golden_settings("argo"), **settings})
    return compile_pipeline(case(case_name).build(), "argo", options).as_dict()


def documents(files: Mapping[str, str]) -> list[dict[str, Any]]:
    return [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc is not None]


def of_kind(files: Mapping[str, str], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents(files) if doc.get("kind") == kind]


@functools.cache
def _definitions() -> tuple[str, dict[str, Any]]:
    schema = json.loads(SCHEMA.read_text())
    definitions = copy.deepcopy(schema["definitions"])
    # Known upstream bug (see SOURCE.md): both are typed string-only though Kubernetes takes numbers too.
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"anyOf": [{"type": "integer"},
                                                                                {"type": "string"}]}
    definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {"anyOf": [{"type": "number"},
                                                                              {"type": "string"}]}
    for definition in definitions.values():
        strictify(definition)
    return schema["$schema"], definitions


@functools.cache
def validator(kind: str) -> jsonschema.Draft202012Validator:
    """A strict validator for ``Workflow``, ``WorkflowTemplate`` or ``CronWorkflow``."""
    dialect, definitions = _definitions()
    root = {"$schema": dialect, "definitions": definitions,
            "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}"}
    return jsonschema.Draft202012Validator(root)


def schema_errors(doc: Mapping[str, Any]) -> list[str]:
    return [f"{doc['kind']}: {e.json_path}: {e.message}" for e in validator(doc["kind"]).iter_errors(doc)]


# -- replay --------------------------------------------------------------------------------------------

_B64 = re.compile(r"=sprig\.b64dec\('([A-Za-z0-9+/=]*)'\)")


def template_replace(text: str, scope: Mapping[str, str]) -> str:
    """Argo's ``template.Replace(text, scope, allowUnresolved=false)`` on one string."""
    out: list[str] = []
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            return "".join(out) + text[position:]
        end = text.find("}}", start + 2)
        assert end >= 0, f"Argo cannot find the end tag of {text[start:]!r}"
        out.append(text[position:start])
        out.append(_resolve(text[start + 2:end], scope))
        position = end + 2


def _resolve(tag: str, scope: Mapping[str, str]) -> str:
    if tag.startswith("="):
        found = _B64.fullmatch(tag)
        assert found, f"the replay models only sprig.b64dec expressions, got {{{{{tag}}}}}"
        return base64.b64decode(found.group(1)).decode()
    assert tag.strip() in scope, f"Argo would fail: failed to resolve {{{{{tag}}}}}"
    return scope[tag.strip()]


def dag_order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {t["name"]: t for t in tasks}
    done: list[str] = []
    pending = list(by_name)
    while pending:
        ready = [n for n in pending if all(d in done for d in by_name[n].get("dependencies", []))]
        assert ready, f"dependencies have a cycle or a missing task among {pending!r}"
        done += ready
        pending = [n for n in pending if n not in ready]
    for task in tasks:
        assert all(d in by_name for d in task.get("dependencies", [])), task
    return [by_name[n] for n in done]


def workflow_spec(files: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec a Workflow runs (its own, or its WorkflowTemplate's) and its parameter values."""
    workflow = of_kind(files, "Workflow")[0]
    spec = workflow["spec"]
    values: dict[str, str] = {}
    if "workflowTemplateRef" in spec:
        (template,) = [t for t in of_kind(files, "WorkflowTemplate")
                       if t["metadata"]["name"] == spec["workflowTemplateRef"]["name"]]
        values.update({p["name"]: p.get("value") for p in template["spec"].get("arguments", {}).get("parameters", [])})
        runnable = template["spec"]
    else:
        runnable = spec
    values.update({p["name"]: p.get("value") for p in spec.get("arguments", {}).get("parameters", [])})
    return runnable, values


def task_invocations(files: Mapping[str, str], workflow_name: str, params: Mapping[str, str] | None = None,
                     secrets: Mapping[str, str] | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """(task name, argv, env) of every DAG task, in dependency order, as the cluster would run them."""
    spec, values = workflow_spec(files)
    values.update(params or {})
    scope = {"workflow.name": workflow_name}
    for name, value in values.items():
        assert value is not None, f"parameter {name!r} has no value"
        scope[f"workflow.parameters.{name}"] = value
    templates = {t["name"]: t for t in spec["templates"]}
    entry = templates[spec["entrypoint"]]
    invocations = []
    for task in dag_order(entry["dag"]["tasks"]):
        container = templates[task["template"]]["container"]
        sub: Callable[[str], str] = functools.partial(template_replace, scope=scope)
        env_items = [{**item, "value": sub(item["value"])} if "value" in item else item
                     for item in container.get("env", [])]
        env = container_env(env_items, secrets)
        argv = container_argv([sub(c) for c in container["command"]], [sub(a) for a in container.get("args", [])],
                              env)
        invocations.append((task["name"], argv, env))
    return invocations


def replay(files: Mapping[str, str], workflow_name: str, params: Mapping[str, str] | None = None,
           cwd: Path | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    invocations = task_invocations(files, workflow_name, params)
    for _, argv, env in invocations:
        run_task(argv, env=env, cwd=cwd)
    return invocations
