"""Running one step: load inputs, check the cache, call the function, store the outputs, write the record.

The function is called with retries; the outputs are stored atomically, then the step's metadata record
(``meta.json``, the step's commit record) is written.

``python -m pipecast.runtime`` (inside every engine task), the local runner and a supervised child (a step with
a timeout, see :mod:`pipecast.runtime.supervisor`) all call :func:`execute_step`, so a step behaves the same on
every engine.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
import time
import traceback
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipecast.compiler import gather
from pipecast.compiler.ir import RetryPolicy, canonical_json
from pipecast.errors import ArtifactError, PipecastError, StepFailedError
from pipecast.runtime import cache_context, cache_copy, include, materializers, paths, typed_io
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.checks import check_names, check_run_id, check_substituted
from pipecast.runtime.context import StepContext, logical_time_from_env, new_context, step_context
from pipecast.runtime.process import Cancellation, StepCancelled
from pipecast.runtime.verify import check_source, check_version
from pipecast.typed_artifacts import Artifact, Metrics, check_metadata


@dataclass(frozen=True, slots=True)
class Upstream:
    """An input read from another step's output in the same run."""

    step: str
    output: str


@dataclass(frozen=True, slots=True)
class StepInvocation:
    """Everything needed to run one step once, as plain values."""

    function: str  # module:qualname
    pipeline: str
    step: str
    run_id: str
    artifact_root: str
    values: Mapping[str, Any] = field(default_factory=dict)  # parameters and constants, decoded
    # An upstream output, or a (nested) tuple of them: a mapped step's outputs collected as a list, in item order.
    upstream: Mapping[str, Upstream | tuple[Any, ...]] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    cache: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: float | None = None
    source_hash: str | None = None  # the compiled step function's source hash (None: not checked)
    pipecast_version: str | None = None  # the compiling pipecast's version (None: not checked)
    code_sha256: str | None = None  # the code package to import the step from (package delivery)
    code_package: str | None = None  # its URI, when not under the artifact root
    parameters: tuple[str, ...] = ()  # the names in ``values`` bound to pipeline parameters (the step context's)
    # A literal list or dict given as one input: its template (:mod:`pipecast.compiler.gather`), whose holes are
    # hidden inputs bound above like any other; filled in before the call.
    gathers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StepResult:
    """What happened: status, whether it came from the cache, tries made, the metadata record."""

    step: str
    status: str
    cached: bool
    attempts: int
    meta: dict[str, Any]


_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def load_function(path: str) -> Callable[..., Any]:
    """Import ``module:qualname`` and return the plain function (unwrapping ``@step``)."""
    cached = _FUNCTIONS.get(path)
    if cached is not None:
        return cached
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise PipecastError(
            f"cannot import {module_name!r} for step function {path!r}: {err}. The user's code must be "
            "importable where the step runs (installed, or on PYTHONPATH)"
        ) from err
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise PipecastError(f"{module_name!r} has no {qualname!r} (step function {path!r})")
    fn: Callable[..., Any] = getattr(target, "fn", target)
    _FUNCTIONS[path] = fn
    return fn


def check_invocation(inv: StepInvocation) -> None:
    """Refuse an unsubstituted run id, step or upstream, or a name that would leave the artifact root.

    Nothing is written yet. A map item's step name carries its index (``square[$(params.index)]``) from the engine.
    """
    check_run_id(inv.run_id)
    check_substituted(f"step {inv.step!r}: its map item index", _item_indices(inv.step),
                      "every item of the map would write this one step folder")
    for source in (source for value in inv.upstream.values() for source in _flat(value)):
        check_substituted(f"step {inv.step!r}: the map item index of upstream step {source.step!r}",
                          _item_indices(source.step), "the step would read a step that never ran, not its item's")
    check_names(inv.pipeline, inv.run_id, inv.step, inv.outputs,
                ((source.step, source.output) for value in inv.upstream.values() for source in _flat(value)))


def _item_indices(step: str) -> str:
    """The item indices a map instance's name ends with (``[3]`` of ``square[3]``), which the engine puts there.

    Not the step's own name before them, which may hold any text.
    """
    found = _INDICES.search(step)
    return found.group(0) if found else ""


