"""Named POSIX shared-memory segments: ``/dev/shm/spotx-<instance>-<purpose>``, os.open + mmap.

Ownership (also in ringbuf/README.md):

* the creator owns a segment: it creates it (``O_EXCL``: a second creator gets
  ``SegmentExists``) and it alone unlinks it. In the stack the supervisor creates every ring before
  any child starts and unlinks them after the last child exited;
* ``create(..., replace_stale=True)`` lets a restarted owner unlink a leftover of a crashed run
  and create a fresh one. A process still mapping the old one keeps an orphan (``orphaned()``
  tells it so); it must re-attach;
* attachers map an existing segment and never unlink; no segment -> ``SegmentNotFound``;
* ``cleanup(prefix)`` unlinks every ``/dev/shm/<prefix>*`` after a crash (supervisor start-up,
  test teardown). Unlinking only removes the name: live mappings stay valid until unmapped.

Why not ``multiprocessing.shared_memory``: on Python 3.11 every ``SharedMemory`` — attached ones
included — registers with the resource tracker, which unlinks the segment when the *attaching*
process exits and warns about "leaked" segments (``track=False`` only exists from 3.13;
unregistering by hand relies on a private API). A plain ``os.open`` of ``/dev/shm/<name>`` (what
``shm_open`` does on Linux) plus ``mmap`` has no hidden owner, so the rules above are the only
ones. Linux-only by design (the product runs on Linux hosts).
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

from ringbuf.errors import SegmentExists, SegmentMismatch, SegmentNotFound

SHM_DIR = Path("/dev/shm")
PREFIX = "spotx-"
_NAME = re.compile(r"spotx-[A-Za-z0-9_.-]{1,200}")
_PART = re.compile(r"[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*")
_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # pre-fault: no page faults later


def segment_name(instance: str, purpose: str) -> str:
    """``spotx-<instance>-<purpose>``, each part of ``[A-Za-z0-9_.]`` words joined by ``-``."""
    for what, part in (("instance", instance), ("purpose", purpose)):
        if not _PART.fullmatch(part):
            raise ValueError(f"bad segment {what} {part!r}: use [A-Za-z0-9_.] words joined by '-'")
    return check_name(f"{PREFIX}{instance}-{purpose}")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad segment name {name!r}: expected spotx-<instance>-<purpose>")
    return name


def _path(name: str) -> Path:
    return SHM_DIR / check_name(name)


def create(name: str, size: int, replace_stale: bool = False) -> tuple[mmap.mmap, int]:
    """Create and map a zero-filled segment; returns (map, inode)."""
    p = _path(name)
    if replace_stale:
        unlink(name)
    try:
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SegmentExists(name) from None
    try:
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size, flags=_FLAGS), os.fstat(fd).st_ino
    except BaseException:
        p.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def attach(name: str) -> tuple[mmap.mmap, int]:
    """Map an existing segment; returns (map, inode). ``SegmentNotFound`` when there is none."""
    try:
        fd = os.open(_path(name), os.O_RDWR)
    except FileNotFoundError:
        raise SegmentNotFound(name) from None
    try:
        st = os.fstat(fd)
        if st.st_size == 0:
            raise SegmentMismatch(name, "empty (its creator has not sized it yet, or crashed)")
        return mmap.mmap(fd, st.st_size, flags=_FLAGS), st.st_ino
    finally:
        os.close(fd)


def orphaned(name: str, inode: int) -> bool:
    """True when ``name`` no longer names the segment we mapped (unlinked or replaced)."""
    try:
        return _path(name).stat().st_ino != inode
    except FileNotFoundError:
        return True


def unlink(name: str) -> bool:
    """Remove the name (owner only); returns False when it was already gone."""
    try:
        _path(name).unlink()
        return True
    except FileNotFoundError:
        return False


def cleanup(prefix: str) -> list[str]:
    """Unlink every segment whose name starts with ``prefix``; returns the names removed.

    ``prefix`` must start with ``spotx`` so a typo can never empty someone else's /dev/shm.
    """
    if not prefix.startswith("spotx"):
        raise ValueError(f"cleanup only removes spotx segments, got prefix {prefix!r}")
    removed = []
    for p in sorted(SHM_DIR.glob(prefix + "*")):
        try:
            p.unlink()
            removed.append(p.name)
        except FileNotFoundError:
            pass
    return removed
