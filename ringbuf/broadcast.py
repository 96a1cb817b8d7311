"""Broadcast ring: one writer, many readers, each reader with its own cursor in its own process.

The writer never waits: it overwrites the oldest slot. Every slot carries a stamp (seqlock) so a
reader that was lapped learns it, and by how much, instead of reading torn data:
``read(out)`` returns a ``BroadcastRead(n, missed)``; with ``missed > 0`` nothing was copied and
the reader must resync (``resync_to_latest()`` skips to the newest ``capacity // 2`` records or to
the head; a market-data reader then sends fresh snapshots to its subscribers).

Reader cursors are process-local (the writer cannot be slowed by a dead reader). Ownership of the
segment as for SPSC rings: the creator unlinks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ringbuf import _layout, _segment
from ringbuf._kernels import I_PUBLISHED, KIND_BROADCAST, bcast_publish, bcast_read
from ringbuf.errors import RingClosed
from ringbuf.spsc import words


@dataclasses.dataclass(frozen=True)
class BroadcastRead:
    n: int
    missed: int


class _Base:
    def __init__(self, mapped: _layout.Mapped, dtype: np.dtype) -> None:
        self._m: _layout.Mapped | None = mapped
        self.name = mapped.name
        self.dtype = dtype
        self.capacity = int(mapped.slots.shape[0])

    def _mapped(self) -> _layout.Mapped:
        if self._m is None:
            raise RingClosed(f"broadcast ring {self.name} is closed")
        return self._m

    def published(self) -> int:
        return int(self._mapped().ctrl[I_PUBLISHED])

    def close(self) -> None:
        if self._m is not None:
            self._m.release()
            self._m = None


class BroadcastWriter(_Base):
    @classmethod
    def create(cls, name: str, dtype: np.dtype, capacity: int, *,
               replace_stale: bool = False) -> BroadcastWriter:
        dt = np.dtype(dtype)
        return cls(_layout.create(name, KIND_BROADCAST, dt, capacity, dt.itemsize // 8 + 1,
                                  replace_stale), dt)

    @classmethod
    def attach(cls, name: str, dtype: np.dtype) -> BroadcastWriter:
        """A restarted writer continues the published cursor (readers see no gap)."""
        dt = np.dtype(dtype)
        return cls(_layout.attach(name, KIND_BROADCAST, dt, 1), dt)

    def publish(self, records: np.ndarray) -> int:
        m = self._mapped()
        recs = np.asarray(records)
        if recs.dtype != self.dtype:
            raise TypeError(f"ring {self.name} carries {self.dtype}, got {recs.dtype}")
        src = words(recs)
        return int(bcast_publish(m.ctrl, m.slots, src, src.shape[0]))

    def unlink(self) -> None:
        _segment.unlink(self.name)


class BroadcastReader(_Base):
    def __init__(self, mapped: _layout.Mapped, dtype: np.dtype, from_latest: bool) -> None:
        super().__init__(mapped, dtype)
        self.cursor = self.published() if from_latest else max(0, self.published() - self.capacity)
        self.laps = 0
        self.missed_total = 0

    @classmethod
    def attach(cls, name: str, dtype: np.dtype, *, from_latest: bool = True) -> BroadcastReader:
        dt = np.dtype(dtype)
        return cls(_layout.attach(name, KIND_BROADCAST, dt, 1), dt, from_latest)

    def read(self, out: np.ndarray, max_n: int | None = None) -> BroadcastRead:
        m = self._mapped()
        if out.dtype != self.dtype:
            raise TypeError(f"ring {self.name} carries {self.dtype}, got {out.dtype}")
        dst = words(out)
        n_max = dst.shape[0] if max_n is None else min(max_n, dst.shape[0])
        n, missed = bcast_read(m.ctrl, m.slots, self.cursor, dst, n_max)
        if missed:
            self.laps += 1
            self.missed_total += int(missed)
            return BroadcastRead(0, int(missed))
        self.cursor += int(n)
        return BroadcastRead(int(n), 0)

    def lag(self) -> int:
        return self.published() - self.cursor

    def resync_to_latest(self) -> int:
        """Skip to the newest record; returns the new cursor."""
        self.cursor = self.published()
        return self.cursor
