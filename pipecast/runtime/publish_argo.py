"""Argo Workflows: publish decision values as output parameters, and bind map items, OneOf and final statuses.

**Publisher tasks.** ``python -m pipecast.runtime.publish_argo`` runs as its own small DAG task (no user code):
it loads the values a condition or a map reads (pipeline parameters as Argo substitutes them, outputs from the
artifact store, constants) and writes each as one file under :data:`OUT_DIR`, which the task's
``outputs.parameters[].valueFrom.path`` hands to Argo. Argo then evaluates ``when`` and expands ``withParam``
itself (workflow/controller/dag.go ``executeDAGTask``, ``expandTask``):

    --param NAME=TYPE:TEXT  --upstream NAME=STEP/OUTPUT  --const NAME=ENCODED   (as the runtime reads them)
    --decision NAME     write value NAME as a govaluate literal (numbers and booleans only)
    --branch K=COND     one per branch of an if/elif/else chain, in order (COND: the IR's condition as
                        percent-encoded JSON, ``-`` for an else); write ``branch``: the first K whose condition
                        holds with ``pipecast run``'s rules (FlowPlan.holds, parameters as ``--param NAME``),
                        or -1 when none does
    --argo-flow PLAN --argo-flow-param NAME=TYPE:TEXT  --at I,J
                        inside a map: the Workflow's plan (percent-encoded compact IR, as ``--argo-flow`` below) and
                        the item path; ``--upstream`` then reads the instance of this item (``step[I]``) and
                        ``--branch`` resolves its operands (map items too) there
    --map GROUP         write ``items``: the indices of map GROUP's items at the path (zip, product)

A decision is written as a number or ``true``/``false`` and nothing else, so the text Argo splices into the
``when`` expression can never change its structure (Argo substitutes the text, then parses it with govaluate:
workflow/controller/steps.go ``shouldExecute``). A chain with an elif, or with a comparison govaluate would read
differently from Python (text: it turns unquoted words into strings and date-like text into times; lists; mixed
types), is decided here, and only the branch's number reaches ``when`` (``{{...branch}} == K``: one test per
branch, so the Workflow grows linearly with the chain). A map's items are its indices (``[0, 1, 2]``), never the
values: an item's value then never passes through Argo's templating, and each item task runs as instance
``step[i]``, the name ``pipecast run`` gives it. A value over :data:`MAX_PARAMETER_BYTES` fails the task
before Argo stores it in the Workflow's status.

**Step options** (``python -m pipecast.runtime run``; a map body's task passes ``--step step[I][J]`` with the
indices of the body's inputs substituted by Argo)::

    --argo-flow PLAN --argo-flow-param NAME=TYPE:TEXT...
                                             the Workflow's plan (its parameter ``pipecast-flow``, written once;
                                             past 100 KiB the step's own part, percent-encoded):
                                             the runtime binds the item of ``step[i]``, item ``i`` of a chained
                                             step and fan-ins (the items that ran, in item order; a list per outer
                                             item of a nested map) by :class:`~pipecast.runtime.inline_flow.InlineStep`
    --argo-one-of INPUT=STEP/OUTPUT,...      the output of whichever branch ran (the one the store holds)
    --argo-status INPUT=PHASE                the final status; PHASE is Argo's (tasks.X.status, workflow.status)
    --argo-covers JSON                       the steps that status covers (their records in the store)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import urllib.parse
from decimal import Decimal
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.ir import canonical_json
from pipecast.errors import PipecastError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.executor import StepInvocation, Upstream, load_outputs
from pipecast.runtime.flow_plan import FlowPlan, final_status, instance_name
from pipecast.runtime.params import decode_constant, decode_parameter
from pipecast.runtime.process import Cancellation

OUT_DIR = "/tmp/pipecast-argo"  # inside the task's own container
# A scheduled pipeline's steps get $PIPECAST_LOGICAL_TIME = this tag. Argo's controller sets it from the Workflow's
# workflows.argoproj.io/scheduled-time annotation, which only its cron controller (ConvertCronWorkflowToWorkflow-
# WithProperties, workflow/common/convert.go) and `argo submit --scheduled-time` write (operator.go
# setGlobalParameters); in any other Workflow the tag is left as written (SubstituteParams: allowUnresolved), so
# the runtime reads exactly this text as "no logical time".
SCHEDULED_TIME = "{{workflow.scheduledTime}}"
# Argo keeps every output parameter in the Workflow's status (one etcd object, at most 1 MiB with everything
# else in it); a value past this share of it is refused here, with the reason, instead of failing the Workflow.
MAX_PARAMETER_BYTES = 256 * 1024
NUMBER_EXACT = 2**53  # govaluate's numbers are float64
_INDEX = re.compile(r"\[(\d+)\]")
NO_BRANCH = -1  # ``branch`` when no branch of the chain runs (no `when` compares with it)


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The runtime's ``--argo-*`` options."""
    for flag in ("--argo-one-of", "--argo-status", "--argo-flow-param"):
        run.add_argument(flag, action="append", default=[])
    run.add_argument("--argo-covers", default="[]")
    run.add_argument("--argo-flow", default=None)


