"""WAL retention: move whole old segments out of a WAL directory into an archive, and back.

The WAL is the event bus and the audit trail, and it grows by every command (~350 B each). Once
every reader has passed a segment (the stack decides that: ``pipeline.retention``), the segment
can leave the live directory. Nothing here deletes a segment: ``archive`` moves it into an archive
directory (which the operator ships to cold storage or keeps on another volume) and ``unarchive``
moves archived segments back in front of the live ones, for a reader that needs them again (a
snapshot made unusable by a config change, an audit).

``archive`` and ``unarchive`` take the writer's lock (``WalLocked`` while an engine has the WAL
open), so no writer rotates or recovers while segments move. ``archive_online`` archives while a
writer runs (or may start): it moves only segments before the durable watermark's segment and
the one before that. The writer never writes those again (a segment behind the durable position
is sealed and synced; in ``pwrite`` mode the writer's pending bytes of a sealed segment go out at
the next sync, which is why the watermark bounds it); an engine that starts meanwhile recovers
from its last two segments only; and a reader that has one mapped keeps reading it.

Which segments. Segment ``n`` holds the frames from its ``first_seq`` (the next COMMANDS seq at
rotation) up to the next segment's ``first_seq``; a reader asked for seq ``s`` starts in the last
segment whose ``first_seq <= s`` (``WalReader._start``). So keeping everything a reader from
``keep_from`` needs means keeping that segment and every later one: a segment goes only if the
next one starts at or before ``keep_from``. The last segment (the writer's) never goes, nor
anything after a hole in the numbering.

Compression. The archive keeps each segment gzip'd at level 1 (``wal-<n>-<seq>.seg.gz``, readable
by any gunzip): the bench mix's full 64 MiB segment shrinks ~6.7x in ~0.3 s of CPU here. A WAL
frame is mostly small integers and zero padding. ``compress=False`` keeps plain ``.seg`` files;
``unarchive`` reads either.

Moves are crash-safe and in an order that keeps the live directory a contiguous log at every
step: ``archive`` takes the oldest first, ``unarchive`` puts back the newest first. A plain move
on one filesystem is a rename; otherwise a copy (gzip'ing or gunzipping) to ``<name>.tmp``,
fsync, a SHA-256 check that it holds the source's segment bytes, rename, and only then the
source's unlink (a reader with the segment mapped keeps its mapping); directories are fsynced
after each step. A move interrupted after the copy leaves the segment on both sides: the next run
sees an identical copy and finishes the move. An archive holds the segments of one WAL only (its
id, from the segment headers, is checked on every move).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.diskio import fsync_file
from pipeline.wal.errors import WalError
from pipeline.wal.format import SEG_HEADER_BYTES, SegmentFile, list_segments, parse_segment_header
from pipeline.wal.recovery import lock_directory, unlock_directory
from pipeline.wal.segment import fsync_dir
from pipeline.wal.verify import verify_chain

__all__ = ["ArchiveError", "Moved", "archive", "archive_locked", "archive_online", "archived",
           "first_retained_seq", "online_limit", "prunable", "unarchive", "wal_id"]


class ArchiveError(WalError, RuntimeError):
    """A move that would break the log (another WAL's segments, a hole, a differing copy)."""


@dataclass(frozen=True)
class Moved:
    segno: int
    first_seq: int
    end_seq: int  # the next segment's first_seq: this segment held seqs first_seq .. end_seq-1
    name: str  # as stored where it went (``.seg.gz`` in a compressed archive)
    bytes: int  # the segment's size in the live WAL
    stored_bytes: int  # its size in the archive (gzip'd: ~7x smaller for the bench mix)


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
    """The WAL id in a segment file's header (ArchiveError if the header is not valid, or a
    damaged .gz cannot be read that far)."""
    try:
        with _open(path) as f:
            hdr = parse_segment_header(f.read(SEG_HEADER_BYTES))
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ArchiveError(f"{path} cannot be read whole ({e}): left where it is") from e
    if hdr is None:
        raise ArchiveError(f"{path}: not a valid WAL segment header")
    return hdr.wal_id


def _live_id(d: Path, segs: list[SegmentFile]) -> int:
    """The WAL's id: from its durable watermark (the newest segment's header may not be on disk
    yet while a ``pwrite`` writer runs), else from the newest segment."""
    from pipeline.wal.durable import read_durable

    dp = read_durable(d)
    return dp.wal_id if dp is not None else wal_id(segs[-1].path)


_ARCHIVED_RE = re.compile(r"^wal-(\d{10})-(\d{20})\.seg(\.gz)?$")


def archived(a: Path) -> dict[int, SegmentFile]:
    """Segments in an archive directory, plain or gzip'd, by segment number."""
    out = {}
    for p in a.iterdir() if a.is_dir() else ():
        m = _ARCHIVED_RE.match(p.name)
        if m:
            out[int(m.group(1))] = SegmentFile(int(m.group(1)), int(m.group(2)), p)
    return out


def _open(path: Path) -> Any:
    """A binary reader of the segment bytes ``path`` holds (gunzipping a .gz)."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _content_sha256(path: Path) -> bytes:
    """SHA-256 of the segment bytes a file holds (gunzipped if it is a .gz)."""
    h = hashlib.sha256()
    with _open(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def _transfer(src: Path, dst: Path) -> None:
    """Move one segment file durably, gzip'ing it when ``dst`` ends in .gz and gunzipping when
    ``src`` does (module doc). A rename when neither and both are on one filesystem; otherwise a
    copy to ``<dst>.tmp``, fsync, a check that it holds the source's bytes, rename, and only then
    the source's unlink. A ``dst`` left by an interrupted move is accepted when it holds the same
    bytes (the move is finished), refused otherwise."""
    if dst.exists():
        if _content_sha256(dst) != _content_sha256(src):
            raise ArchiveError(f"{dst} exists and differs from {src}: refusing to overwrite it")
        src.unlink()
        fsync_dir(src.parent)
        return
    plain = not src.name.endswith(".gz") and not dst.name.endswith(".gz")
    if plain and src.stat().st_dev == dst.parent.stat().st_dev:
        os.rename(src, dst)
        fsync_dir(dst.parent)
        fsync_dir(src.parent)
        return
    gz = dst.name.endswith(".gz")
    tmp = dst.with_name(dst.name.removesuffix(".gz") + ".tmp" + (".gz" if gz else ""))
    try:
        digest = _copy(src, tmp, gz)
    except (OSError, EOFError, zlib.error) as e:
        tmp.unlink(missing_ok=True)
        raise ArchiveError(f"{src} cannot be read whole ({e}): left where it is") from e
    if _content_sha256(tmp) != digest:
        tmp.unlink()
        raise ArchiveError(f"copy of {src} to {tmp} does not hold its bytes")
    os.rename(tmp, dst)
    fsync_dir(dst.parent)
    src.unlink()
    fsync_dir(src.parent)


def _copy(src: Path, tmp: Path, gz: bool) -> bytes:
    """Copy the segment bytes of ``src`` into ``tmp`` (gzip'd if ``gz``), fsynced; their SHA-256.
    The copy goes to the disk paced before its fsync (``pipeline.diskio``): an online prune runs
    while the engine syncs the WAL on the same device."""
    h = hashlib.sha256()
    with _open(src) as fi, open(tmp, "wb") as raw:
        # the name in the gzip header is the segment's (gunzip -N restores it), not the temp one
        fo: Any = gzip.GzipFile(src.name.removesuffix(".gz"), "wb", 1, raw, mtime=0) if gz else raw
        while chunk := fi.read(1 << 20):
            h.update(chunk)
            fo.write(chunk)
        if fo is not raw:
            fo.close()
        fsync_file(raw, pace=True)  # online, the engine syncs on this disk too
    return h.digest()


def _check_ids(archive_dir: Path, want: int) -> None:
    for s in archived(archive_dir).values():
        got = wal_id(s.path)
        if got != want:
            raise ArchiveError(f"{archive_dir} holds segments of WAL {got}, not of WAL {want}: "
                               f"use one archive per WAL")


def archive(directory: str | os.PathLike[str], archive_dir: str | os.PathLike[str],
            keep_from: int, compress: bool = True) -> list[Moved]:
    """Move every segment a reader from ``keep_from`` does not need into ``archive_dir`` (gzip'd
    unless not ``compress``), oldest first. Takes the writer lock (WalLocked while a writer
    runs). Returns what moved."""
    fd = lock_directory(Path(directory))
    try:
        return archive_locked(directory, archive_dir, keep_from, compress=compress)
    finally:
        unlock_directory(fd)


def archive_online(directory: str | os.PathLike[str], archive_dir: str | os.PathLike[str],
                   keep_from: int, compress: bool = True) -> list[Moved]:
    """``archive`` while a writer may run: only segments before the durable watermark's segment
    (module doc). ArchiveError when the WAL has no durable watermark."""
    from pipeline.wal.durable import read_durable

    dp = read_durable(directory)
    if dp is None:
        raise ArchiveError(f"{directory} has no durable watermark: nothing is known synced")
    return archive_locked(directory, archive_dir, keep_from, below_segno=online_limit(dp.segno),
                          compress=compress)


def online_limit(durable_segno: int) -> int:
    """Online, only segments numbered below this move: before the durable watermark's segment
    and the one before it (an engine starting meanwhile recovers from its last two segments)."""
    return durable_segno - 1


def archive_locked(directory: str | os.PathLike[str], archive_dir: str | os.PathLike[str],
                   keep_from: int, below_segno: int | None = None,
                   compress: bool = True) -> list[Moved]:
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
        there = archived(a).get(cur.segno)  # an interrupted move left a copy: finish it
        dst = there.path if there is not None else a / (cur.path.name + (".gz" * compress))
        _transfer(cur.path, dst)
        moved.append(Moved(cur.segno, cur.first_seq, nxt.first_seq, dst.name, size,
                           dst.stat().st_size))
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
        have = archived(a)
        moved = []
        nxt = live[0]
        while nxt.first_seq > from_seq and nxt.segno - 1 in have:
            cur = have[nxt.segno - 1]
            if wal_id(cur.path) != live_id:
                raise ArchiveError(f"{cur.path} is of WAL {wal_id(cur.path)}, this WAL is {live_id}")
            stored = cur.path.stat().st_size
            dst = d / cur.path.name.removesuffix(".gz")
            _transfer(cur.path, dst)
            moved.append(Moved(cur.segno, cur.first_seq, nxt.first_seq, dst.name,
                               dst.stat().st_size, stored))
            nxt = SegmentFile(cur.segno, cur.first_seq, dst)
        if moved:
            rep = verify_chain(d)
            if not rep.ok:
                bad = [f"segment {s.segno}: {'; '.join(s.errors)}" for s in rep.segments if not s.ok]
                raise ArchiveError("the WAL's hash chain fails after unarchiving: "
                                   + "; ".join(bad + rep.errors))
        return moved[::-1]
    finally:
        unlock_directory(fd)
