"""Map items on Kubeflow Pipelines and Vertex AI: which item a task runs, and the mapped results it collects.

KFP's ``ParallelFor`` (a ``parameterIterator`` over a LIST input) gives each iteration's tasks the item, not its
index: the driver makes one iteration per list element (``backend/src/v2/driver/resolver/parameters.go``,
``resolveParameterIterator``/``getItems``) and hands the tasks inside it the element as the loop-item input.
The compiled task therefore passes the runtime both the item and the whole list, each as the engine substitutes
them (a STRING item: text; the LIST: JSON), and the runtime finds the item's index in the list, so that the
instance is ``step[i]`` exactly as ``pipecast run`` names it:

    --kfp-item TEXT               the loop item, as the engine substitutes a STRING input (once per map around
                                  the step, outermost first: a nested map's instance is ``step[i][j]``)
    --kfp-items TEXT              the list the map iterates (JSON; one per ``--kfp-item``)
    --kfp-item-input INPUT[=int|float][@LEVEL][#INDEX]   the step input bound to the item of map LEVEL (0, the
                                  outermost, when left out; a number is given that type back: the engine holds
                                  numbers as doubles, 1.0 arriving as 1); ``#INDEX``: element INDEX of the item of
                                  a zip or product (its list of one element per list)
    --kfp-zip LEVEL=TEXT          map LEVEL zips its loop's list with the list TEXT (JSON; repeated in order): the
                                  loop iterates the first list, the item becomes item i of every list, and lists
                                  of different lengths fail the task as ``pipecast run`` fails the map
    --kfp-collect INPUT=STEP/OUTPUT=TEXT   a mapped step's output, for every item of the list TEXT, in item order
                                  (``STEP[*]``: the item of the reader's own map, a map around both)
    --kfp-collect-inner INPUT=TEXT   the step of ``--kfp-collect INPUT`` is in a map nested in that one: each
                                  item's output is itself a list, over the list TEXT, over the outer item
                                  itself when TEXT is ``*`` (a map over the outer map's item), or over the list
                                  ``STEP[i]`` returned when TEXT is ``@STEP/OUTPUT`` (a list made inside the map)

    --kfp-one-of INPUT=TEXT       a OneOf input: TEXT is the instance name of the branch step that ran (the
                                  engine's valueFromOneof output, see :mod:`pipecast.targets.kfpspec.groups`)
    --kfp-one-of-source INPUT=STEP/OUTPUT   each branch output the OneOf may take
    --kfp-status INPUT=TEXT       an exit handler's input: TEXT is KFP's PipelineTaskFinalStatus as JSON
    --kfp-covered STEP[=STEPS]    a step of the exit handler's group (``STEP[*]``: every item of a mapped step);
                                  ``=STEPS``: STEP publishes a map's items, and its failure is reported as the
                                  failure of each of STEPS (comma-separated), as ``pipecast run`` reports it
    --kfp-hook TRIGGER=TEXT       a pipeline hook (``on_failure``/``on_success``), the exit task of the group
                                  around the pipeline: TEXT is the group's final status. When the event did not
                                  happen the step is recorded skipped, its output parameters get placeholders
                                  (``--kfp-hook-output NAME=TYPE``: ``""``, ``0``, ``0.0``, ``false``, ``[]``,
                                  ``{}``, as the KFP launcher needs every declared one) and it exits 0
    --kfp-hook-or                 both hooks in one exit task: each hook's whole ``run`` arguments, separated by
                                  this option (:func:`choose_hook`); the hook whose event happened runs
    --kfp-logical-time TEXT       the run's schedule time as the engine substituted it (kfpspec/schedule_time.py)

    --kfp-task JSON               the task's own ``--step``/``--const``/``--upstream`` options and values, as a
                                  JSON list of strings: tasks of one shape share one component, and what is
                                  their own is one input (:mod:`pipecast.targets.kfpspec.sharing`); put back in
                                  place before the command line is parsed (:func:`expand_task`)

The step name and the upstream steps of the same map are written ``name[*]``; ``*`` becomes the index. A list
whose items the engine cannot tell apart (repeated items: KFP gives no index) fails the task, naming the items.
Lists published for a map are bounded (:data:`LIST_LIMIT`): the whole list is one argument of every item's task.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import posixpath
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from pipecast.compiler.ir import canonical_json
from pipecast.errors import PipecastError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.checks import check_substituted
from pipecast.runtime.context import set_engine_logical_time
from pipecast.runtime.executor import StepInvocation, Upstream, load_outputs, now
from pipecast.runtime.flow_plan import combined, final_status, zip_mismatch

T = TypeVar("T")
MARK = "[*]"
# Linux caps one argument of a process at MAX_ARG_STRLEN (32 pages, 131,072 bytes); the list is one argument of
# every item's task and is also inside its ExecutorInput argument, so half of that is left for it.
LIST_LIMIT = 65536


TASK_OPTION = "--kfp-task"
_TASK_OPTIONS = frozenset({"--step", "--const", "--upstream"})


def expand_task(argv: list[str]) -> list[str]:
    """``argv`` with each ``--kfp-task JSON`` replaced by the options the JSON list holds.

    Only ``--step``/``--const``/``--upstream`` options may be in it, each with its value: anything else is
    refused, so that the per-task input can never smuggle in another option.
    """
    if TASK_OPTION not in argv:
        return argv
    out: list[str] = []
    items = iter(argv)
    for arg in items:
        if arg != TASK_OPTION:
            out.append(arg)
            continue
        text = next(items, None)
        try:
            own = json.loads(text or "")
        except json.JSONDecodeError as exc:
            check_substituted(f"{TASK_OPTION} (the task's own options)", text or "", "the task cannot know its step "
                              "name, constants and upstream outputs")
            raise PipecastError(f"{TASK_OPTION}: not JSON ({exc})") from exc
        if (not isinstance(own, list) or len(own) % 2 or not all(isinstance(v, str) for v in own)
                or any(own[i] not in _TASK_OPTIONS for i in range(0, len(own), 2))):
            raise PipecastError(f"{TASK_OPTION}: expected a JSON list of --step/--const/--upstream options, "
                                f"each followed by its value, got {text!r}")
        out += own
    return out


HOOK_OR = "--kfp-hook-or"  # pipecast.targets.kfpspec.hooks.OR_OPTION


def choose_hook(argv: list[str], parse: Callable[[list[str], bool], T]) -> T:
    """``parse(argv, True)``; for both hooks' arguments (``A --kfp-hook-or B``), the one hook whose event happened.

    KFP runs one exit task per ExitHandler (see :mod:`pipecast.targets.kfpspec.hooks`), so both pipeline hooks
    share it: each alternative is parsed as if it were the task's whole command (``parse(alternative, False)``:
    a skipped hook records itself skipped but writes no KFP outputs, the hook that runs writes them). Exactly one
    event happens (on_failure: the group did not succeed; on_success: it did), as ``pipecast run`` decides.
    """
    if HOOK_OR not in argv:
        return parse(argv, True)
    alternatives: list[list[str]] = [[]]
    for arg in argv:  # no value can be the bare option: every value the engine substitutes follows NAME=
        if arg == HOOK_OR:
            alternatives.append([])
        else:
            alternatives[-1].append(arg)
    chosen: list[T] = []
    skipped: list[HookSkipped] = []
    for alternative in alternatives:
        try:
            chosen.append(parse(alternative, False))
        except HookSkipped as err:
            skipped.append(err)
    if len(chosen) != 1:
        raise PipecastError(f"{len(chosen)} of the {len(alternatives)} hooks in this exit task would run; each must "
                            "be a pipeline hook (--kfp-hook): compile the pipeline again and resubmit it")
    for reason in skipped:
        print(f"pipecast: {reason}", file=sys.stderr)
    return chosen[0]


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The runtime's ``--kfp-item*``/``--kfp-collect`` options."""
    run.add_argument("--kfp-item", action="append", default=[])
    run.add_argument("--kfp-items", action="append", default=[])
    run.add_argument("--kfp-item-input", action="append", default=[])
    run.add_argument("--kfp-zip", action="append", default=[])
    run.add_argument("--kfp-collect", action="append", default=[])
    run.add_argument("--kfp-collect-inner", action="append", default=[])
    run.add_argument("--kfp-one-of", action="append", default=[])
    run.add_argument("--kfp-one-of-source", action="append", default=[])
    run.add_argument("--kfp-status", action="append", default=[])
    run.add_argument("--kfp-covered", action="append", default=[])
    run.add_argument("--kfp-hook", default=None)
    run.add_argument("--kfp-hook-output", action="append", default=[])
    run.set_defaults(kfp_hook_alone=True)  # False for each of both hooks sharing a task (choose_hook)
    run.add_argument("--kfp-logical-time", default=None)  # kfpspec/schedule_time.py


