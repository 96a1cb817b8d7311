"""WalWriter: appends, validation, rotation, sync modes, fencing, locking, sync failure."""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest
from wal_payloads import append_batches, check_log, commands_payload

from pipeline.wal import (
    FrameKind,
    WalAppendError,
    WalClosed,
    WalCorruption,
    WalFencingError,
    WalLocked,
    WalReader,
    WalSyncError,
    WalWriter,
    read_durable,
    recover,
    split_position,
    verify_chain,
)

SEG = 16 << 10


@pytest.fixture
def wal_dir(tmp_path):  # type: ignore[no-untyped-def]
    return tmp_path / "wal"


@pytest.mark.parametrize(("sync_mode", "write"), [  # msync writes through the mapping only
    ("fdatasync", "pwrite"), ("fdatasync", "mmap"), ("msync", "mmap"), ("none", "pwrite"),
    ("none", "mmap")])
@pytest.mark.parametrize("prealloc", ["zero", "fallocate", "sparse"])
@pytest.mark.parametrize("seal", ["flusher", "append"])
def test_round_trip_across_rotations(wal_dir, sync_mode: str, prealloc: str, seal: str,
                                     write: str) -> None:
    with WalWriter(wal_dir, segment_bytes=SEG, sync_mode=sync_mode, prealloc=prealloc,
                   seal=seal, write=write) as w:
        assert w.write == write
        last = append_batches(w, 300, sync_every=7)
        assert w.durable_seq <= last
        w.sync()
        assert w.durable_seq == last
    assert len(list(wal_dir.glob("wal-*.seg"))) > 5
    assert check_log(wal_dir, last) == 600
    rep = verify_chain(wal_dir)
    assert rep.ok, (rep.errors, [s.errors for s in rep.segments])
    assert rep.last_seq == last and all(s.sealed for s in rep.segments[:-1])


@pytest.mark.parametrize("sync_mode", ["fdatasync", "none"])
def test_pwrite_frames_reach_the_file_only_at_sync(wal_dir, sync_mode: str) -> None:
    """write="pwrite": an appended frame is in the private image, not the file, until sync() (so
    nothing can read it early, even past the watermark); then the file holds exactly it."""
    with WalWriter(wal_dir, segment_bytes=SEG, sync_mode=sync_mode) as w:
        w.append(FrameKind.COMMANDS, 1, 2, commands_payload(1, 2), 5)
        seg = next(wal_dir.glob("wal-*.seg"))
        payload = commands_payload(1, 2)
        start, (_, end) = 64, split_position(w.appended_position)  # after the segment header
        assert end == start + 64 + len(payload)
        assert seg.read_bytes()[start:end] == bytes(end - start)  # not written yet
        w.sync()
        frame = seg.read_bytes()[start:end]
        assert frame[64:] == payload and frame[:4] != bytes(4)
        assert seg.read_bytes()[end:end + 4096] == bytes(4096)  # zeros after the end
    assert check_log(wal_dir, 2) == 1  # the one COMMANDS frame


def test_pwrite_image_is_trimmed_behind_the_written_offset(wal_dir) -> None:
    """The writer's private image releases what is written and sealed (MADV_DONTNEED, a step at a
    time), so its memory stays flat over a 64 MiB segment; the log is unaffected."""
    from pipeline.wal.segment import PAGE, TRIM_STEP

    with WalWriter(wal_dir, segment_bytes=8 << 20, seal="append") as w:
        seg = w._cur
        last = append_batches(w, 1200, per=16, events_bytes=2048, sync_every=50)
        w.sync()
        assert seg is w._cur  # still the first segment
        assert seg._trimmed >= TRIM_STEP and seg._trimmed % PAGE == 0
        assert seg._trimmed <= min(seg.written_off, seg.fin_off)
        assert seg.mv[:seg._trimmed] == bytes(seg._trimmed)  # released: reads as zeros again
        assert bytes(seg.mv[seg._trimmed:seg.written_off]).strip(b"\0")  # the rest is kept
        last = append_batches(w, 10)  # appends after a trim still seal and sync
    assert check_log(wal_dir, last) == 2 * 1210  # COMMANDS + EVENTS frames
    assert verify_chain(wal_dir).ok


