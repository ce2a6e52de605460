"""The compile path's fixed costs: built-in targets load without the entry-point scan, and emit runs with the
cyclic garbage collector paused (restored afterwards, also when emit raises), as are the checks before emit and
trace and validation."""

from __future__ import annotations

import gc

import pytest

from pipecast.errors import TargetNotFoundError
from pipecast.flow import EmitOptions, compile_pipeline
from pipecast.targets import registry
from pipecast.targets.gcpause import paused_gc
from pipecast.targets.local import LocalTarget
from tests.helpers.cases import CASES


def test_builtin_targets_load_without_scanning_entry_points(monkeypatch):
    def scan() -> dict[str, str]:
        raise AssertionError("a built-in target must not scan every distribution's entry points")

    monkeypatch.setattr(registry, "target_paths", scan)
    for name in registry.BUILTIN:
        assert registry.get_target(name).name == name


def test_a_name_that_is_not_built_in_scans_once_per_process(monkeypatch):
    import importlib.metadata

    calls = []
    real = importlib.metadata.entry_points

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    registry.target_paths.cache_clear()
    try:
        for _ in range(2):
            with pytest.raises(TargetNotFoundError, match=r"'locl'.*Did you mean 'local'"):
                registry.get_target("locl")
        assert registry.get_target("local").name == "local"
        assert calls == [{"group": registry.GROUP}]
    finally:
        registry.target_paths.cache_clear()


@pytest.mark.parametrize("enabled", [True, False])
def test_paused_gc_restores_the_collector_even_when_the_block_raises(enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with paused_gc():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), paused_gc():
            raise RuntimeError("emit failed")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_paused_gc_moves_survivors_to_the_oldest_generation_and_still_collects_their_cycles():
    import weakref

    assert gc.isenabled() and not gc.get_freeze_count()
    gc.collect()  # empty generations: the young collection after the block would not cascade into older ones
    with paused_gc():
        kept = [[index] for index in range(5_000)]  # far past the young generation's threshold (700)
        first, second = _Node(), _Node()
        first.other, second.other = second, first  # a cycle only the collector can free
        dead = weakref.ref(first)
    # not left young, where the first allocation after the block would scan them all in one pass
    assert any(item is kept for item in gc.get_objects(generation=2))
    assert gc.is_tracked(kept[-1]) and not gc.get_freeze_count()
    del first, second
    gc.collect()
    assert dead() is None


def test_paused_gc_leaves_a_programs_own_freeze_alone():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_gc():
            [[index] for index in range(1_000)]
        assert gc.get_freeze_count() == frozen and gc.isenabled()
    finally:
        gc.unfreeze()


def test_compile_checks_and_emits_with_the_collector_paused(monkeypatch):
    seen = []
    emit, check = LocalTarget.emit, LocalTarget.check

    def spy_emit(self, pipeline, context):
        seen.append(("emit", gc.isenabled()))
        return emit(self, pipeline, context)

    def spy_check(self, pipeline, context):
        seen.append(("check", gc.isenabled()))
        return check(self, pipeline, context)

    monkeypatch.setattr(LocalTarget, "emit", spy_emit)
    monkeypatch.setattr(LocalTarget, "check", spy_check)
    pipeline = next(case for case in CASES if case.name == "quickstart").build()
    assert gc.isenabled()
    compile_pipeline(pipeline, "local", EmitOptions())
    assert seen == [("check", False), ("emit", False)] and gc.isenabled()


def test_build_traces_and_validates_with_the_collector_paused(monkeypatch):
    from pipecast.compiler import tracing, validate

    seen = []
    trace, check = tracing.trace, validate.validate

    def spy_trace(pipeline):
        seen.append(("trace", gc.isenabled()))
        return trace(pipeline)

    def spy_validate(pipeline):
        seen.append(("validate", gc.isenabled()))
        return check(pipeline)

    monkeypatch.setattr(tracing, "trace", spy_trace)
    monkeypatch.setattr(validate, "validate", spy_validate)
    assert gc.isenabled()
    next(case for case in CASES if case.name == "quickstart").build()
    assert seen == [("trace", False), ("validate", False)] and gc.isenabled()
