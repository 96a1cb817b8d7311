"""Lock-free shared-memory rings: SPSC and broadcast (one writer, many readers). See README.md."""

from ringbuf._segment import cleanup
from ringbuf.broadcast import BroadcastRead, BroadcastReader, BroadcastWriter
from ringbuf.errors import (
    RingClosed,
    RingEmpty,
    RingError,
    RingFull,
    SegmentMismatch,
    SegmentNotFound,
)
from ringbuf.spsc import RingStats, SpscRing, words
from ringbuf.wait import BusySpin, ParkBackoff, SpinThenYield, WaitStrategy, strategy

__all__ = [
    "BroadcastRead", "BroadcastReader", "BroadcastWriter", "BusySpin", "ParkBackoff", "RingClosed",
    "RingEmpty", "RingError", "RingFull", "RingStats", "SegmentMismatch", "SegmentNotFound",
    "SpinThenYield", "SpscRing", "WaitStrategy", "cleanup", "strategy", "words",
]
