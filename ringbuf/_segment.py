"""Named POSIX shared-memory segments under /dev/shm, opened with os.open + mmap.

Why not ``multiprocessing.shared_memory``: on Python 3.11 it registers every segment, including
attached ones, with the resource tracker, which unlinks them when the *attaching* process exits
(and warns about "leaks"). Ownership here is explicit instead:

* the creator (the supervisor, or a test) owns a segment: it creates and unlinks it;
* ``create(..., replace_stale=True)`` lets a restarted owner replace a leftover of a crashed run;
* attachers never unlink; an attacher that finds nothing gets ``SegmentNotFound``;
* ``cleanup(prefix)`` removes every ``/dev/shm/<prefix>*`` after a crash.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from ringbuf.errors import SegmentNotFound

SHM_DIR = Path("/dev/shm")


def _path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad segment name {name!r}")
    return SHM_DIR / name


def create(name: str, size: int, replace_stale: bool = False) -> mmap.mmap:
    p = _path(name)
    if replace_stale:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def attach(name: str) -> mmap.mmap:
    p = _path(name)
    try:
        fd = os.open(p, os.O_RDWR)
    except FileNotFoundError:
        raise SegmentNotFound(name) from None
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def unlink(name: str) -> bool:
    try:
        _path(name).unlink()
        return True
    except FileNotFoundError:
        return False


def cleanup(prefix: str) -> list[str]:
    """Unlink every segment whose name starts with ``prefix``; returns the names removed."""
    if not prefix.startswith("spotx"):
        raise ValueError("cleanup only removes spotx segments (prefix must start with 'spotx')")
    removed = []
    for p in SHM_DIR.glob(prefix + "*"):
        try:
            p.unlink()
            removed.append(p.name)
        except FileNotFoundError:
            pass
    return removed
