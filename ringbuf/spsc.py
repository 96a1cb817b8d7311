"""SPSC ring over named shared memory, carrying fixed-size records of one numpy dtype.

One producer process, one consumer process; the ring does not check who calls (a second producer
would corrupt it): ownership is by construction (one ring per edge). Non-blocking ``try_push`` /
``try_pop`` return how many records moved (0 = full / empty); blocking ``push`` / ``pop`` wait with
the ring's wait strategy and raise ``RingFull`` / ``RingEmpty`` on timeout.

Zero-copy lifetime: ``ctrl`` and ``slots`` are views into the mapping, valid until ``close()``.
A numba loop elsewhere (the engine) may call ``ringbuf._kernels.spsc_pop(ring.ctrl, ring.slots,
dst_words, max_n)`` directly with ``dst_words = records.view(np.int64).reshape(n, -1)``.

Crash behaviour: cursors live in the segment, so a restarted producer or consumer re-attaches and
continues where the dead one stopped (a record is either fully published, TAIL moved, or not).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ringbuf import _layout, _segment
from ringbuf._kernels import (
    I_EMPTY,
    I_FULL,
    I_HEAD,
    I_PEAK,
    I_TAIL,
    KIND_SPSC,
    spsc_depth,
    spsc_pop,
    spsc_push,
)
from ringbuf.errors import RingClosed, RingEmpty, RingFull
from ringbuf.wait import SpinThenYield, WaitStrategy


@dataclasses.dataclass(frozen=True)
class RingStats:
    capacity: int
    depth: int
    peak_depth: int
    full_waits: int
    empty_waits: int
    pushed: int
    popped: int


def words(records: np.ndarray) -> np.ndarray:
    """A 2-D int64 view of contiguous records (the kernels' currency)."""
    arr = np.ascontiguousarray(records.reshape(-1))
    return arr.view(np.int64).reshape(arr.shape[0], arr.dtype.itemsize // 8)


class SpscRing:
    def __init__(self, mapped: _layout.Mapped, dtype: np.dtype, owner: bool,
                 wait: WaitStrategy | None) -> None:
        self._m: _layout.Mapped | None = mapped
        self.name = mapped.name
        self.dtype = dtype
        self.owner = owner
        self.wait = wait or SpinThenYield()
        self.capacity = int(mapped.slots.shape[0])

    @classmethod
    def create(cls, name: str, dtype: np.dtype, capacity: int, *, replace_stale: bool = False,
               wait: WaitStrategy | None = None) -> SpscRing:
        m = _layout.create(name, KIND_SPSC, np.dtype(dtype), capacity, np.dtype(dtype).itemsize // 8,
                           replace_stale)
        return cls(m, np.dtype(dtype), True, wait)

    @classmethod
    def attach(cls, name: str, dtype: np.dtype, *, wait: WaitStrategy | None = None) -> SpscRing:
        return cls(_layout.attach(name, KIND_SPSC, np.dtype(dtype), 0), np.dtype(dtype), False, wait)

    # -- views ---------------------------------------------------------------------------------
    @property
    def ctrl(self) -> np.ndarray:
        return self._mapped().ctrl

    @property
    def slots(self) -> np.ndarray:
        return self._mapped().slots

    def _mapped(self) -> _layout.Mapped:
        if self._m is None:
            raise RingClosed(f"ring {self.name} is closed")
        return self._m

    # -- data ----------------------------------------------------------------------------------
    def _check(self, records: np.ndarray) -> np.ndarray:
        if records.dtype != self.dtype:
            raise TypeError(f"ring {self.name} carries {self.dtype}, got {records.dtype}")
        return words(records)

    def try_push(self, records: np.ndarray) -> int:
        """Push as many of ``records`` (one record or an array) as fit; returns how many."""
        m = self._mapped()
        src = self._check(np.asarray(records))
        return int(spsc_push(m.ctrl, m.slots, src, src.shape[0]))

    def try_pop(self, out: np.ndarray, max_n: int | None = None) -> int:
        """Pop up to ``len(out)`` (or ``max_n``) records into ``out``; returns how many."""
        m = self._mapped()
        dst = self._check(out)
        n = dst.shape[0] if max_n is None else min(max_n, dst.shape[0])
        return int(spsc_pop(m.ctrl, m.slots, dst, n))

    def push(self, records: np.ndarray, timeout_s: float | None = None) -> None:
        """Push every record, waiting while the ring is full; ``RingFull`` on timeout."""
        recs = np.asarray(records).reshape(-1)
        done, attempt = 0, 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while done < recs.shape[0]:
            k = self.try_push(recs[done:])
            if k:
                done += k
                attempt = 0
                continue
            if deadline is not None and time.monotonic() > deadline:
                raise RingFull(f"ring {self.name} full for {timeout_s} s ({done}/{recs.shape[0]} pushed)")
            self.wait.idle(attempt)
            attempt += 1

    def pop(self, out: np.ndarray, timeout_s: float | None = None) -> int:
        """Pop at least one record (up to ``len(out)``), waiting; ``RingEmpty`` on timeout."""
        attempt = 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            n = self.try_pop(out)
            if n:
                return n
            if deadline is not None and time.monotonic() > deadline:
                raise RingEmpty(f"ring {self.name} empty for {timeout_s} s")
            self.wait.idle(attempt)
            attempt += 1

    def depth(self) -> int:
        return int(spsc_depth(self._mapped().ctrl))

    def statistics(self) -> RingStats:
        c = self._mapped().ctrl
        return RingStats(capacity=self.capacity, depth=int(c[I_TAIL] - c[I_HEAD]),
                         peak_depth=int(c[I_PEAK]), full_waits=int(c[I_FULL]),
                         empty_waits=int(c[I_EMPTY]), pushed=int(c[I_TAIL]), popped=int(c[I_HEAD]))

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._m is not None:
            self._m.release()
            self._m = None

    def unlink(self) -> None:
        """Remove the segment name (owner only); mappings stay valid until closed."""
        _segment.unlink(self.name)

    def __enter__(self) -> SpscRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
