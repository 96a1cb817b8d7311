"""SPSC ring over named shared memory, carrying fixed-size records of one numpy dtype.

One producer process, one consumer process, checked: the first push (pop) in a process claims the
producer (consumer) role in the header, and a second live process gets ``RingBusy``. A role held
by a dead process is taken over, so a restarted producer or consumer re-attaches and continues
exactly where the dead one stopped: cursors live in the segment, and a record is either fully
published (TAIL moved past it) or not at all.

Backpressure: ``capacity`` (a power of two) is required. ``try_push`` / ``try_pop`` never wait and
return how many records moved (0 = full / empty); ``push`` / ``pop`` wait with the ring's wait
strategy and raise ``RingFull`` / ``RingEmpty`` on timeout. ``statistics()`` is cheap and may be
called from any process (the metrics exporter attaches and reads).

Zero-copy: ``ring.ctrl`` and ``ring.slots`` are views into the mapping, valid until ``close()``;
a numba loop elsewhere (the engine) calls the kernels on them directly::

    from ringbuf import SpscRing, as_words, spsc_pop

    ring = SpscRing.attach(name, COMMAND)
    ring.claim_consumer()                 # the kernels do not check roles; claim once up front
    batch = np.zeros(256, COMMAND)        # records the engine reads field by field ...
    words = as_words(batch)               # ... and the same memory as the kernels' int64 rows
    n = engine_step(ring.ctrl, ring.slots, words, batch)   # an @njit that calls
                                          # spsc_pop(ctrl, slots, words, 256), then reads batch[:n]

Status codes from the kernels: k >= 0 records moved; ``ERR_SHAPE`` for an array of the wrong width.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ringbuf import _layout, _roles, _segment
from ringbuf._kernels import (
    H_CONSUMER,
    H_PRODUCER,
    I_EMPTY_WAITS,
    I_FULL_WAITS,
    I_HEAD,
    I_PEAK_CONS,
    I_PEAK_PROD,
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
    """A snapshot. ``full_waits``: pushes that could not place every record; ``empty_waits``:
    pops that found nothing; ``peak_depth``: deepest backlog either side observed (sampled when
    a side looks at the other's counter, so it can miss a short spike between looks)."""

    capacity: int
    depth: int
    peak_depth: int
    full_waits: int
    empty_waits: int
    pushed: int
    popped: int


class SpscRing:
    def __init__(self, mapped: _layout.Mapped, dtype: np.dtype, wait: WaitStrategy | None) -> None:
        self._m: _layout.Mapped | None = mapped
        self._roles = _roles.Claims()
        self.name = mapped.name
        self.dtype = dtype
        self.wait: WaitStrategy = wait or SpinThenYield()
        self.capacity = int(mapped.slots.shape[0])

    @classmethod
    def create(cls, name: str, dtype: np.dtype, capacity: int, *, replace_stale: bool = False,
               wait: WaitStrategy | None = None) -> SpscRing:
        """Create (and own) ``/dev/shm/<name>``. ``SegmentExists`` unless ``replace_stale``."""
        dt = np.dtype(dtype)
        return cls(_layout.create(name, KIND_SPSC, dt, capacity, replace_stale), dt, wait)

    @classmethod
    def attach(cls, name: str, dtype: np.dtype, *, wait: WaitStrategy | None = None) -> SpscRing:
        """Map an existing ring; ``SegmentNotFound`` / ``SegmentMismatch`` (e.g. other dtype)."""
        dt = np.dtype(dtype)
        return cls(_layout.attach(name, KIND_SPSC, dt), dt, wait)

    # -- views and roles ------------------------------------------------------------------------
    def _mapped(self) -> _layout.Mapped:
        if self._m is None:
            raise RingClosed(self.name)
        return self._m

    @property
    def ctrl(self) -> np.ndarray:
        """int64 control words (layout in ``_kernels.py``); valid until ``close()``."""
        return self._mapped().ctrl

    @property
    def slots(self) -> np.ndarray:
        """``[capacity, record_size // 8]`` int64 slot words; valid until ``close()``."""
        return self._mapped().slots

    def claim_producer(self) -> None:
        """Take the producer role for this process (``RingBusy`` if another live one has it)."""
        self._roles.ensure(self._mapped().ctrl, H_PRODUCER, self.name, "producer")

    def claim_consumer(self) -> None:
        """Take the consumer role for this process (``RingBusy`` if another live one has it)."""
        self._roles.ensure(self._mapped().ctrl, H_CONSUMER, self.name, "consumer")

    def holders(self) -> tuple[int | None, int | None]:
        """Pids of the live (producer, consumer), None for a free or stale role."""
        c = self._mapped().ctrl
        return _roles.holder(c, H_PRODUCER), _roles.holder(c, H_CONSUMER)

    # -- data ------------------------------------------------------------------------------------
    def try_push(self, records: np.ndarray | np.void) -> int:
        """Push as many of ``records`` (one record or an array) as fit; returns how many."""
        self.claim_producer()
        m = self._mapped()
        src = _layout.src_words(records, self.dtype, self.name)
        return _layout.checked(int(spsc_push(m.ctrl, m.slots, src, src.shape[0])), self.name)

    def try_pop(self, out: np.ndarray, max_n: int | None = None) -> int:
        """Pop up to ``len(out)`` (or ``max_n``) records into ``out[:k]``; returns k (0 = empty).

        ``out`` must be a 1-D C-contiguous array of the ring's dtype (never silently copied).
        """
        self.claim_consumer()
        m = self._mapped()
        dst = _layout.dst_words(out, self.dtype, self.name)
        n = dst.shape[0] if max_n is None else max(0, min(max_n, dst.shape[0]))
        return _layout.checked(int(spsc_pop(m.ctrl, m.slots, dst, n)), self.name)

    def push(self, records: np.ndarray | np.void, timeout_s: float | None = None) -> None:
        """Push every record, waiting while full; ``RingFull`` (with ``.pushed``) on timeout."""
        recs = _layout.src_words(records, self.dtype, self.name).view(self.dtype).reshape(-1)
        done, attempt = 0, 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while done < recs.shape[0]:
            k = self.try_push(recs[done:])
            if k:
                done += k
                attempt = 0
                continue
            if deadline is not None and time.monotonic() >= deadline:
                raise RingFull(self.name, float(timeout_s or 0), done, recs.shape[0])
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
            if deadline is not None and time.monotonic() >= deadline:
                raise RingEmpty(self.name, float(timeout_s or 0))
            self.wait.idle(attempt)
            attempt += 1

    def depth(self) -> int:
        return int(spsc_depth(self._mapped().ctrl))

    def statistics(self) -> RingStats:
        c = self._mapped().ctrl
        popped = int(c[I_HEAD])
        pushed = int(c[I_TAIL])
        depth = pushed - popped
        return RingStats(capacity=self.capacity, depth=depth,
                         peak_depth=max(depth, int(c[I_PEAK_PROD]), int(c[I_PEAK_CONS])),
                         full_waits=int(c[I_FULL_WAITS]), empty_waits=int(c[I_EMPTY_WAITS]),
                         pushed=pushed, popped=popped)

    # -- lifecycle -------------------------------------------------------------------------------
    def orphaned(self) -> bool:
        """True when the name now points elsewhere (owner unlinked or replaced the segment)."""
        return self._mapped().orphaned()

    def close(self) -> None:
        """Free this process's roles and unmap. Idempotent; the segment itself stays."""
        if self._m is not None:
            self._roles.release_all(self._m.ctrl)
            self._m.release()
            self._m = None

    def unlink(self) -> None:
        """Remove the segment's name (owner only); existing mappings stay valid until closed."""
        _segment.unlink(self.name)

    def __enter__(self) -> SpscRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._m is None else f"depth={self.depth()}"
        return f"SpscRing({self.name!r}, {self.dtype.itemsize} B x {self.capacity}, {state})"