def flow(plan_text: str, param_specs: list[str], inv: StepInvocation, step: str) -> Any:
    """The resolver of ``--argo-flow``, seen from ``step``.

    It reads the plan's maps and conditions from the artifact store by the rules ``pipecast run`` follows
    (:class:`pipecast.runtime.inline_flow.InlineStep`).
    """
    from pipecast.runtime.inline_flow import InlineStep  # it imports the runtime's command line, which imports us

    plan = ir.Pipeline.from_json(urllib.parse.unquote(plan_text))
    params = {}
    for spec in param_specs:
        name, _, typed = spec.partition("=")
        kind, _, text = typed.partition(":")
        params[name] = decode_parameter(kind, text)
    return InlineStep(plan, params, dataclasses.replace(inv, step=step), Cancellation())


def instance_path(instance: str) -> tuple[str, tuple[int, ...]]:
    """``("train", (2, 0))`` for instance ``train[2][0]`` (Argo substituted the indices into the name)."""
    path = tuple(int(i) for i in _INDEX.findall(instance))
    return instance[:instance.index("[")] if path else instance, path


def _bind_items(inv: StepInvocation, ns: argparse.Namespace) -> StepInvocation:
    return bind_instance(inv, ns.argo_flow, ns.argo_flow_param)


def bind_instance(inv: StepInvocation, plan_text: str, param_specs: list[str]) -> StepInvocation:
    """Bind the item, chained items (item ``i`` of the step before) and fan-ins of instance ``step[i]``.

    ``plan_text``: the percent-encoded compact plan; ``param_specs``: ``NAME=TYPE:TEXT`` of the parameters it reads.
    Any engine whose step knows its instance name (``step[i][j]``) binds it so (Argo, Azure ML).
    """
    name, path = instance_path(inv.step)
    resolver = flow(plan_text, param_specs, inv, name)
    maps = resolver.plan.maps[name]
    if len(path) != len(maps):
        raise PipecastError(f"step {inv.step!r} is inside {len(maps)} map(s), but its task gave {len(path)} item "
                            "indices")
    values, upstream = dict(inv.values), dict(inv.upstream)
    for binding in resolver.step.bindings:
        source = binding.step or ""
        if binding.kind is ir.BindingKind.OUTPUT:
            upstream[binding.input] = Upstream(instance_name(source, path[:len(resolver.plan.maps[source])]),
                                               binding.output or "")
        elif binding.kind is ir.BindingKind.ITEM:
            values[binding.input] = resolver.resolve(
                ir.Operand(kind=binding.kind, group=binding.group, index=binding.index), path)
        elif binding.kind is ir.BindingKind.COLLECTED:  # the items that ran, in item order (as pipecast run)
            shared = next((k for k, (a, b) in enumerate(zip(resolver.plan.maps[source], maps)) if a != b),
                          min(len(resolver.plan.maps[source]), len(maps)))
            upstream[binding.input] = resolver.collect(source, binding.output or "", path[:shared])
    return dataclasses.replace(inv, values=values, upstream=upstream)


