"""The runtime side of Airflow's control flow: publish map lists and branch choices, run one task instance.

An Airflow DAG with control flow (``pipecast/targets/airflow``) runs three kinds of TaskFlow task that call
``python -m pipecast.runtime.publish_airflow`` with one JSON payload on stdin (no value is ever on a command
line or in a Jinja template)::

    {"action": "items" | "branch" | "run", "spec": {...the task's entry...}, "run_id": ..., "params": {...},
     "item": ..., "map_index": -1, "counts": {map group: item count}}

A step in a pod (a KubernetesPodOperator task) runs ``python -m pipecast.runtime.publish_airflow --pod [ITEM]``
instead: its payload comes from the pod (:func:`pod_payload`; ``pipecast/targets/airflow/pod_flow.py``).

* ``items`` prints the map's list (parameters, constants or a step's output; zip/product by the rules of
  :mod:`pipecast.runtime.flow_plan`) as JSON on its last line: the task returns it, Airflow stores it as the
  task's XCom and expands the mapped tasks over it (dynamic task mapping). A list longer than the deployment's
  ``[core] max_map_length`` (the DAG's task reads it from Airflow's configuration into the payload's
  ``max_map_length``) fails here, saying so, where Airflow would refuse the XCom less clearly. A list that cannot
  be made fails the task after recording the map's steps failed (:func:`record_map_failure`), as ``pipecast run``
  fails them, so exit handlers and hooks read the failure.
* ``branch`` prints the index of the branch of an if/elif/else chain that runs (-1: none), for ``@task.branch``.
* ``run`` runs one step instance with ``python -m pipecast.runtime run``: the item Airflow handed the mapped task,
  item ``i`` of the same map's upstream steps, collected lists, the ``OneOf`` branch that ran, the final status
  of an exit group (from each covered step's ``meta.json``; inside a map, of its own item's instances). It exits
  with :data:`SKIP` (the task raises Airflow's skip) when a hook's event did not happen or a handler input has no
  value.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.ir import canonical_json
from pipecast.runtime import airflow_nested
from pipecast.runtime.airflow_nested import step_record
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs, now
from pipecast.runtime.flow_plan import FlowError, FlowPlan, final_status, instance_name
from pipecast.runtime.params import encode_constant

# The environment of a step in a pod (pipecast/targets/airflow/pod_flow.py writes them).
POD_SPEC_VAR, POD_MAP_INDEX_VAR, POD_COUNTS_VAR = ("PIPECAST_AIRFLOW_SPEC", "PIPECAST_AIRFLOW_MAP_INDEX",
                                                  "PIPECAST_AIRFLOW_COUNTS")
SKIP = 99  # the exit status that tells the DAG's task to raise Airflow's skip
# Airflow's [core] max_map_length default (airflow/config_templates/config.yml): used only when the payload does
# not carry the deployment's value (a DAG compiled before the publisher task read it).
MAX_MAP_LENGTH = 1024
_MARK = "\x00"


class _Skip(Exception):
    """The instance is skipped (the reason is printed in the task's log)."""


def main(stdin: str) -> int:
    """Do the payload's action; return the exit status."""
    payload = json.loads(stdin)
    action, spec = payload["action"], payload["spec"]
    if action == "items":  # a nested map's inner publisher: the flat list of (outer, inner) pairs
        try:
            items = _checked(spec, payload, airflow_nested.pairs(spec, payload)) if "outer" in spec \
                else map_items(spec, payload)
        except (Exception, SystemExit) as err:  # the list cannot be made: the map's steps fail, as in pipecast run
            error = str(err) if isinstance(err, (FlowError, SystemExit)) else f"{type(err).__name__}: {err}"
            record_map_failure(spec, payload, error)
            print(f"pipecast: the items of map {spec['group']!r} cannot be made: {error}", file=sys.stderr, flush=True)
            return 1
        _clear_map_failure(spec, payload)
        print(json.dumps(items, allow_nan=False))
        return 0
    if action == "branch":
        print(json.dumps(chosen_branch(spec, payload)))
        return 0
    try:
        argv = airflow_nested.instance_argv(spec, payload, [_substitute(arg, spec["vars"], payload) for arg in
                                                             spec["argv"]]) if "nested" in spec \
            else instance_argv(spec, payload)
    except (_Skip, airflow_nested.NestedSkip) as skip:
        print(f"skipped: {skip}")
        return SKIP
    from pipecast.runtime.__main__ import main as run_step

    return run_step(argv[3:])


def _resolver(spec: dict[str, Any], payload: dict[str, Any]) -> Any:
    def resolve(operand: ir.Operand, _path: tuple[int, ...]) -> Any:
        if operand.kind is ir.BindingKind.PARAMETER:
            return payload["params"][operand.parameter]
        if operand.kind is ir.BindingKind.OUTPUT:
            return load_outputs(spec["root"], spec["pipeline"], payload["run_id"], operand.step or "",
                                [operand.output or ""])[operand.output or ""]
        return operand.value
    return resolve


def map_items(spec: dict[str, Any], payload: dict[str, Any]) -> list[Any]:
    """The list map ``spec["group"]`` expands over, checked against Airflow's ``max_map_length``."""
    plan = FlowPlan(ir.Pipeline.from_json(spec["plan"]))
    group = plan.groups[spec["group"]]
    return _checked(spec, payload, plan.items(group, (), _resolver(spec, payload)))


def _checked(spec: dict[str, Any], payload: dict[str, Any], items: list[Any]) -> list[Any]:
    """``items`` unless longer than Airflow's ``max_map_length`` (then a clear failure of the publisher task)."""
    group = FlowPlan(ir.Pipeline.from_json(spec["plan"])).groups[spec["group"]]
    most = int(payload.get("max_map_length", MAX_MAP_LENGTH))  # the deployment's, read by the DAG's task
    if len(items) > most:
        raise SystemExit(f"map {group.name!r} ({group.location}) has {len(items)} items; Airflow expands at most "
                         f"{most} (this deployment's [core] max_map_length): return fewer items or batch several "
                         "per step, or raise [core] max_map_length (and pipecast's max_map_length setting)")
    return items


def record_map_failure(spec: dict[str, Any], payload: dict[str, Any], error: str) -> None:
    """Record the map's steps failed (``error``) as ``pipecast run`` fails them when their list cannot be made.

    Airflow marks the mapped tasks ``upstream_failed`` and they write nothing, so without these records an exit
    handler or hook would read the map as not run. ``pipecast run --continue-on-failure`` fails every step of the
    map (``FlowRunner._decide``: the step as a whole, no instances) that its trigger does not skip first
    (``FlowRunner._skip_reason``: an upstream failed, or was skipped and is not a ``OneOf`` source; a ``OneOf``
    none of whose sources ran; a handler whose input did not run), in the pipeline's order (``spec["steps"]``,
    from ``pipecast/targets/airflow/flow.py``). An upstream outside the map is read from its record; one without
    a record (still running) counts as run.
    """
    decided: dict[str, str] = {}

    def status(name: str) -> str:
        if name in decided:
            return decided[name]
        return str(step_record(spec, payload["run_id"], name).get("status", "succeeded"))

    store = ArtifactStore(spec["root"])
    for name, trigger, needs, tolerated, one_of in spec.get("steps", []):
        states = [status(u) for u in needs]
        if trigger == ir.Trigger.ALL_SUCCESS.value:
            skipped = any(s in ("failed", "cancelled") or (s == "skipped" and u not in tolerated)
                          for u, s in zip(needs, states))
        else:  # an exit handler runs whatever happened, but only with every input it reads
            skipped = any(s != "succeeded" for s in states)
        skipped = skipped or any(not any(status(s) == "succeeded" for s in sources) for sources in one_of)
        decided[name] = "skipped" if skipped else "failed"
        if not skipped:
            store.write_json(f"{store.step_dir(spec['pipeline'], payload['run_id'], name)}/meta.json",
                             {"step": name, "status": "failed", "error": error, "ended_at": now()})


def _clear_map_failure(spec: dict[str, Any], payload: dict[str, Any]) -> None:
    """Remove the records an earlier try of this publisher wrote (a task cleared in Airflow's UI and run again).

    Only on a later try: a first try has nothing to remove, and must not touch the store when its list needs
    none (a map over constants or parameters). Airflow exports the try number into the task's environment before
    it runs (``AIRFLOW_CTX_TRY_NUMBER``: airflow/sdk/execution_time/task_runner.py in 3,
    ``TaskInstance._execute_task_with_callbacks`` in 2), which the DAG's ``flow()`` passes on.
    """
    if int(os.environ.get("AIRFLOW_CTX_TRY_NUMBER") or 1) <= 1:
        return
    store = ArtifactStore(spec["root"])
    for name, *_ in spec.get("steps", []):
        path = f"{store.step_dir(spec['pipeline'], payload['run_id'], name)}/meta.json"
        if store.exists(path):
            store.fs.rm(path)


def failed_whole(spec: dict[str, Any], run_id: str, name: str) -> bool:
    """Whether mapped step ``name`` failed as a whole (its map's list could not be made: :func:`record_map_failure`)."""
    return step_record(spec, run_id, name).get("status") == "failed"


def chosen_branch(spec: dict[str, Any], payload: dict[str, Any]) -> int:
    """The place of the branch that runs in its chain (the first whose condition holds), or -1."""
    plan = FlowPlan(ir.Pipeline.from_json(spec["plan"]))
    resolve = _resolver(spec, payload)
    for index, group in enumerate(plan.chains[spec["chain"]]):
        if plan.branch_runs(group, (), resolve):
            return index
    return -1


def _status(spec: dict[str, Any], payload: dict[str, Any], covered: list[list[Any]]) -> dict[str, Any]:
    """The final status of the covered steps, from the ``meta.json`` of each instance that ran.

    A handler inside a map (its spec's ``map``) covers its own item only: map index ``i`` reads instance ``i`` of
    each covered step of that map, as ``pipecast run`` gives a handler its item's status (``FlowRunner._status``).
    """
    states = []
    for name, group, *inner in covered:  # a third element: the step is in that inner map of a nested map
        if group is None or failed_whole(spec, payload["run_id"], name):  # pipecast run: the step's own state
            names = [name]
        elif inner:
            row = payload["map_index"] if group == spec.get("map") else None
            names = airflow_nested.covered_instances(payload, name, inner[0], row)
        elif group == spec.get("map"):
            names = [instance_name(name, (payload["map_index"],))]
        else:
            names = [instance_name(name, (i,)) for i in range(payload["counts"][group])]
        states += airflow_nested.ended_badly(spec, payload["run_id"], names)
    return final_status(states)


def instance_argv(spec: dict[str, Any], payload: dict[str, Any]) -> list[str]:
    """The runtime command of this instance (raises :class:`_Skip` when it must not run)."""
    run_id, index = payload["run_id"], payload.get("map_index", -1)
    argv = [_substitute(arg, spec["vars"], payload) for arg in spec["argv"]]
    if spec.get("map") is not None:
        argv[argv.index("--step") + 1] = instance_name(argv[argv.index("--step") + 1], (index,))
    trigger = spec.get("trigger", "all_success")
    if trigger in ("on_failure", "on_success"):
        failed = _status(spec, payload, spec["covers"])["status"] != "succeeded"
        if failed != (trigger == "on_failure"):
            raise _Skip(f"the pipeline's {trigger} hook: the run {'failed' if failed else 'did not fail'}")
    _check_items(spec, payload, index)
    extra: list[str] = []
    for name, position in spec.get("items", {}).items():
        value = payload["item"] if position is None else payload["item"][position]
        extra += ["--const", f"{name}={encode_constant(canonical_json(value))}"]
    for name, (step, output) in spec.get("mapped_upstream", {}).items():
        extra += ["--upstream", f"{name}={instance_name(step, (index,))}/{output}"]
    for name, (step, output, group) in spec.get("collected", {}).items():  # the items that ran, in item order
        names = [instance_name(step, (i,)) for i in range(payload["counts"][group])]
        if "check" in spec:  # some items may have been skipped by a condition inside the map
            names = [n for n in names if step_record(spec, run_id, n).get("status") == "succeeded"]
        nested = {"items": [[n, output] for n in names]}
        extra += ["--collected", f"{name}={encode_constant(canonical_json(nested))}"]
    for name, sources in spec.get("one_of", {}).items():  # a third element: the source is in this step's map
        named = [(instance_name(s[0], (index,)) if s[2:] else s[0], s[1]) for s in sources]
        ran = [(step, output) for step, output in named if step_record(spec, run_id, step).get("status") == "succeeded"]
        if not ran:
            raise _Skip(f"input {name!r}: no branch of its OneOf ran")
        extra += ["--upstream", f"{name}={ran[0][0]}/{ran[0][1]}"]
    for name, covered in spec.get("status", {}).items():
        extra += ["--const", f"{name}={encode_constant(canonical_json(_status(spec, payload, covered)))}"]
    if trigger == "always":  # an exit handler runs whatever happened, but only with every input it reads
        _check_inputs(spec, run_id, argv + extra)
    outputs = argv.index("--output") if "--output" in argv else len(argv)
    return argv[:outputs] + extra + argv[outputs:]


def _check_items(spec: dict[str, Any], payload: dict[str, Any], index: int) -> None:
    """Skip this instance as ``pipecast run`` would: an upstream did not run, or an item condition is false.

    Airflow runs the task when no upstream failed (``none_failed``), so a skipped item upstream reaches here (its
    item ``index`` in the same map); an instance Airflow itself skipped wrote no meta.json.
    """
    run_id = payload["run_id"]
    for step, mode, group in spec.get("check", []):
        if mode == "item":
            name = instance_name(step, (index,))
            status = step_record(spec, run_id, name).get("status", "skipped")
            if status != "succeeded":
                raise _Skip(f"upstream {name!r} {status}")
        elif mode == "items":
            statuses = {step_record(spec, run_id, instance_name(step, (i,))).get("status", "skipped")
                        for i in range(payload["counts"][group])}
            if statuses == {"skipped"}:
                raise _Skip(f"upstream step {step!r} was skipped")
        elif step_record(spec, run_id, step).get("status", "skipped") != "succeeded":
            raise _Skip(f"upstream step {step!r} was skipped")
    conditions = spec.get("conditions")
    if not conditions:
        return
    plan = FlowPlan(ir.Pipeline.from_json(conditions["plan"]))
    outer = _resolver(spec, payload)

    def resolve(operand: ir.Operand, path: tuple[int, ...]) -> Any:
        if operand.kind is ir.BindingKind.ITEM:
            return payload["item"] if operand.index is None else payload["item"][operand.index]
        if operand.kind is ir.BindingKind.OUTPUT and operand.step in conditions["mapped"]:
            name = instance_name(operand.step or "", path)
            return load_outputs(spec["root"], spec["pipeline"], run_id, name, [operand.output or ""])[
                operand.output or ""]
        return outer(operand, path)

    for name in conditions["groups"]:
        group = plan.groups[name]
        if not plan.branch_runs(group, (index,), resolve):
            why = "an earlier branch ran" if group.condition is None or plan.holds(
                group.condition, (index,), resolve) else f"`{group.condition}` is false"
            raise _Skip(f"{group.label or 'if'} branch {group.name!r}: {why}")


def _check_inputs(spec: dict[str, Any], run_id: str, argv: list[str]) -> None:
    refs = [argv[i + 1].partition("=")[2].rpartition("/")[0] for i, arg in enumerate(argv) if arg == "--upstream"]
    for ref in refs:
        if step_record(spec, run_id, ref).get("status") != "succeeded":
            raise _Skip(f"the exit handler reads an output of step {ref!r}, which has no value")


def _substitute(arg: str, variables: dict[str, list[str]], payload: dict[str, Any]) -> str:
    """An argument with its run-id and parameter markers replaced by this run's values, as the runtime reads them."""
    pieces = arg.split(_MARK)
    for i in range(1, len(pieces), 2):
        if pieces[i] == "PIPECAST_RUN_ID":
            pieces[i] = payload["run_id"]
        else:
            name, kind = variables[pieces[i]]
            value = payload["params"][name]
            pieces[i] = value if kind == "str" else json.dumps(value)
    return "".join(pieces)


def pod_payload(args: list[str], env: Mapping[str, str]) -> dict[str, Any]:
    """The payload of a step in a pod (see the module's docstring).

    The spec, map index and map sizes come from its environment (Airflow rendered the last two for this
    instance), the run id and parameters as every pod task gets them, the item (JSON) from its argument.
    """
    spec = json.loads(env[POD_SPEC_VAR])
    params = {}
    for variable, (name, kind) in spec["vars"].items():
        value = env[variable]
        params[name] = value if kind == "str" else json.loads(value)
    return {"action": "run", "spec": spec, "run_id": env["PIPECAST_RUN_ID"], "params": params,
            "item": json.loads(args[0]) if args else None, "map_index": int(env.get(POD_MAP_INDEX_VAR, "-1")),
            "counts": json.loads(env.get(POD_COUNTS_VAR, "{}"))}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pod"]:
        sys.exit(main(json.dumps(pod_payload(sys.argv[2:], os.environ))))
    sys.exit(main(sys.stdin.read()))
