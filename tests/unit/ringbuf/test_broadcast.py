"""Broadcast ring: every reader sees every record in order, or learns exactly how much it missed."""

from __future__ import annotations

import multiprocessing as mp
import uuid

import numpy as np
import pytest

from pipeline.records import COMMAND, EVENT
from ringbuf import BroadcastReader, BroadcastWriter, SegmentMismatch

CTX = mp.get_context("spawn")


@pytest.fixture
def writer() -> BroadcastWriter:
    w = BroadcastWriter.create(f"spotx-test-{uuid.uuid4().hex[:10]}", EVENT, 16)
    yield w
    w.unlink()
    w.close()


def evs(start: int, n: int) -> np.ndarray:
    a = np.zeros(n, EVENT)
    a["seq"] = np.arange(start, start + n)
    a["leaves"] = a["seq"] * 7
    return a


def test_two_readers_independent_cursors(writer: BroadcastWriter) -> None:
    a = BroadcastReader.attach(writer.name, EVENT, from_latest=True)
    b = BroadcastReader.attach(writer.name, EVENT, from_latest=True)
    writer.publish(evs(0, 10))
    out = np.zeros(16, EVENT)
    assert a.read(out).n == 10 and list(out["seq"][:10]) == list(range(10))
    writer.publish(evs(10, 3))
    assert a.read(out).n == 3 and list(out["seq"][:3]) == [10, 11, 12]
    assert b.read(out).n == 13 and list(out["seq"][:13]) == list(range(13))
    a.close()
    b.close()


def test_lapped_reader_learns_how_far_and_resyncs(writer: BroadcastWriter) -> None:
    r = BroadcastReader.attach(writer.name, EVENT, from_latest=True)
    writer.publish(evs(0, 40))  # capacity 16: the reader lost 24
    out = np.zeros(16, EVENT)
    res = r.read(out)
    assert res.n == 0 and res.missed == 24
    r.resync_to_latest()
    writer.publish(evs(40, 5))
    res = r.read(out)
    assert res.n == 5 and list(out["seq"][:5]) == [40, 41, 42, 43, 44]
    assert r.laps == 1
    r.close()


def test_wrong_kind_refused(writer: BroadcastWriter) -> None:
    from ringbuf import SpscRing

    with pytest.raises(SegmentMismatch):
        SpscRing.attach(writer.name, EVENT)
    with pytest.raises(SegmentMismatch):
        BroadcastReader.attach(writer.name, COMMAND)


def _write_many(name: str, n: int, batch: int) -> None:
    w = BroadcastWriter.attach(name, EVENT)
    for start in range(0, n, batch):
        w.publish(evs(start, min(batch, n - start)))
    w.close()


def test_concurrent_reader_never_sees_torn_records(writer: BroadcastWriter) -> None:
    """A fast writer in another process laps a reader; whatever is read is whole and in order."""
    r = BroadcastReader.attach(writer.name, EVENT, from_latest=True)
    p = CTX.Process(target=_write_many, args=(writer.name, 200_000, 7))
    p.start()
    out = np.zeros(16, EVENT)
    last = -1
    read = 0
    while p.is_alive() or r.lag() > 0:
        res = r.read(out)
        if res.missed:
            r.resync_to_latest()
            last = -1
            continue
        seqs = out["seq"][: res.n].astype(np.int64)
        assert np.all(out["leaves"][: res.n] == seqs * 7)  # never torn
        if res.n:
            if last >= 0:
                assert seqs[0] == last + 1
            assert np.all(np.diff(seqs) == 1)
            last = int(seqs[-1])
            read += res.n
    p.join(30)
    assert p.exitcode == 0 and read > 0
    r.close()