class HookSkipped(Exception):
    """The hook's event did not happen: the step is recorded skipped and the task exits 0."""


# What a skipped hook writes for each declared output parameter (the launcher parses it by type).
PLACEHOLDERS = {"STRING": "", "NUMBER_INTEGER": "0", "NUMBER_DOUBLE": "0.0", "BOOLEAN": "false", "LIST": "[]",
                "STRUCT": "{}"}


def apply(inv: StepInvocation, ns: argparse.Namespace) -> StepInvocation:
    """The invocation with its item index, item value and collected inputs filled in."""
    values = dict(inv.values)
    upstream = dict(inv.upstream)
    step = inv.step
    path: list[int] = []
    if ns.kfp_item or ns.kfp_items:
        if len(ns.kfp_item) != len(ns.kfp_items):
            raise PipecastError(f"step {inv.step!r}: {len(ns.kfp_item)} map items for {len(ns.kfp_items)} lists; "
                                "compile the pipeline again and resubmit it")
        found = [item_index(inv.step, text, _list(inv.step, items)) for text, items in zip(ns.kfp_item, ns.kfp_items)]
        found = _zipped(inv.step, found, ns.kfp_items, ns.kfp_zip)
        path = [index for index, _ in found]
        for spec in ns.kfp_item_input:
            spec, _, element = spec.partition("#")
            head, _, level = spec.partition("@")
            name, _, kind = head.partition("=")
            item = found[int(level or 0)][1]
            values[name] = _number(item if not element else item[int(element)], kind)
        step = _instance(step, path)
        upstream = {name: Upstream(step=_instance(src.step, path), output=src.output) if isinstance(src, Upstream)
                    else src for name, src in upstream.items()}
    inner = dict(spec.partition("=")[::2] for spec in ns.kfp_collect_inner)
    for spec in ns.kfp_collect:
        name, _, rest = spec.partition("=")
        ref, _, text = rest.partition("=")
        source, _, output = ref.rpartition("/")
        base = _instance(source, path)
        items = _list(inv.step, text)
        if name not in inner:
            upstream[name] = tuple(Upstream(step=f"{base}[{i}]", output=output) for i in range(len(items)))
            continue
        upstream[name] = tuple(tuple(Upstream(step=f"{base}[{i}][{j}]", output=output)
                                     for j in range(_inner_count(inv, inner[name], i, item)))
                               for i, item in enumerate(items))
    for spec in ns.kfp_one_of:
        name, _, ran = spec.partition("=")
        upstream[name] = _one_of(inv.step, name, ran, ns.kfp_one_of_source)
    for spec in ns.kfp_status:
        name, _, text = spec.partition("=")
        values[name] = final_status_of(inv, text, ns.kfp_covered)
    if ns.kfp_logical_time is not None:
        set_engine_logical_time(ns.kfp_logical_time)
    if ns.kfp_hook is not None:
        _decide_hook(inv, ns)
    if step == inv.step and values == inv.values and upstream == inv.upstream:
        return inv
    return dataclasses.replace(inv, step=step, values=values, upstream=upstream)


