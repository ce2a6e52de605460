"""Argo test support: the strict Argo JSON schema, reading emitted files back, and the replayer.

The replayer does to a DAG task's container what the Argo workflow controller does, read in its source
(argo-workflows main, 2026-08; the passes below exist since v3.7, the last one since v2.3), then what the
kubelet does (``tests/helpers/kube_semantics.py``). Tasks run in DAG ``dependencies`` order.

1. Workflow arguments over the WorkflowTemplate's become the globals ``workflow.parameters.<name>``, next to
   ``workflow.name``, ``workflow.namespace``, ``workflow.uid``, ``workflow.serviceAccountName`` and
   ``workflow.mainEntrypoint`` (workflow/controller/operator.go setGlobalParameters), and
   ``workflow.scheduledTime`` only in a Workflow whose ``workflows.argoproj.io/scheduled-time`` annotation is
   set: the cron controller makes such a Workflow from the CronWorkflow's ``workflowSpec`` and its schedule time
   (workflow/common/convert.go ConvertCronWorkflowToWorkflowWithProperties), as ``scheduled_time=`` replays.
2. Validation (workflow/validate/validate.go resolveAllVariables): in the template as written, every tag
   whose name starts with ``item.``, ``steps.``, ``inputs.``, ``outputs.``, ``pod.``, ``workflow.`` or
   ``tasks.`` must name a variable in scope, or Argo refuses the workflow; ``workflow.scheduledTime`` is
   exempt (resolved at run time, validate.go), and stays as written where it is not set.
3. Template passes over the container's JSON, each a fasttemplate scan (``{{`` to the first ``}}``) that
   replaces a known tag with its JSON-escaped value and leaves an unknown one as written
   (util/template/simple_template.go, allowUnresolved), resolving the last ``{{`` inside an unknown tag
   on its own: SubstituteParams (workflow/common/util.go) scans with globals and locals (``pod.name``,
   ``node.name``, ``tasks.name``), then again with globals, locals and inputs; a template with a
   retryStrategy is substituted once more with ``retries`` (operator.go); substitutePodParams
   (workflow/controller/workflowpod.go) scans the pod once more with globals, inputs and ``pod.name``.
   A value inserted by one pass is scanned by the next: that is what the replay must not forgive.
   Expression tags ``{{=…}}`` are evaluated in every pass; pipecast writes none, so the replay refuses
   to model them. A DAG task's ``arguments.parameters`` (templated with the globals first) become the
   template's input values (workflow/common/util.go ProcessArgs), ``inputs.parameters.<name>`` and
   ``inputs.parameters`` in every pass from SubstituteParams' second on; the labels in the template's
   ``metadata`` are substituted with the container, since each pass works on the whole template's JSON.

Nothing else is substituted: Argo leaves the text outside tags alone.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from pipecast.compiler.naming import rule_for
from pipecast.targets.kube.crd import STEP_LABEL
from tests.helpers.cases import ROOT
from tests.helpers.kube_semantics import container_argv, container_env, strictify
from tests.helpers.replay import run_task
from tests.helpers.replay.store import on_local_store

SCHEMA = ROOT / "tests" / "schemas" / "argo" / "schema.json"
KINDS = ("Workflow", "WorkflowTemplate", "CronWorkflow")
K8S_VERSION = "1.35"  # kubernetes-validate's schemas for the RBAC file


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
    """Argo's kinds against Argo's schema; the RBAC file's kinds against Kubernetes' (kubernetes-validate)."""
    if doc["kind"] not in KINDS:
        try:
            kubernetes_validate.validate(dict(doc), K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            return [f"{doc['kind']}: {err}"]
        return []
    return [f"{doc['kind']}: {e.json_path}: {e.message}" for e in validator(doc["kind"]).iter_errors(doc)]


# -- replay --------------------------------------------------------------------------------------------

SCHEDULED_TIME = "workflow.scheduledTime"
_VALIDATED = ("item.", "steps.", "inputs.", "outputs.", "pod.", "workflow.", "tasks.")
NAMESPACE = "ml"


def _tags(text: str) -> list[str]:
    """The tags of a fasttemplate scan of ``text``; an unclosed ``{{`` is an error, as in Argo."""
    tags, position = [], 0
    while (start := text.find("{{", position)) >= 0:
        end = text.find("}}", start + 2)
        assert end >= 0, f"Argo would fail: cannot find end tag=\"}}}}\" in {text[start:start + 40]!r}"
        tags.append(text[start + 2:end])
        position = end + 2
    return tags


def validate(template_json: str, scope: Mapping[str, str]) -> None:
    """Argo's validation of a template as written: a tag under a validated root must name a variable."""
    for tag in _tags(template_json):
        name = tag.strip()
        if not tag.startswith("=") and name.startswith(_VALIDATED) and not name.startswith(SCHEDULED_TIME):
            assert name in scope, f"Argo would refuse the workflow: failed to resolve {{{{{tag}}}}}"


def template_replace(text: str, scope: Mapping[str, str]) -> str:
    """One fasttemplate pass of Argo's ``template.Replace(text, scope, allowUnresolved=true)`` over JSON."""
    out: list[str] = []
    position = 0
    while (start := text.find("{{", position)) >= 0:
        end = text.find("}}", start + 2)
        assert end >= 0, f"Argo would fail: cannot find end tag=\"}}}}\" in {text[start:start + 40]!r}"
        tag = text[start + 2:end]
        out.append(text[position:start])
        assert not tag.startswith("="), f"the replay does not evaluate Argo expressions: {{{{{tag}}}}}"
        if tag.strip() in scope:
            out.append(_json_escaped(scope[tag.strip()]))
        elif "{{" in tag and tag[tag.rfind("{{") + 2:] in scope:  # a nested tag: Argo resolves the inner one
            out.append("{{" + tag[:tag.rfind("{{")] + _json_escaped(scope[tag[tag.rfind("{{") + 2:]]))
        else:
            out.append("{{" + tag + "}}")
        position = end + 2
    return "".join(out) + text[position:]


def _json_escaped(value: str) -> str:
    """The value as Argo writes it into the template's JSON (``strconv.Quote`` without the quotes).

    Go quotes a few characters in a way JSON cannot read (``\\a``, ``\\v``, ``\\x…``); Argo then fails.
    """
    assert all(c.isprintable() or c in "\b\f\n\r\t" for c in value), \
        f"Argo would fail (invalid JSON after substitution) for {value!r}"
    return json.dumps(value, ensure_ascii=False)[1:-1]


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


def workflow_spec(files: Mapping[str, str], cron: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec a Workflow runs (its own, or its WorkflowTemplate's) and its parameter values; ``cron``: the
    Workflow the cron controller makes from the CronWorkflow (its ``workflowSpec``, convert.go toWorkflow)."""
    spec = of_kind(files, "CronWorkflow")[0]["spec"]["workflowSpec"] if cron else of_kind(files, "Workflow")[0]["spec"]
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


def global_scope(spec: Mapping[str, Any], workflow_name: str, values: Mapping[str, str | None],
                 scheduled_time: str | None = None) -> dict[str, str]:
    """The workflow's globals (operator.go setGlobalParameters), for the parameter ``values``; a Workflow the
    cron controller made has its ``scheduled_time`` (RFC 3339, as convert.go formats it)."""
    scope = {"workflow.name": workflow_name, "workflow.namespace": NAMESPACE, "workflow.uid": "0000-uid",
             "workflow.serviceAccountName": spec.get("serviceAccountName", "default"),
             "workflow.mainEntrypoint": spec["entrypoint"],
             "workflow.parameters": json.dumps([{"name": k, "value": v} for k, v in values.items()])}
    for name, value in values.items():
        assert value is not None, f"parameter {name!r} has no value"
        scope[f"workflow.parameters.{name}"] = value
    if scheduled_time is not None:
        scope[SCHEDULED_TIME] = scheduled_time
    return scope


def template_as_run(template: dict[str, Any], task: dict[str, Any], scope: Mapping[str, str],
                    pod: str) -> dict[str, Any]:
    """The template a DAG task runs, after Argo's validation and every template pass (see the module doc).

    The task's ``arguments.parameters`` are first templated with the globals (dag.go executeDAGTask), then set
    as the template's input values (ProcessArgs: an input without an argument or default is an error, and so,
    here, is an argument the template does not declare), which the passes substitute from the second on.
    """
    arguments = {p["name"]: template_replace(p["value"], scope)
                 for p in task.get("arguments", {}).get("parameters", [])}
    declared = template.get("inputs", {}).get("parameters", [])
    for parameter in declared:  # validate.go isValidParamOrArtifactName
        assert re.fullmatch(r"[-a-zA-Z0-9_]+", parameter["name"]), f"Argo refuses the name {parameter['name']!r}"
    assert set(arguments) <= {p["name"] for p in declared}, f"arguments the template does not take: {arguments}"
    template = copy.deepcopy(template)
    for parameter in template.get("inputs", {}).get("parameters", []):
        value = arguments.get(parameter["name"], parameter.get("value"))
        assert value is not None, f"Argo would fail: inputs.parameters.{parameter['name']} was not supplied"
        parameter["value"] = value
    inputs = {f"inputs.parameters.{p['name']}": p["value"] for p in template.get("inputs", {}).get("parameters", [])}
    if inputs:
        inputs["inputs.parameters"] = json.dumps(template["inputs"]["parameters"], separators=(",", ":"))
    text = json.dumps(template, ensure_ascii=False)
    local = {**scope, "node.name": f"{scope['workflow.name']}.{task['name']}", "tasks.name": task["name"]}
    validate(text, {**local, **inputs, "pod.name": pod})
    retried = "retryStrategy" in template
    if not retried:  # with a retryStrategy the pod name is known only when the try is created
        local["pod.name"] = pod
    text = template_replace(template_replace(text, local), {**local, **inputs})  # SubstituteParams
    if retried:
        retry_scope = {**local, **inputs, "retries": "0", "lastRetry.exitCode": "0", "lastRetry.status": "",
                       "lastRetry.duration": "0", "lastRetry.message": ""}
        text = template_replace(template_replace(text, retry_scope), retry_scope)
    text = template_replace(text, {**scope, **inputs, "pod.name": pod})  # substitutePodParams over the pod
    ran: dict[str, Any] = json.loads(text)
    return ran


def container_as_run(template: dict[str, Any], task: str, scope: Mapping[str, str], pod: str) -> dict[str, Any]:
    """The container of a template that takes no inputs, as the task ``task`` runs it."""
    container: dict[str, Any] = template_as_run(template, {"name": task}, scope, pod)["container"]
    return container


def task_invocations(files: Mapping[str, str], workflow_name: str, params: Mapping[str, str] | None = None,
                     secrets: Mapping[str, str] | None = None,
                     scheduled_time: str | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """(task name, argv, env) of every DAG task, in dependency order, as the cluster would run them (with a
    ``scheduled_time``: the Workflow the CronWorkflow made at that time)."""
    spec, values = workflow_spec(files, cron=scheduled_time is not None)
    values.update(params or {})
    scope = global_scope(spec, workflow_name, values, scheduled_time)
    templates = {t["name"]: t for t in spec["templates"]}
    entry = templates[spec["entrypoint"]]
    invocations = []
    for task in dag_order(entry["dag"]["tasks"]):
        pod = f"{workflow_name}-{task['name']}"
        ran = template_as_run(templates[task["template"]], task, scope, pod)
        container = ran["container"]
        label = ran["metadata"]["labels"][STEP_LABEL]  # the task's DNS name, or the step's name (logs map it)
        assert rule_for("dns1123_label").apply(label) == task["name"], "the pod's step label does not name its task"
        env = container_env(container.get("env", []), secrets)
        argv = container_argv(container["command"], container.get("args", []), env)
        invocations.append((task["name"], argv, env))
    return invocations


def replay(files: Mapping[str, str], workflow_name: str, params: Mapping[str, str] | None = None,
           *, store: Path, cwd: Path | None = None,
           scheduled_time: str | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """Run every task's command on this machine, in DAG order, with the artifacts under ``store`` (see
    :data:`~tests.helpers.replay.store.REPLAY_STORE`); return what ran."""
    invocations = task_invocations(files, workflow_name, params, scheduled_time=scheduled_time)
    for _, argv, env in invocations:
        run_task(on_local_store(argv, store), env=env, cwd=cwd)
    return invocations


def value_as_run(value: str) -> str:
    """``value`` as it reaches a step's args after Argo's passes, when passed as a workflow parameter."""
    template = {"name": "t", "retryStrategy": {"limit": "1"},
                "container": {"image": "i", "command": ["x"], "args": ["{{workflow.parameters.p}}"]}}
    scope = global_scope({"entrypoint": "main"}, "wf-1", {"p": value})
    return str(container_as_run(template, "t", scope, "wf-1-t")["args"][0])
