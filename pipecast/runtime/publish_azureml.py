"""Azure ML: publish a step's decision values as control outputs, and bind a ``parallel_for`` item.

Azure ML's ``if_else`` node reads a boolean *control output* of an upstream node, and a ``parallel_for`` node
can iterate a string output holding JSON. A command node produces such primitive outputs by writing them to its
run's properties in the run history, under the key ``azureml.pipeline.control`` as one JSON object
``{"OUTPUT": value, ...}``: this is what Microsoft's ``mldesigner`` does for a component's primitive outputs
(``ExecutorBase.finalize`` → ``_write_properties_to_run_history``: a ``PATCH`` of
``{history}/history/v1.0/.../experimentids/{experiment}/runs/{run}`` with ``{"runId", "properties"}``, the host
taken from MLflow's tracking URI with ``mlflow/v1.0`` replaced by ``history/v1.0``). pipecast does the same
request without MLflow, from what Azure ML gives a job: ``MLFLOW_TRACKING_URI`` (``azureml://HOST/mlflow/...``),
``MLFLOW_EXPERIMENT_ID``, ``MLFLOW_RUN_ID`` and the run token ``AZUREML_RUN_TOKEN`` (read the same way by
Microsoft's ``azureml-rag``, ``AzureMLRunCredential``).

A run property value holds at most 1,000 characters (Azure ML's limits, https://aka.ms/azure-machine-learning-limits,
as ``mldesigner`` checks them for its early outputs): a larger JSON object fails the step here, naming the size.

Runtime options (see :mod:`pipecast.runtime.command`)::

    --azureml-if NAME=JSON         after the step: publish NAME, whether a branch runs (JSON: the conditions of
                                   the earlier branches and its own, ``{"earlier": [...], "own": ...}``)
    --azureml-value PARAM=TYPE:TEXT   a pipeline parameter a condition reads, as Azure ML pastes it
    --azureml-items OUTPUT         after the step: publish pipecast_items_OUTPUT, the parallel_for items
                                   ``[{"pipecast_item": 0}, ...]`` of list output OUTPUT
    --azureml-index TEXT           the parallel_for item this node runs (Azure ML pastes ``${{inputs.pipecast_item}}``)
    --azureml-item INPUT=COMBINE:WHICH, --azureml-collect INPUT=COMBINE:STEP/OUTPUT
                                   a map's item and a mapped step's results (as :func:`publish_github.with_map_values`)
    --azureml-flow PLAN --azureml-flow-param NAME=TYPE:TEXT
                                   a step of a nested map, or one reading it: the plan (percent-encoded compact IR)
                                   binds instance ``step[i][j]``'s items, chained items and fan-ins (a list per
                                   outer item) by ``pipecast run``'s rules (:func:`publish_argo.bind_instance`);
                                   Azure ML pastes the indices into ``--step``
    --azureml-output NAME=PATH     after the step: write typed output NAME (a Model, Dataset, Metrics or Artifact)
                                   to PATH, the node's Azure ML output of the same name (``${{outputs.NAME}}``)
    --azureml-mlflow               after the step (also a failed one): send its metrics and log_metadata values to
                                   the job's MLflow run (see :mod:`pipecast.runtime.azureml_mlflow`)
    --azureml-logical-time TEXT    the run's schedule trigger time as Azure ML pasted it, or ``none`` (not scheduled)

**Typed outputs** (issue 17). A Model, Dataset or Artifact output is also a folder output of the node
(``custom_model``/``uri_folder``), a Metrics output a ``uri_file``: Azure ML gives the command the output's path
(``${{outputs.NAME}}``, mounted read-write by default, "Access data in a job", how-to-read-write-data-v2) and
uploads what is there when the node ends, so the studio lists it with the job's outputs. The runtime copies the
stored file or folder there (checked against its sha256), also on a cache hit; a Metrics output is its
metrics as one JSON object. pipecast's artifact store stays the source the next steps read.

A map over a pipeline parameter gets the items from a small node of its own (Azure ML's expressions cannot count
a list): ``python -m pipecast.runtime.publish_azureml items TYPE TEXT`` publishes ``pipecast_items`` for the
parameter's value as Azure ML pastes it. An inner map whose items only its outer item's run can count (the
outer item itself, a parameter, a step outside the outer map) gets them from a node of the outer body's component:
``python -m pipecast.runtime.publish_azureml items-at --group MAP --at I ...`` (:func:`inner_items`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import PipecastError
from pipecast.runtime.checks import check_substituted
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.executor import StepInvocation, load_outputs
from pipecast.runtime.params import decode_parameter

CONTROL_KEY = "azureml.pipeline.control"
MAX_PROPERTY_CHARS = 1000
ITEM_INPUT = "pipecast_item"
ITEMS_PREFIX = "pipecast_items_"
# The logical time input's value in a job no schedule made. Not "": Azure ML refuses an empty literal input
# ("The Value field is required", Azure/azure-sdk-for-python#41834) and azure-ai-ml drops falsy inputs
# (``entities/_builders/pipeline.py`` ``_to_job``).
NO_LOGICAL_TIME = "none"


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The runtime's ``--azureml-*`` options."""
    for flag in ("--azureml-if", "--azureml-value", "--azureml-items", "--azureml-item", "--azureml-collect",
                 "--azureml-output", "--azureml-flow-param"):
        run.add_argument(flag, action="append", default=[])
    run.add_argument("--azureml-flow", default=None)
    run.add_argument("--azureml-index", default=None)
    run.add_argument("--azureml-mlflow", action="store_true")
    run.add_argument("--azureml-logical-time", default=None)


