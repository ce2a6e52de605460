"""Reading an emitted Azure ML pipeline job back: its own reference checks, its order, its substitution.

``azure.ai.ml.load_job(...)._validate()`` checks the schema but not the references between nodes: it
accepts a ``${{parent.jobs.X.outputs.Y}}`` to a node that does not exist, a ``${{inputs.x}}`` in a
command that the component does not declare, and a cycle. :func:`reference_problems` checks those.
:func:`order` and :func:`resolve_command` are the replay's half that is Azure ML specific.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Azure ML's expression syntax (azure.ai.ml._utils.utils.get_all_data_binding_expressions).
EXPRESSION = re.compile(r"\$\{\{\s*(\S*?)\s*\}\}")
OPTIONAL_BLOCK = re.compile(r"\$\[\[")
PARENT_JOB_OUTPUT = re.compile(r"^parent\.jobs\.([^.]+)\.outputs\.([^.]+)$")
PARENT_INPUT = re.compile(r"^parent\.inputs\.([^.]+)$")


def binding_of(value: Any) -> str | None:
    """The one expression a node input is bound to (``parent.inputs.x``), or None for a literal."""
    text = value.get("path") if isinstance(value, Mapping) else value
    if not isinstance(text, str):
        return None
    match = EXPRESSION.fullmatch(text)
    return match.group(1) if match else None


def upstream_of(node: Mapping[str, Any]) -> list[str]:
    """Nodes this node waits for: those whose outputs its inputs are bound to."""
    found = []
    for value in (node.get("inputs") or {}).values():
        match = PARENT_JOB_OUTPUT.match(binding_of(value) or "")
        if match:
            found.append(match.group(1))
    return found


NODE_BINDING = re.compile(r"^parent\.jobs\.([^.]+)$")


def node_of(binding: str) -> str:
    """``${{parent.jobs.X}}`` → ``X`` (a control node's body or block)."""
    match = NODE_BINDING.match(binding_of(binding) or "")
    assert match, binding
    return match.group(1)


PARENT_OUTPUT = re.compile(r"^parent\.outputs\.([^.]+)$")


def with_components(job: Mapping[str, Any], files: Mapping[str, str]) -> dict[str, Any]:
    """The job with each ``type: pipeline`` node's component file read in, as azure-ai-ml's ``load_job`` does
    (``PipelineComponentFileRefField``: a path relative to the job file's folder). A component's own pipeline
    nodes (an inner map's body) are read in too, relative to its file: the same folder."""
    import yaml

    loaded = dict(job)
    loaded["jobs"] = dict(job.get("jobs") or {})
    for name, node in loaded["jobs"].items():
        component = node.get("component")
        if node.get("type") == "pipeline" and isinstance(component, str):
            path = component.removeprefix("./")
            assert path in files, f"{name}: component file {component!r} is not in the bundle"
            loaded["jobs"][name] = {**node, "component": with_components(yaml.safe_load(files[path]), files)}
    return loaded


def outputs_of(jobs: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A node's outputs; a parallel_for's are its body's, aggregated (``ParallelFor._convert_output_meta``)."""
    node = jobs.get(name) or {}
    if node.get("type") == "parallel_for":
        return outputs_of(jobs, node_of(node["body"]))
    component = node.get("component") or {}
    return (component.get("outputs") or {}) if isinstance(component, Mapping) else {}


def reference_problems(job: Mapping[str, Any], outputs: Mapping[str, Any] | None = None) -> list[str]:
    """Every dangling or undeclared reference and every cycle in a pipeline job (with its pipeline components
    read in: :func:`with_components`), or in a pipeline component, whose ``outputs`` its nodes bind."""
    problems: list[str] = []
    jobs: Mapping[str, Any] = job.get("jobs") or {}
    pipeline_inputs = set(job.get("inputs") or {})
    bound_outputs: list[str] = []
    # A parallel_for's items bind its body's inputs (their keys), so the body node leaves them unbound.
    by_items = {node_of(n["body"]): set(ITEM_KEYS) for n in jobs.values() if n.get("type") == "parallel_for"}
    for name, node in jobs.items():
        if node.get("type") in ("parallel_for", "if_else"):
            problems += _control_problems(jobs, name, node)
            # a loop inside a pipeline component may give its (aggregated) body outputs to the component's
            for key, value in (node.get("outputs") or {}).items():
                target = PARENT_OUTPUT.match(binding_of(value) or "")
                if key not in outputs_of(jobs, node_of(node["body"])):
                    problems.append(f"{name}: output {key!r} is no output of its body")
                elif outputs is None or target is None or target.group(1) not in outputs:
                    problems.append(f"{name}: output {key!r} is bound to {value!r}, no output of the enclosing "
                                    "component")
                else:
                    bound_outputs.append(target.group(1))
            continue
        component = node.get("component") or {}
        if not isinstance(component, Mapping):
            problems.append(f"{name}: component {component!r} was not read in (with_components)")
            continue
        if component.get("type") == "pipeline":
            problems += [f"{name}/{p}" for p in reference_problems(component, component.get("outputs") or {})]
        declared_in = set(component.get("inputs") or {})
        declared_out = set(component.get("outputs") or {})
        bound = dict(node.get("inputs") or {}) | dict.fromkeys(by_items.get(name, ()), "item")
        for key in sorted(set(bound) - declared_in):
            problems.append(f"{name}: input {key!r} is bound but the component does not declare it")
        for key in sorted(declared_in - set(bound)):
            problems.append(f"{name}: component input {key!r} is never bound")
        for key in sorted(set(node.get("outputs") or {}) - declared_out):
            problems.append(f"{name}: output {key!r} is set but the component does not declare it")
        for key, value in (node.get("outputs") or {}).items():
            target = PARENT_OUTPUT.match(binding_of(value) or "")
            if outputs is None or target is None or target.group(1) not in outputs:
                problems.append(f"{name}: output {key!r} is bound to {value!r}, no output of the enclosing component")
            else:
                bound_outputs.append(target.group(1))
        for key, value in bound.items():
            expression = binding_of(value)
            if expression is None:
                continue
            parent_input = PARENT_INPUT.match(expression)
            parent_output = PARENT_JOB_OUTPUT.match(expression)
            if parent_input:
                if parent_input.group(1) not in pipeline_inputs:
                    problems.append(f"{name}.{key}: ${{{{{expression}}}}} names no pipeline input")
            elif parent_output:
                upstream, output = parent_output.groups()
                if upstream not in jobs:
                    problems.append(f"{name}.{key}: ${{{{{expression}}}}} names no node")
                elif output not in outputs_of(jobs, upstream):
                    problems.append(f"{name}.{key}: ${{{{{expression}}}}} names no output of {upstream!r}")
            else:
                problems.append(f"{name}.{key}: ${{{{{expression}}}}} is not a binding pipecast emits")
        command = component.get("command", "")
        for expression in EXPRESSION.findall(command):
            kind, _, key = expression.partition(".")
            if (kind, key in (declared_in if kind == "inputs" else declared_out)) not in (("inputs", True),
                                                                                        ("outputs", True)):
                problems.append(f"{name}: the command uses ${{{{{expression}}}}}, which is no declared input or "
                                "output")
        if OPTIONAL_BLOCK.search(command):
            problems.append(f"{name}: the command holds an optional block $[[ ]]")
    for output in outputs or {}:
        if bound_outputs.count(output) != 1:
            problems.append(f"component output {output!r} is bound by {bound_outputs.count(output)} nodes, not one")
    try:
        order(job)
    except ValueError as err:
        problems.append(str(err))
    return problems


ITEM_KEYS = ("pipecast_item",)


def _control_problems(jobs: Mapping[str, Any], name: str, node: Mapping[str, Any]) -> list[str]:
    """A control node's references: its body, blocks and condition name nodes and outputs that exist."""
    problems = []
    refs = [node["body"]] if node["type"] == "parallel_for" else [*node.get("true_block", []),
                                                                   *node.get("false_block", [])]
    for ref in refs:
        if node_of(ref) not in jobs:
            problems.append(f"{name}: {ref} names no node")
    bound = node.get("items") if node["type"] == "parallel_for" else node.get("condition")
    match = PARENT_JOB_OUTPUT.match(binding_of(bound) or "")
    if match and match.group(2) not in outputs_of(jobs, match.group(1)):
        problems.append(f"{name}: {bound} names no output of {match.group(1)!r}")
    return problems


def order(job: Mapping[str, Any]) -> list[str]:
    """Node names so that every node comes after the nodes it waits for (Kahn; ValueError on a cycle)."""
    jobs: Mapping[str, Any] = job.get("jobs") or {}
    waiting = {name: [up for up in upstream_of(node) if up in jobs] for name, node in jobs.items()}
    done: list[str] = []
    remaining = dict(waiting)
    while remaining:
        ready = [name for name, ups in remaining.items() if all(up in done for up in ups)]
        if not ready:
            raise ValueError(f"the nodes {sorted(remaining)!r} wait for each other (a cycle)")
        for name in ready:
            done.append(name)
            del remaining[name]
    return done


def literal_text(value: Any) -> str:
    """A literal input value as Azure ML pastes it into a command (the REST body carries ``str(value)``)."""
    return str(value)


# The one macro Azure ML documents for the inputs of a job a schedule creates ("Use supported expressions
# in schedules": ``${{creation_context.trigger_time}}``, "String type inputs of the pipeline job"). The
# other one in that table, ``${{name}}``, is for output paths: in an input it is left as it is.
TRIGGER_TIME = "${{creation_context.trigger_time}}"


def scheduled_inputs(job: Mapping[str, Any], schedule: Mapping[str, Any], trigger_time: str) -> dict[str, Any]:
    """The pipeline inputs of a job a schedule starts at ``trigger_time``.

    The schedule's ``create_job.inputs`` override the pipeline's; an input whose whole value is the
    trigger-time macro becomes ``trigger_time``. Nothing else is substituted: any other ``${{…}}`` stays text.
    """
    inputs = {**(job.get("inputs") or {}), **(schedule["create_job"].get("inputs") or {})}
    return {name: trigger_time if value == TRIGGER_TIME else value for name, value in inputs.items()}


def resolve_command(job: Mapping[str, Any], name: str, inputs: Mapping[str, Any],
                    item: Mapping[str, Any] | None = None, outputs: Mapping[str, str] | None = None) -> str:
    """The command of node ``name`` after Azure ML's substitution, given the pipeline's input values.

    A node input bound to ``${{parent.inputs.x}}`` takes the pipeline input's value; the command's
    ``${{inputs.x}}`` is replaced by that value as text, once, left to right (a pasted value is never
    read again for expressions). Any other expression in a command fails the replay. ``item``: the values a
    parallel_for item binds to its body's inputs; ``outputs``: the path Azure ML gives each ``${{outputs.x}}``.
    """
    node = job["jobs"][name]
    values: dict[str, str] = {key: literal_text(value) for key, value in (item or {}).items()}
    for key, value in (node.get("inputs") or {}).items():
        expression = binding_of(value)
        parent_input = PARENT_INPUT.match(expression or "")
        if parent_input:
            values[key] = literal_text(inputs[parent_input.group(1)])
        elif expression is None:
            values[key] = literal_text(value)
        else:
            values[key] = f"/mnt/azureml/{name}/{key}"  # a data input: a path on the node, never read

    def substitute(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("outputs.") and outputs is not None:
            return outputs[expression.removeprefix("outputs.")]
        assert expression.startswith("inputs."), expression
        return values[expression.removeprefix("inputs.")]

    return EXPRESSION.sub(substitute, node["component"]["command"])
