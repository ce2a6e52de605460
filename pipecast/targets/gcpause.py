"""Garbage collection paused while a pipeline is traced and validated, and while a target checks and emits.

Both build many small dicts and lists that all stay alive until the block ends, so the collector's passes over
them find nothing (at 10,000 steps nine full collections took 1.5–2 s of a 7 s emit). Collection is restored
afterwards, also when the block raises.

A paused collector still counts allocations, so the first one after the pause would start a young collection
over everything the block left alive: after tracing 10,000 steps that is the whole IR in one pass that misses
the CPU caches, 42–74 ms where 1,000 steps took 3 ms. So the survivors are moved straight to the oldest
generation first (``gc.freeze()`` then ``gc.unfreeze()``, which also zeroes the young count): they are scanned
at the next full collection, as every long-lived object is. Skipped when the program froze objects itself
(``gc.get_freeze_count()``), whose freeze must stand.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector for the block; re-enable it after only if it was enabled before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()
