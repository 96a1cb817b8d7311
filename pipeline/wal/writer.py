"""WalWriter: append frames into mmap'd segments; seal, sync and publish them in groups.

Two threads may use a writer: one *appending* thread (checked: appends from another thread raise)
and one *syncing* thread (the GroupCommitter's flusher, or the appender itself).

* ``append`` validates, copies the payload into the segment's image, writes the header with CRC 0
  and an empty ``prev_hash``, and publishes ``(segment, end, last_seq)`` with one reference
  assignment. The image is private memory by default (``write="pwrite"``): the file gets the new
  bytes with one ``pwrite`` per segment per sync, just before the fdatasync; ``write="mmap"``
  writes through the file's shared mapping instead (see segment.py for why pwrite is the default).
  At rotation it writes the SEAL frame and the next segment's header and renames the preallocated
  file into place.
* *Sealing* a frame stamps ``synced_off``, writes ``prev_hash`` (the chain) and the CRC, and for a
  SEAL / next header fills in the root. ``seal="append"`` (default) does it at the end of
  ``append``; ``seal="flusher"`` leaves it to ``sync``.
* ``sync`` seals what is left, writes it to the file (``pwrite``), does one fdatasync (or msync)
  per touched segment, fsyncs the directory after a rotation, and only then publishes the durable
  watermark (in memory and in ``durable.pos``).

Why sealing on append is the default (bench/wal.py, paced 1 M records/s, appender holding the GIL
like an engine loop, 5 ms switch interval): sealing on the flusher needs the GIL for a few
microseconds per frame and hashlib drops it for buffers over 2 KiB, so every frame cost the flusher
a GIL hand-over — sync p50 10.6 ms against 0.27 ms. Sealing on append costs the appender ~10 us
per 16 KiB (SHA-256 with SHA-NI) and leaves the flusher one hand-over per sync. ``"flusher"`` suits
an appender that releases the GIL (nogil kernels): the hashing then runs on the other core.

A frame not sealed when the process died fails its CRC and is dropped by recovery as a torn tail;
a sealed one that was not yet synced is kept (and synced by recovery) if it reached the file — it
was never visible, so keeping or dropping it are both correct. With ``write="pwrite"`` a frame
reaches the file only in ``sync``, so a crashed process leaves at most the frames of the sync it
was in. A sync failure is fatal: the error is kept and every later
append or sync raises WalSyncError.

Layout on disk: see format.py. Invariants: COMMANDS seqs are contiguous; EVENTS/BLOB frames refer
to a seq already appended; fencing tokens never go down; bytes after the appended end are zero.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from pipeline.wal.durable import DurableFile
from pipeline.wal.errors import (
    WalAppendError,
    WalClosed,
    WalError,
    WalFencingError,
    WalSyncError,
)
from pipeline.wal.format import (
    FRAME_MAGIC,
    FRAME_PREFIX,
    HEADER_BYTES,
    MAX_SEGMENT_BYTES,
    MIN_SEGMENT_BYTES,
    SEAL_FRAME_BYTES,
    SEAL_PAYLOAD,
    SEG_HEADER_BYTES,
    U32,
    ZERO_HASH,
    ChainHash,
    FrameKind,
    SegmentHeader,
    crc32c,
    hasher,
    list_segments,
    padded,
    position,
    segment_name,
)
from pipeline.wal.recovery import RecoveryResult, lock_directory, recover_locked, unlock_directory
from pipeline.wal.segment import (
    WRITE_MODES,
    Preallocator,
    WritableSegment,
    create_file,
    fsync_dir,
)

SYNC_MODES = ("fdatasync", "msync", "none")
SEAL_MODES = ("flusher", "append")
_COMMANDS, _EVENTS, _BLOB, _SEAL = (int(FrameKind.COMMANDS), int(FrameKind.EVENTS),
                                    int(FrameKind.BLOB), int(FrameKind.SEAL))


class WalWriter:
    """The single writer of a WAL directory (flock'd). Opening an existing directory recovers it
    and continues its chain. ``sync_mode="none"`` (alias ``"async"``) never syncs: benchmarks only.
    """

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = 64 << 20,
                 fencing_token: int = 0, sync_mode: str = "fdatasync", first_seq: int = 1,
                 prealloc: str = "zero", chain_hash: str = "sha256",
                 seal: str = "append", write: str = "pwrite") -> None:
        sync_mode = "none" if sync_mode == "async" else sync_mode
        if sync_mode not in SYNC_MODES:
            raise WalError(f"unknown sync_mode {sync_mode!r}; expected one of {SYNC_MODES}")
        if not MIN_SEGMENT_BYTES <= segment_bytes <= MAX_SEGMENT_BYTES or segment_bytes % 4096:
            raise WalError(f"segment_bytes must be a multiple of 4096 in [{MIN_SEGMENT_BYTES}, "
                           f"{MAX_SEGMENT_BYTES}], got {segment_bytes}")
        if chain_hash.upper() not in ChainHash.__members__:
            raise WalError(f"unknown chain_hash {chain_hash!r}; expected sha256 or blake2b")
        if seal not in SEAL_MODES:
            raise WalError(f"unknown seal mode {seal!r}; expected one of {SEAL_MODES}")
        if write not in WRITE_MODES:
            raise WalError(f"unknown write mode {write!r}; expected one of {WRITE_MODES}")
        if sync_mode == "msync":
            write = "mmap"  # msync flushes the shared mapping the appender writes through
        if first_seq < 1 or fencing_token < 0:
            raise WalError("first_seq must be >= 1 and fencing_token >= 0")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sync_mode = sync_mode
        self.seal = seal
        self.write = write
        self._seal_on_append = seal == "append"
        self._seg_bytes = segment_bytes
        self._lock_fd: int | None = lock_directory(self.directory)
        self._closed = False
        self._failed: WalSyncError | None = None
        self._owner: int | None = None
        self._sync_lock = threading.Lock()
        self._rot_lock = threading.Lock()
        self._renames = 0
        self._renames_synced = 0
        self._root = ZERO_HASH  # root of the last segment sealed by sync(): the next header's
        try:
            rec = recover_locked(self.directory)
            # An existing log keeps its chain hash; a new one takes the configured one.
            self._alg = int(ChainHash[chain_hash.upper()]) if rec.empty else rec.hash_alg
            self._hash = hasher(self._alg)
            if rec.max_fencing > fencing_token:
                raise WalFencingError(fencing_token, rec.max_fencing)
            self.recovery = rec
            self._fencing = fencing_token
            self._durable_file = DurableFile(self.directory, writable=True)
            self._prealloc = Preallocator(self.directory, segment_bytes, prealloc)
            self._open(rec, first_seq)
        except BaseException:
            self._release_lock()
            raise

    # ------------------------------------------------------------------ opening

    def _open(self, rec: RecoveryResult, first_seq: int) -> None:
        if rec.empty:
            self.wal_id = secrets.randbits(63) or 1
            self._last_seq = first_seq - 1
            self._activate(0, 0, ZERO_HASH)
        else:
            self.wal_id = rec.wal_id
            self._last_seq = rec.last_seq
            if rec.sealed:
                self._activate(rec.segno + 1, rec.seal_off, rec.root)
            else:
                # continue the segment at its own size (segment_bytes may have been changed)
                seg = WritableSegment(Path(rec.segment), rec.segno,
                                      os.stat(rec.segment).st_size, self.write)
                seg.resume(rec.offset)
                self._segs = [seg]
                self._cur, self._off = seg, rec.offset
                self._chain = rec.chain
                self._data_frames, self._data_bytes = rec.data_frames, rec.data_bytes
        self._appended = (self._cur, self._off, self._last_seq)
        self._durable = (self._cur.segno, self._off, self._last_seq)
        self._durable_file.publish(self._last_seq, self._cur.segno, self._off, self.wal_id,
                                   self._fencing)
        self._prealloc.prepare(self._cur.segno + 1)

    def _activate(self, segno: int, prev_seal_off: int, prev_root: bytes) -> None:
        """Create, finalize and sync a segment whose previous root is known (open time only)."""
        tmp = self._prealloc.path_for(segno)
        create_file(tmp, self._seg_bytes, self._prealloc.mode)
        path = self.directory / segment_name(segno, self._last_seq + 1)
        os.rename(tmp, path)
        seg = WritableSegment(path, segno, self._seg_bytes, self.write)
        hdr = SegmentHeader(segno, prev_seal_off, self._last_seq + 1, self._fencing, prev_root,
                            self.wal_id, self._seg_bytes, self._alg).pack()
        seg.mm[:SEG_HEADER_BYTES] = hdr
        seg.flush(SEG_HEADER_BYTES)
        os.fdatasync(seg.fd)
        fsync_dir(self.directory)
        seg.fin_off = seg.synced_off = SEG_HEADER_BYTES
        self._segs = [seg]
        self._cur, self._off = seg, SEG_HEADER_BYTES
        self._chain = self._hash(hdr)
        self._data_frames = self._data_bytes = 0

    # ------------------------------------------------------------------ appending (one thread)

    def append(self, kind: int, first_seq: int, count: int, payload: object, ts_ns: int,
               flags: int = 0) -> int:
        """Copy one frame into the log; returns its WAL position (durable once ``durable_position``
        reaches it). ``payload``: any C-contiguous buffer (bytes, numpy records, memoryview)."""
        if self._failed is not None or self._closed:
            self._raise_unusable()
        if self._owner is None:
            self._owner = threading.get_ident()
        elif self._owner != threading.get_ident():
            raise WalAppendError("WalWriter.append called from a second thread (single appender)")
        mv = memoryview(payload)  # type: ignore[arg-type]
        if not mv.c_contiguous:
            raise WalAppendError("payload must be a C-contiguous buffer")
        n = mv.nbytes
        if kind == _COMMANDS:
            if first_seq != self._last_seq + 1 or count < 1:
                raise WalAppendError(f"COMMANDS must continue the seq: expected first_seq "
                                     f"{self._last_seq + 1} and count >= 1, got {first_seq}/{count}")
        elif kind == _EVENTS or kind == _BLOB:
            if not 1 <= first_seq <= self._last_seq:
                raise WalAppendError(f"{FrameKind(kind).name} frame must refer to an appended seq "
                                     f"(1..{self._last_seq}), got {first_seq}")
        else:
            raise WalAppendError(f"frame kind {kind!r} cannot be appended (COMMANDS, EVENTS, BLOB)")
        size = padded(HEADER_BYTES + n)
        off = self._off
        if off + size + SEAL_FRAME_BYTES > self._cur.size:
            if SEG_HEADER_BYTES + size + SEAL_FRAME_BYTES > self._seg_bytes:
                raise WalAppendError(f"payload of {n} bytes cannot fit a {self._seg_bytes}-byte "
                                     f"segment")
            self._rotate(ts_ns)
            off = self._off
        mm = self._cur.mm
        try:
            FRAME_PREFIX.pack_into(mm, off, FRAME_MAGIC, 0, n, kind, flags, first_seq, count, 0,
                                   self._fencing, ts_ns)
        except Exception as e:  # struct.error / OverflowError: a field out of range
            mm[off: off + HEADER_BYTES] = bytes(HEADER_BYTES)  # keep "zeros after the end"
            raise WalAppendError(f"frame field out of range: {e}") from None
        mm[off + HEADER_BYTES: off + HEADER_BYTES + n] = mv
        end = off + size
        self._off = end
        if kind == _COMMANDS:
            self._last_seq = first_seq + count - 1
        self._data_frames += 1
        self._data_bytes += size
        if self._seal_on_append:
            d = self._durable
            self._seal_frames(self._cur, end, d[1] if d[0] == self._cur.segno else 0)
        self._appended = (self._cur, end, self._last_seq)
        return (self._cur.segno << 32) | end

    def _rotate(self, ts_ns: int) -> None:
        cur, off = self._cur, self._off
        seal = SEAL_PAYLOAD.pack(ZERO_HASH, self._last_seq, self._data_frames, self._data_bytes)
        mm = cur.mm
        mm[off + HEADER_BYTES: off + SEAL_FRAME_BYTES] = seal
        FRAME_PREFIX.pack_into(mm, off, FRAME_MAGIC, 0, len(seal), _SEAL, 0, self._last_seq, 0, 0,
                               self._fencing, ts_ns)
        cur.sealed_end = off + SEAL_FRAME_BYTES
        if self._seal_on_append:
            d = self._durable
            self._seal_frames(cur, cur.sealed_end, d[1] if d[0] == cur.segno else 0)
        segno = cur.segno + 1
        path = self.directory / segment_name(segno, self._last_seq + 1)
        os.rename(self._prealloc.take(segno), path)
        seg = WritableSegment(path, segno, self._seg_bytes, self.write)
        seg.mm[:SEG_HEADER_BYTES] = SegmentHeader(segno, off, self._last_seq + 1, self._fencing,
                                                  ZERO_HASH, self.wal_id, self._seg_bytes,
                                                  self._alg).pack(final=False)
        with self._rot_lock:
            self._segs.append(seg)
            self._renames += 1
        self._cur, self._off = seg, SEG_HEADER_BYTES
        self._data_frames = self._data_bytes = 0
        self._prealloc.prepare(segno + 1)

    # ------------------------------------------------------------------ syncing (one thread)

    def sync(self) -> int:
        """Seal and sync everything appended so far; returns the durable position. Thread-safe
        against the appender; one sync at a time."""
        with self._sync_lock:
            if self._failed is not None or self._closed:
                self._raise_unusable()
            tgt, end, seq = self._appended
            if self._durable[0] == tgt.segno and self._durable[1] == end:
                return position(tgt.segno, end)
            with self._rot_lock:
                segs = list(self._segs)
                renames = self._renames
            dur_segno, dur_off = self._durable[0], self._durable[1]
            seg = tgt
            try:
                for seg in segs:
                    stop = end if seg is tgt else seg.sealed_end
                    if stop is None:  # cannot happen: only the target may be unsealed
                        raise WalError(f"segment {seg.segno} unsealed behind the target")
                    self._seal_frames(seg, stop, dur_off if seg.segno == dur_segno else 0)
                    seg.flush(stop)  # write="pwrite": the image's new bytes into the file
                    if self.sync_mode == "fdatasync":
                        os.fdatasync(seg.fd)
                    elif self.sync_mode == "msync":
                        seg.msync(seg.synced_off, stop)
                    seg.synced_off = stop
                    if seg is tgt:
                        break
                if renames != self._renames_synced and self.sync_mode != "none":
                    fsync_dir(self.directory)
                self._renames_synced = renames
            except OSError as e:
                self._failed = WalSyncError(e.errno or 5, str(e), str(seg.path))
                raise self._failed from e
            self._durable = (tgt.segno, end, seq)
            self._durable_file.publish(seq, tgt.segno, end, self.wal_id, self._fencing)
            with self._rot_lock:
                while self._segs[0] is not tgt and self._segs[0].synced_off == self._segs[0].sealed_end:
                    self._segs.pop(0).close()
            return position(tgt.segno, end)

    def _seal_frames(self, seg: WritableSegment, stop: int, stamp: int) -> None:
        """Write stamp, chain and CRC of the frames in [fin_off, stop) (on the flusher by default,
        in ``append`` with ``seal="append"``, in which case the flusher finds nothing left)."""
        off = seg.fin_off
        if off >= stop:
            return
        mm, mv = seg.mm, seg.mv
        chain = self._chain
        chain_hash = self._hash
        if off == 0:  # header written at rotation, before the previous root was known
            mm[32:48] = self._root
            U32.pack_into(mm, 60, crc32c(mv[:60]))
            chain = self._hash(mv[:SEG_HEADER_BYTES])
            off = SEG_HEADER_BYTES
        while off < stop:
            length = U32.unpack_from(mm, off + 8)[0]
            if mm[off + 12] == _SEAL:
                mm[off + HEADER_BYTES: off + HEADER_BYTES + 16] = chain
                self._root = chain
            U32.pack_into(mm, off + 28, stamp)
            mm[off + 48: off + 64] = chain
            U32.pack_into(mm, off + 4, crc32c(mv[off + 8: off + HEADER_BYTES + length]))
            chain = chain_hash(mv[off: off + HEADER_BYTES + length])
            off += padded(HEADER_BYTES + length)
        seg.fin_off = off
        self._chain = chain

    # ------------------------------------------------------------------ retention

    def prune_before(self, seq: int) -> list[str]:
        """Delete sealed, synced segments holding only seqs < ``seq`` (after a snapshot covers them).
        Readers that still map one keep reading it; a reader that asks for a pruned seq gets
        WalGapError. Returns the deleted file names."""
        if self._closed:
            raise WalClosed(f"WAL writer for {self.directory} is closed")
        with self._rot_lock:
            live = {s.segno for s in self._segs}
        segs = list_segments(self.directory)
        gone = []
        for cur, nxt in zip(segs, segs[1:], strict=False):
            if nxt.first_seq > seq or cur.segno in live or nxt.segno != cur.segno + 1:
                break  # cur holds seq >= `seq`, or is not synced yet, or the log has a hole
            cur.path.unlink()
            gone.append(cur.path.name)
        if gone:
            fsync_dir(self.directory)
        return gone

    # ------------------------------------------------------------------ state

    @property
    def durable_seq(self) -> int:
        return self._durable[2]

    @property
    def durable_position(self) -> int:
        return position(self._durable[0], self._durable[1])

    @property
    def appended_position(self) -> int:
        a = self._appended
        return position(a[0].segno, a[1])

    @property
    def last_seq(self) -> int:
        """Highest command seq appended (durable or not)."""
        return self._last_seq

    @property
    def segment_bytes(self) -> int:
        return self._seg_bytes

    @property
    def fencing_token(self) -> int:
        return self._fencing

    @fencing_token.setter
    def fencing_token(self, token: int) -> None:
        if token < self._fencing:
            raise WalFencingError(token, self._fencing)
        self._fencing = token

    @property
    def failed(self) -> WalSyncError | None:
        return self._failed

    @property
    def closed(self) -> bool:
        return self._closed

    def prealloc_stats(self) -> tuple[int, int]:
        """(segments prepared ahead of time, rotations that came before that finished)."""
        return self._prealloc.completed, self._prealloc.cancelled

    def _raise_unusable(self) -> None:
        if self._failed is not None:
            raise WalSyncError(self._failed.errno or 5, f"writer failed earlier: {self._failed}",
                               self._failed.segment)
        raise WalClosed(f"WAL writer for {self.directory} is closed")

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Sync what was appended (unless a sync already failed), unmap, release the lock."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self.sync()
        finally:
            with self._sync_lock:
                self._closed = True
                self._prealloc.abandon()
                with self._rot_lock:
                    for seg in self._segs:
                        seg.close()
                    self._segs = []
                self._durable_file.close()
                self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            unlock_directory(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> WalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
