"""verify_chain: check every segment end to end — the runbook's "validate integrity roots".

Read-only (no lock, never repairs; safe next to a live writer, whose unsynced tail it reports as
"tail not sealed yet"). Per segment: header CRC, segment numbers contiguous, one wal_id, the link
(``prev_root`` and ``prev_seal_off`` = the previous segment's SEAL), every frame's CRC, the hash
chain, COMMANDS seqs contiguous, EVENTS/BLOB refer to appended seqs, fencing never decreasing, the
SEAL's root / last seq / counts, nothing after the SEAL. Optionally compares roots against ones
recorded elsewhere (``expected_roots``: segno -> hex), which is what makes the chain tamper-evident:
anyone can recompute an unkeyed chain, nobody can make it match a root published before.

Cost: CRC32C + the chain hash over every byte of the log, in Python per frame: off the hot path.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.wal.format import (
    END,
    HEADER_BYTES,
    OK,
    SEAL_PAYLOAD,
    SEG_HEADER_BYTES,
    FrameKind,
    hasher,
    list_segments,
    padded,
    parse_segment_header,
    probe,
)


@dataclass
class SegmentReport:
    segno: int
    path: str
    first_seq: int = 0
    last_seq: int = 0
    frames: int = 0
    data_bytes: int = 0
    sealed: bool = False
    root: str = ""  # hex: chain after the last data frame (what the SEAL carries)
    seal_off: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class ChainReport:
    directory: str
    segments: list[SegmentReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    head: str = ""  # hex chain head after the last valid frame
    last_seq: int = 0
    frames: int = 0
    unsealed_tail_bytes: int = 0  # non-zero bytes after the last valid frame of the last segment

    @property
    def ok(self) -> bool:
        return not self.errors and all(s.ok for s in self.segments)

    def roots(self) -> dict[int, str]:
        return {s.segno: s.root for s in self.segments if s.sealed}


def verify_chain(directory: str | os.PathLike[str],
                 expected_roots: dict[int, str] | None = None) -> ChainReport:
    d = Path(directory)
    rep = ChainReport(str(d))
    segs = list_segments(d)
    prev_root: bytes | None = None
    prev_seal_off = 0
    last_seq: int | None = None
    fencing = 0
    wal_id: int | None = None
    prev_segno: int | None = None
    for i, sf in enumerate(segs):
        sr = SegmentReport(sf.segno, str(sf.path))
        rep.segments.append(sr)
        with open(sf.path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        mv = memoryview(mm)
        try:
            hdr = parse_segment_header(mv[:SEG_HEADER_BYTES])
            if hdr is None or hdr.segno != sf.segno:
                sr.errors.append("segment header invalid")
                prev_root = None
                continue
            sr.first_seq = hdr.first_seq
            if wal_id is not None and hdr.wal_id != wal_id:
                sr.errors.append(f"wal_id {hdr.wal_id:#x} differs from {wal_id:#x}")
            wal_id = hdr.wal_id
            if prev_segno is not None and sf.segno != prev_segno + 1:
                sr.errors.append(f"segment {prev_segno + 1} is missing")
            elif prev_segno is not None:
                if prev_root is not None and hdr.prev_root != prev_root:
                    sr.errors.append("prev_root does not match the previous segment's root")
                if hdr.prev_seal_off != prev_seal_off:
                    sr.errors.append("prev_seal_off does not point at the previous SEAL")
                if last_seq is not None and hdr.first_seq != last_seq + 1:
                    sr.errors.append(f"first_seq {hdr.first_seq} does not follow {last_seq}")
            prev_segno = sf.segno
            if hdr.fencing < fencing:
                sr.errors.append(f"fencing token went down to {hdr.fencing}")
            fencing = max(fencing, hdr.fencing)
            last_seq, fencing, chain = _frames(mv, sr, hdr.first_seq - 1, fencing, hdr.hash_alg)
            rep.head = chain.hex()
            rep.frames += sr.frames
            prev_root = bytes.fromhex(sr.root) if sr.sealed else None
            prev_seal_off = sr.seal_off
            if not sr.sealed and i != len(segs) - 1:
                sr.errors.append("segment is not sealed but is followed by another")
            if i == len(segs) - 1 and not sr.sealed:
                rep.unsealed_tail_bytes = _nonzero_tail(mm, sr.data_bytes + SEG_HEADER_BYTES)
            want = (expected_roots or {}).get(sf.segno)
            if want is not None and sr.sealed and want != sr.root:
                sr.errors.append(f"root {sr.root} differs from the recorded root {want}")
        finally:
            mv.release()
            mm.close()
    rep.last_seq = last_seq or 0
    for segno in sorted(set(expected_roots or {}) - {s.segno for s in rep.segments if s.sealed}):
        rep.errors.append(f"segment {segno} has a recorded root but is missing or unsealed")
    return rep


def _frames(mv: memoryview, sr: SegmentReport, last_seq: int, fencing: int,
            alg: int) -> tuple[int, int, bytes]:
    size = len(mv)
    chain_hash = hasher(alg)
    chain = chain_hash(mv[:SEG_HEADER_BYTES])
    off = SEG_HEADER_BYTES
    data_frames = 0
    while True:
        st, h = probe(mv, off, size)
        if st != OK or h is None:
            if st != END:  # END is the normal end of an unsealed segment
                sr.errors.append(f"frame at offset {off} fails its CRC or header check "
                                 f"(a torn tail if the writer crashed: run recovery)")
            break
        _m, _c, length, kind, _f, first_seq, count, _so, fence, _ts, prev_hash = h
        if prev_hash != chain:
            sr.errors.append(f"hash chain broken at offset {off}")
        if fence < fencing:
            sr.errors.append(f"fencing token went down at offset {off}")
        fencing = max(fencing, fence)
        flen = padded(HEADER_BYTES + length)
        if kind == FrameKind.SEAL:
            root, s_last, s_frames, s_bytes = SEAL_PAYLOAD.unpack_from(mv, off + HEADER_BYTES)
            if root != chain:
                sr.errors.append(f"SEAL root at offset {off} does not match the chain")
            if (s_last, s_frames, s_bytes) != (last_seq, data_frames, sr.data_bytes):
                sr.errors.append(f"SEAL at offset {off} does not match the segment's seqs/counts")
            sr.sealed = True
            sr.root = chain.hex()
            sr.seal_off = off
            if probe(mv, off + flen, size)[0] != END:
                sr.errors.append(f"bytes after the SEAL at offset {off + flen}")
            chain = chain_hash(mv[off: off + HEADER_BYTES + length])
            break
        if kind == FrameKind.COMMANDS:
            if first_seq != last_seq + 1:
                sr.errors.append(f"seq gap at offset {off}: {first_seq} after {last_seq}")
            last_seq = first_seq + count - 1
        elif not 1 <= first_seq <= last_seq:
            sr.errors.append(f"frame at offset {off} refers to seq {first_seq} > {last_seq}")
        chain = chain_hash(mv[off: off + HEADER_BYTES + length])
        data_frames += 1
        sr.data_bytes += flen
        off += flen
    sr.frames = data_frames
    sr.last_seq = last_seq
    if not sr.sealed:
        sr.root = chain.hex()
    return last_seq, fencing, chain


def _nonzero_tail(mm: mmap.mmap, start: int) -> int:
    rest = mm[start:]
    return len(rest.rstrip(b"\0"))
