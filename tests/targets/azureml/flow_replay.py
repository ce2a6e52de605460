"""Replay of Azure ML's control-flow nodes: run a pipeline job's commands here as Azure ML runs them.

Only what Azure ML (azure-ai-ml 1.35's definitions) says these nodes do:

- ``if_else`` (``ConditionNode``): its ``condition`` is a boolean output of an upstream node, which the node
  wrote to its run's properties under ``azureml.pipeline.control`` (how ``mldesigner`` writes primitive
  outputs; the replay reads them back from the fake run history, where the runtime's PATCH put them). The nodes
  of ``true_block`` run when it is true ("The list of nodes to execute when the condition is true"), those of
  ``false_block`` when it is false; the others are skipped. A value that is not a boolean fails the run.
- ``parallel_for`` (``ParallelFor``): ``items`` is a JSON list of dicts, literal or the string output of an
  upstream node; the ``body`` node runs once per item, each item's keys bound to the body's inputs
  (``_validate_items_list``), at most ``max_concurrency`` at once (here one at a time, within any bound). An
  empty list fails (``"Items is an empty list/dict."``). The loop ends when every item's run has.
- A ``type: pipeline`` body (a pipeline component, read from its file by :func:`support.with_components`) runs
  its own nodes per item (a ``parallel_for`` among them too: a map inside a map, whose items are that item's run's
  control output or a literal, and whose body may be a pipeline component too), each after the nodes its inputs are
  bound to; ``${{parent.inputs.x}}`` inside it is the component's input ``x``: what the pipeline node binds, or the
  item's value. A pipeline node binding ``${{parent.jobs.n.outputs.o}}`` reads node ``n`` of the component it is in,
  so for a body inside a body, that outer item's run of ``n``.
- A node runs after the nodes its inputs are bound to, and the blocks of an if_else after its condition. An
  ``if_else`` inside a body's component reads the control output of that item's run of its deciding node.
- A block may hold control nodes: an ``if_else`` (a condition inside a condition) or a ``parallel_for`` (a map
  inside a branch; its body belongs to the loop, not to the block). A control node in a block that was not chosen
  is skipped like any node, and a skipped ``if_else`` chooses neither of its blocks, so nothing inside it runs
  (``ConditionNode``'s blocks are "the list of nodes to execute when the condition is true/false": a node runs
  only when the if_else holding it ran and chose its block).

A node fed by a skipped node has no documented behaviour: the replay fails rather than guess (pipecast refuses
to emit one).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.helpers.replay import run_task
from tests.targets.azureml.fake_azureml import FakeAzureML
from tests.targets.azureml.support import (
    PARENT_INPUT,
    PARENT_JOB_OUTPUT,
    binding_of,
    literal_text,
    node_of,
    resolve_command,
    upstream_of,
)

CONTROL_KEY = "azureml.pipeline.control"
EXPERIMENT = "exp-1"
WORKSPACE = "subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws-1"


def _waits_for(jobs: Mapping[str, Any], name: str, blocks: Mapping[str, str]) -> list[str]:
    node = jobs[name]
    block = [blocks[name]] if name in blocks else []  # a node in a block: after the if_else that holds it
    if node.get("type") == "if_else":  # a node's control output, or (in a body) an input of the component
        source = PARENT_JOB_OUTPUT.match(binding_of(node["condition"]) or "")
        return ([source.group(1)] if source else []) + block
    if node.get("type") == "parallel_for":
        source = PARENT_JOB_OUTPUT.match(binding_of(node["items"]) or "")
        return ([source.group(1)] if source else []) + upstream_of(jobs[node_of(node["body"])]) + block
    return upstream_of(node) + block


def run_flow_job(job: Mapping[str, Any], inputs: Mapping[str, Any], service: FakeAzureML, base_url: str,
                 ca_bundle: Path) -> dict[str, str]:
    """Run every node as Azure ML would; return each node's status (Completed, Skipped)."""
    jobs: Mapping[str, Any] = job["jobs"]
    bodies = {node_of(n["body"]) for n in jobs.values() if n.get("type") == "parallel_for"}
    blocks = {node_of(ref): name for name, n in jobs.items() if n.get("type") == "if_else"
              for ref in [*n.get("true_block", []), *n.get("false_block", [])]}
    chosen: dict[str, set[str]] = {}  # if_else -> the nodes of the block it chose
    status: dict[str, str] = {}
    pending = [name for name in jobs if name not in bodies]
    while pending:
        ready = [n for n in pending if all(up in status for up in _waits_for(jobs, n, blocks))]
        assert ready, f"nodes {pending} wait for each other"
        for name in ready:
            pending.remove(name)
            if name in blocks and name not in chosen[blocks[name]]:
                status[name] = "Skipped"
                chosen[name] = set()  # a skipped if_else chooses no block: its nodes are skipped too
                continue
            ups = _waits_for(jobs, name, blocks)
            assert all(status[up] == "Completed" for up in ups if up not in chosen), \
                f"{name} is fed by a skipped node: Azure ML documents no rule for it"
            node = jobs[name]
            if node.get("type") == "if_else":
                value = _control_output(service, node["condition"])
                assert isinstance(value, bool), f"{name}: condition {value!r} is not a boolean output"
                block = node.get("true_block" if value else "false_block") or []
                chosen[name] = {node_of(ref) for ref in block}
            elif node.get("type") == "parallel_for":
                _loop(job, name, inputs, service, base_url, ca_bundle)
            else:
                _run(job, name, inputs, {}, name, base_url, ca_bundle)
            status[name] = "Completed"
    return status