def _zipped(step: str, found: list[tuple[int, Any]], lists: list[str],
            zips: list[str]) -> list[tuple[int, Any]]:
    """``found`` with the item of each zipped level replaced by item i of every list (``flow_plan.combined``)."""
    others: dict[int, list[list[Any]]] = {}
    for spec in zips:
        number, _, text = spec.partition("=")
        others.setdefault(int(number), []).append(_list(step, text))
    result = list(found)
    for level, rest in sorted(others.items()):
        index, _ = found[level]
        items = combined([_list(step, lists[level]), *rest], "zip", zip_mismatch(f"step {step.split(MARK)[0]!r}"))
        result[level] = (index, items[index])
    return result


def _decide_hook(inv: StepInvocation, ns: argparse.Namespace) -> None:
    """Raise HookSkipped (after recording it) when the hook's event did not happen, as ``pipecast run`` decides."""
    trigger, _, text = ns.kfp_hook.partition("=")
    status = final_status_of(inv, text, ns.kfp_covered)["status"]
    if trigger == "on_failure" and status == "succeeded":
        reason = "on_failure hook: no step failed"
    elif trigger == "on_success" and status != "succeeded":
        reason = f"on_success hook: the run {status}"
    else:
        return
    store = ArtifactStore(inv.artifact_root)
    store.write_json(f"{store.step_dir(inv.pipeline, inv.run_id, inv.step)}/meta.json",
                     {"step": inv.step, "status": "skipped", "ended_at": now(), "reason": reason})
    if ns.kfp_executor_input is not None and ns.kfp_hook_alone:
        from pipecast.runtime.kfp_outputs import write_kfp_outputs

        texts = {name: PLACEHOLDERS[kind] for name, _, kind in (s.partition("=") for s in ns.kfp_hook_output)}
        write_kfp_outputs(ns.kfp_executor_input, inv, {}, placeholders=texts)
    raise HookSkipped(f"step {inv.step!r} skipped: {reason}")


