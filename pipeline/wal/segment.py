"""Segment files: creation with preallocation, the writer's view of a segment, the background
preallocator.

Preallocation modes (``prealloc=``):

* ``"zero"`` (default): write zeros through the whole file and fsync it, so its extents are
  written and a later fdatasync flushes data only. On this machine's ext4 (no journal) a sync into
  unwritten extents also writes the inode synchronously (``ext4_fsync_nojournal`` ->
  ``ext4_write_inode``: a second I/O round trip in every sync that converts extents). Measured
  (``python -m bench wal --quick``, two runs): with the default ``write="pwrite"``, paced 1 M
  records/s commit latency p50 0.21-0.31 ms / p99 5.5-7.9 ms against 0.40-0.60 / 27-45 ms for
  the old mmap + fallocate WAL in the same run; ``bench e2e`` 50 k orders/s place p99 6.6-22 ms
  against 35-53 ms (three interleaved series). Zeroing 64 MiB takes ~40-70 ms here, in the background;
  a WAL sync that overlaps it can take up to ~5-13 ms (max of ~2 000 syncs during a fill, against
  1-2 ms without; p99 unchanged; chunking or pacing the fill did not lower it). (An
  earlier measurement found zero mode worse, p99 3.5-6 ms against 1.3-2.4 ms, but with the
  appender storing through the shared mapping, which is slow into written extents: see
  WritableSegment.)
* ``"fallocate"``: ``posix_fallocate`` — blocks reserved (no ENOSPC at writeback, which would be
  a fatal sync error), no data written; each fdatasync also commits the conversion of the extents
  it touched. The file is then read once (no disk I/O for unwritten extents) so its pages sit
  zeroed in the page cache before the appender touches them.
* ``"sparse"``: ``ftruncate`` only (delayed allocation at writeback).

The :class:`Preallocator` prepares segment N+1 in a thread while N is being written (``pwrite`` and
``fdatasync`` release the GIL). If rotation comes before it is done, :meth:`Preallocator.take`
cancels it (bounded by one chunk) and the rest of the file stays sparse: rotation never waits for
the disk. Prepared files are named ``wal-next-<segno>.tmp`` and are renamed to their final name when
they become the active segment; recovery deletes leftovers.

Ownership: the writer process creates, writes (pwrite from a private image, or through a shared
read-write mapping with ``write="mmap"``), renames and closes segment files.
Readers map them read-only. Nothing here unlinks a named segment.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
import time
from pathlib import Path

from pipeline.diskio import DUTY, pause, write_back
from pipeline.wal.errors import WalError
from pipeline.wal.format import prealloc_name

PREALLOC_MODES = ("zero", "fallocate", "sparse")
WRITE_MODES = ("pwrite", "mmap")
TRIM_STEP = 1 << 20  # image bytes released at a time (see WritableSegment)
_CHUNK = 1 << 20  # the zero-fill's step: written, then written back, before the next one
_ZEROS = bytes(_CHUNK)
FILL_DUTY = DUTY  # a paced zero-fill sleeps this many times as long as each step took
MS_SYNC = 4  # Linux <sys/mman.h>
PAGE = mmap.PAGESIZE

_libc = ctypes.CDLL(None, use_errno=True)
_msync = _libc.msync
_msync.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_msync.restype = ctypes.c_int


def fill_file(fd: int, size: int, mode: str, cancel: threading.Event | None = None,
              pace: bool = False) -> bool:
    """Give ``fd`` its full ``size`` per ``mode``. Returns False if cancelled part-way (the file is
    then extended sparse to ``size``, which is still correct, just slower to sync).

    ``zero`` writes the file a MiB at a time and writes each step back
    (``pipeline.diskio.write_back``, no cache flush) before the next, then ``fsync``s once.
    ``pace`` (the background fill of the next segment, while the engine syncs the current one on
    the same device): after each step, sleep ``FILL_DUTY`` times as long as it took, so the device
    is idle between steps. Why (session 13, ``python -m bench wal --quick`` row
    ``wal.rotation.b448``): the fill used to ``fdatasync`` every 8 MiB at full speed, and every
    WAL sync in the ~25 batches after a rotation queued behind one of those flushes: 10-36 ms
    each, a quarter of a second of slow acks per 64 MiB segment."""
    if mode == "zero":
        done = 0
        while done < size:
            if cancel is not None and cancel.is_set():
                os.ftruncate(fd, size)
                return False
            t0 = time.perf_counter()
            n = min(_CHUNK, size - done)
            # a write may be short (a disk about to fill up): count what was written, and the
            # next write either continues or raises (ENOSPC) instead of leaving a short file
            w = os.pwrite(fd, _ZEROS[:n] if n < _CHUNK else _ZEROS, done)
            write_back(fd, done, w)
            done += w
            if pace:
                pause(t0, FILL_DUTY)
        os.fsync(fd)
    elif mode == "fallocate":
        os.posix_fallocate(fd, 0, size)
        os.fsync(fd)
        # Warm the page cache: reading unwritten extents costs no I/O but leaves zeroed pages
        # cached, so the appender's first touch of each page is a minor fault (~1.1-1.6 us per
        # 4 KiB measured here) instead of allocate-and-zero in the fault path (~3.5 us).
        done = 0
        while done < size:
            if cancel is not None and cancel.is_set():
                return False
            os.pread(fd, min(_CHUNK, size - done), done)
            done += _CHUNK
    elif mode == "sparse":
        os.ftruncate(fd, size)
    else:
        raise WalError(f"unknown prealloc mode {mode!r}; expected one of {PREALLOC_MODES}")
    return True


def create_file(path: Path, size: int, mode: str, cancel: threading.Event | None = None,
                pace: bool = False) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return fill_file(fd, size, mode, cancel, pace)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WritableSegment:
    """A segment as the writer sees it.

    ``write="pwrite"`` (default): ``mm`` / ``mv`` are a private anonymous image of the segment; the
    writer builds and seals frames there, and ``flush(stop)`` copies ``[written_off, stop)`` into
    the file with one ``pwrite`` just before each sync. ``write="mmap"``: ``mm`` is the file's shared
    read-write mapping, stores land in the page cache at once, ``flush`` does nothing (``msync``
    needs this). Readers map the file either way and read only up to the durable watermark, which
    moves after the sync, so both give them the same bytes.

    Why pwrite (measured here, ext4 without a journal; ``python -m bench wal``, rows
    ``wal.inline_sync.*`` and ``wal.paced_1M.b256*``): a store through a shared mapping makes the
    page writable-dirty and writeback write-protects it again, so every sync re-faults its pages
    (``page_mkwrite``); into pre-zeroed (written) extents a 512 B - 28 KiB sync back to back costs
    ~90-110 us p50 by pwrite against ~200-250 us through the mapping. Against the old default
    (mmap into fallocate'd extents) one small frame per sync is the same within the noise, a
    28 KiB one 20-35 % cheaper, and under sustained load the tail is several times shorter.

    ``fin_off``: bytes sealed (CRC + chain written); 0 while the segment header is still
    unfinalized. ``written_off``: bytes handed to the file. ``synced_off``: bytes covered by a
    completed sync. ``sealed_end``: set by the appender when it wrote the SEAL frame (the segment
    takes no more appends). The image keeps only what may still be read or written: pages wholly
    below both ``fin_off`` and ``written_off`` are dropped (``MADV_DONTNEED``) every ``TRIM_STEP``
    bytes, so the writer's memory stays flat however large the segment.
    """

    def __init__(self, path: Path, segno: int, size: int, write: str = "pwrite") -> None:
        if write not in WRITE_MODES:
            raise WalError(f"unknown write mode {write!r}; expected one of {WRITE_MODES}")
        self.path = path
        self.segno = segno
        self.size = size
        self.pwrite = write == "pwrite"
        self.fd = os.open(path, os.O_RDWR)
        try:
            if os.fstat(self.fd).st_size != size:
                raise WalError(f"{path} is {os.fstat(self.fd).st_size} bytes, expected {size}")
            if self.pwrite:
                self.mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                                    prot=mmap.PROT_READ | mmap.PROT_WRITE)
            else:
                self.mm = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED,
                                    prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        self.mv = memoryview(self.mm)
        self.fin_off = 0
        self.written_off = 0
        self.synced_off = 0
        self.sealed_end: int | None = None
        self._trimmed = 0
        self._anchor: ctypes.c_char | None = None

    def resume(self, offset: int) -> None:
        """Continue a segment recovered at ``offset``: everything before it is in the file already
        (sealed, synced, written). The image below ``offset`` stays zero: nothing reads it."""
        self.fin_off = self.written_off = self.synced_off = offset
        self._trimmed = offset & ~(PAGE - 1)

    def flush(self, stop: int) -> None:
        """Hand ``[written_off, stop)`` of the image to the file (``pwrite`` releases the GIL)."""
        off = self.written_off
        if not self.pwrite or stop <= off:
            return
        mv, fd = self.mv, self.fd
        while off < stop:
            off += os.pwrite(fd, mv[off:stop], off)
        self.written_off = stop
        keep = min(stop, self.fin_off) & ~(PAGE - 1)
        if keep - self._trimmed >= TRIM_STEP:
            self.mm.madvise(mmap.MADV_DONTNEED, self._trimmed, keep - self._trimmed)
            self._trimmed = keep

    def msync(self, start: int, end: int) -> None:
        """(``write="mmap"`` only) msync(MS_SYNC) over [start, end) through ctypes, which releases
        the GIL (the stdlib ``mmap.flush`` does not, so it would stall the appending thread for the
        whole sync)."""
        if self._anchor is None:
            self._anchor = ctypes.c_char.from_buffer(self.mm)
        base = ctypes.addressof(self._anchor)
        start &= ~(PAGE - 1)
        if _msync(base + start, end - start, MS_SYNC) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def close(self) -> None:
        self._anchor = None
        self.mv.release()
        self.mm.close()
        os.close(self.fd)


class Preallocator:
    """Prepares the next segment file in a background thread. Used by the appending thread only."""

    def __init__(self, directory: Path, size: int, mode: str) -> None:
        if mode not in PREALLOC_MODES:
            raise WalError(f"unknown prealloc mode {mode!r}; expected one of {PREALLOC_MODES}")
        self.directory = directory
        self.size = size
        self.mode = mode
        self._segno: int | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self.completed = 0  # files fully prepared in the background
        self.cancelled = 0  # rotations that came before the background fill finished

    def path_for(self, segno: int) -> Path:
        return self.directory / prealloc_name(segno)

    def prepare(self, segno: int) -> None:
        self.abandon()
        self._segno = segno
        self._cancel = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(segno, self._cancel),
                                        name=f"wal-prealloc-{segno}", daemon=True)
        self._thread.start()

    def _run(self, segno: int, cancel: threading.Event) -> None:
        try:
            if create_file(self.path_for(segno), self.size, self.mode, cancel, pace=True):
                self.completed += 1
        except BaseException as e:  # noqa: BLE001 - handed to take(), which falls back
            self._error = e

    def take(self, segno: int) -> Path:
        """The prepared file for ``segno`` (created now, sparse, if it was not being prepared)."""
        path = self.path_for(segno)
        if self._segno == segno and self._thread is not None:
            if self._thread.is_alive():
                self._cancel.set()
                self.cancelled += 1
            self._thread.join()
            self._thread = None
            self._segno = None
            if self._error is None:
                return path
        create_file(path, self.size, "sparse")
        return path

    def abandon(self) -> None:
        """Stop any background fill and delete its file."""
        if self._thread is not None:
            self._cancel.set()
            self._thread.join()
            self._thread = None
        if self._segno is not None:
            try:
                self.path_for(self._segno).unlink()
            except FileNotFoundError:
                pass
            self._segno = None
