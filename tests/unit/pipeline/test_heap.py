"""pipeline.heap.settle: start-up objects frozen out of later collections; cyclic garbage still
collected; the young threshold raised (restored after the test: it is process-wide)."""

from __future__ import annotations

import gc
import weakref

from pipeline import heap


def test_settle_freezes_survivors_and_still_collects_cycles() -> None:
    before = gc.get_threshold()
    try:
        keep = [{"k": i} for i in range(1000)]
        frozen = heap.settle(young=12_345)
        assert frozen >= len(keep) and gc.get_freeze_count() == frozen
        assert gc.get_threshold()[0] == 12_345 and gc.isenabled()

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        ref = weakref.ref(a)
        del a, b
        gc.collect()
        assert ref() is None  # cycles created after settle() are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
