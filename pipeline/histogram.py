"""Latency histograms in a ``pipeline.stats`` block: the bucket bounds and the update.

The update runs once per request on the order path (the edge's WS and REST latency, the engine's
loop and fsync times), so it lives apart from ``pipeline.stats`` (files, mmap, numpy, reading) and
is compiled with the edge's per-order modules (``pipeline.native``): a C call instead of an
interpreted function (0.27 us a call compiled, on the shared-memory view; timeit).

A histogram is ``HIST_SLOTS`` int64 slots of the block: one count per bucket (upper bounds
``BUCKETS_NS``, the last slot before the sum is +Inf) then the sum of the values in ns.
"""

from __future__ import annotations

from typing import Any, Final

# Bucket upper bounds in ns: 1 us .. 10 s, roughly 1-2-5 per decade; the last bucket is +Inf.
BUCKETS_NS: Final[tuple[int, ...]] = tuple(
    m * 10**e for e in range(3, 10) for m in (1, 2, 5)
) + (10**10,)
HIST_SLOTS: Final = len(BUCKETS_NS) + 2
_SUM: Final = HIST_SLOTS - 1


def observe(data: Any, off: int, value_ns: int) -> None:
    """Count ``value_ns`` in the histogram at slot ``off`` of ``data`` (an int64 ndarray or a
    memoryview of format 'q')."""
    i = 0  # bisect_left(BUCKETS_NS, value_ns), as a compiled loop: no call of an imported name
    for bound in BUCKETS_NS:
        if value_ns <= bound:
            break
        i += 1
    data[off + i] += 1
    data[off + _SUM] += value_ns
