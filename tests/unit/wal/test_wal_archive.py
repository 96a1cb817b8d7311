"""pipeline.wal.archive: whole old segments leave the live WAL for an archive and come back."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from wal_payloads import append_batches, check_log

from pipeline.wal import WalGapError, WalLocked, WalReader, WalWriter, recover, verify_chain
from pipeline.wal.archive import (
    ArchiveError,
    archive,
    archived,
    first_retained_seq,
    prunable,
    unarchive,
)
from pipeline.wal.format import list_segments

SEG = 16 << 10


def _log(d: Path, batches: int = 300) -> int:
    with WalWriter(d, segment_bytes=SEG) as w:
        last = append_batches(w, batches)
        w.sync()
    return last


def _segs(d: Path) -> list[tuple[int, int]]:
    """(segno, first_seq) of a WAL or an archive directory (plain or gzip'd segments)."""
    return sorted((s.segno, s.first_seq) for s in archived(d).values())


def test_archive_keeps_exactly_what_a_reader_from_keep_from_needs(tmp_path: Path) -> None:
    wal, arch = tmp_path / "wal", tmp_path / "arch"
    last = _log(wal)
    before = _segs(wal)
    assert len(before) >= 8 and first_retained_seq(wal) == 1
    # keep_from one seq into segment 5: segments 0..4 go, 5 (which holds it) stays
    keep = before[5][1] + 1
    assert [s.segno for s in prunable(wal, keep)] == [0, 1, 2, 3, 4]
    raw = {s.segno: s.path.read_bytes() for s in list_segments(wal)}
    moved = archive(wal, arch, keep)
    assert [m.segno for m in moved] == [0, 1, 2, 3, 4]
    for m in moved:  # gzip'd, smaller, and exactly the segment's bytes for any gunzip
        assert m.name.endswith(".seg.gz") and m.stored_bytes < m.bytes
        assert gzip.decompress((arch / m.name).read_bytes()) == raw[m.segno]
    assert [(m.first_seq, m.end_seq) for m in moved] == [(before[i][1], before[i + 1][1])
                                                         for i in range(5)]
    assert _segs(wal) == before[5:] and _segs(arch) == before[:5]
    assert first_retained_seq(wal) == before[5][1]
    # keep_from exactly at a segment's first seq keeps that segment and drops the one before
    assert [s.segno for s in prunable(wal, before[7][1])] == [5, 6]
    assert prunable(wal, before[7][1] - 1) == [s for s in list_segments(wal) if s.segno == 5]
    # the reader: from keep_from on, every frame; before the live WAL, a gap error
    assert check_log(wal, last, first_seq=before[5][1]) > 0
    with pytest.raises(WalGapError, match="older than the oldest segment"):
        list(WalReader(wal).iter_frames(before[5][1] - 1))
    with pytest.raises(WalGapError):
        WalReader(wal).tail(1).poll(10)
    # the pruned log verifies, recovers and takes appends
    assert verify_chain(wal).ok
    assert recover(wal).last_seq == last
    with WalWriter(wal, segment_bytes=SEG) as w:
        last = append_batches(w, 20)
        w.sync()
    assert check_log(wal, last, first_seq=before[5][1]) > 0


def test_archive_never_takes_the_last_segment_or_crosses_a_hole(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    last = _log(wal)
    segs = list_segments(wal)
    assert len(segs) >= 6
    assert prunable(wal, last + 1000)[-1].segno == segs[-2].segno  # the writer's stays
    segs[3].path.rename(tmp_path / segs[3].path.name)  # a hole: segment 2's end is unknown
    assert [s.segno for s in prunable(wal, last + 1000)] == [0, 1]


def test_unarchive_puts_segments_back_and_the_whole_log_reads_again(tmp_path: Path) -> None:
    wal, arch = tmp_path / "wal", tmp_path / "arch"
    last = _log(wal)
    before = _segs(wal)
    archive(wal, arch, before[6][1])
    assert first_retained_seq(wal) == before[6][1]
    # only as far back as asked: seq inside segment 4 -> segments 4 and 5 come back
    moved = unarchive(wal, arch, before[4][1] + 1)
    assert [m.segno for m in moved] == [4, 5]
    assert first_retained_seq(wal) == before[4][1]
    moved = unarchive(wal, arch)
    assert [m.segno for m in moved] == [0, 1, 2, 3]
    assert _segs(wal) == before and not list_segments(arch)
    assert check_log(wal, last) > 0 and verify_chain(wal).ok
    assert unarchive(wal, arch) == []


def test_both_refuse_while_a_writer_holds_the_wal(tmp_path: Path) -> None:
    wal, arch = tmp_path / "wal", tmp_path / "arch"
    _log(wal)
    segs = _segs(wal)
    with WalWriter(wal, segment_bytes=SEG):
        with pytest.raises(WalLocked):
            archive(wal, arch, segs[-1][1])
        with pytest.raises(WalLocked):
            unarchive(wal, arch)
    assert _segs(wal) == segs


def test_one_archive_per_wal_and_a_tampered_segment_fails_the_chain(tmp_path: Path) -> None:
    a, b, arch = tmp_path / "a", tmp_path / "b", tmp_path / "arch"
    _log(a)
    _log(b)  # another WAL: another id
    archive(a, arch, _segs(a)[3][1])
    with pytest.raises(ArchiveError, match="one archive per WAL"):
        archive(b, arch, _segs(b)[3][1])
    assert _segs(b)[0][0] == 0  # nothing of b moved
    # a gzip'd segment damaged in the archive: it cannot be read whole, and stays where it is
    newest = max(archived(arch).values(), key=lambda s: s.segno).path
    assert newest.name.endswith(".seg.gz")
    good = newest.read_bytes()
    for where in (len(good) // 3, len(good) // 2, len(good) - 6):  # deflate data, CRC trailer
        newest.write_bytes(good)
        _flip(newest, where)
        with pytest.raises(ArchiveError, match="cannot be read whole"):
            unarchive(a, arch)
        assert newest.exists() and not list(a.glob("*.tmp"))
    # a plain archived segment altered: putting it back fails the hash chain, loudly
    c, plain = tmp_path / "c", tmp_path / "plain"
    _log(c)
    archive(c, plain, _segs(c)[3][1], compress=False)
    p = max(list_segments(plain), key=lambda s: s.segno).path
    _flip(p, 200)
    with pytest.raises(ArchiveError, match="hash chain fails"):
        unarchive(c, plain)


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_an_interrupted_move_is_finished_and_a_differing_copy_refused(tmp_path: Path) -> None:
    wal, arch = tmp_path / "wal", tmp_path / "arch"
    _log(wal)
    before = _segs(wal)
    s0 = list_segments(wal)[0].path
    arch.mkdir()
    (arch / s0.name).write_bytes(s0.read_bytes())  # copied, source not yet unlinked
    moved = archive(wal, arch, before[2][1])
    assert [m.segno for m in moved] == [0, 1] and _segs(arch) == before[:2]
    s2 = list_segments(wal)[0].path
    bad = bytearray(s2.read_bytes())
    bad[300] ^= 0xFF  # same header, different frames
    (arch / s2.name).write_bytes(bytes(bad))
    with pytest.raises(ArchiveError, match="differs"):
        archive(wal, arch, before[3][1])
    assert s2.exists()


def test_archive_on_another_filesystem_copies_checks_and_then_unlinks(tmp_path: Path) -> None:
    import shutil
    import tempfile

    wal = tmp_path / "wal"
    last = _log(wal)
    before = _segs(wal)
    other = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="spotx-test-arch-"))
    try:
        assert other.stat().st_dev != wal.stat().st_dev  # tmpfs against the disk
        moved = archive(wal, other, before[4][1], compress=False)
        assert [m.segno for m in moved] == [0, 1, 2, 3] and _segs(wal) == before[4:]
        assert sorted(p.name for p in other.iterdir()) == [m.name for m in moved]  # no .tmp
        assert all(m.stored_bytes == m.bytes for m in moved)
        assert unarchive(wal, other) and _segs(wal) == before
        assert check_log(wal, last) > 0
    finally:
        shutil.rmtree(other)


def test_online_archive_takes_only_what_the_writer_has_synced_and_left(tmp_path: Path) -> None:
    from pipeline.wal import read_durable
    from pipeline.wal.archive import archive_online

    wal, arch = tmp_path / "wal", tmp_path / "arch"
    with WalWriter(wal, segment_bytes=SEG) as w:
        append_batches(w, 200)
        w.sync()
        synced_in = read_durable(wal).segno  # type: ignore[union-attr]
        append_batches(w, 150)  # rotates through more segments, none of them synced yet
        assert list_segments(wal)[-1].segno > synced_in + 1
        moved = archive_online(wal, arch, 10**9)  # not the durable one, nor the one before it
        assert moved and [m.segno for m in moved] == list(range(synced_in - 1))
        last = append_batches(w, 30)  # the writer goes on as if nothing happened
        w.sync()
    assert recover(wal).last_seq == last and verify_chain(wal).ok
    assert check_log(wal, last, first_seq=first_retained_seq(wal)) > 0
    unarchive(wal, arch)
    assert check_log(wal, last) > 0