def set_logical_time(text: str) -> None:
    """Hand the schedule's trigger time, as Azure ML substituted it, to the step (``$PIPECAST_LOGICAL_TIME``).

    :data:`NO_LOGICAL_TIME` leaves the variable alone (a job no schedule made). Anything else is the step's
    logical time: the runtime parses it as ISO 8601 and refuses other text, or a macro left unsubstituted
    (:func:`pipecast.runtime.checks.check_substituted`), with a ``ContextError``.
    """
    if text != NO_LOGICAL_TIME:
        os.environ[LOGICAL_TIME_VAR] = text


def apply(invocation: StepInvocation, ns: argparse.Namespace) -> StepInvocation:
    """The invocation with its map item (and instance name) and collected results bound."""
    if ns.azureml_logical_time is not None:
        set_logical_time(ns.azureml_logical_time)
    if ns.azureml_flow:
        from pipecast.runtime.publish_argo import bind_instance

        check_substituted("--step", invocation.step, "the node cannot know its item")
        return bind_instance(invocation, ns.azureml_flow, ns.azureml_flow_param)
    if not (ns.azureml_item or ns.azureml_collect):
        return invocation
    from pipecast.runtime.publish_github import with_map_values

    index = None
    if ns.azureml_index is not None:
        try:
            index = int(ns.azureml_index)
        except ValueError:
            raise PipecastError(f"--azureml-index {ns.azureml_index!r} is not an item number") from None
    return with_map_values(invocation, ns.azureml_item, ns.azureml_collect, index=index)


def publish_specs(ns: argparse.Namespace) -> tuple[str, ...]:
    """What to publish after the step: ``if:``, ``value:``, ``items:``, ``output:`` specs, ``mlflow:`` (TryOptions)."""
    return tuple([f"if:{s}" for s in ns.azureml_if] + [f"value:{s}" for s in ns.azureml_value]
                 + [f"items:{s}" for s in ns.azureml_items] + [f"output:{s}" for s in ns.azureml_output]
                 + (["mlflow:"] if ns.azureml_mlflow else []))


def publish(invocation: StepInvocation, specs: Sequence[str], environ: Mapping[str, str] | None = None) -> None:
    """Write the step's control outputs to its run's properties (after the step succeeded)."""
    environ = os.environ if environ is None else environ
    kinds: dict[str, list[str]] = {"if": [], "value": [], "items": [], "output": [], "mlflow": []}
    for spec in specs:
        kind, _, rest = spec.partition(":")
        kinds[kind].append(rest)
    for spec in kinds["output"]:
        name, _, path = spec.partition("=")
        write_output(invocation, name, path)
    if kinds["mlflow"]:
        send_metrics(invocation, environ)
    if not (kinds["if"] or kinds["items"]):
        return
    values = {}
    for spec in kinds["value"]:
        name, _, typed = spec.partition("=")
        kind, _, text = typed.partition(":")
        values[name] = decode_parameter(kind, text)
    outputs = control_outputs(invocation, kinds["if"], values, kinds["items"])
    write_properties({CONTROL_KEY: control_text(outputs)}, environ)