def _number(item: Any, kind: str) -> Any:
    """``item`` as the ``int``/``float`` the input is annotated with, when it is that number."""
    if isinstance(item, bool) or not isinstance(item, int | float):
        return item
    if kind == "float":
        return float(item)
    if kind == "int" and float(item).is_integer():
        return int(item)
    return item


def _one_of(step: str, name: str, ran: str, sources: list[str]) -> Upstream:
    """The branch output a OneOf input reads: the source whose step is the one that ran (``ran``, an instance)."""
    base = ran.partition("[")[0]
    for spec in sources:
        input_name, _, ref = spec.partition("=")
        source, _, output = ref.rpartition("/")
        if input_name == name and source == base:
            return Upstream(step=ran, output=output)
    raise PipecastError(f"step {step!r}: the engine says branch step {ran!r} ran for OneOf input {name!r}, which is "
                        "none of its branches; compile the pipeline again and resubmit it")


def final_status_of(inv: StepInvocation, text: str, covered: list[str]) -> dict[str, Any]:
    """The status an exit handler gets on KFP, from KFP's ``PipelineTaskFinalStatus`` and the group's ``meta.json``.

    The engine gives the group's state (KFP: its MLMD execution's, ``COMPLETE``/``FAILED``/``CANCELED``, from
    ``backend/src/v2/driver/resolve.go``; Vertex AI: ``SUCCEEDED``/``FAILED``/``CANCELLED``) but not which step
    failed: the failed and cancelled instances come from the records the runtime wrote for each covered step. A
    group the engine calls failed or cancelled is so even when no record says why (a pod that never started).
    """
    try:
        engine = json.loads(text)
    except ValueError:
        engine = None
    if not isinstance(engine, dict):
        raise PipecastError(f"step {inv.step!r}: the final status arrived as {text!r:.80}, not KFP's "
                            "PipelineTaskFinalStatus as JSON")
    store = ArtifactStore(inv.artifact_root)
    run_dir = store.run_dir(inv.pipeline, inv.run_id)
    try:
        present = {posixpath.basename(p.rstrip("/")) for p in store.fs.ls(run_dir, detail=False)}
    except FileNotFoundError:
        present = set()
    states: list[tuple[str, str, str | None]] = []
    for spec in covered:
        name, _, reported = spec.partition("=")  # a map's publisher: reported as the map's first steps
        if name.endswith(MARK):
            base, *levels = name.split(MARK)  # step[*][*]: every instance of a step in a nested map
            found = (re.fullmatch(re.escape(base) + r"\[(\d+)]" * len(levels), entry) for entry in present)
            paths = sorted(tuple(int(i) for i in m.groups()) for m in found if m)
            instances = [base + "".join(f"[{i}]" for i in p) for p in paths]
        else:
            instances = [name] if name in present else []
        for instance in instances:
            path = f"{store.step_dir(inv.pipeline, inv.run_id, instance)}/meta.json"
            meta = store.read_json(path) if store.exists(path) else {}
            if reported and meta.get("status") == "failed":  # as pipecast run fails the steps of that map
                text = str(meta.get("error") or "").removeprefix(f"{PipecastError.__module__}.PipecastError: ")
                states += [(step, "failed", text) for step in reported.split(",")
                           if (step, "failed", text) not in states]
            elif meta.get("status") in ("failed", "cancelled"):
                error, tries = meta.get("error"), meta.get("attempt")
                if meta["status"] == "failed" and isinstance(tries, int) and error:  # the words pipecast run uses
                    error = f"step {instance!r} failed after {tries} tr{'y' if tries == 1 else 'ies'}: {error}"
                states.append((instance, str(meta["status"]), error))
    status = final_status(states)
    state = str(engine.get("state") or "").upper()
    if status["status"] == "succeeded" and state in ("FAILED", "CANCELED", "CANCELLED"):
        error = (engine.get("error") or {}).get("message") if isinstance(engine.get("error"), dict) else None
        status = {"status": "failed" if state == "FAILED" else "cancelled", "failed_steps": [],
                  "error": error or f"the engine reports the group {state.lower()}"}
    return status


def _instance(name: str, path: list[int]) -> str:
    """``name`` with each ``[*]`` its index of ``path``, in order (``step[*][*]`` → ``step[2][0]``)."""
    if MARK not in name:
        return name
    base, *rest = name.split(MARK)
    return base + "".join(f"[{i}]" for i in path[:len(rest)])