def apply(inv: StepInvocation, ns: argparse.Namespace) -> StepInvocation:
    """The invocation with its map item, collected lists, OneOf source and final status bound."""
    if os.environ.get(LOGICAL_TIME_VAR) == SCHEDULED_TIME:  # not a scheduled run: no logical time (see above)
        os.environ[LOGICAL_TIME_VAR] = ""
    if ns.argo_flow:
        inv = _bind_items(inv, ns)
    values, upstream = dict(inv.values), dict(inv.upstream)
    _, path = instance_path(inv.step)  # inside a map: this item's instances (as pipecast run reads them)
    depth = _depths(ns)
    for spec in ns.argo_one_of:
        name, _, sources = spec.partition("=")
        upstream[name] = _branch_that_ran(inv, name, [instance_name(s.rpartition("/")[0], path[:depth(
            s.rpartition("/")[0])]) + "/" + s.rpartition("/")[2] for s in sources.split(",")])
    if ns.argo_status:
        status = store_status(inv, json.loads(ns.argo_covers), path)
        for spec in ns.argo_status:
            name, _, phase = spec.partition("=")
            values[name] = with_phase(status, phase)
    if values == inv.values and upstream == inv.upstream:
        return inv
    return dataclasses.replace(inv, values=values, upstream=upstream)


def _depths(ns: argparse.Namespace) -> Any:
    """How many maps enclose a step (from ``--argo-flow``'s plan; 0 without one)."""
    if not ns.argo_flow:
        return lambda step: 0
    maps = FlowPlan(ir.Pipeline.from_json(urllib.parse.unquote(ns.argo_flow))).maps
    return lambda step: len(maps.get(step, ()))


def _branch_that_ran(inv: StepInvocation, name: str, sources: list[str]) -> Upstream:
    store = ArtifactStore(inv.artifact_root)
    for source in sources:
        step, _, output = source.rpartition("/")
        meta_path = f"{store.step_dir(inv.pipeline, inv.run_id, step)}/meta.json"
        if store.exists(meta_path) and store.read_json(meta_path).get("status") == "succeeded":
            return Upstream(step, output)
    raise PipecastError(f"step {inv.step!r}: input {name!r} is OneOf({', '.join(sources)}), and none of them has "
                        "a result in this run")


def store_status(inv: StepInvocation, steps: list[str], path: tuple[int, ...] = ()) -> dict[str, Any]:
    """The final status of ``steps`` from their records in the artifact store (items ``step[i]`` in order).

    A step (or item) with no record did not run: it was skipped or omitted. A handler inside a map (``path``:
    its item) covers that item's instances only, as ``pipecast run`` gives it.
    """
    store = ArtifactStore(inv.artifact_root)
    states: list[tuple[str, str, str | None]] = []

    def record(name: str) -> bool:
        path = f"{store.step_dir(inv.pipeline, inv.run_id, name)}/meta.json"
        if not store.exists(path):
            return False
        meta = store.read_json(path)
        status = meta.get("status")
        status = status if status in ("succeeded", "cancelled") else "failed"
        error = None
        if status == "failed":  # the words pipecast run's report uses (StepFailedError in executor.py)
            attempt = int(meta.get("attempt") or 1)
            error = f"step {name!r} failed after {attempt} tr{'y' if attempt == 1 else 'ies'}: " \
                    f"{meta.get('error') or 'it ended without a result'}"
        states.append((name, status, error))
        return True

    for step in (instance_name(s, path) for s in steps):
        if not record(step):
            index = 0
            while record(f"{step}[{index}]"):
                index += 1
    return final_status(states)


def with_phase(status: dict[str, Any], phase: str) -> dict[str, Any]:
    """``status`` made to agree with Argo's phase: a group Argo failed (a pod that never wrote a record) failed."""
    if phase in ("Failed", "Error") and status["status"] == "succeeded":
        return {**status, "status": "failed", "error": f"Argo ended it with phase {phase}"}
    return status


