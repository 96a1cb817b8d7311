"""On-disk layout of the WAL: segment files, frames, the hash chain, and ``durable.pos``.

Directory::

    wal.lock                                   flock'd by the one writer (and by recover())
    durable.pos                                64 B, mmap'd: the durable watermark (see durable.py)
    wal-<segno:010d>-<first_seq:020d>.seg      preallocated segments, mmap'd
    wal-next-<segno:010d>.tmp                  the next segment, being preallocated ahead of time

Segment = 64-byte segment header, then frames back to back, each 8-byte aligned, then zeros.
Segment header (little-endian)::

    0 magic u32 | 4 version u16 | 6 flags u16 (= ChainHash) | 8 segno u32 | 12 prev_seal_off u32
    16 first_seq u64 | 24 fencing u64 | 32 prev_root 16B | 48 wal_id u64 | 56 segment_bytes u32
    60 crc32c u32 over bytes [0, 60)

``prev_seal_off`` is where the previous segment's SEAL frame sits, so recovery can check the link
(SEAL root == ``prev_root``) without walking the previous segment.

Frame = 64-byte header + payload + zero padding to 8 bytes::

    0 magic u32 | 4 crc32c u32 over bytes [8, 64 + length) | 8 length u32 (payload bytes)
    12 kind u16 | 14 flags u16 | 16 first_seq u64 | 24 count u32 | 28 synced_off u32
    32 fencing u64 | 40 ts_ns i64 | 48 prev_hash 16B

The CRC sits before the length so that the length is covered by it (a flipped length bit cannot
send a reader off into the payload). ``synced_off`` is the offset in the frame's own segment up to
which the segment was durable when the frame was sealed: recovery uses it to tell a torn tail
(nothing after the bad frame was ever durable) from corruption (something after it was).

Hash chain: ``chain_0 = H(segment header)``; a frame's ``prev_hash`` is the chain before it and
the chain after it is ``H(frame header || payload)`` (the header holds ``prev_hash``, so this is
``H(prev_hash || header || payload)`` with no repeated bytes). ``H`` is 16 bytes of SHA-256
(default) or blake2b-128, named in each segment header's ``flags`` (:class:`ChainHash`). SHA-256
because this CPU has SHA-NI: hashlib runs it at 1.6 GB/s against 0.64 GB/s for blake2b (16 KiB
blocks, measured here), and the chain is hashed over every byte the engine logs. A
segment's *root* is the chain after its last data frame: its SEAL frame (written at rotation) carries
it along with the last seq, and the next segment's header carries it as ``prev_root`` so the chain
runs unbroken across segments. These roots are the "integrity roots" of the runbook.

WAL position: ``segno << 32 | offset`` (end of a frame), a monotonic int; segments are < 4 GiB.
"""

from __future__ import annotations

import enum
import hashlib
import mmap
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import crc32c as _crc32c

if TYPE_CHECKING:
    from typing_extensions import Buffer

FRAME_MAGIC = 0x4C575853  # b"SXWL"
SEG_MAGIC = 0x47535853  # b"SXSG"
VERSION = 1
HEADER_BYTES = 64
SEG_HEADER_BYTES = 64
HASH_BYTES = 16
ALIGN = 8
MAX_SEGMENT_BYTES = (1 << 32) - 4096
MIN_SEGMENT_BYTES = 4096

FRAME = struct.Struct("<IIIHHQIIqq16s")
FRAME_PREFIX = struct.Struct("<IIIHHQIIqq")  # the header without prev_hash (what append writes)
SEG = struct.Struct("<IHHIIQQ16sQII")
SEAL_PAYLOAD = struct.Struct("<16sQQQ")  # root, last_seq, data frames in segment, data bytes
SEAL_FRAME_BYTES = HEADER_BYTES + SEAL_PAYLOAD.size
U32 = struct.Struct("<I")
FRAME_MAGIC_BYTES = U32.pack(FRAME_MAGIC)
ZERO_HASH = bytes(HASH_BYTES)

_SEG_RE = re.compile(r"^wal-(\d{10})-(\d{20})\.seg$")


class ChainHash(enum.IntEnum):
    BLAKE2B = 0  # blake2b, digest_size=16
    SHA256 = 1  # sha256, first 16 bytes


def _blake2b(data: Buffer) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


def _sha256(data: Buffer) -> bytes:
    return hashlib.sha256(data).digest()[:HASH_BYTES]


_HASHERS: dict[int, Callable[[Buffer], bytes]] = {ChainHash.BLAKE2B: _blake2b,
                                                  ChainHash.SHA256: _sha256}


def hasher(alg: int) -> Callable[[Buffer], bytes]:
    """The chain hash function named by a segment header's ``flags``."""
    return _HASHERS[alg]


class FrameKind(enum.IntEnum):
    COMMANDS = 1  # `count` command records, seqs first_seq .. first_seq + count - 1
    EVENTS = 2  # `count` event records produced by the commands from first_seq on
    BLOB = 3  # variable bytes attached to seq first_seq (an admin action's audit note, ...)
    SEAL = 4  # last frame of a segment: SEAL_PAYLOAD; first_seq = the segment's last seq


USER_KINDS = frozenset((FrameKind.COMMANDS, FrameKind.EVENTS, FrameKind.BLOB))
_KIND_VALUES = frozenset(int(k) for k in FrameKind)