def control_outputs(invocation: StepInvocation, branches: Sequence[str], parameters: Mapping[str, Any],
                    lists: Sequence[str]) -> dict[str, Any]:
    """The control outputs: each branch's decision (a boolean) and each map's items (JSON text)."""
    from pipecast.runtime.flow_plan import FlowPlan

    plan = FlowPlan(ir.Pipeline(name=invocation.pipeline))
    loaded: dict[tuple[str, str], Any] = {}

    def resolve(operand: ir.Operand, _path: tuple[int, ...]) -> Any:
        if operand.kind is ir.BindingKind.PARAMETER:
            return parameters[operand.parameter or ""]
        if operand.kind is ir.BindingKind.OUTPUT:
            # A step in a map's body decides for its own item: its outputs are instance ``step[i]``'s.
            own = invocation.step.partition("[")[0] == operand.step
            key = (invocation.step if own else operand.step or "", operand.output or "")
            if key not in loaded:
                loaded[key] = load_outputs(invocation.artifact_root, invocation.pipeline, invocation.run_id,
                                           key[0], [key[1]])[key[1]]
            return loaded[key]
        if operand.kind is ir.BindingKind.ITEM:  # the step's own item: the input that holds it
            which = f"{operand.group}:{'-' if operand.index is None else operand.index}"
            return invocation.values[items[which]]
        return operand.value

    outputs: dict[str, Any] = {}
    items: dict[str, str] = {}
    for spec in branches:
        name, _, encoded = spec.partition("=")
        chain = json.loads(encoded)
        items.update(chain.get("items", {}))
        earlier = [ir._from_plain(ir.Condition, c) for c in chain["earlier"]]
        own = None if chain["own"] is None else ir._from_plain(ir.Condition, chain["own"])
        runs = not any(plan.holds(c, (), resolve) for c in earlier)
        outputs[name] = runs and (own is None or plan.holds(own, (), resolve))
    for name in lists:
        value = load_outputs(invocation.artifact_root, invocation.pipeline, invocation.run_id, invocation.step,
                             [name])[name]
        outputs[ITEMS_PREFIX + name] = items_of(f"output {name!r}", value)
    return outputs


def write_output(invocation: StepInvocation, name: str, path: str) -> None:
    """Copy typed output ``name`` of the step from the artifact store to its Azure ML output's ``path``."""
    from pathlib import Path

    from pipecast.runtime import paths
    from pipecast.runtime.artifacts import ArtifactStore

    store = ArtifactStore(invocation.artifact_root)
    folder = store.step_dir(invocation.pipeline, invocation.run_id, invocation.step)
    record = (store.read_json(f"{folder}/meta.json").get("outputs") or {}).get(name)
    what = f"step {invocation.step!r} output {name!r}"
    if not record or not record.get("artifact"):
        raise PipecastError(f"{what} is not a typed artifact in this run's record; compile the pipeline again")
    target = Path(path)
    if record["artifact"] == "Metrics":  # a uri_file: the metrics as one JSON object
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record.get("metrics") or {}, sort_keys=True), encoding="utf-8")
    elif record.get("materializer") == paths.MATERIALIZER:  # a file or folder the step wrote: into the folder
        paths.download(store, folder, record, target, what)
    else:  # a value a materializer stored: its file, in the folder
        stored = store.file_in(folder, record["file"])
        paths.download_file(store, stored, record["sha256"], target / record["file"].rsplit("/", 1)[-1], what)


def send_metrics(invocation: StepInvocation, environ: Mapping[str, str] | None = None) -> None:
    """Send the step's metrics and metadata, as its ``meta.json`` records them, to the job's MLflow run."""
    from pipecast.runtime.artifacts import ArtifactStore
    from pipecast.runtime.azureml_mlflow import forward

    store = ArtifactStore(invocation.artifact_root)
    folder = store.step_dir(invocation.pipeline, invocation.run_id, invocation.step)
    try:
        meta = store.read_json(f"{folder}/meta.json")
    except (OSError, ValueError) as err:  # a step that failed before its record: nothing logged to send
        print(f"pipecast: warning: step {invocation.step!r}: no record to send to the Azure ML job's MLflow run "
              f"({err})", file=sys.stderr)
        return
    forward(invocation.step, meta, environ)


def items_of(name: str, value: Any) -> str:
    """The parallel_for items of a list: ``[{"pipecast_item": 0}, ...]`` as JSON text."""
    if not isinstance(value, list):
        raise PipecastError(f"{name} is {type(value).__name__} {value!r:.80}; a map iterates it, so it must be a list")
    if not value:
        raise PipecastError(f"{name} is an empty list; Azure ML refuses a parallel_for without items")
    return json.dumps([{ITEM_INPUT: i} for i in range(len(value))], separators=(",", ":"))  # compact: more fit