def _loop(job: Mapping[str, Any], name: str, inputs: Mapping[str, Any], service: FakeAzureML, base_url: str,
          ca_bundle: Path, prefix: str = "") -> None:
    """A parallel_for node: its body once per item (``prefix``: the run of the outer item, for a loop in a body)."""
    node = job["jobs"][name]
    items = node["items"]
    listed = json.loads(_control_output(service, items, prefix) if binding_of(items) else items)
    assert isinstance(listed, list) and listed, f"{name}: items {listed!r} is not a list with items"
    for k, item in enumerate(listed):
        body = node_of(node["body"])
        if job["jobs"][body].get("type") == "pipeline":
            _run_component(job["jobs"][body], inputs, item, f"{prefix}{name}-{k}", service, base_url, ca_bundle,
                           prefix)
        else:
            _run(job, body, inputs, item, f"{prefix}{name}-{k}", base_url, ca_bundle)


def _run_component(node: Mapping[str, Any], inputs: Mapping[str, Any], item: Mapping[str, Any], run_id: str,
                   service: FakeAzureML, base_url: str, ca_bundle: Path, prefix: str = "") -> None:
    """One item of a pipeline component body: its nodes in order, its inputs bound by the node and the item.

    ``prefix``: the run of the component the node is in (an inner body's node binds its siblings' outputs there).
    """
    component = node["component"]
    values: dict[str, Any] = {}
    for key, value in (node.get("inputs") or {}).items():
        parent_input = PARENT_INPUT.match(binding_of(value) or "")
        if parent_input:
            values[key] = inputs[parent_input.group(1)]
        elif component["inputs"][key]["type"] == "boolean":  # a control output, from its node's run
            values[key] = _control_output(service, value, prefix)
        elif binding_of(value) is None:
            values[key] = literal_text(value)
        else:
            values[key] = f"/mnt/azureml/{key}"  # a data input: a path on the node, never read
    values.update(item)
    assert set(values) == set(component["inputs"]), f"component inputs {sorted(component['inputs'])} bound {values}"
    jobs = component["jobs"]
    blocks = {node_of(ref): name for name, n in jobs.items() if n.get("type") == "if_else"
              for ref in [*n.get("true_block", []), *n.get("false_block", [])]}
    chosen: dict[str, set[str]] = {}  # if_else -> the nodes of the block it chose, for this item
    status: dict[str, str] = {}
    bodies = {node_of(n["body"]) for n in jobs.values() if n.get("type") == "parallel_for"}
    pending = [name for name in jobs if name not in bodies]
    while pending:  # the same rules as the job's own nodes, within this item's run of the component
        ready = [n for n in pending if all(up in status for up in _waits_for(jobs, n, blocks))]
        assert ready, f"nodes {pending} of the body wait for each other"
        for inner in ready:
            pending.remove(inner)
            if inner in blocks and inner not in chosen[blocks[inner]]:
                status[inner] = "Skipped"
                chosen[inner] = set()
                continue
            assert all(status[up] == "Completed" for up in _waits_for(jobs, inner, blocks) if up not in chosen), \
                f"{inner} is fed by a skipped node: Azure ML documents no rule for it"
            if jobs[inner].get("type") == "if_else":  # the condition: this item's run of the deciding node
                condition = jobs[inner]["condition"]
                given = PARENT_INPUT.match(binding_of(condition) or "")
                value = values[given.group(1)] if given else _control_output(service, condition, prefix=f"{run_id}-")
                assert isinstance(value, bool), f"{inner}: condition {value!r} is not a boolean output"
                chosen[inner] = {node_of(ref) for ref in jobs[inner].get("true_block" if value else "false_block")
                                 or []}
            elif jobs[inner].get("type") == "parallel_for":  # a map inside the map: its items, this item's run
                _loop(component, inner, values, service, base_url, ca_bundle, prefix=f"{run_id}-")
            else:
                _run(component, inner, values, {}, f"{run_id}-{inner}", base_url, ca_bundle)
            status[inner] = "Completed"


def _control_output(service: FakeAzureML, binding: str, prefix: str = "") -> Any:
    """A control output of a node, from its run's properties (``prefix``: the run of a body's item)."""
    node, output = PARENT_JOB_OUTPUT.match(binding_of(binding) or "").groups()  # type: ignore[union-attr]
    published = json.loads(service.run_properties.get(prefix + node, {}).get(CONTROL_KEY, "{}"))
    assert output in published, f"node {node!r} published no control output {output!r}"
    return published[output]


def _run(job: Mapping[str, Any], name: str, inputs: Mapping[str, Any], item: Mapping[str, Any], run_id: str,
         base_url: str, ca_bundle: Path) -> None:
    node = job["jobs"][name]
    host = base_url.removeprefix("https://").rstrip("/")
    env = {**(node.get("environment_variables") or {}),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           # What Azure ML gives every job: the tracking URI, the run's ids and token (publish_azureml's inputs).
           "MLFLOW_TRACKING_URI": f"azureml://{host}/mlflow/v1.0/{WORKSPACE}", "MLFLOW_EXPERIMENT_ID": EXPERIMENT,
           "MLFLOW_RUN_ID": run_id, "AZUREML_RUN_TOKEN": "token-of-" + run_id,
           "SSL_CERT_FILE": str(ca_bundle), "NO_PROXY": "127.0.0.1,localhost"}
    run_task(["bash", "-c", resolve_command(job, name, inputs, item)], env=env)
