"""Writing files back to the disk without stalling the WAL's syncs on the same device.

The engine syncs the WAL hundreds of times a second, and every ``fdatasync`` ends with a device
cache flush. Anything else that flushes the same device makes those syncs queue behind it: the
background zero-fill of the next WAL segment (``fdatasync`` every 8 MiB, measured 10-36 ms per
WAL sync for ~25 batches after each rotation) and a snapshot written by a forked child then
``fsync``ed in one go (48 MiB: WAL syncs up to 16-18 ms). ``write_back`` hands a file range to the
device and waits for it without a cache flush (``sync_file_range``); ``write_back_paced`` does a
whole file a step at a time with a pause after each, so that the ``fsync`` that follows (still
needed: metadata, and the flush) has nothing left to write. Measured in session 13 (see
docs/ARCHITECTURE.md, "The next segment's zero-fill, paced"): the max batch in the engine's loop
while 3 such files were written went 16-18 ms -> 2.5-3 ms.

Linux only (``sync_file_range``), as the rest of the project.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from typing import BinaryIO, Final

STEP: Final = 1 << 20  # bytes handed to the device at a time
DUTY: Final = 1.0  # pause after each step, in units of the time the step took
SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
_WRITE_AND_WAIT: Final = (SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                          | SYNC_FILE_RANGE_WAIT_AFTER)

_UNSUPPORTED: Final = frozenset((errno.EINVAL, errno.ENOSYS, errno.ESPIPE, errno.EOPNOTSUPP))

_libc = ctypes.CDLL(None, use_errno=True)
_sync_file_range = _libc.sync_file_range
_sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
_sync_file_range.restype = ctypes.c_int


def write_back(fd: int, offset: int, nbytes: int) -> None:
    """Write ``[offset, offset + nbytes)`` of ``fd`` to the device and wait for it, without a
    device cache flush. Not durable by itself: follow it with ``fsync``/``fdatasync``. On a file
    system that does not support it, an ``fdatasync`` instead (correct, only not flush-free);
    any other error is raised."""
    if _sync_file_range(fd, offset, nbytes, _WRITE_AND_WAIT) != 0:
        err = ctypes.get_errno()
        if err in _UNSUPPORTED:
            os.fdatasync(fd)
            return
        raise OSError(err, os.strerror(err))


def pause(t0: float, duty: float = DUTY) -> None:
    """Sleep ``duty`` times as long as the step that began at ``t0`` (``perf_counter``) took."""
    if duty:
        time.sleep((time.perf_counter() - t0) * duty)


def write_back_paced(fd: int, size: int, step: int = STEP, duty: float = DUTY) -> None:
    """``write_back`` of ``[0, size)`` a ``step`` at a time, with a ``pause`` after each: for
    background writers (snapshot children), never on a latency path."""
    off = 0
    while off < size:
        t0 = time.perf_counter()
        n = min(step, size - off)
        write_back(fd, off, n)
        off += n
        pause(t0, duty)


def fsync_file(f: BinaryIO, pace: bool = False) -> None:
    """Flush ``f``'s buffer and ``fsync`` it; ``pace`` (a background writer beside the WAL): hand
    it to the disk with ``write_back_paced`` first, so the fsync has nothing left to write."""
    f.flush()
    if pace:
        write_back_paced(f.fileno(), f.tell())
    os.fsync(f.fileno())
