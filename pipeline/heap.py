"""Garbage-collector settings for the long-running processes (edge, engine, publisher, fan-out).

Why. A numba process starts with hundreds of thousands of long-lived objects (compiled dispatchers,
type caches, IR); every full collection walks them all again. At load that was 12 % of an edge's
CPU (py-spy, ``gc_collect_main``). ``settle()`` is called once, after start-up and warm-up and
before the process reports ready: it collects, moves every surviving object to the permanent
generation (``gc.freeze``), so no later collection visits them, and raises the young-generation
threshold so the per-request garbage (futures, tuples, dicts) is mostly freed by reference counting
before a collection runs. Cyclic garbage is still collected; nothing is disabled.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # CPython's default is 700 allocations


def settle(young: int = YOUNG_THRESHOLD) -> int:
    """Collect, freeze what survives, raise the young threshold; returns the frozen object count."""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(young, g1, g2)
    return gc.get_freeze_count()