def control_text(outputs: Mapping[str, Any]) -> str:
    """The property's value: the outputs as one JSON object, checked against Azure ML's size limit."""
    text = json.dumps(dict(outputs), separators=(",", ":"))
    if len(text) > MAX_PROPERTY_CHARS:
        raise PipecastError(f"the control outputs {sorted(outputs)} take {len(text)} characters as JSON; Azure ML "
                            f"keeps at most {MAX_PROPERTY_CHARS} per run property, where if_else and parallel_for "
                            "read them. Map over fewer items (batch several per item) or return a smaller list")
    return text


def history_url(environ: Mapping[str, str]) -> str:
    """The run-history URL of this node's run, from the variables Azure ML sets in a job."""
    missing = [v for v in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "AZUREML_RUN_TOKEN")
               if not environ.get(v)]
    if missing:
        raise PipecastError(f"cannot publish Azure ML control outputs: {', '.join(missing)} not set (Azure ML sets "
                            "them in every job of a pipeline; this command runs only there)")
    tracking = environ["MLFLOW_TRACKING_URI"]
    if tracking.startswith("azureml://"):
        tracking = "https://" + tracking.removeprefix("azureml://")
    host = tracking.replace("mlflow/v2.0", "mlflow/v1.0").replace("mlflow/v1.0", "history/v1.0").rstrip("/")
    return f"{host}/experimentids/{environ['MLFLOW_EXPERIMENT_ID']}/runs/{environ['MLFLOW_RUN_ID']}"


def write_properties(properties: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """``PATCH`` the run's properties, as ``mldesigner`` does; a refusal fails the step with the service's answer."""
    import urllib.request

    url = history_url(environ)
    body = json.dumps({"runId": environ["MLFLOW_RUN_ID"], "properties": dict(properties)}).encode()
    request = urllib.request.Request(url, data=body, method="PATCH", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {environ['AZUREML_RUN_TOKEN']}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            answer.read()
    except OSError as err:  # urllib's HTTPError and URLError are OSErrors
        raise PipecastError(f"Azure ML refused the control outputs ({url}): {err}") from None



def inner_items(argv: Sequence[str]) -> str:
    """The items of an inner map at its outer item (``items-at``), counted by ``pipecast run``'s rules.

    ``--group MAP --at I --pipeline P --run-id R --artifact-root A --azureml-flow PLAN --azureml-flow-param ...``:
    the plan's resolver (:func:`publish_argo.flow`, seen from the inner map's step) reads the outer item, the
    parameters and the outputs the map iterates from the artifact store, and combines them (zip, product).
    """
    from pipecast.runtime.publish_argo import flow

    parser = argparse.ArgumentParser(prog="python -m pipecast.runtime.publish_azureml items-at")
    for flag in ("--group", "--at", "--pipeline", "--run-id", "--artifact-root", "--azureml-flow", "--step"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--azureml-flow-param", action="append", default=[])
    ns = parser.parse_args(argv)
    for flag, text in (("--run-id", ns.run_id), ("--at", ns.at)):
        check_substituted(flag, text, "the node cannot know its outer item")
    try:
        at = int(ns.at)
    except ValueError:
        raise PipecastError(f"--at {ns.at!r} is not an item number") from None
    inv = StepInvocation(function="-", pipeline=ns.pipeline, step=ns.step, run_id=ns.run_id,
                         artifact_root=ns.artifact_root)
    resolver = flow(ns.azureml_flow, ns.azureml_flow_param, inv, ns.step)
    return items_of(f"map {ns.group!r} at outer item {at}", resolver.map_items(ns.group, (at,)))


def main(argv: Sequence[str] | None = None) -> int:
    """Publish ``pipecast_items``; exit 1 saying why on failure.

    ``items TYPE TEXT`` for a map over a parameter, ``items-at ...`` (:func:`inner_items`) for an inner map at
    its outer item.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not ((len(args) == 3 and args[0] == "items") or args[:1] == ["items-at"]):
        print("usage: python -m pipecast.runtime.publish_azureml items TYPE TEXT | items-at --group MAP --at I ...",
              file=sys.stderr)
        return 2
    try:
        if args[0] == "items-at":
            items = inner_items(args[1:])
        else:
            items = items_of("the parameter", decode_parameter(args[1], args[2]))
        write_properties({CONTROL_KEY: control_text({"pipecast_items": items})}, os.environ)
    except PipecastError as err:
        print(f"pipecast: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
