"""Lock-free shared-memory rings: SPSC and broadcast (one writer, many readers). See README.md.

Python API: ``SpscRing``, ``BroadcastWriter``, ``BroadcastReader``, wait strategies, named errors,
segment helpers. numba API (for loops like the engine's, callable only from ``@njit`` code):
the kernels ``spsc_push``, ``spsc_pop``, ``spsc_depth``, ``bcast_publish``, ``bcast_read``, the
atomics ``load_acquire``, ``store_release``, ``cas``, ``fence_acquire``, ``fence_release``, and
the waits ``cpu_pause``, ``sched_yield``, ``idle``. ``SPSC_HEAD`` / ``SPSC_TAIL``: the indices of
an SPSC ring's consumer and producer cursors in ``ring.ctrl``, so a Python loop can tell "records
waiting" (``ctrl[SPSC_TAIL] != ctrl[SPSC_HEAD]``) with two loads instead of a pop (the engine's
idle poll).
"""

from ringbuf._atomics import cas, fence_acquire, fence_release, load_acquire, store_release
from ringbuf._kernels import (
    ERR_LAYOUT,
    ERR_SHAPE,
    I_HEAD,
    I_TAIL,
    as_words,
    bcast_publish,
    bcast_read,
    spsc_depth,
    spsc_pop,
    spsc_push,
)
from ringbuf._nbwait import cpu_pause, idle, sched_yield
from ringbuf._segment import cleanup, segment_name
from ringbuf.broadcast import BroadcastReader, BroadcastStats, BroadcastWriter
from ringbuf.errors import (
    Lapped,
    RingBusy,
    RingClosed,
    RingEmpty,
    RingError,
    RingFull,
    SegmentExists,
    SegmentMismatch,
    SegmentNotFound,
)
from ringbuf.spsc import RingStats, SpscRing
from ringbuf.wait import BusySpin, ParkBackoff, SpinThenYield, WaitStrategy, strategy

SPSC_HEAD, SPSC_TAIL = I_HEAD, I_TAIL

__all__ = [
    "ERR_LAYOUT", "ERR_SHAPE", "SPSC_HEAD", "SPSC_TAIL", "BroadcastReader", "BroadcastStats", "BroadcastWriter", "BusySpin",
    "Lapped", "ParkBackoff", "RingBusy", "RingClosed", "RingEmpty", "RingError", "RingFull",
    "RingStats", "SegmentExists", "SegmentMismatch", "SegmentNotFound", "SpinThenYield",
    "SpscRing", "WaitStrategy", "as_words", "bcast_publish", "bcast_read", "cas", "cleanup",
    "cpu_pause", "fence_acquire", "fence_release", "idle", "load_acquire", "sched_yield",
    "segment_name", "spsc_depth", "spsc_pop", "spsc_push", "store_release", "strategy",
]
