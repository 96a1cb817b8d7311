"""WalReader: read frames back, offline (``iter_frames``) or live behind the writer (``tail``).

A tail never reads past the durable watermark in ``durable.pos``: what it yields was fsynced (or
msynced) before it became visible, from any process. It is polled: ``poll()`` returns what became
durable since the last call and never blocks; pair it with a doorbell (pipeline/doorbell.py) to
sleep until the watermark moves. Every frame's CRC is checked; a bad frame below the watermark is
``WalCorruption``.

Seeking by seq: reading "from seq S" starts at the COMMANDS frame that contains S (in the last
segment whose first seq is <= S) and yields every frame from there on, of every kind: the engine
appends a batch's COMMANDS frame before its EVENTS and BLOB frames, so events of earlier seqs are
skipped and events of S onwards are not. A COMMANDS frame that starts before S is yielded whole:
filter records by seq.

Lifetime: ``Frame.payload`` is a read-only memoryview into the segment mapping; it stays valid as
long as the caller holds it (the mapping is unmapped when the last view is dropped). Readers never
write, lock or delete anything. One reader object per thread.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.wal.durable import DurableFile, DurablePos
from pipeline.wal.errors import WalCorruption, WalError, WalGapError
from pipeline.wal.format import (
    HEADER_BYTES,
    OK,
    SEG_HEADER_BYTES,
    Frame,
    FrameKind,
    SegmentHeader,
    later_durable_frame,
    list_segments,
    padded,
    parse_segment_header,
    position,
    probe,
)

# An idle tail checks at most this often whether durable.pos was replaced (one stat): the edge polls
# its tail empty once per doorbell, thousands of times a second under load.
REPLACED_CHECK_S = 0.05
_SEAL = int(FrameKind.SEAL)
_COMMANDS = int(FrameKind.COMMANDS)


class _Seg:
    __slots__ = ("segno", "path", "mm", "mv", "size", "header")

    def __init__(self, path: Path, segno: int) -> None:
        with open(path, "rb") as f:
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.mv = memoryview(self.mm)
        self.size = len(self.mm)
        self.path = path
        self.segno = segno
        self.header: SegmentHeader | None = parse_segment_header(self.mv[:SEG_HEADER_BYTES])


class WalReader:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise WalError(f"{self.directory} is not a directory")
        self._dfile: DurableFile | None = None

    def durable(self) -> DurablePos | None:
        """The published durable watermark (None before a writer ever published one)."""
        if self._dfile is None:
            try:
                self._dfile = DurableFile(self.directory, writable=False)
            except FileNotFoundError:
                return None
        return self._dfile.read()

    def _replaced(self) -> bool:
        return self._dfile is not None and self._dfile.replaced()

    def _find(self, segno: int) -> Path | None:
        hits = list(self.directory.glob(f"wal-{segno:010d}-*.seg"))
        return hits[0] if len(hits) == 1 else None

    def _start(self, from_seq: int) -> int | None:
        """Segment number to start reading ``from_seq`` in (None: no segment yet)."""
        segs = list_segments(self.directory)
        if not segs:
            return None
        start = segs[0]
        for s in segs:
            if s.first_seq <= from_seq:
                start = s
        if 0 < from_seq < segs[0].first_seq and segs[0].segno != 0:
            raise WalGapError(f"seq {from_seq} is older than the oldest segment on disk "
                              f"({segs[0].path.name}): the segments before it were archived "
                              f"(spotx wal prune); to read from there, stop the stack and put "
                              f"them back: spotx wal unarchive --apply [--archive DIR]")
        return start.segno

    def iter_frames(self, from_seq: int = 0, *, include_seals: bool = False) -> Iterator[Frame]:
        """Every valid frame from ``from_seq`` to the end of the log as it is on disk now. Stops at
        the first frame that does not verify if nothing after it is known durable (an unsynced or
        torn tail); raises WalCorruption if something is. Run ``recover()`` first for replay."""
        cur = _Cursor(self, self._start(from_seq), from_seq, include_seals)
        while True:
            f = cur.step(None)
            if f is None:
                return
            yield f

    def tail(self, from_seq: int = 0, *, include_seals: bool = False) -> WalTail:
        return WalTail(self, from_seq, include_seals)

    def close(self) -> None:
        if self._dfile is not None:
            self._dfile.close()
            self._dfile = None


class _Cursor:
    """Position in the log: a mapped segment and an offset, or "waiting for segment N"."""

    def __init__(self, reader: WalReader, segno: int | None, from_seq: int,
                 include_seals: bool) -> None:
        self.reader = reader
        self.seg: _Seg | None = None
        self.next_segno = segno if segno is not None else -1
        self.off = SEG_HEADER_BYTES
        self.skip_to = from_seq
        self.include_seals = include_seals
        self.wal_id = 0
        self.frames = 0

    @property
    def position(self) -> int:
        if self.next_segno < 0:
            return 0
        return position(self.next_segno, self.off if self.seg is not None else SEG_HEADER_BYTES)

    def _enter(self, limit: int | None) -> _Seg | None:
        """Map segment ``next_segno`` if it is readable; None when it is not there yet."""
        if self.next_segno < 0 or (limit is not None
                                   and limit <= position(self.next_segno, SEG_HEADER_BYTES)):
            return None
        path = self.reader._find(self.next_segno)
        seg = _Seg(path, self.next_segno) if path is not None else None
        hdr = seg.header if seg is not None else None
        if hdr is None or hdr.segno != self.next_segno or (self.wal_id and hdr.wal_id != self.wal_id):
            if limit is not None or self._later_segment_exists():
                where = str(path or f"segment {self.next_segno}")
                raise WalCorruption(where, 0, "durable segment missing or its header is invalid")
            return None
        self.wal_id = hdr.wal_id
        self.seg, self.off = seg, SEG_HEADER_BYTES
        return seg

    def _later_segment_exists(self) -> bool:
        return any(s.segno > self.next_segno for s in list_segments(self.reader.directory))

    def step(self, limit: int | None) -> Frame | None:
        """The next frame below ``limit`` (a WAL position; None = no watermark), or None."""
        while True:
            seg = self.seg or self._enter(limit)
            if seg is None:
                return None
            off = self.off
            if limit is not None and position(seg.segno, off) >= limit:
                return None
            st, h = probe(seg.mv, off, seg.size)
            if st != OK or h is None:
                self._bad(seg, off, limit)
                return None
            length, kind = h[2], h[3]
            end = off + padded(HEADER_BYTES + length)
            f = Frame(kind, h[4], h[5], h[6], h[8], h[9],
                      seg.mv[off + HEADER_BYTES: off + HEADER_BYTES + length], seg.segno, off, end)
            if kind == _SEAL:
                self.seg = None
                self.next_segno = seg.segno + 1
                self.off = SEG_HEADER_BYTES
            else:
                self.off = end
            if self.skip_to:
                if kind != _COMMANDS or f.first_seq + f.count - 1 < self.skip_to:
                    continue
                self.skip_to = 0
            if kind == _SEAL and not self.include_seals:
                continue
            self.frames += 1
            return f

    def _bad(self, seg: _Seg, off: int, limit: int | None) -> None:
        """A frame that does not verify at ``off``: the end of the readable log, or corruption."""
        if limit is not None:
            raise WalCorruption(str(seg.path), off, "frame below the durable watermark fails its "
                                                    "CRC (or the log ends there)")
        dp = self.reader.durable()
        if dp is not None and dp.wal_id == self.wal_id and dp.position > position(seg.segno, off):
            raise WalCorruption(str(seg.path), off, f"frame fails its CRC but durable.pos says "
                                                    f"durable up to {dp.segno}:{dp.offset}")
        hit = later_durable_frame(seg.mm, seg.mv, off)
        if hit is not None:
            raise WalCorruption(str(seg.path), off, f"frame fails its CRC but the frame at "
                                                    f"{hit[0]} was sealed after it was durable")
        if self._later_segment_exists():
            raise WalCorruption(str(seg.path), off, "frame fails its CRC in a segment that is "
                                                    "followed by another")


class WalTail:
    """A polling reader that stays at or below the durable watermark (see module doc)."""

    def __init__(self, reader: WalReader, from_seq: int, include_seals: bool) -> None:
        self.reader = reader
        self._from_seq = from_seq
        self._include_seals = include_seals
        self._cur: _Cursor | None = None
        self._wal_id = 0
        self._check_at = 0.0

    def poll(self, max_frames: int = 1024) -> list[Frame]:
        """Frames that became durable since the last call (at most ``max_frames``); never blocks."""
        dp = self.reader.durable()
        if dp is None:
            return []
        if self._wal_id and dp.wal_id != self._wal_id:
            raise WalError(f"the WAL in {self.reader.directory} was replaced (wal_id changed)")
        self._wal_id = dp.wal_id
        if self._cur is None:
            segno = self.reader._start(self._from_seq)
            if segno is None:
                return []
            self._cur = _Cursor(self.reader, segno, self._from_seq, self._include_seals)
            self._cur.wal_id = dp.wal_id
        out: list[Frame] = []
        limit = dp.position
        while len(out) < max_frames:
            f = self._cur.step(limit)
            if f is None:
                break
            out.append(f)
        if not out and time.monotonic() >= self._check_at and self._stale():
            raise WalError(f"the WAL in {self.reader.directory} was replaced (durable.pos is a "
                           f"new file): resync from a snapshot")
        return out

    def _stale(self) -> bool:
        self._check_at = time.monotonic() + REPLACED_CHECK_S
        return self.reader._replaced()

    def __iter__(self) -> Iterator[Frame]:
        """Yield every frame durable now, then stop (iterate again later for more)."""
        while True:
            batch = self.poll()
            if not batch:
                return
            yield from batch

    @property
    def position(self) -> int:
        """WAL position of the next frame this tail will read (0 before the first poll)."""
        return 0 if self._cur is None else self._cur.position

    @property
    def frames(self) -> int:
        return 0 if self._cur is None else self._cur.frames