_INDICES = re.compile(r"(?:\[[^\[\]]*\])+$")


def _flat(value: Upstream | tuple[Any, ...]) -> list[Upstream]:
    return [value] if isinstance(value, Upstream) else [u for v in value for u in _flat(v)]


def now() -> str:
    """The current UTC time as recorded in ``meta.json``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe_failure(err: BaseException) -> str:
    """One line for a step's exception; ``sys.exit()`` and ``KeyboardInterrupt`` in a step fail it."""
    if isinstance(err, SystemExit):
        return (f"SystemExit: the step called sys.exit({err.code!r}), which fails the step "
                "(a step ends by returning its outputs)")
    if isinstance(err, KeyboardInterrupt):
        return "KeyboardInterrupt: raised by the step, which fails the step"
    return "".join(traceback.format_exception_only(type(err), err)).strip()


def execute_step(inv: StepInvocation, *, on_attempt: Callable[[int], None] | None = None,
                 cancellation: Cancellation | None = None, may_commit: Callable[[], bool] | None = None,
                 try_number: int | None = None, try_id: str | None = None) -> StepResult:
    """Run one step in this process and return its result; raise StepFailedError when every try failed.

    Args:
        inv: The step to run.
        on_attempt: Called with the number of each try before it starts.
        cancellation: A stop request that ends the step with StepCancelled (recorded as cancelled).
        may_commit: Asked just before a result is recorded; False means the run was abandoned (its parent
            process ended, or it was cancelled) and nothing is recorded.
        try_number: Run only this try (a supervised child; the supervisor does retries and the timeout).
        try_id: Recorded in ``meta.json`` so the supervisor knows the record is this try's.
    """
    check_invocation(inv)
    with paths.workspace() as workspace:  # downloaded path inputs live until the step ends
        return _execute(inv, workspace, on_attempt, cancellation, may_commit, try_number, try_id)


