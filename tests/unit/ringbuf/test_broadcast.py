"""Broadcast ring: every reader sees every record in order and whole, or learns exactly how much
it missed; the writer never waits and survives a restart."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pytest

from pipeline.records import COMMAND, EVENT
from ringbuf import (
    ERR_SHAPE,
    BroadcastReader,
    BroadcastWriter,
    Lapped,
    RingBusy,
    RingEmpty,
    SegmentMismatch,
    SpscRing,
    as_words,
    bcast_publish,
    bcast_read,
)

Name = Callable[[], str]
WORDS = EVENT.itemsize // 8


def evs(start: int, n: int) -> np.ndarray:
    """Events whose every 8-byte word is derived from the position: a torn copy cannot pass."""
    a = np.zeros(n, EVENT)
    w = as_words(a)
    pos = np.arange(start, start + n, dtype=np.int64)
    w[:] = pos[:, None] * 1_000_003 + np.arange(WORDS, dtype=np.int64)[None, :]
    return a


def positions(out: np.ndarray, n: int) -> list[int]:
    """Positions of ``out[:n]``, asserting each record is whole."""
    w = as_words(out)[:n]
    pos = w[:, 0] // 1_000_003
    assert np.array_equal(w, pos[:, None] * 1_000_003 + np.arange(WORDS)[None, :]), "torn record"
    return pos.tolist()


@pytest.fixture
def writer(shm_name: Name) -> Any:
    w = BroadcastWriter.create(shm_name(), EVENT, 16)
    yield w
    w.close()


def test_two_readers_have_independent_cursors(writer: BroadcastWriter) -> None:
    a = BroadcastReader.attach(writer.name, EVENT)
    b = BroadcastReader.attach(writer.name, EVENT)
    writer.publish(evs(0, 10))
    out = np.zeros(16, EVENT)
    assert a.try_read(out) == 10 and positions(out, 10) == list(range(10))
    assert writer.publish(evs(10, 3)) == 13
    assert a.try_read(out) == 3 and positions(out, 3) == [10, 11, 12]
    assert a.try_read(out) == 0
    assert b.try_read(out) == 13 and positions(out, 13) == list(range(13))
    late = BroadcastReader.attach(writer.name, EVENT)  # starts at the latest by default
    assert late.try_read(out) == 0 and late.cursor == 13
    for r in (a, b, late):
        r.close()


def test_lapped_reader_learns_exactly_how_much_and_resyncs_to_oldest(writer: BroadcastWriter) -> None:
    r = BroadcastReader.attach(writer.name, EVENT)
    writer.publish(evs(0, 40))  # capacity 16: positions 0..23 are gone
    out = np.zeros(32, EVENT)
    with pytest.raises(Lapped) as e:
        r.try_read(out)
    assert (e.value.missed, e.value.cursor, r.cursor) == (24, 0, 0)
    with pytest.raises(Lapped):  # asking again is reported again but counted once
        r.try_read(out)
    assert r.resync_to_oldest() == 24
    assert r.try_read(out) == 16 and positions(out, 16) == list(range(24, 40))
    st = r.statistics()
    assert (st.laps, st.missed, st.skipped, st.read, st.lag) == (1, 24, 0, 16, 0)
    r.close()


def test_resync_to_latest_skips_and_accounts(writer: BroadcastWriter) -> None:
    r = BroadcastReader.attach(writer.name, EVENT)
    writer.publish(evs(0, 20))
    assert r.resync_to_latest() == 20
    writer.publish(evs(20, 5))
    out = np.zeros(16, EVENT)
    assert r.try_read(out) == 5 and positions(out, 5) == list(range(20, 25))
    st = r.statistics()
    assert (st.missed, st.skipped, st.read) == (4, 16, 5)  # 0..3 were overwritten, 4..19 held
    assert st.read + st.missed + st.skipped == r.cursor - r.start
    r.close()


def test_reader_exactly_one_capacity_behind_reads_everything(writer: BroadcastWriter) -> None:
    r = BroadcastReader.attach(writer.name, EVENT)
    writer.publish(evs(0, 16))
    out = np.zeros(16, EVENT)
    assert r.try_read(out) == 16 and positions(out, 16) == list(range(16))
    old = BroadcastReader.attach(writer.name, EVENT, start="oldest")
    writer.publish(evs(16, 4))
    assert old.cursor == 0
    with pytest.raises(Lapped) as e:
        old.try_read(out)
    assert e.value.missed == 4
    r.close()
    old.close()


def test_blocking_read_and_validation(writer: BroadcastWriter) -> None:
    r = BroadcastReader.attach(writer.name, EVENT)
    with pytest.raises(RingEmpty):
        r.read(np.zeros(4, EVENT), timeout_s=0.01)
    with pytest.raises(TypeError):
        r.try_read(np.zeros(4, COMMAND))
    with pytest.raises(ValueError, match="start"):
        BroadcastReader.attach(writer.name, EVENT, start="middle")
    with pytest.raises(SegmentMismatch, match="broadcast ring, expected spsc"):
        SpscRing.attach(writer.name, EVENT)
    with pytest.raises(SegmentMismatch, match="record size"):
        BroadcastReader.attach(writer.name, COMMAND)
    assert bcast_read(r.ctrl, r.stamps, r.slots, 0, np.zeros((2, 3), np.int64), 2) == ERR_SHAPE
    r.close()


def _publish_once(name: str) -> None:
    with BroadcastWriter.attach(name, EVENT) as w:
        try:
            w.publish(evs(0, 1))
        except RingBusy:
            sys.exit(3)


def test_a_second_live_writer_is_refused(writer: BroadcastWriter, procs: Any) -> None:
    writer.publish(evs(0, 1))
    p = procs(_publish_once, writer.name)
    p.join(10)
    assert p.exitcode == 3


def _write_many(name: str, n: int, batch: int) -> None:
    with BroadcastWriter.attach(name, EVENT) as w:
        for start in range(0, n, batch):
            w.publish(evs(start, min(batch, n - start)))


def test_concurrent_reader_is_lapped_but_never_sees_a_torn_record(writer: BroadcastWriter,
                                                                 procs: Any) -> None:
    """A writer in another process laps a busy reader again and again; every record read is
    whole and in order, and read + missed accounts for every position exactly."""
    r = BroadcastReader.attach(writer.name, EVENT)
    total = 200_000
    p = procs(_write_many, writer.name, total, 7)
    out = np.zeros(16, EVENT)
    expect = 0
    deadline = time.monotonic() + 30
    while (p.is_alive() or r.lag() > 0) and time.monotonic() < deadline:
        try:
            n = r.try_read(out)
        except Lapped as e:
            assert e.missed >= 1
            r.resync_to_oldest()
            expect = r.cursor
            continue
        assert positions(out, n) == list(range(expect, expect + n))
        expect += n
    p.join(10)
    st = r.statistics()
    assert p.exitcode == 0 and st.published == total and r.cursor == total
    assert st.read + st.missed == total and st.skipped == 0
    assert st.read > 0 and st.laps > 0, "the test did not exercise both paths"
    r.close()


def _slow_writer(name: str) -> None:
    w = BroadcastWriter.attach(name, EVENT)
    while True:  # until SIGKILL
        pos = w.published()
        w.publish(evs(pos, 1))
        time.sleep(0.0002)


def _slow_reader(name: str) -> None:
    r = BroadcastReader.attach(name, EVENT)
    out = np.zeros(4, EVENT)
    while True:  # until SIGKILL
        try:
            r.try_read(out)
        except Lapped:
            r.resync_to_latest()
        time.sleep(0.001)


def test_killed_writer_is_replaced_and_readers_see_no_gap(shm_name: Name, procs: Any) -> None:
    w0 = BroadcastWriter.create(shm_name(), EVENT, 4096)
    r = BroadcastReader.attach(w0.name, EVENT)
    w0.close()
    out = np.zeros(64, EVENT)
    got: list[int] = []
    for _ in range(2):
        p = procs(_slow_writer, w0.name)
        deadline = time.monotonic() + 10
        start = len(got)
        while len(got) < start + 40 and time.monotonic() < deadline:
            n = r.try_read(out)
            got += positions(out, n)
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
    got += positions(out, r.try_read(out))
    assert len(got) >= 80 and got == list(range(len(got)))
    r.close()


def test_killed_reader_never_slows_the_writer(writer: BroadcastWriter, procs: Any) -> None:
    p = procs(_slow_reader, writer.name)
    time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    t0 = time.monotonic()
    assert writer.publish(evs(0, 1000)) == 1000  # 60 laps of a 16-slot ring, no waiting
    assert time.monotonic() - t0 < 1.0
    fresh = BroadcastReader.attach(writer.name, EVENT, start="oldest")
    out = np.zeros(16, EVENT)
    assert fresh.try_read(out) == 16 and positions(out, 16) == list(range(984, 1000))
    fresh.close()


@numba.njit(cache=True)
def _nb_write_all(ctrl: np.ndarray, stamps: np.ndarray, slots: np.ndarray, total: int,
                  batch: int) -> int:
    w = slots.shape[1]
    buf = np.zeros((batch, w), np.int64)
    pos = 0
    while pos < total:
        k = min(batch, total - pos)
        for i in range(k):
            for j in range(w):
                buf[i, j] = (pos + i) * 1_000_003 + j
        pos = bcast_publish(ctrl, stamps, slots, buf, k)
    return pos


@numba.njit(cache=True)
def _nb_read_all(ctrl: np.ndarray, stamps: np.ndarray, slots: np.ndarray,
                 total: int) -> tuple[int, int, int, int]:
    w = slots.shape[1]
    buf = np.zeros((16, w), np.int64)
    cursor, bad, laps, read = 0, 0, 0, 0
    while cursor < total:
        n = bcast_read(ctrl, stamps, slots, cursor, buf, 16)
        if n < 0:
            laps += 1
            cursor -= n  # skip exactly the lost records
            continue
        for i in range(n):
            for j in range(w):
                if buf[i, j] != (cursor + i) * 1_000_003 + j:
                    bad += 1
                    break
        cursor += n
        read += n
    return bad, laps, read, cursor


def _nb_writer(name: str, total: int) -> None:
    with BroadcastWriter.attach(name, EVENT) as w:
        w.claim_writer()
        _nb_write_all(w.ctrl, w.stamps, w.slots, total, 7)


def test_seqlock_holds_under_numba_speed_contention(writer: BroadcastWriter, procs: Any) -> None:
    """Reader and writer both in tight numba loops on a 16-slot ring: the reader sits right at
    the slot being overwritten most of the time. (Without the stamp re-check this finds torn
    records in every run tried.)"""
    total = 10_000_000
    _nb_read_all(writer.ctrl, writer.stamps, writer.slots, 0)  # compile outside the race
    _nb_write_all(np.zeros(128, np.int64), np.zeros(4, np.int64), np.zeros((4, WORDS), np.int64),
                  0, 7)
    p = procs(_nb_writer, writer.name, total)
    bad, laps, read, cursor = _nb_read_all(writer.ctrl, writer.stamps, writer.slots, total)
    p.join(20)
    assert p.exitcode == 0
    assert bad == 0 and cursor == total
    assert laps > 0 and read > 0