def test_append_returns_positions_and_durable_watermark_follows_sync(wal_dir) -> None:
    w = WalWriter(wal_dir, segment_bytes=SEG)
    p1 = w.append(FrameKind.COMMANDS, 1, 2, commands_payload(1, 2), 5)
    p2 = w.append(FrameKind.EVENTS, 1, 3, b"e" * 100, 6)
    assert split_position(p1) == (0, 64 + 64 + 32)
    assert p2 > p1 == w.appended_position - (p2 - p1)
    assert w.durable_seq == 0 and w.durable_position < p1
    dp = read_durable(wal_dir)
    assert dp is not None and dp.seq == 0
    assert w.sync() == p2 == w.durable_position
    dp = read_durable(wal_dir)
    assert dp is not None and (dp.seq, dp.position) == (2, p2)
    w.close()


def test_numpy_structured_records_are_written_zero_copy(wal_dir) -> None:
    dt = np.dtype([("seq", "<u8"), ("px", "<i8"), ("qty", "<i8"), ("pad", "V40")])
    recs = np.zeros(5, dtype=dt)
    recs["seq"] = np.arange(1, 6)
    recs["px"] = -7
    with WalWriter(wal_dir, segment_bytes=SEG) as w:
        w.append(FrameKind.COMMANDS, 1, 5, recs, 1)
    (f,) = WalReader(wal_dir).iter_frames()
    back = np.frombuffer(f.payload, dtype=dt)
    assert back.tobytes() == recs.tobytes() and list(back["seq"]) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("kind", "first_seq", "count", "match"),
    [
        (FrameKind.COMMANDS, 3, 1, "continue the seq"),  # gap
        (FrameKind.COMMANDS, 2, 0, "count >= 1"),
        (FrameKind.EVENTS, 2, 1, "refer to an appended seq"),  # not appended yet
        (FrameKind.BLOB, 0, 1, "refer to an appended seq"),
        (FrameKind.SEAL, 1, 0, "cannot be appended"),
        (99, 1, 0, "cannot be appended"),
    ],
)
def test_bad_appends_are_rejected_with_a_clear_error(wal_dir, kind, first_seq, count, match) -> None:
    with WalWriter(wal_dir, segment_bytes=SEG) as w:
        w.append(FrameKind.COMMANDS, 1, 1, b"x" * 64, 1)
        with pytest.raises(WalAppendError, match=match):
            w.append(kind, first_seq, count, b"y", 1)
        w.append(FrameKind.EVENTS, 1, 1, b"ok", 1)  # the writer is still usable


def test_out_of_range_field_and_oversized_payload_leave_the_log_clean(wal_dir) -> None:
    with WalWriter(wal_dir, segment_bytes=SEG) as w:
        w.append(FrameKind.COMMANDS, 1, 1, commands_payload(1, 1), 1)
        with pytest.raises(WalAppendError, match="out of range"):
            w.append(FrameKind.EVENTS, 1, 1, b"y" * 32, 1 << 64)  # ts_ns overflows i64
        with pytest.raises(WalAppendError, match="cannot fit"):
            w.append(FrameKind.BLOB, 1, 1, b"z" * SEG, 1)
        w.append(FrameKind.COMMANDS, 2, 1, commands_payload(2, 1), 1)
    assert check_log(wal_dir, 2) == 2
    assert verify_chain(wal_dir).ok


def test_first_seq_of_a_fresh_log_and_continuation_after_reopen(wal_dir) -> None:
    with WalWriter(wal_dir, segment_bytes=SEG, first_seq=1001) as w:
        w.append(FrameKind.COMMANDS, 1001, 3, commands_payload(1001, 3), 1)
    with WalWriter(wal_dir, segment_bytes=SEG, first_seq=1) as w:  # ignored: the log decides
        assert w.last_seq == w.durable_seq == 1003
        last = append_batches(w, 50)
    assert check_log(wal_dir, last, first_seq=1001)
    rep = verify_chain(wal_dir)
    assert rep.ok and rep.segments[0].first_seq == 1001


def test_reopen_after_a_sealed_last_segment_starts_the_next(wal_dir) -> None:
    w = WalWriter(wal_dir, segment_bytes=SEG)
    append_batches(w, 100)
    w.sync()
    # Force the state "SEAL written and synced, next segment never activated".
    segs = sorted(wal_dir.glob("wal-*.seg"))
    w.close()
    segs[-1].unlink()
    with pytest.raises(WalCorruption, match="durable.pos says durable up to segment"):
        recover(wal_dir)  # that segment was durable: its loss is corruption, not a torn tail
    (wal_dir / "durable.pos").unlink()  # as if the crash came before it was synced into
    res = recover(wal_dir)
    assert res.sealed
    with WalWriter(wal_dir, segment_bytes=SEG) as w2:
        assert w2.last_seq == res.last_seq
        last = append_batches(w2, 5)
    assert check_log(wal_dir, last)
    assert verify_chain(wal_dir).ok