def _execute(inv: StepInvocation, workspace: Path, on_attempt: Callable[[int], None] | None,
             cancellation: Cancellation | None, may_commit: Callable[[], bool] | None, try_number: int | None,
             try_id: str | None) -> StepResult:
    store = ArtifactStore(inv.artifact_root)
    step_dir = store.step_dir(inv.pipeline, inv.run_id, inv.step)
    check_version(inv.step, inv.pipecast_version)
    fn = load_function(inv.function)
    here = check_source(inv.step, inv.function, fn, inv.source_hash)
    kwargs = dict(inv.values)
    fingerprints: dict[str, Any] = {k: {"value": canonical_json(v)} for k, v in inv.values.items()}
    located = {name: typed_io.locate(store, inv.pipeline, inv.run_id, inv.step, source)
               for name, source in inv.upstream.items()}
    for name, found in located.items():  # the recorded hashes: nothing is fetched before the cache check
        fingerprints[name] = {"sha256": typed_io.digests(found)}
    hints = gather.element_hints(typed_io.input_hints(fn), inv.gathers)
    for name, value in inv.values.items():  # a path-annotated value not stored at run start: fetched to hash it
        if include.from_outside(store, inv.pipeline, value, hints.get(name)):
            kwargs[name], digest = include.fetch_outside(value, workspace / name, f"step {inv.step!r} input {name!r}")
            fingerprints[name] = {"sha256": digest}
    key = _sha256(canonical_json({
        "function": inv.function, "source": here, "inputs": fingerprints, "outputs": list(inv.outputs),
        **({"gathers": dict(inv.gathers)} if inv.gathers else {}),  # a literal's constant parts; absent: keys kept
    }).encode())
    base_meta = {"pipeline": inv.pipeline, "step": inv.step, "run_id": inv.run_id, "function": inv.function,
                 "cache_key": key, "started_at": now(), **({"try_id": try_id} if try_id else {})}
    logical_time = logical_time_from_env()
    if logical_time is not None:
        base_meta["logical_time"] = logical_time.isoformat()
    if inv.cache:
        reads = cache_context.current(run_id=inv.run_id, step=inv.step, logical_time=logical_time,
                                      artifact_uri=store.url(step_dir))
        hit = _from_cache(store, inv, key, step_dir, base_meta, may_commit, reads)
        if hit is not None:
            return hit
    for name, found in located.items():  # a cache miss: fetch the inputs (path inputs download here)
        kwargs[name] = typed_io.fetch(store, found, hints.get(name), workspace / name)
    for name, value in inv.values.items():  # an IncludeFile parameter: its stored copy, as a local path
        if include.reference_sha(store, inv.pipeline, value):
            kwargs[name] = include.fetch(store, inv.pipeline, value, workspace / name,
                                         f"step {inv.step!r} input {name!r}")
    kwargs = gather.fill(kwargs, inv.gathers)
    tries = [try_number] if try_number else list(range(1, inv.retry.attempts + 1))
    current = [tries[0]]  # the try under way, for the record of a cancellation

    def starting(attempt: int) -> StepContext:
        current[0] = attempt
        if on_attempt:
            on_attempt(attempt)
        return new_context(run_id=inv.run_id, pipeline=inv.pipeline, step=inv.step, attempt=attempt,
                           parameters={name: inv.values[name] for name in inv.parameters
                                       if name in inv.values and name in kwargs},  # not a literal's element
                           logical_time=logical_time, artifact_uri=store.url(step_dir))

    try:
        outputs, attempt, ctx = _run_tries(inv, fn, kwargs, tries, starting, cancellation, store, step_dir,
                                           base_meta, workspace, supervised=try_number is not None)
    except StepCancelled as stop:  # during a try or the delay before the next one
        store.write_json(f"{step_dir}/meta.json", {**base_meta, "status": "cancelled", "attempt": current[0],
                                                   "ended_at": now(), "error": stop.reason})
        raise
    meta = {**base_meta, "status": "succeeded", "attempt": attempt, "ended_at": now(), "cached": False,
            "outputs": _write_outputs(store, step_dir, outputs, _output_hints(fn, _returned(fn, inv.outputs)),
                                      inv.step),
            **_metadata_of(ctx), **({cache_context.RECORD: dict(ctx.reads)} if ctx.reads else {})}
    _commit(store, step_dir, meta, may_commit, pointer=(inv.pipeline, key) if inv.cache else None)
    return StepResult(inv.step, "succeeded", False, attempt, meta)


def _write_outputs(store: ArtifactStore, step_dir: str, outputs: Mapping[str, Any], hints: Mapping[str, Any],
                   step: str) -> dict[str, Any]:
    """Write each output with its materializer under ``step_dir``; return their records for ``meta.json``.

    An output stored with pickle gets a warning on stderr (the step's log) and in its record: pickle files are
    Python-only and need the same classes to load.
    """
    records = {}
    for name, value in outputs.items():
        if isinstance(value, Artifact):  # a typed artifact: its value's record, with its type and metadata
            inner = _write_outputs(store, step_dir, {name: value.value}, {}, step)[name]
            records[name] = {**inner, "artifact": value.schema,
                             **_present(metadata=check_metadata(f"step {step!r} output {name!r}", value.metadata),
                                        metrics=value.metrics if isinstance(value, Metrics) else None)}
            continue
        if paths.is_path(value):  # a file or directory the step wrote: streamed, never read whole
            records[name] = paths.upload(store, step_dir, name, value, step)
            continue
        encoded = materializers.encode(value, hints.get(name))
        relative = f"outputs/{name}{encoded.materializer.extension}"
        store.write_bytes(store.file_in(step_dir, relative), encoded.data)
        kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
        records[name] = {"materializer": encoded.materializer.name, "file": relative,
                         "sha256": _sha256(encoded.data), "size": len(encoded.data), "type": kind}
        if encoded.pickle_reason:
            warning = (f"step {step!r} output {name!r} ({kind}) is stored with pickle, which only Python with the "
                       f"same classes can read: {encoded.pickle_reason}")
            records[name]["warning"] = warning
            print(f"pipecast: warning: {warning}", file=sys.stderr)
    return records


