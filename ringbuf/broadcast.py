"""Broadcast ring: one writer, many readers, each reader with its own cursor in its own process.

The writer never waits: it overwrites the oldest slot, so a dead or slow reader can never slow
it. Reader cursors are process-local (not in shared memory). Every slot carries a seqlock stamp
(layout and protocol in ``_kernels.py``), so a reader never returns a torn record: a reader more
than ``capacity`` behind gets ``Lapped(missed=k)`` with ``k`` exactly the records lost to it,
its cursor unchanged. It then chooses:

* ``resync_to_oldest()`` — skip exactly the lost records and continue with the oldest still held;
* ``resync_to_latest()`` — skip everything (a market-data reader then sends its subscribers fresh
  snapshots, DESIGN.md §7).

The single writer is checked (role token in the header, see ``_roles.py``): a second live writer
gets ``RingBusy``; a restarted writer attaches and continues the published sequence, so readers
see no gap. Ownership of the segment as for every ring: the creator unlinks (README.md).

Numba callers use ``bcast_publish(ctrl, stamps, slots, words, n)`` and
``bcast_read(ctrl, stamps, slots, cursor, words, max_n)`` on ``ring.ctrl``, ``ring.stamps``,
``ring.slots`` directly (return codes documented there).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ringbuf import _layout, _roles, _segment
from ringbuf._kernels import (
    H_PRODUCER,
    I_PUBLISHED,
    KIND_BROADCAST,
    bcast_publish,
    bcast_read,
    load_word,
)
from ringbuf.errors import Lapped, RingClosed, RingEmpty
from ringbuf.wait import SpinThenYield, WaitStrategy


@dataclasses.dataclass(frozen=True)
class BroadcastStats:
    """A reader's view: ``lag`` = published - cursor; ``laps`` = times it was lapped; of the
    positions its cursor passed, ``read`` were returned, ``missed`` were overwritten before it
    could read them and ``skipped`` were still held when ``resync_to_latest`` passed them over:
    read + missed + skipped == cursor - start, always."""

    capacity: int
    published: int
    cursor: int
    lag: int
    laps: int
    missed: int
    skipped: int
    read: int


class _Base:
    def __init__(self, mapped: _layout.Mapped, dtype: np.dtype) -> None:
        self._m: _layout.Mapped | None = mapped
        self.name = mapped.name
        self.dtype = dtype
        self.capacity = int(mapped.slots.shape[0])

    def _mapped(self) -> _layout.Mapped:
        if self._m is None:
            raise RingClosed(self.name)
        return self._m

    @property
    def ctrl(self) -> np.ndarray:
        return self._mapped().ctrl

    @property
    def stamps(self) -> np.ndarray:
        return self._mapped().stamps

    @property
    def slots(self) -> np.ndarray:
        return self._mapped().slots

    def published(self) -> int:
        """Records ever published (the next position the writer fills)."""
        return int(load_word(self._mapped().ctrl, I_PUBLISHED))

    def orphaned(self) -> bool:
        return self._mapped().orphaned()

    def _release(self) -> None:
        if self._m is not None:
            self._m.release()
            self._m = None


class BroadcastWriter(_Base):
    def __init__(self, mapped: _layout.Mapped, dtype: np.dtype) -> None:
        super().__init__(mapped, dtype)
        self._roles = _roles.Claims()

    @classmethod
    def create(cls, name: str, dtype: np.dtype, capacity: int, *,
               replace_stale: bool = False) -> BroadcastWriter:
        dt = np.dtype(dtype)
        return cls(_layout.create(name, KIND_BROADCAST, dt, capacity, replace_stale), dt)

    @classmethod
    def attach(cls, name: str, dtype: np.dtype) -> BroadcastWriter:
        """A restarted writer continues the published sequence (readers see no gap)."""
        dt = np.dtype(dtype)
        return cls(_layout.attach(name, KIND_BROADCAST, dt), dt)

    def claim_writer(self) -> None:
        self._roles.ensure(self._mapped().ctrl, H_PRODUCER, self.name, "writer")

    def publish(self, records: np.ndarray | np.void) -> int:
        """Append records (never waits); returns the new published count."""
        self.claim_writer()
        m = self._mapped()
        src = _layout.src_words(records, self.dtype, self.name)
        return _layout.checked(int(bcast_publish(m.ctrl, m.stamps, m.slots, src, src.shape[0])),
                               self.name)

    def close(self) -> None:
        if self._m is not None:
            self._roles.release_all(self._m.ctrl)
        self._release()

    def unlink(self) -> None:
        """Remove the segment's name (owner only)."""
        _segment.unlink(self.name)

    def __enter__(self) -> BroadcastWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BroadcastReader(_Base):
    def __init__(self, mapped: _layout.Mapped, dtype: np.dtype, start: str,
                 wait: WaitStrategy | None) -> None:
        super().__init__(mapped, dtype)
        self.wait: WaitStrategy = wait or SpinThenYield()
        if start not in ("latest", "oldest"):
            raise ValueError(f"start must be 'latest' or 'oldest', got {start!r}")
        pub = self.published()
        self.cursor = pub if start == "latest" else max(0, pub - self.capacity)
        self._laps = self._missed = self._skipped = self._read = 0
        self.start = self.cursor
        self._lost_to = self.cursor  # positions below this are known to be lost

    @classmethod
    def attach(cls, name: str, dtype: np.dtype, *, start: str = "latest",
               wait: WaitStrategy | None = None) -> BroadcastReader:
        """Map an existing ring; the cursor starts at the newest (or oldest held) record."""
        dt = np.dtype(dtype)
        return cls(_layout.attach(name, KIND_BROADCAST, dt), dt, start, wait)

    def try_read(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` whole records into ``out[:n]``; returns n (0 = nothing new).

        Raises ``Lapped`` (cursor unchanged) when records were lost to this reader.
        """
        m = self._mapped()
        dst = _layout.dst_words(out, self.dtype, self.name)
        n = _layout.checked(int(bcast_read(m.ctrl, m.stamps, m.slots, self.cursor, dst,
                                           dst.shape[0])), self.name)
        if n < 0:
            if self._lost_to <= self.cursor:  # a new lapping, not a repeat of the last report
                self._laps += 1
            self._lost_to = max(self._lost_to, self.cursor - n)
            raise Lapped(self.name, self.cursor, -n)
        self.cursor += n
        self._read += n
        return n

    def read(self, out: np.ndarray, timeout_s: float | None = None) -> int:
        """Like ``try_read`` but waits for at least one record; ``RingEmpty`` on timeout."""
        attempt = 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            n = self.try_read(out)
            if n:
                return n
            if deadline is not None and time.monotonic() >= deadline:
                raise RingEmpty(self.name, float(timeout_s or 0))
            self.wait.idle(attempt)
            attempt += 1

    def lag(self) -> int:
        return self.published() - self.cursor

    def _advance(self, new: int) -> None:
        """Move the cursor forward to ``new``, accounting the positions passed over as lost
        (below ``_lost_to``) or deliberately skipped (still held)."""
        lost = max(0, min(new, self._lost_to) - self.cursor)
        self._missed += lost
        self._skipped += max(0, new - self.cursor) - lost
        self.cursor = max(self.cursor, new)

    def resync_to_latest(self) -> int:
        """Skip to the next record to be published; returns the new cursor. Records passed over
        count as ``missed`` when already overwritten, else as ``skipped``."""
        pub = self.published()
        self._lost_to = max(self._lost_to, pub - self.capacity)
        self._advance(pub)
        return self.cursor

    def resync_to_oldest(self) -> int:
        """Skip only what is lost: move to the oldest record still held; returns the cursor.

        Every record skipped was overwritten (counted in ``missed``). The writer may overwrite
        the new oldest one before the next read; that read then reports it.
        """
        self._lost_to = max(self._lost_to, self.published() - self.capacity)
        self._advance(self._lost_to)
        return self.cursor

    def statistics(self) -> BroadcastStats:
        pub = self.published()
        return BroadcastStats(capacity=self.capacity, published=pub, cursor=self.cursor,
                              lag=pub - self.cursor, laps=self._laps, missed=self._missed,
                              skipped=self._skipped, read=self._read)

    def close(self) -> None:
        self._release()

    def __enter__(self) -> BroadcastReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