def crc32c(data: Buffer, value: int = 0) -> int:
    return int(_crc32c.crc32c(data, value))  # releases the GIL only for large buffers


def padded(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def position(segno: int, offset: int) -> int:
    return (segno << 32) | offset


def split_position(pos: int) -> tuple[int, int]:
    return pos >> 32, pos & 0xFFFFFFFF


def segment_name(segno: int, first_seq: int) -> str:
    return f"wal-{segno:010d}-{first_seq:020d}.seg"


def prealloc_name(segno: int) -> str:
    return f"wal-next-{segno:010d}.tmp"


@dataclass(frozen=True, slots=True)
class SegmentFile:
    segno: int
    first_seq: int
    path: Path


def list_segments(directory: Path) -> list[SegmentFile]:
    """Segment files of ``directory`` sorted by segment number (names only; headers unchecked)."""
    out = []
    for p in directory.iterdir():
        m = _SEG_RE.match(p.name)
        if m:
            out.append(SegmentFile(int(m.group(1)), int(m.group(2)), p))
    out.sort(key=lambda s: s.segno)
    return out


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    segno: int
    prev_seal_off: int  # 0 for the first segment of a log
    first_seq: int
    fencing: int
    prev_root: bytes
    wal_id: int
    segment_bytes: int
    hash_alg: int = ChainHash.SHA256

    def pack(self, *, final: bool = True) -> bytes:
        """The 64 header bytes; ``final=False`` leaves the CRC zero (prev_root not known yet)."""
        raw = SEG.pack(SEG_MAGIC, VERSION, self.hash_alg, self.segno, self.prev_seal_off, self.first_seq,
                       self.fencing, self.prev_root, self.wal_id, self.segment_bytes, 0)
        return raw[:60] + U32.pack(crc32c(raw[:60]) if final else 0)


def parse_segment_header(buf: bytes | memoryview) -> SegmentHeader | None:
    """The header, or None when it is missing, torn, not yet finalized or not ours."""
    if len(buf) < SEG_HEADER_BYTES:
        return None
    magic, version, alg, segno, seal_off, first_seq, fencing, prev_root, wal_id, seg_bytes, crc = \
        SEG.unpack_from(buf, 0)
    if magic != SEG_MAGIC or version != VERSION or crc != crc32c(bytes(buf[:60])):
        return None
    if alg not in _HASHERS:
        return None
    return SegmentHeader(segno, seal_off, first_seq, fencing, prev_root, wal_id, seg_bytes, alg)


class Frame:
    """One frame as read back. ``payload`` is a zero-copy view into the segment mmap: it stays
    valid while the caller holds it (the mapping lives until the last view is dropped)."""

    __slots__ = ("kind", "flags", "first_seq", "count", "fencing", "ts_ns", "payload",
                 "segno", "offset", "end")

    def __init__(self, kind: int, flags: int, first_seq: int, count: int, fencing: int,
                 ts_ns: int, payload: memoryview, segno: int, offset: int, end: int) -> None:
        self.kind = kind
        self.flags = flags
        self.first_seq = first_seq
        self.count = count
        self.fencing = fencing
        self.ts_ns = ts_ns
        self.payload = payload
        self.segno = segno
        self.offset = offset
        self.end = end

    @property
    def position(self) -> int:
        """WAL position just after this frame (what ``append`` returned for it)."""
        return position(self.segno, self.end)

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1 if self.kind == FrameKind.COMMANDS else self.first_seq

    def __repr__(self) -> str:
        kind = FrameKind(self.kind).name if self.kind in _KIND_VALUES else str(self.kind)
        return (f"Frame({kind} seq={self.first_seq} count={self.count} bytes={len(self.payload)} "
                f"fencing={self.fencing} at {self.segno}:{self.offset})")


# Status of the bytes at an offset, as seen by scanners.
OK, END, BAD = 0, 1, 2


def probe(mv: memoryview, off: int, limit: int) -> tuple[int, tuple | None]:
    """Classify the frame at ``off`` (``limit`` = end of the segment's frame area).

    ``END``: a zero magic (never-written space, or a header append had not written yet);
    ``BAD``: a header that cannot be a frame or a CRC that does not hold;
    ``OK``: with the unpacked header tuple.
    """
    if off + HEADER_BYTES > limit:
        return END, None
    h = FRAME.unpack_from(mv, off)
    magic, crc, length, kind = h[0], h[1], h[2], h[3]
    if magic == 0:
        return END, None
    if magic != FRAME_MAGIC or kind not in _KIND_VALUES or off + HEADER_BYTES + length > limit:
        return BAD, None
    if crc != crc32c(mv[off + 8: off + HEADER_BYTES + length]):
        return BAD, None
    return OK, h


def later_durable_frame(mm: mmap.mmap, mv: memoryview, start: int) -> tuple[int, int] | None:
    """A valid frame after ``start`` whose ``synced_off`` stamp says the segment was durable past
    ``start`` when it was sealed: proof that bytes at ``start`` were durable. (offset, stamp)."""
    size = len(mm)
    i = mm.find(FRAME_MAGIC_BYTES, start + 1)
    while i != -1:
        if i % ALIGN == 0:
            st, h = probe(mv, i, size)
            if st == OK and h is not None and h[7] > start:
                return i, h[7]
        i = mm.find(FRAME_MAGIC_BYTES, i + 1)
    return None