def _returned(fn: Callable[..., Any], outputs: tuple[str, ...]) -> tuple[str, ...]:
    """The outputs the step returns (not those it writes to output parameters)."""
    written = typed_io.output_parameters(typed_io.input_hints(fn))
    return tuple(name for name in outputs if name not in written)


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that hold something (a record leaves out empty metadata)."""
    return {key: value for key, value in fields.items() if value}


def _output_hints(fn: Callable[..., Any], outputs: tuple[str, ...]) -> dict[str, Any]:
    """Each output's type from the step's return annotation (``-> T``, or ``-> tuple[A, B]`` for several)."""
    hint = typed_io.input_hints(fn).get("return")  # read once per function; {} when it cannot be evaluated
    if hint is None or not outputs:
        return {}
    if len(outputs) == 1:
        return {outputs[0]: hint}
    args = typing.get_args(hint) if typing.get_origin(hint) is tuple else ()
    return dict(zip(outputs, args)) if len(args) == len(outputs) else {}


def _metadata_of(ctx: StepContext | None) -> dict[str, Any]:
    """The metadata a try logged, as ``meta.json`` keeps it (nothing when it logged none)."""
    if ctx is None:
        return {}
    return {key: dict(value) for key, value in (("metadata", ctx.metadata), ("run_metadata", ctx.run_metadata))
            if value}


def _run_tries(inv: StepInvocation, fn: Callable[..., Any], kwargs: dict[str, Any], tries: list[int],
               starting: Callable[[int], StepContext], cancellation: Cancellation | None, store: ArtifactStore,
               step_dir: str, base_meta: dict[str, Any], workspace: Path, *,
               supervised: bool) -> tuple[dict[str, Any], int, StepContext]:
    """Call the step until a try succeeds; record the last failure and raise StepFailedError if none does."""
    hints = gather.element_hints(typed_io.input_hints(fn), inv.gathers)
    returns = _output_hints(fn, _returned(fn, inv.outputs))
    for attempt in tries:
        ctx = starting(attempt)
        try:
            given = typed_io.prepare_outputs(typed_io.output_parameters(hints), workspace / f".try-{attempt}")
            with step_context(ctx):
                if cancellation is None:
                    returned = fn(**kwargs, **given)
                else:
                    with cancellation.interruptible():
                        returned = fn(**kwargs, **given)
                    cancellation.check()  # the step may have swallowed StepCancelled with a bare except
            outputs = {name: typed_io.wrap_output(inv.step, name, value, returns.get(name))
                       for name, value in _split_outputs(inv, returned, tuple(given)).items()}
            return {**outputs, **typed_io.collect_outputs(inv.step, given)}, attempt, ctx
        except StepCancelled:
            raise
        except BaseException as err:  # SystemExit/KeyboardInterrupt from a step fail it
            detail = describe_failure(err)
            if attempt == tries[-1]:
                store.write_json(f"{step_dir}/meta.json", {
                    **base_meta, "status": "failed", "attempt": attempt, "ended_at": now(), "error": detail,
                    "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__, limit=20)),
                    **_metadata_of(ctx)})
                if supervised:  # one try of several: the supervisor decides what comes next
                    raise StepFailedError(f"step {inv.step!r}: try {attempt} failed: {detail}") from None
                plural = "y" if attempt == 1 else "ies"
                raise StepFailedError(f"step {inv.step!r} failed after {attempt} tr{plural}: {detail}") from None
        delay = inv.retry.delay_before(attempt + 1)
        if cancellation is None:
            time.sleep(delay)
        else:
            cancellation.sleep(delay)
    raise AssertionError("unreachable: the last try returns or raises")


def _commit(store: ArtifactStore, step_dir: str, meta: dict[str, Any], may_commit: Callable[[], bool] | None,
            pointer: tuple[str, str] | None) -> None:
    """Record a result: ``meta.json``, then the cache pointer; each only while the run is still wanted."""
    for path, record in ((f"{step_dir}/meta.json", meta),
                         (store.cache_path(*pointer) if pointer else None,
                          {"run_id": meta["run_id"], "step": meta["step"]})):
        if path is None:
            continue
        if may_commit is not None and not may_commit():
            raise StepCancelled("the run was abandoned (cancelled, or the process that started this step "
                                "ended); its result is not recorded")
        store.write_json(path, record)


def _from_cache(store: ArtifactStore, inv: StepInvocation, key: str, step_dir: str, base_meta: dict[str, Any],
                may_commit: Callable[[], bool] | None, reads: Mapping[str, str | None]) -> StepResult | None:
    """A verified cache hit, or None: the source record must carry this key and its files their sha256.

    An entry whose step read run-specific context (:mod:`~pipecast.runtime.cache_context`) serves only a step
    with the same values; otherwise the miss's reason goes into ``base_meta`` (``cache_miss``).
    """
    try:
        pointer = store.read_json(store.cache_path(inv.pipeline, key))
        source_dir = store.step_dir(inv.pipeline, pointer["run_id"], pointer["step"])
        source_meta = store.read_json(f"{source_dir}/meta.json")
        records = source_meta["outputs"]
        if (source_meta.get("status") != "succeeded" or source_meta.get("cache_key") != key
                or set(records) != set(inv.outputs)):
            return None
        why = cache_context.mismatch(source_meta.get(cache_context.RECORD), reads)
        if why is not None:
            base_meta["cache_miss"] = (f"the cached result of run {pointer['run_id']!r} step {pointer['step']!r} "
                                       f"does not apply: {why}")
            return None
        # On S3 the outputs are copied inside S3, each copy checked by S3's SHA-256 (nothing downloaded).
        in_store = source_dir != step_dir and cache_copy.server_side(store)
        contents = {} if in_store else {name: typed_io.read_verified(store, source_dir, record)
                                        for name, record in records.items()}
    except (ArtifactError, KeyError, TypeError, ValueError):
        return None  # a missing or broken cache entry is a miss, never a failure
    if any(data is None for data in contents.values()):
        return None
    if in_store:
        if not cache_copy.copy_verified(store, source_dir, step_dir, records):
            return None
    elif source_dir != step_dir:
        for name, record in records.items():
            if record.get("materializer") == paths.MATERIALIZER:
                paths.copy(store, source_dir, step_dir, record)
                continue
            store.write_bytes(store.file_in(step_dir, record["file"]), contents[name] or b"")
    meta = {**base_meta, "status": "succeeded", "attempt": 0, "ended_at": now(), "cached": True,
            "cached_from": {"run_id": pointer["run_id"], "step": pointer["step"]}, "outputs": records,
            **{key: source_meta[key] for key in ("metadata", "run_metadata", cache_context.RECORD)
               if key in source_meta}}
    _commit(store, step_dir, meta, may_commit, pointer=None)
    return StepResult(inv.step, "succeeded", True, 0, meta)


def _split_outputs(inv: StepInvocation, returned: Any, parameters: tuple[str, ...] = ()) -> dict[str, Any]:
    """The returned outputs by name (``parameters``: the outputs the step wrote to its output parameters)."""
    names = tuple(name for name in inv.outputs if name not in parameters)
    if not names:
        return {}
    if len(names) == 1:
        return {names[0]: returned}
    if not isinstance(returned, (tuple, list)) or len(returned) != len(names):
        raise PipecastError(
            f"step {inv.step!r} declares {len(names)} outputs {list(names)!r} but returned "
            f"{type(returned).__name__}; return a tuple of {len(names)} values"
        )
    return dict(zip(names, returned))


def load_outputs(artifact_root: str, pipeline: str, run_id: str, step: str,
                 names: Collection[str] | None = None) -> dict[str, Any]:
    """Every output of a finished step (or those in ``names``), loaded and checked against its sha256."""
    store = ArtifactStore(artifact_root)
    step_dir = store.step_dir(pipeline, run_id, step)
    meta = store.read_json(f"{step_dir}/meta.json")
    values = {}
    for name, record in meta.get("outputs", {}).items():
        if names is not None and name not in names:
            continue
        what = f"output {name!r} of step {step!r} in run {run_id!r}"
        if record.get("materializer") == paths.MATERIALIZER:
            value = paths.local_or_download(store, step_dir, record, what)
        else:
            value = typed_io.read(store, step_dir, record, what)
        values[name] = typed_io.as_artifact(store, step_dir, record, value) if record.get("artifact") else value
    return values