def _inner_count(inv: StepInvocation, spec: str, index: int, item: Any) -> int:
    """How many items the nested map had for outer item ``index``.

    ``*``: the outer item is its list; ``@STEP/OUTPUT``: the list instance ``STEP[index]`` returned (read from the
    artifact store); else the list itself, as JSON.
    """
    if spec == "*":
        return len(_inner_list(inv.step, item))
    if spec.startswith("@"):
        producer, _, output = spec[1:].rpartition("/")
        value = load_outputs(inv.artifact_root, inv.pipeline, inv.run_id, f"{producer}[{index}]", [output])[output]
        return len(_inner_list(inv.step, value))
    return len(_list(inv.step, spec))


def _inner_list(step: str, item: Any) -> list[Any]:
    """An outer item a nested map iterates: a list, or a STRING holding a JSON list.

    The KFP driver iterates both (``backend/src/v2/driver/resolver/parameters.go``, ``getItems``).
    """
    if isinstance(item, str):
        return _list(step, item)
    if not isinstance(item, list):
        raise PipecastError(f"step {step!r}: a nested map iterates the outer item {item!r:.80}, which is not a list")
    return item


def _list(step: str, text: str | None) -> list[Any]:
    try:
        value = json.loads(text or "")
    except ValueError:
        value = None
    if not isinstance(value, list):
        raise PipecastError(f"step {step!r}: the map's list arrived as {text!r:.80}, not a JSON list; the task's "
                            "command must pass it as the engine substitutes a LIST input")
    return value


def _matches(text: str, value: Any) -> bool:
    """Whether ``value`` is the list element the engine substituted as ``text`` (a STRING input's text).

    The engine turns a non-string item into text before substituting it (``util.PBValueToText``: numbers in
    decimal, bools ``true``/``false``, lists and structs as JSON), so the text is compared by meaning.
    """
    if isinstance(value, str):
        return text == value
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    try:
        decoded = json.loads(text)
    except ValueError:
        return False
    if isinstance(value, int | float):
        return not isinstance(decoded, bool) and isinstance(decoded, int | float) and float(decoded) == float(value)
    return bool(decoded == value)


def item_index(step: str, text: str, items: list[Any]) -> tuple[int, Any]:
    """The index and value of the item the engine gave the task; PipecastError if it is not exactly one."""
    found = [i for i, value in enumerate(items) if _matches(text, value)]
    if len(found) == 1:
        return found[0], items[found[0]]
    if not found:
        check_substituted(f"step {step!r}: the map item", text, "the task cannot know its item")
        raise PipecastError(f"step {step!r}: the map item {text!r:.80} is not in the map's list {items!r:.120}")
    raise PipecastError(
        f"step {step!r}: items {found} of the map's list all read as {text!r:.80}; KFP and Vertex AI give a task its "
        "item but not its index, so pipecast tells items apart by value: make the list's items distinct (pair "
        "each with its index, say) or run the pipeline with the local target")


LIST_INPUT = "list_"  # the publisher's inputs: list_0, list_1... (pipecast.targets.kfpspec.combinations)


def map_items(combine: str, where: str, **lists: Any) -> list[Any]:
    """The items of a zip or product over run-time lists, as ``pipecast run`` builds them (``flow_plan.combined``).

    The step KFP runs before such a map (:mod:`pipecast.targets.kfpspec.combinations`): ``combine`` is ``zip`` or
    ``product``, ``where`` names the map (``map 'map_1' (file:line)``), ``list_N`` its lists in order. Its LIST
    output is the loop's list; zipped lists of different lengths fail it, as ``pipecast run`` fails the map.
    """
    ordered = [lists[name] for name in sorted(lists, key=lambda n: int(n.removeprefix(LIST_INPUT)))]
    for value in ordered:
        if not isinstance(value, list):
            raise PipecastError(f"{where} iterates {type(value).__name__} {value!r:.80} at run time, not a list")
    return combined(ordered, combine, lambda lengths: PipecastError(
        f"{where} zips lists of different lengths {lengths}; zip pairs item i of each list, so give them one "
        "length (or use Product)"))


def list_text(step: str, name: str, value: list[Any]) -> str:
    """A list output as the LIST output parameter a map iterates; PipecastError when it is too large or ambiguous."""
    text = canonical_json(value)
    if len(text.encode("utf-8")) > LIST_LIMIT:
        raise PipecastError(
            f"step {step!r} returned a list of {len(value)} items ({len(text.encode('utf-8'))} bytes as JSON) for "
            f"output {name!r}, which a map iterates; KFP and Vertex AI pass the list to every item's task as one "
            f"argument, bounded here at {LIST_LIMIT} bytes: map over something smaller (ids or paths of the items)")
    return text