def test_single_writer_is_enforced_by_a_lock(wal_dir) -> None:
    w = WalWriter(wal_dir, segment_bytes=SEG)
    with pytest.raises(WalLocked, match=str(os.getpid())):
        WalWriter(wal_dir, segment_bytes=SEG)
    with pytest.raises(WalLocked):
        recover(wal_dir)
    w.close()
    WalWriter(wal_dir, segment_bytes=SEG).close()


def test_appends_from_a_second_thread_are_refused(wal_dir) -> None:
    with WalWriter(wal_dir, segment_bytes=SEG) as w:
        w.append(FrameKind.COMMANDS, 1, 1, b"a", 1)
        errors: list[BaseException] = []

        def other() -> None:
            try:
                w.append(FrameKind.COMMANDS, 2, 1, b"b", 1)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(errors) == 1 and isinstance(errors[0], WalAppendError)


def test_fencing_token_regression_is_rejected(wal_dir) -> None:
    with WalWriter(wal_dir, segment_bytes=SEG, fencing_token=5) as w:
        w.append(FrameKind.COMMANDS, 1, 1, b"a", 1)
        w.fencing_token = 6  # a new lease term: up is fine
        w.append(FrameKind.COMMANDS, 2, 1, b"b", 1)
        with pytest.raises(WalFencingError) as ei:
            w.fencing_token = 4
        assert (ei.value.token, ei.value.highest) == (4, 6)
    with pytest.raises(WalFencingError) as ei:
        WalWriter(wal_dir, segment_bytes=SEG, fencing_token=5)
    assert ei.value.highest == 6
    with WalWriter(wal_dir, segment_bytes=SEG, fencing_token=6) as w:
        w.append(FrameKind.COMMANDS, 3, 1, b"c", 1)
    assert [f.fencing for f in WalReader(wal_dir).iter_frames()] == [5, 6, 6]


