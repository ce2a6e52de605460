"""Running one step: load inputs, check the cache, call the function (with retries and a timeout),
store the outputs atomically and write the step's metadata record.

Both ``python -m pipecast.runtime`` (inside every engine task) and the local runner call
:func:`execute_step`, so a step behaves the same on every engine.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pipecast.compiler.ir import RetryPolicy, canonical_json
from pipecast.errors import ArtifactError, PipecastError, StepFailedError
from pipecast.runtime import materializers
from pipecast.runtime.artifacts import ArtifactStore


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
    upstream: Mapping[str, Upstream] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    cache: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: float | None = None


@dataclass(slots=True)
class StepResult:
    """What happened: status, whether it came from the cache, tries made, the metadata record."""

    step: str
    status: str
    cached: bool
    attempts: int
    meta: dict[str, Any]


class StepTimeout(Exception):
    """A try ran longer than the step's timeout."""


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
    fn = getattr(target, "fn", target)
    _FUNCTIONS[path] = fn
    return fn


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def execute_step(inv: StepInvocation, *, enforce_timeout: bool = True,
                 on_attempt: Callable[[int], None] | None = None) -> StepResult:
    """Run one step and return its result; raise StepFailedError when every try failed."""
    store = ArtifactStore(inv.artifact_root)
    step_dir = store.step_dir(inv.pipeline, inv.run_id, inv.step)
    started = _now()
    fn = load_function(inv.function)
    kwargs = dict(inv.values)
    fingerprints: dict[str, Any] = {k: {"value": canonical_json(v)} for k, v in inv.values.items()}
    for name, source in inv.upstream.items():
        value, digest = _load_output(store, inv, source)
        kwargs[name] = value
        fingerprints[name] = {"sha256": digest}
    from pipecast.compiler.signatures import source_hash

    key = _sha256(canonical_json({
        "function": inv.function, "source": source_hash(fn), "inputs": fingerprints, "outputs": list(inv.outputs),
    }).encode())
    base_meta = {"pipeline": inv.pipeline, "step": inv.step, "run_id": inv.run_id, "function": inv.function,
                 "cache_key": key, "started_at": started}
    if inv.cache:
        hit = _from_cache(store, inv, key, step_dir, base_meta)
        if hit is not None:
            return hit
    attempt = 0
    while True:
        attempt += 1
        if on_attempt:
            on_attempt(attempt)
        try:
            returned = _call(fn, kwargs, inv.timeout_seconds if enforce_timeout else None)
            outputs = _split_outputs(inv, returned)
            break
        except Exception as err:
            if attempt >= inv.retry.attempts:
                detail = "".join(traceback.format_exception_only(type(err), err)).strip()
                meta = {**base_meta, "status": "failed", "attempt": attempt, "ended_at": _now(),
                        "error": detail, "traceback": traceback.format_exc(limit=20)}
                store.write_json(f"{step_dir}/meta.json", meta)
                raise StepFailedError(f"step {inv.step!r} failed after {attempt} tr{'y' if attempt == 1 else 'ies'}: "
                                      f"{detail}") from err
            time.sleep(inv.retry.delay_before(attempt + 1))
    records = {}
    for name, value in outputs.items():
        chosen = materializers.choose(value)
        data = chosen.dumps(value)
        relative = f"outputs/{name}{chosen.extension}"
        store.write_bytes(f"{step_dir}/{relative}", data)
        records[name] = {"materializer": chosen.name, "file": relative, "sha256": _sha256(data),
                         "type": type(value).__qualname__}
    meta = {**base_meta, "status": "succeeded", "attempt": attempt, "ended_at": _now(), "cached": False,
            "outputs": records}
    store.write_json(f"{step_dir}/meta.json", meta)
    if inv.cache:
        store.write_json(store.cache_path(inv.pipeline, key), {"run_id": inv.run_id, "step": inv.step})
    return StepResult(inv.step, "succeeded", False, attempt, meta)


def _load_output(store: ArtifactStore, inv: StepInvocation, source: Upstream) -> tuple[Any, str]:
    upstream_dir = store.step_dir(inv.pipeline, inv.run_id, source.step)
    try:
        meta = store.read_json(f"{upstream_dir}/meta.json")
    except ArtifactError:
        raise ArtifactError(
            f"step {inv.step!r} needs output {source.output!r} of step {source.step!r}, but that step has no "
            f"record in run {inv.run_id!r} under {store.uri!r}; did it run, with the same run id and artifact root?"
        ) from None
    record = meta.get("outputs", {}).get(source.output)
    if meta.get("status") != "succeeded" or record is None:
        raise ArtifactError(f"step {source.step!r} has no output {source.output!r} in run {inv.run_id!r}")
    data = store.read_bytes(f"{upstream_dir}/{record['file']}")
    return materializers.by_name(record["materializer"]).loads(data), record["sha256"]


def _from_cache(store: ArtifactStore, inv: StepInvocation, key: str, step_dir: str,
                base_meta: dict[str, Any]) -> StepResult | None:
    pointer_path = store.cache_path(inv.pipeline, key)
    if not store.exists(pointer_path):
        return None
    try:
        pointer = store.read_json(pointer_path)
        source_dir = store.step_dir(inv.pipeline, pointer["run_id"], pointer["step"])
        source_meta = store.read_json(f"{source_dir}/meta.json")
        if source_meta.get("status") != "succeeded":
            return None
        if pointer["run_id"] != inv.run_id or pointer["step"] != inv.step:
            for record in source_meta["outputs"].values():
                store.copy(f"{source_dir}/{record['file']}", f"{step_dir}/{record['file']}")
    except (ArtifactError, KeyError, json.JSONDecodeError):
        return None  # a broken cache entry is a miss, never a failure
    meta = {**base_meta, "status": "succeeded", "attempt": 0, "ended_at": _now(), "cached": True,
            "cached_from": pointer, "outputs": source_meta["outputs"]}
    store.write_json(f"{step_dir}/meta.json", meta)
    return StepResult(inv.step, "succeeded", True, 0, meta)


def _split_outputs(inv: StepInvocation, returned: Any) -> dict[str, Any]:
    if not inv.outputs:
        return {}
    if len(inv.outputs) == 1:
        return {inv.outputs[0]: returned}
    if not isinstance(returned, (tuple, list)) or len(returned) != len(inv.outputs):
        raise PipecastError(
            f"step {inv.step!r} declares {len(inv.outputs)} outputs {list(inv.outputs)!r} but returned "
            f"{type(returned).__name__}; return a tuple of {len(inv.outputs)} values"
        )
    return dict(zip(inv.outputs, returned))


def _call(fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float | None) -> Any:
    """Call ``fn``; enforce ``timeout`` with SIGALRM when on the main thread of a Unix process."""
    if not timeout or threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        return fn(**kwargs)

    def expired(signum: int, frame: Any) -> None:
        raise StepTimeout(f"timed out after {timeout:g}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return fn(**kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_outputs(artifact_root: str, pipeline: str, run_id: str, step: str) -> dict[str, Any]:
    """Every output of a finished step, loaded with its materializer."""
    store = ArtifactStore(artifact_root)
    step_dir = store.step_dir(pipeline, run_id, step)
    meta = store.read_json(f"{step_dir}/meta.json")
    return {
        name: materializers.by_name(record["materializer"]).loads(store.read_bytes(f"{step_dir}/{record['file']}"))
        for name, record in meta.get("outputs", {}).items()
    }
