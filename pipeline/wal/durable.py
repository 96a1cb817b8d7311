"""``durable.pos``: the durable watermark, published by the writer, polled by readers in any process.

Layout (64 bytes, little-endian)::

    0 magic u32 | 4 version u16 | 6 pad u16 | 8 generation u64 | 16 durable_seq u64
    24 segno u64 | 32 offset u64 | 40 wal_id u64 | 48 fencing u64 | 56 synced_ns i64

``generation`` is a seqlock: the writer makes it odd, writes the fields, makes it even again; a reader
retries until it reads the same even value before and after the fields (x86 keeps stores in order
and loads in order, and each ``pack_into`` / ``unpack_from`` is a separate C call, so neither side
can be reordered by the compiler across them). Generation 0 means "never published".

Ownership: the writer (holding ``wal.lock``) creates the file once, maps it read-write and is the
only one to write it; readers map it read-only. It is never recreated while it exists, so a reader's
mapping stays the live one. The file is deliberately not fsynced: it is published only *after* the
segment sync returned, so whatever of it reaches the disk can only understate what is durable;
recovery uses it as evidence that a bad frame below it is corruption, not a torn write.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.wal.errors import WalError
from pipeline.wal.format import position

DURABLE_MAGIC = 0x50445853  # b"SXDP"
DURABLE_VERSION = 1
DURABLE_BYTES = 64
_HEAD = struct.Struct("<IHHQ")
_GEN = struct.Struct("<Q")
_FIELDS = struct.Struct("<QQQQQq")  # durable_seq, segno, offset, wal_id, fencing, synced_ns
DURABLE_NAME = "durable.pos"


@dataclass(frozen=True, slots=True)
class DurablePos:
    seq: int  # highest command seq whose COMMANDS frame is durable (0: none)
    segno: int
    offset: int  # end of durable bytes within segment `segno`
    generation: int
    wal_id: int
    fencing: int
    synced_ns: int  # time.time_ns() when the covering sync returned

    @property
    def position(self) -> int:
        return position(self.segno, self.offset)


class DurableFile:
    """One mapping of ``durable.pos``; ``writable=True`` only for the writer (creates the file)."""

    def __init__(self, directory: str | os.PathLike[str], *, writable: bool) -> None:
        self.path = Path(directory) / DURABLE_NAME
        self.writable = writable
        if writable and not self.path.exists():
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                f.write(_HEAD.pack(DURABLE_MAGIC, DURABLE_VERSION, 0, 0).ljust(DURABLE_BYTES, b"\0"))
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.path)
        fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            st = os.fstat(fd)
            self._ident = (st.st_dev, st.st_ino)
            if st.st_size < DURABLE_BYTES:
                raise WalError(f"{self.path} is shorter than {DURABLE_BYTES} bytes")
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self._mm: mmap.mmap | None = mmap.mmap(fd, DURABLE_BYTES, access=access)
        finally:
            os.close(fd)
        magic, version, _pad, _gen = _HEAD.unpack_from(self._mm, 0)
        if magic != DURABLE_MAGIC or version != DURABLE_VERSION:
            self.close()
            raise WalError(f"{self.path} is not a spotx durable.pos (magic {magic:#x})")
        self._last: DurablePos | None = None

    def publish(self, seq: int, segno: int, offset: int, wal_id: int, fencing: int) -> None:
        mm = self._mm
        if mm is None:
            raise WalError("durable.pos is closed")
        gen = _GEN.unpack_from(mm, 8)[0]
        gen = gen + 1 if gen % 2 == 0 else gen  # an odd value left by a crashed writer: reuse it
        _GEN.pack_into(mm, 8, gen)
        _FIELDS.pack_into(mm, 16, seq, segno, offset, wal_id, fencing, time.time_ns())
        _GEN.pack_into(mm, 8, gen + 1)

    def read(self) -> DurablePos | None:
        """The latest consistent watermark, or None if none was ever published. Never blocks long:
        if the writer died mid-update the previous consistent value is returned."""
        mm = self._mm
        if mm is None:
            raise WalError("durable.pos is closed")
        for attempt in range(2000):
            g1 = _GEN.unpack_from(mm, 8)[0]
            if g1 % 2 == 0:
                fields = _FIELDS.unpack_from(mm, 16)
                if _GEN.unpack_from(mm, 8)[0] == g1:
                    if g1 == 0:
                        return None
                    seq, segno, offset, wal_id, fencing, synced_ns = fields
                    self._last = DurablePos(seq, segno, offset, g1, wal_id, fencing, synced_ns)
                    return self._last
            if attempt > 100:
                time.sleep(0)
        return self._last

    def replaced(self) -> bool:
        """True when the path no longer names the mapped file (the WAL directory was recreated):
        this mapping will never move again. One stat; call it when idle, not per frame."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None


def read_durable(directory: str | os.PathLike[str]) -> DurablePos | None:
    """One-shot read (recovery, CLI); None when the file is missing or never published."""
    try:
        f = DurableFile(directory, writable=False)
    except (FileNotFoundError, WalError):
        return None
    try:
        return f.read()
    finally:
        f.close()