def govaluate_literal(name: str, value: Any) -> str:
    """``value`` as a govaluate literal: ``true``/``false`` or a plain decimal number; PipecastError otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) <= NUMBER_EXACT:
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        # govaluate reads digits and '.' only (no exponent): write the float's exact shortest decimal out.
        return format(Decimal(repr(value)), "f")
    raise PipecastError(f"decision value {name!r} is {type(value).__name__} {value!r:.80}; Argo's `when` compares "
                        f"numbers (exact up to 2**53) and booleans only")


def chosen_branch(ns: argparse.Namespace, values: dict[str, Any], resolver: Any = None, path: tuple[int, ...] = ()
                  ) -> int:
    """The place of the chain's branch that runs (the first whose condition holds, as ``pipecast run``), or -1.

    Inside a map, ``resolver`` (:func:`flow`) gives the operands at item ``path``: items, and instances of outputs.
    """
    loaded: dict[tuple[str, str], Any] = {}

    def resolve(operand: ir.Operand, _path: tuple[int, ...]) -> Any:
        if operand.kind is ir.BindingKind.PARAMETER:
            return values[operand.parameter or ""]
        if operand.kind is ir.BindingKind.OUTPUT:
            key = (operand.step or "", operand.output or "")
            if key not in loaded:  # many branches may read one output: load it once
                loaded[key] = load_outputs(ns.artifact_root, ns.pipeline, ns.run_id, key[0], [key[1]])[key[1]]
            return loaded[key]
        if operand.kind is ir.BindingKind.CONSTANT:
            return operand.value
        raise PipecastError(f"a condition of this chain reads {operand.kind.value}, which this task cannot load")

    plan = FlowPlan(ir.Pipeline(name=ns.pipeline))  # holds() needs no group of the pipeline
    if resolver is not None:
        resolve = resolver.resolve
    for spec in ns.branch:
        place, _, text = spec.partition("=")
        if text == "-" or plan.holds(ir._from_plain(ir.Condition, decode_constant(text)), path, resolve):
            return int(place)
    return NO_BRANCH


def _write(directory: str, name: str, text: str) -> None:
    size = len(text.encode("utf-8"))
    if size > MAX_PARAMETER_BYTES:
        raise PipecastError(f"output parameter {name!r} would be {size} bytes; Argo keeps output parameters in the "
                            f"Workflow's status (at most 1 MiB in all), so pipecast publishes at most "
                            f"{MAX_PARAMETER_BYTES} bytes: map over fewer items, or batch them")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "w", encoding="utf-8") as file:
        file.write(text)


def publish(argv: list[str]) -> None:
    """Load the values named in ``argv`` and write the decisions and the map's items (see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m pipecast.runtime.publish_argo")
    for flag in ("--pipeline", "--run-id", "--artifact-root"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--out", default=OUT_DIR)
    for flag in ("--param", "--upstream", "--const", "--decision", "--branch", "--argo-flow-param"):
        parser.add_argument(flag, action="append", default=[])
    for flag in ("--argo-flow", "--map", "--at"):
        parser.add_argument(flag, default=None)
    ns = parser.parse_args(argv)
    path = tuple(int(i) for i in (ns.at or "").split(",") if i)
    resolver = None
    if ns.argo_flow:
        near = ir.Pipeline.from_json(urllib.parse.unquote(ns.argo_flow)).steps[0]  # any step: it resolves groups
        inv = StepInvocation(function=str(near.function), pipeline=ns.pipeline, step=near.name, run_id=ns.run_id,
                             artifact_root=ns.artifact_root)
        resolver = flow(ns.argo_flow, ns.argo_flow_param, inv, near.name)
    values: dict[str, Any] = {}
    for spec in ns.param:
        name, _, typed = spec.partition("=")
        kind, _, text = typed.partition(":")
        values[name] = decode_parameter(kind, text)
    for spec in ns.const:
        name, _, encoded = spec.partition("=")
        values[name] = decode_constant(encoded)
    for spec in ns.upstream:
        name, _, ref = spec.partition("=")
        step, _, output = ref.rpartition("/")
        if resolver is not None:  # inside a map: the instance of this item
            step = instance_name(step, path[:len(resolver.plan.maps.get(step, ()))])
        values[name] = load_outputs(ns.artifact_root, ns.pipeline, ns.run_id, step, [output])[output]
    if ns.map and resolver is None:
        raise PipecastError("--map reads the map's items through --argo-flow, which is missing")
    for name in ns.decision:
        _write(ns.out, name, govaluate_literal(name, values[name]))
    if ns.branch:
        _write(ns.out, "branch", str(chosen_branch(ns, values, resolver, path)))
    if ns.map is not None and resolver is not None:
        count = len(resolver.map_items(ns.map, path))
        _write(ns.out, "items", canonical_json(list(range(count))))


def main(argv: list[str] | None = None) -> int:
    """Publish, and return the exit status (2 with one clear line for a value Argo cannot take)."""
    try:
        publish(sys.argv[1:] if argv is None else argv)
    except PipecastError as err:
        print(f"pipecast: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
