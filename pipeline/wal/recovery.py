"""Recovery: find the end of the valid log, drop a torn tail, refuse corruption.

What a crash can leave (the writer appends a frame with its CRC zero and seals it — writes
``synced_off``, ``prev_hash`` and the CRC — right after, or just before the next sync; writer.py):

* process crash (kill -9): the page cache survives, so every appended byte is there; only frames
  not yet sealed (CRC zero) and a half-copied last frame fail, all at the very end;
* machine crash: any page written after the last completed sync may or may not have reached the
  disk, in any order; everything before it is on disk.

So a frame that fails is a **torn tail** when no durable byte can lie after it, and **corruption**
otherwise. Evidence that bytes after a bad frame at offset B were durable: ``durable.pos`` (published
only after a sync returned, so it never overstates) pointing past B, or any valid frame after B
whose ``synced_off`` stamp says the segment was already durable past B when it was sealed (for a
later segment: any stamp at all, since segments are synced in order). A frame whose CRC holds but
whose ``prev_hash`` breaks the chain is always corruption (a torn write cannot produce it). A torn
tail is zeroed (to the last non-zero byte of the segment) and fsynced; a torn rotation (a trailing
segment whose header was never finalized) is deleted.

Scope: only the last segment is scanned frame by frame (CRC and chain) and linked to its
predecessor's SEAL through ``prev_seal_off``; sealed segments before it are immutable and are
checked end to end by ``verify_chain``. Cost: one pass of CRC32C + chain hash over the last segment.
"""

from __future__ import annotations

import dataclasses
import fcntl
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.wal.durable import DurablePos, read_durable
from pipeline.wal.errors import WalCorruption, WalLocked
from pipeline.wal.format import (
    BAD,
    HEADER_BYTES,
    OK,
    SEAL_PAYLOAD,
    SEG_HEADER_BYTES,
    FrameKind,
    SegmentFile,
    SegmentHeader,
    hasher,
    later_durable_frame,
    list_segments,
    padded,
    parse_segment_header,
    position,
    probe,
)
from pipeline.wal.segment import fsync_dir

LOCK_NAME = "wal.lock"
_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    empty: bool  # no segment: a fresh log
    wal_id: int
    segno: int  # the last segment
    segment: str
    seg_first_seq: int
    offset: int  # end of the valid log in the last segment
    last_seq: int  # highest command seq in the log (seg_first_seq - 1 when none in it)
    chain: bytes  # chain head after the last frame: the next frame's prev_hash
    sealed: bool  # the last segment ends with its SEAL frame
    seal_off: int
    root: bytes  # the last segment's root (chain after its last data frame)
    data_frames: int
    data_bytes: int
    max_fencing: int
    hash_alg: int  # ChainHash of the last segment (the log keeps it)
    frames: int  # frames scanned in the last segment
    truncated_bytes: int  # torn bytes zeroed in the last segment
    removed: tuple[str, ...]  # torn-rotation segments (and prealloc leftovers) deleted

    @property
    def position(self) -> int:
        return position(self.segno, self.offset)


_EMPTY = RecoveryResult(True, 0, -1, "", 0, 0, 0, b"", False, 0, b"", 0, 0, 0, 0, 0, 0, ())