def test_sync_failure_is_fatal_and_never_retried(wal_dir, monkeypatch) -> None:
    w = WalWriter(wal_dir, segment_bytes=SEG)
    w.append(FrameKind.COMMANDS, 1, 1, b"a", 1)
    w.sync()
    w.append(FrameKind.COMMANDS, 2, 1, b"b", 1)
    calls = []

    def eio(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", eio)
    with pytest.raises(WalSyncError) as ei:
        w.sync()
    assert ei.value.errno == errno.EIO and "wal-" in ei.value.segment
    assert w.durable_seq == 1 and read_durable(wal_dir).seq == 1  # type: ignore[union-attr]
    with pytest.raises(WalSyncError):
        w.append(FrameKind.COMMANDS, 3, 1, b"c", 1)
    with pytest.raises(WalSyncError):
        w.sync()
    assert len(calls) == 1  # never retried
    monkeypatch.undo()
    w.close()  # releases the lock without syncing
    res = recover(wal_dir)
    assert res.last_seq == 2  # the page cache still had it: recovery may keep what it can verify


def test_closed_writer_refuses_appends(wal_dir) -> None:
    w = WalWriter(wal_dir, segment_bytes=SEG)
    w.close()
    w.close()  # idempotent
    with pytest.raises(WalClosed):
        w.append(FrameKind.COMMANDS, 1, 1, b"a", 1)


def test_bad_configuration_is_rejected(wal_dir) -> None:
    with pytest.raises(Exception, match="sync_mode"):
        WalWriter(wal_dir, sync_mode="sometimes")
    with pytest.raises(Exception, match="segment_bytes"):
        WalWriter(wal_dir, segment_bytes=5000)
    with pytest.raises(Exception, match="prealloc"):
        WalWriter(wal_dir, segment_bytes=SEG, prealloc="magic")
    with pytest.raises(Exception, match="write mode"):
        WalWriter(wal_dir, segment_bytes=SEG, write="carrier-pigeon")
    WalWriter(wal_dir, segment_bytes=SEG).close()  # the failed opens left the lock free


def test_prune_before_deletes_only_whole_old_segments(wal_dir) -> None:
    with WalWriter(wal_dir, segment_bytes=SEG) as w:
        last = append_batches(w, 300)
        w.sync()
        segs = sorted(wal_dir.glob("wal-*.seg"))
        cut = int(segs[4].name.split("-")[2][:-4])  # first seq of segment 4
        gone = w.prune_before(cut + 1)
        assert gone == [p.name for p in segs[:4]]
        assert w.prune_before(1) == []
        more = append_batches(w, 3)
    assert more > last
    r = WalReader(wal_dir)
    with pytest.raises(Exception, match="older than the oldest segment"):
        list(r.iter_frames(from_seq=cut - 1))
    frames = list(r.iter_frames(from_seq=cut))
    assert frames[0].first_seq == cut
    rep = verify_chain(wal_dir)
    assert rep.ok and rep.segments[0].segno == 4
    assert recover(wal_dir).last_seq == more


def test_non_contiguous_payload_is_rejected(wal_dir) -> None:
    with WalWriter(wal_dir, segment_bytes=SEG) as w:
        a = np.zeros((4, 8), dtype=np.uint64)
        with pytest.raises(WalAppendError, match="C-contiguous"):
            w.append(FrameKind.COMMANDS, 1, 4, a[:, ::2], 1)


@pytest.mark.parametrize("alg", ["blake2b", "sha256"])
def test_chain_hash_is_chosen_per_log_and_kept_on_reopen(wal_dir, alg: str) -> None:
    import hashlib

    from pipeline.wal.format import ChainHash, parse_segment_header

    with WalWriter(wal_dir, segment_bytes=SEG, chain_hash=alg) as w:
        append_batches(w, 40)
    other = "sha256" if alg == "blake2b" else "blake2b"
    with WalWriter(wal_dir, segment_bytes=SEG, chain_hash=other) as w:  # the log decides
        last = append_batches(w, 40)
    segs = sorted(wal_dir.glob("wal-*.seg"))
    algs = {parse_segment_header(p.read_bytes()[:64]).hash_alg for p in segs}  # type: ignore[union-attr]
    assert algs == {ChainHash[alg.upper()]}
    raw = segs[0].read_bytes()
    first_prev = raw[64 + 48: 64 + 64]  # the first frame's prev_hash = H(segment header)
    want = (hashlib.blake2b(raw[:64], digest_size=16).digest() if alg == "blake2b"
            else hashlib.sha256(raw[:64]).digest()[:16])
    assert first_prev == want
    assert verify_chain(wal_dir).ok and check_log(wal_dir, last)
    with pytest.raises(Exception, match="chain_hash"):
        WalWriter(wal_dir, chain_hash="md5")


def test_reopen_with_another_segment_size_finishes_the_open_segment_first(wal_dir) -> None:
    with WalWriter(wal_dir, segment_bytes=SEG) as w:
        append_batches(w, 10)
    with WalWriter(wal_dir, segment_bytes=2 * SEG) as w:
        last = append_batches(w, 200)
    sizes = [p.stat().st_size for p in sorted(wal_dir.glob("wal-*.seg"))]
    assert sizes[0] == SEG and set(sizes[1:]) == {2 * SEG}
    assert check_log(wal_dir, last) and verify_chain(wal_dir).ok


def test_zero_fill_writes_every_block_without_a_flush_per_step(tmp_path, monkeypatch) -> None:
    """The next segment's zero-fill: every byte zero and every block allocated (not sparse), each
    MiB written back by ``sync_file_range`` rather than a cache-flushing ``fdatasync``, and one
    ``fsync`` at the end; paced, it pauses after every step (no pause when not paced)."""
    from pipeline.wal import segment

    size = 3 * (1 << 20) + 12288  # three whole steps and a short one
    calls: dict[str, int] = {"fdatasync": 0, "fsync": 0, "write_back": 0}
    sleeps: list[float] = []
    real_fsync, real_wb = os.fsync, segment.write_back

    def fdatasync(fd: int) -> None:
        calls["fdatasync"] += 1

    def fsync(fd: int) -> None:
        calls["fsync"] += 1
        real_fsync(fd)

    def write_back(fd: int, off: int, n: int) -> None:
        calls["write_back"] += 1
        real_wb(fd, off, n)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(segment, "write_back", write_back)
    monkeypatch.setattr(segment.time, "sleep", sleeps.append)
    for pace in (True, False):
        path = tmp_path / f"wal-next-{int(pace)}.tmp"
        with open(path, "wb") as f:
            f.write(b"\xff" * 4096)  # create_file truncates: nothing of this may survive
        calls.update(fdatasync=0, fsync=0, write_back=0)
        sleeps.clear()
        assert segment.create_file(path, size, "zero", pace=pace)
        assert calls == {"fdatasync": 0, "fsync": 1, "write_back": 4}
        assert len(sleeps) == (4 if pace else 0) and all(s >= 0 for s in sleeps)
        data = path.read_bytes()
        assert len(data) == size and data.count(0) == size
        assert os.stat(path).st_blocks * 512 >= size  # allocated: a later sync writes data only

