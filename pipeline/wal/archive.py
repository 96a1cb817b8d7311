"""WAL retention: move whole old segments out of a WAL directory into an archive, and back.

The WAL is the event bus and the audit trail, and it grows by every command (~350 B each). Once
every reader has passed a segment (the stack decides that: ``pipeline.retention``), the segment
can leave the live directory. Nothing here deletes a segment: ``archive`` moves it into an archive
directory (which the operator ships to cold storage or keeps on another volume) and ``unarchive``
moves archived segments back in front of the live ones, for a reader that needs them again (a
snapshot made unusable by a config change, an audit).

``archive`` and ``unarchive`` take the writer's lock (``WalLocked`` while an engine has the WAL
open), so no writer rotates or recovers while segments move. ``archive_online`` archives while a
writer runs: it moves only segments before the durable watermark's segment. The writer never
writes those again (a segment behind the durable position is sealed and synced; in ``pwrite``
mode the writer's pending bytes of a sealed segment go out at the next sync, which is why the
watermark bounds it), and a reader that has one mapped keeps reading it after the rename.

Which segments. Segment ``n`` holds the frames from its ``first_seq`` (the next COMMANDS seq at
rotation) up to the next segment's ``first_seq``; a reader asked for seq ``s`` starts in the last
segment whose ``first_seq <= s`` (``WalReader._start``). So keeping everything a reader from
``keep_from`` needs means keeping that segment and every later one: a segment goes only if the
next one starts at or before ``keep_from``. The last segment (the writer's) never goes, nor
anything after a hole in the numbering.

Moves are crash-safe and in an order that keeps the live directory a contiguous log at every
step: ``archive`` takes the oldest first, ``unarchive`` puts back the newest first. A move on one
filesystem is a rename; across filesystems a copy to ``<name>.tmp``, fsync, a SHA-256 comparison
with the source, rename, and only then the source's unlink; directories are fsynced after each
step. A move interrupted after the copy leaves the same file on both sides: the next run sees the
identical copy and finishes the move. An archive holds the segments of one WAL only (its id, from
the segment headers, is checked on every move).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.wal.errors import WalError
from pipeline.wal.format import SEG_HEADER_BYTES, SegmentFile, list_segments, parse_segment_header
from pipeline.wal.recovery import lock_directory, unlock_directory
from pipeline.wal.segment import fsync_dir
from pipeline.wal.verify import verify_chain

__all__ = ["ArchiveError", "Moved", "archive", "archive_locked", "archive_online",
           "first_retained_seq", "prunable", "unarchive", "wal_id"]


class ArchiveError(WalError, RuntimeError):
    """A move that would break the log (another WAL's segments, a hole, a differing copy)."""


@dataclass(frozen=True)
class Moved:
    segno: int
    first_seq: int
    end_seq: int  # the next segment's first_seq: this segment held seqs first_seq .. end_seq-1
    name: str
    bytes: int


def first_retained_seq(directory: str | os.PathLike[str]) -> int:
    """The oldest seq a reader of ``directory`` can start at: 1 for a whole log (or none yet),
    else the first segment's ``first_seq`` (earlier seqs were archived)."""
    segs = list_segments(Path(directory))
    return 1 if not segs or segs[0].segno == 0 else segs[0].first_seq


def prunable(directory: str | os.PathLike[str], keep_from: int) -> list[SegmentFile]:
    """The oldest segments a reader from seq ``keep_from`` never touches (see module doc)."""
    segs = list_segments(Path(directory))
    out = []
    for cur, nxt in zip(segs, segs[1:], strict=False):
        if nxt.first_seq > keep_from or nxt.segno != cur.segno + 1:
            break
        out.append(cur)
    return out


def wal_id(path: Path) -> int:
    """The WAL id in a segment file's header (ArchiveError if the header is not valid)."""
    with open(path, "rb") as f:
        hdr = parse_segment_header(f.read(SEG_HEADER_BYTES))
    if hdr is None:
        raise ArchiveError(f"{path}: not a valid WAL segment header")
    return hdr.wal_id


def _live_id(d: Path, segs: list[SegmentFile]) -> int:
    """The WAL's id: from its durable watermark (the newest segment's header may not be on disk
    yet while a ``pwrite`` writer runs), else from the newest segment."""
    from pipeline.wal.durable import read_durable

    dp = read_durable(d)
    return dp.wal_id if dp is not None else wal_id(segs[-1].path)


def _sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def _move(src: Path, dst: Path) -> None:
    """Move one segment file durably (module doc); an identical ``dst`` left by an interrupted
    move is accepted, a different one refused."""
    if dst.exists():
        if dst.stat().st_size != src.stat().st_size or _sha256(dst) != _sha256(src):
            raise ArchiveError(f"{dst} exists and differs from {src}: refusing to overwrite it")
        src.unlink()
        fsync_dir(src.parent)
        return
    if src.stat().st_dev == dst.parent.stat().st_dev:
        os.rename(src, dst)
        fsync_dir(dst.parent)
        fsync_dir(src.parent)
        return
    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as fi, open(tmp, "wb") as fo:
        while chunk := fi.read(1 << 20):
            fo.write(chunk)
        fo.flush()
        os.fsync(fo.fileno())
    if _sha256(tmp) != _sha256(src):
        tmp.unlink()
        raise ArchiveError(f"copy of {src} to {tmp} differs from its source")
    os.rename(tmp, dst)
    fsync_dir(dst.parent)
    src.unlink()
    fsync_dir(src.parent)


def _check_ids(archive_dir: Path, want: int) -> None:
    for s in list_segments(archive_dir):
        got = wal_id(s.path)
        if got != want:
            raise ArchiveError(f"{archive_dir} holds segments of WAL {got}, not of WAL {want}: "
                               f"use one archive per WAL")


def archive(directory: str | os.PathLike[str], archive_dir: str | os.PathLike[str],
            keep_from: int) -> list[Moved]:
    """Move every segment a reader from ``keep_from`` does not need into ``archive_dir``, oldest
    first. Takes the writer lock (WalLocked while a writer runs). Returns what moved."""
    fd = lock_directory(Path(directory))
    try:
        return archive_locked(directory, archive_dir, keep_from)
    finally:
        unlock_directory(fd)


def archive_online(directory: str | os.PathLike[str], archive_dir: str | os.PathLike[str],
                   keep_from: int) -> list[Moved]:
    """``archive`` while a writer may run: only segments before the durable watermark's segment
    (module doc). ArchiveError when the WAL has no durable watermark."""
    from pipeline.wal.durable import read_durable

    dp = read_durable(directory)
    if dp is None:
        raise ArchiveError(f"{directory} has no durable watermark: nothing is known synced")
    return archive_locked(directory, archive_dir, keep_from, below_segno=dp.segno)


def archive_locked(directory: str | os.PathLike[str], archive_dir: str | os.PathLike[str],
                   keep_from: int, below_segno: int | None = None) -> list[Moved]:
    """``archive`` for a caller that holds the writer lock already (or, with ``below_segno``,
    moves only segments numbered below it: ``archive_online``)."""
    d, a = Path(directory), Path(archive_dir)
    if d.resolve() == a.resolve():
        raise ArchiveError("the archive must not be the WAL directory itself")
    segs = list_segments(d)
    go = [s for s in prunable(d, keep_from) if below_segno is None or s.segno < below_segno]
    if not go:
        return []
    live_id = _live_id(d, segs)
    a.mkdir(parents=True, exist_ok=True)
    _check_ids(a, live_id)
    moved = []
    for cur, nxt in zip(go, segs[1:], strict=False):
        if wal_id(cur.path) != live_id:
            raise ArchiveError(f"{cur.path} is of another WAL than {d}'s (WAL {live_id})")
        size = cur.path.stat().st_size
        _move(cur.path, a / cur.path.name)
        moved.append(Moved(cur.segno, cur.first_seq, nxt.first_seq, cur.path.name, size))
    return moved


def unarchive(directory: str | os.PathLike[str], archive_dir: str | os.PathLike[str],
              from_seq: int = 1) -> list[Moved]:
    """Move archived segments back in front of the live ones, newest first, until the live log
    covers ``from_seq`` (1: the whole archive). Takes the writer lock. The live directory's hash
    chain is verified afterwards (ArchiveError naming the first bad segment). Returns what moved,
    oldest first."""
    d, a = Path(directory), Path(archive_dir)
    fd = lock_directory(d)
    try:
        live = list_segments(d)
        if not live:
            raise ArchiveError(f"{d} has no segments to put archived ones in front of")
        live_id = _live_id(d, live)
        have = {s.segno: s for s in list_segments(a)} if a.is_dir() else {}
        moved = []
        nxt = live[0]
        while nxt.first_seq > from_seq and nxt.segno - 1 in have:
            cur = have[nxt.segno - 1]
            if wal_id(cur.path) != live_id:
                raise ArchiveError(f"{cur.path} is of WAL {wal_id(cur.path)}, this WAL is {live_id}")
            size = cur.path.stat().st_size
            _move(cur.path, d / cur.path.name)
            moved.append(Moved(cur.segno, cur.first_seq, nxt.first_seq, cur.path.name, size))
            nxt = cur
        if moved:
            rep = verify_chain(d)
            if not rep.ok:
                bad = [f"segment {s.segno}: {'; '.join(s.errors)}" for s in rep.segments if not s.ok]
                raise ArchiveError("the WAL's hash chain fails after unarchiving: "
                                   + "; ".join(bad + rep.errors))
        return moved[::-1]
    finally:
        unlock_directory(fd)