def lock_directory(directory: Path) -> int:
    """Take the writer lock (flock, released by the kernel when the process dies)."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise WalLocked(f"{directory} is locked by another WAL writer (pid {holder or '?'})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock_directory(fd: int) -> None:
    os.close(fd)


def recover(directory: str | os.PathLike[str]) -> RecoveryResult:
    """Recover ``directory`` in place (takes the writer lock: fails with WalLocked while a writer
    is open). Raises WalCorruption naming the segment file and byte offset."""
    d = Path(directory)
    fd = lock_directory(d)
    try:
        return recover_locked(d)
    finally:
        unlock_directory(fd)


def recover_locked(d: Path) -> RecoveryResult:
    removed: list[str] = []
    for p in d.iterdir():
        if p.suffix == ".tmp":
            p.unlink()
            removed.append(p.name)
    durable = read_durable(d)
    segs = list_segments(d)
    while segs:
        if len(segs) > 1 and segs[-2].segno != segs[-1].segno - 1:
            raise WalCorruption(str(segs[-1].path), 0, f"segment {segs[-1].segno - 1} is missing "
                                                       f"(the one before is {segs[-2].segno})")
        res = _scan_last(segs[-1], segs[-2] if len(segs) > 1 else None, durable, removed)
        if res is not None:
            # What a killed process left in the page cache is kept, so make it durable before
            # anyone publishes it: every segment the last durable watermark does not cover.
            since = durable.segno if durable is not None and durable.wal_id == res.wal_id else 0
            for s in segs:
                if s.segno >= since:
                    _fdatasync_path(s.path)
            fsync_dir(d)
            return res
        segs[-1].path.unlink()
        removed.append(segs[-1].path.name)
        segs.pop()
    if durable is not None and durable.position > 0:
        raise WalCorruption(str(d), 0, f"no segment left, but durable.pos says durable up to "
                                       f"segment {durable.segno} offset {durable.offset}")
    if removed:
        fsync_dir(d)
    return dataclasses.replace(_EMPTY, removed=tuple(removed))


def _evidence(mm: mmap.mmap, mv: memoryview, segno: int, start: int,
              durable: DurablePos | None) -> str | None:
    """Why bytes at or after ``start`` in segment ``segno`` must have been durable, or None."""
    if durable is not None and durable.position > position(segno, start):
        return f"durable.pos says durable up to segment {durable.segno} offset {durable.offset}"
    hit = later_durable_frame(mm, mv, start)
    if hit is not None:
        return f"the valid frame at offset {hit[0]} was sealed when {hit[1]} bytes were durable"
    return None


def _link_ok(prev: SegmentFile, seal_off: int, prev_root: bytes, first_seq: int) -> bool:
    try:
        with open(prev.path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return False
    with mm:
        mv = memoryview(mm)
        try:
            st, h = probe(mv, seal_off, len(mm))
            if st != OK or h is None or h[3] != FrameKind.SEAL or seal_off < SEG_HEADER_BYTES:
                return False
            root, last_seq, _n, _b = SEAL_PAYLOAD.unpack_from(mv, seal_off + HEADER_BYTES)
            return bool(root == prev_root and last_seq == first_seq - 1)
        finally:
            mv.release()


def _header_problem(hdr: SegmentHeader | None, seg: SegmentFile, size: int,
                    prev: SegmentFile | None) -> str | None:
    if hdr is None or hdr.segno != seg.segno or hdr.segment_bytes != size:
        return "segment header missing or invalid"
    if prev is not None and not _link_ok(prev, hdr.prev_seal_off, hdr.prev_root, hdr.first_seq):
        return f"no valid SEAL at offset {hdr.prev_seal_off} of {prev.path.name} to link to"
    return None


def _scan_last(seg: SegmentFile, prev: SegmentFile | None, durable: DurablePos | None,
               removed: list[str]) -> RecoveryResult | None:
    """Recover the last segment; None means "a torn rotation: delete it and look at the one before"."""
    name = str(seg.path)
    fd = os.open(seg.path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size < SEG_HEADER_BYTES:
            return None  # a file cut before it was ever sized: nothing in it can be durable
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        mv = memoryview(mm)
        try:
            hdr = parse_segment_header(mv[:SEG_HEADER_BYTES])
            if durable is not None and hdr is not None and durable.wal_id != hdr.wal_id:
                durable = None  # a watermark of another log: no evidence either way
            broken = _header_problem(hdr, seg, size, prev)
            if broken is not None or hdr is None:
                why = _evidence(mm, mv, seg.segno, 0, durable)
                if why is not None:
                    raise WalCorruption(name, 0, f"{broken}, but {why}")
                return None
            return _scan_frames(fd, mm, mv, seg, hdr, durable, removed)
        finally:
            mv.release()
            mm.close()
    finally:
        os.close(fd)


def _scan_frames(fd: int, mm: mmap.mmap, mv: memoryview, seg: SegmentFile, hdr: SegmentHeader,
                 durable: DurablePos | None, removed: list[str]) -> RecoveryResult:
    name = str(seg.path)
    size = len(mm)
    chain_hash = hasher(hdr.hash_alg)
    chain = chain_hash(mv[:SEG_HEADER_BYTES])
    root = chain
    off = SEG_HEADER_BYTES
    last_seq = hdr.first_seq - 1
    fencing = hdr.fencing
    frames = data_frames = data_bytes = 0
    sealed = False
    seal_off = 0
    st = OK
    while not sealed:
        st, h = probe(mv, off, size)
        if st != OK or h is None:
            break
        _m, _crc, length, kind, _fl, first_seq, count, _so, fence, _ts, prev_hash = h
        if prev_hash != chain:
            raise WalCorruption(name, off, "hash chain broken (the CRC holds, so not a torn write)")
        if kind == FrameKind.COMMANDS and (first_seq != last_seq + 1 or count < 1):
            raise WalCorruption(name, off, f"COMMANDS seq {first_seq} does not follow {last_seq}")
        if kind in (FrameKind.EVENTS, FrameKind.BLOB) and not 1 <= first_seq <= last_seq:
            raise WalCorruption(name, off, f"frame refers to seq {first_seq} > last seq {last_seq}")
        if fence < fencing:
            raise WalCorruption(name, off, f"fencing token went down from {fencing} to {fence}")
        flen = padded(HEADER_BYTES + length)
        if kind == FrameKind.SEAL:
            s_root, s_last, s_frames, s_bytes = SEAL_PAYLOAD.unpack_from(mv, off + HEADER_BYTES)
            if (s_root, s_last, s_frames, s_bytes) != (chain, last_seq, data_frames, data_bytes):
                raise WalCorruption(name, off, "SEAL does not match the segment it seals")
            sealed, seal_off, root = True, off, chain
        else:
            data_frames += 1
            data_bytes += flen
            if kind == FrameKind.COMMANDS:
                last_seq = first_seq + count - 1
        chain = chain_hash(mv[off: off + HEADER_BYTES + length])
        fencing = max(fencing, fence)
        frames += 1
        off += flen
    if not sealed:
        root = chain
    why = _evidence(mm, mv, seg.segno, off, durable)
    if why is not None:
        what = "frame fails its CRC" if st == BAD else "log ends here"
        raise WalCorruption(name, off, f"{what}, but {why}")
    truncated = _zero_tail(fd, mm, off)
    return RecoveryResult(False, hdr.wal_id, seg.segno, name, hdr.first_seq, off, last_seq, chain,
                          sealed, seal_off, root, data_frames, data_bytes, fencing, hdr.hash_alg,
                          frames,
                          truncated, tuple(removed))


def _fdatasync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _zero_tail(fd: int, mm: mmap.mmap, start: int) -> int:
    """Zero [start, last non-zero byte] and fdatasync; returns the bytes zeroed."""
    size = len(mm)
    end = start
    pos = start
    while pos < size:
        n = min(_CHUNK, size - pos)
        chunk = mm[pos: pos + n]
        if chunk != _ZEROS[:n]:
            end = pos + len(chunk.rstrip(b"\0"))
        pos += n
    if end <= start:
        return 0
    pos = start
    while pos < end:
        n = min(_CHUNK, end - pos)
        os.pwrite(fd, _ZEROS[:n], pos)
        pos += n
    os.fdatasync(fd)
    return end - start
