"""GroupCommitter: a flusher thread syncs in groups and advances the durable watermark."""

from __future__ import annotations

import errno
import os
import threading

import pytest
from wal_payloads import append_batches, check_log, commands_payload

from pipeline.wal import FrameKind, GroupCommitter, WalClosed, WalSyncError, WalWriter, read_durable

SEG = 32 << 10


def test_group_commit_makes_everything_durable_and_records_each_sync(tmp_path) -> None:
    seen: list[tuple[int, int]] = []
    w = WalWriter(tmp_path, segment_bytes=SEG)
    gc = GroupCommitter(w, history=8, on_durable=lambda seq, pos: seen.append((seq, pos)))
    seq = 1
    for _ in range(200):
        w.append(FrameKind.COMMANDS, seq, 3, commands_payload(seq, 3), 1)
        seq += 3
        gc.request_sync()
    assert gc.wait_durable(seq - 1, timeout=10)
    assert gc.durable_seq == seq - 1 == read_durable(tmp_path).seq  # type: ignore[union-attr]
    st = gc.statistics()
    assert st.syncs >= 1 and st.seqs == seq - 1 and st.requests >= 200
    assert len(st.durations_ns) == min(st.syncs, 8) and all(d > 0 for d in st.durations_ns)
    assert st.bytes == sum(st.batch_bytes) if st.syncs <= 8 else st.bytes > 0
    assert st.syncs < 200  # grouped: fewer syncs than requests
    assert seen and seen[-1][0] == seq - 1
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)  # the watermark only moves up
    gc.close()
    w.close()
    check_log(tmp_path, seq - 1)


def test_wait_position_and_timeout(tmp_path) -> None:
    w = WalWriter(tmp_path, segment_bytes=SEG)
    gc = GroupCommitter(w)
    pos = w.append(FrameKind.COMMANDS, 1, 1, commands_payload(1, 1), 1)
    assert gc.wait_position(pos, timeout=10)
    assert gc.durable_position >= pos
    assert not gc.wait_durable(99, timeout=0.05)  # never appended: times out, returns False
    gc.close()
    w.close()


def test_close_syncs_what_was_appended_and_then_refuses(tmp_path) -> None:
    w = WalWriter(tmp_path, segment_bytes=SEG)
    gc = GroupCommitter(w)
    last = append_batches(w, 50)  # no request_sync at all
    gc.close()
    assert w.durable_seq == last
    with pytest.raises(WalClosed):
        gc.request_sync()
    w.close()


def test_flusher_failure_reaches_the_waiters(tmp_path, monkeypatch) -> None:
    w = WalWriter(tmp_path, segment_bytes=SEG)
    gc = GroupCommitter(w)
    w.append(FrameKind.COMMANDS, 1, 1, commands_payload(1, 1), 1)
    assert gc.wait_durable(1, timeout=10)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", eio)
    w.append(FrameKind.COMMANDS, 2, 1, commands_payload(2, 1), 1)
    with pytest.raises(WalSyncError):
        gc.wait_durable(2, timeout=10)
    with pytest.raises(WalSyncError):
        gc.request_sync()
    with pytest.raises(WalSyncError):
        w.append(FrameKind.COMMANDS, 3, 1, commands_payload(3, 1), 1)
    assert gc.statistics().failed and gc.durable_seq == 1
    with pytest.raises(WalSyncError):
        gc.close()
    monkeypatch.undo()
    w.close()


def test_waiters_in_other_threads_are_woken(tmp_path) -> None:
    w = WalWriter(tmp_path, segment_bytes=SEG)
    gc = GroupCommitter(w)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(gc.wait_durable(40, timeout=10)))
    waiter.start()
    seq = 1
    while seq <= 40:
        w.append(FrameKind.COMMANDS, seq, 5, commands_payload(seq, 5), 1)
        seq += 5
        gc.request_sync()
    waiter.join(10)
    assert got == [True]
    gc.close()
    w.close()


def test_sync_now_makes_it_durable_on_the_callers_thread_without_the_flusher(tmp_path) -> None:
    threads: list[str] = []
    w = WalWriter(tmp_path, segment_bytes=SEG)
    gc = GroupCommitter(w, on_durable=lambda seq, pos: threads.append(
        threading.current_thread().name))
    w.append(FrameKind.COMMANDS, 1, 4, commands_payload(1, 4), 1)
    gc.sync_now()  # returns with the batch durable: no request, no wait
    assert gc.durable_seq == 4 == read_durable(tmp_path).seq  # type: ignore[union-attr]
    st = gc.statistics()
    assert st.syncs == 1 and st.requests == 0 and st.seqs == 4
    assert threads == [threading.current_thread().name]
    gc.sync_now()  # nothing new: no second sync, no second callback
    assert gc.statistics().syncs == 1 and len(threads) == 1
    w.append(FrameKind.COMMANDS, 5, 1, commands_payload(5, 1), 1)  # and the flusher still works
    assert gc.wait_durable(5, timeout=10) and len(threads) == 2
    gc.close()
    w.close()
    check_log(tmp_path, 5)
